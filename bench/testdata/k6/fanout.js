// An independent witness for `parley-bench peers`: the fan-out scenario
// (SUBS agents on one workspace, one visitor publishing RATE messages/s of
// SIZE bytes for SECONDS) driven by k6 with its websockets module against
// a Parley node. Delivery latency is measured from the send time written
// in each body (whole milliseconds: Date.now()).
//
//   bench/peers/k6-fanout.sh        (starts a node, runs this, reads the node's CPU)
//   k6 run -e URL=ws://127.0.0.1:8080/v1/ws -e TOKEN=<operator token> -e SUBS=200 -e RATE=20 -e SECONDS=20 bench/testdata/k6/fanout.js
import { WebSocket } from 'k6/websockets';
import { setInterval, clearInterval, setTimeout } from 'k6/timers';
import { Trend, Counter } from 'k6/metrics';

const URL = __ENV.URL || 'ws://127.0.0.1:8080/v1/ws';
const TOKEN = __ENV.TOKEN || '';
const SUBS = Number(__ENV.SUBS || 200);
const RATE = Number(__ENV.RATE || 20);
const SECONDS = Number(__ENV.SECONDS || 20);
const SIZE = Number(__ENV.SIZE || 128);
const SETUP = Number(__ENV.SETUP || 8); // seconds for the subscribers to connect

const e2e = new Trend('fanout_delivery_ms', true);
const delivered = new Counter('fanout_receipts');
const published = new Counter('fanout_published');
const subscribed = new Counter('fanout_subscribed');
const errors = new Counter('fanout_errors');

export const options = {
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
  scenarios: {
    subscribers: { executor: 'per-vu-iterations', exec: 'subscriber', vus: SUBS, iterations: 1, maxDuration: `${SETUP + SECONDS + 30}s` },
    publisher: { executor: 'per-vu-iterations', exec: 'publisher', vus: 1, iterations: 1, startTime: `${SETUP}s`, maxDuration: `${SECONDS + 30}s` },
  },
};

export function subscriber() {
  const ws = new WebSocket(URL);
  ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', v: 1, workspace: 'demo', role: 'agent', token: TOKEN, name: `k6 agent ${__VU}` }));
  ws.onmessage = (e) => {
    const f = JSON.parse(e.data);
    if (f.type === 'deliver' && f.message && f.message.body.startsWith('k6 ')) {
      e2e.add(Date.now() - Number(f.message.body.split(' ')[1]));
      delivered.add(1);
    } else if (f.type === 'welcome') {
      subscribed.add(1);
    } else if (f.type === 'error') {
      errors.add(1);
    }
  };
  const ping = setInterval(() => ws.send('{"type":"ping"}'), 8000);
  setTimeout(() => { clearInterval(ping); ws.close(); }, (SETUP + SECONDS + 8) * 1000);
}

export function publisher() {
  const ws = new WebSocket(URL);
  let n = 0;
  ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', v: 1, workspace: 'demo', role: 'visitor' }));
  ws.onmessage = (e) => {
    const f = JSON.parse(e.data);
    if (f.type === 'welcome') {
      ws.send(JSON.stringify({ type: 'start', ref: 's' }));
    } else if (f.type === 'started') {
      const timer = setInterval(() => {
        const id = `k6fan-${String(n++).padStart(8, '0')}`;
        let body = `k6 ${Date.now()} ${n} `;
        body += 'x'.repeat(Math.max(0, SIZE - body.length));
        ws.send(JSON.stringify({ type: 'send', ref: id, conversation: f.conversation, id: id, body: body }));
        published.add(1);
      }, 1000 / RATE);
      setTimeout(() => clearInterval(timer), SECONDS * 1000);
      setTimeout(() => ws.close(), (SECONDS + 6) * 1000);
    } else if (f.type === 'error') {
      errors.add(1);
    }
  };
}
