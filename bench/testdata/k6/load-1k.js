// An independent witness for parley-bench: the load-1k scenario's shape
// (100 visitors sending 10 messages/s each, 5 agents receiving everything,
// 30 s) driven by k6 with its websockets module. Visitors send on a timer,
// whatever the acks (open loop per visitor); ack latency is measured from
// the send, delivery latency from the send time written in the body.
//
//   k6 run -e URL=ws://127.0.0.1:8080/v1/ws -e TOKEN=<operator token> bench/testdata/k6/load-1k.js
import { WebSocket } from 'k6/websockets';
import { setInterval, clearInterval, setTimeout } from 'k6/timers';
import { Trend, Counter } from 'k6/metrics';

const URL = __ENV.URL || 'ws://127.0.0.1:8080/v1/ws';
const TOKEN = __ENV.TOKEN || '';
const SECONDS = Number(__ENV.SECONDS || 30);
const PER_VU_RATE = Number(__ENV.RATE || 10); // messages per second per visitor
const BODY = 'x'.repeat(100);

const ackLatency = new Trend('parley_ack_ms', true);
const e2eLatency = new Trend('parley_e2e_ms', true);
const acked = new Counter('parley_acked');
const delivered = new Counter('parley_delivered');
const errors = new Counter('parley_errors');

export const options = {
  scenarios: {
    agents: { executor: 'per-vu-iterations', exec: 'agent', vus: 5, iterations: 1, maxDuration: `${SECONDS + 30}s` },
    visitors: { executor: 'per-vu-iterations', exec: 'visitor', vus: 100, iterations: 1, startTime: '2s', maxDuration: `${SECONDS + 30}s` },
  },
};

export function agent() {
  const ws = new WebSocket(URL);
  ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', v: 1, workspace: 'demo', role: 'agent', token: TOKEN }));
  ws.onmessage = (e) => {
    const f = JSON.parse(e.data);
    if (f.type === 'deliver' && f.message && f.message.body.startsWith('k6 ')) {
      const sent = Number(f.message.body.split(' ')[1]);
      e2eLatency.add(Date.now() - sent);
      delivered.add(1);
    } else if (f.type === 'error') {
      errors.add(1);
      if (__ENV.DEBUG) console.log(`agent ${__VU}: ${e.data}`);
    }
  };
  const ping = setInterval(() => ws.send('{"type":"ping"}'), 8000);
  setTimeout(() => { clearInterval(ping); ws.close(); }, (SECONDS + 12) * 1000);
}

export function visitor() {
  const ws = new WebSocket(URL);
  const sentAt = {};
  let conv = null;
  let n = 0;
  let timer = null;
  ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', v: 1, workspace: 'demo', role: 'visitor' }));
  ws.onmessage = (e) => {
    const f = JSON.parse(e.data);
    if (f.type === 'welcome') {
      ws.send(JSON.stringify({ type: 'start', ref: 's' }));
    } else if (f.type === 'started') {
      conv = f.conversation;
      timer = setInterval(() => {
        const id = `k6-${String(__VU).padStart(3, '0')}-${String(n++).padStart(6, '0')}`; // ids are 8..64 characters
        const now = Date.now();
        sentAt[id] = now;
        ws.send(JSON.stringify({ type: 'send', ref: id, conversation: conv, id: id, body: `k6 ${now} ${BODY}` }));
      }, 1000 / PER_VU_RATE);
      setTimeout(() => clearInterval(timer), SECONDS * 1000);
      setTimeout(() => ws.close(), (SECONDS + 8) * 1000);
    } else if (f.type === 'ack' && sentAt[f.id] !== undefined) {
      ackLatency.add(Date.now() - sentAt[f.id]);
      delete sentAt[f.id];
      acked.add(1);
    } else if (f.type === 'error') {
      errors.add(1);
      if (__ENV.DEBUG) console.log(`visitor ${__VU}: ${e.data}`);
    }
  };
}
