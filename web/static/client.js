/*
 * Parley browser client (client.js): the code the chat widget (widget.js) and
 * the agent console (agent.js) share, once: the protocol's limits, the
 * connection to the node (WebTransport with WebSocket fallback), the resume
 * cursors (vectors of `at` stamps, seqs of one node), the merging of a
 * message's states, and small helpers for frames, storage and the DOM.
 *
 * It defines one name, ParleyClient, and does nothing when it runs: no
 * listener, no timer, no DOM. The console loads it as /static/client.js
 * before agent.js. Customers' pages keep their one script tag: the node
 * serves /widget.js as this file followed by widget.js, both inside one
 * block, so the name stays off their pages (node/assets.go). Plain
 * JavaScript with no dependencies and no build step; it runs under a strict
 * Content-Security-Policy (no eval, no inline code).
 */
const ParleyClient = (() => {
  'use strict';

  const PROTOCOL_VERSION = 1;
  const MAX_BODY = 4000;
  const MAX_FRAME_BYTES = 16 * 1024;
  const TYPING_THROTTLE_MS = 2000;
  const TYPING_IDLE_MS = 5000;
  const ACK_TIMEOUT_MS = 10000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const ELLIPSIS = '\u2026';

  // ---------------------------------------------------------------- helpers

  // Storage can be unavailable (privacy modes, sandboxed frames): never throw.
  const storage = {
    get(area, key) {
      try { return window[area].getItem(key); } catch (e) { return null; }
    },
    set(area, key, value) {
      try { window[area].setItem(key, value); } catch (e) { /* ignore */ }
    },
    del(area, key) {
      try { window[area].removeItem(key); } catch (e) { /* ignore */ }
    },
  };

  function newId() {
    if (window.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  const byteLength = (s) => new TextEncoder().encode(s).length;
  const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

  // clean is what a person typed, as the node takes it: control characters
  // (but newline and tab) and bidirectional controls, which the node
  // refuses, removed (plain), and the ends trimmed.
  const clean = (text) => plain(text, true).trim();

  // h builds an element; untrusted text goes in only as {text: ...}
  // (textContent).
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v == null || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k === 'text') el.textContent = v;
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const kid of kids) if (kid != null) el.append(kid);
    return el;
  }

  // URL_RE finds web addresses in a message: http and https only, up to a
  // space or a character no address holds unescaped.
  const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;

  // linkify writes text into el with its web addresses as links: only http
  // and https (no other scheme is ever a link), opened in a new tab with no
  // opener and no referrer. The punctuation that ends a sentence after an
  // address is not part of it, nor a closing bracket it does not open. The
  // text shown is the text sent, character for character.
  function linkify(el, text) {
    el.replaceChildren();
    let at = 0;
    for (const m of String(text).matchAll(URL_RE)) {
      let url = m[0];
      for (;;) {
        const last = url[url.length - 1];
        if ('.,;:!?'.includes(last)) url = url.slice(0, -1);
        else if (last === ')' && url.split('(').length < url.split(')').length) url = url.slice(0, -1);
        else if (last === ']' && url.split('[').length < url.split(']').length) url = url.slice(0, -1);
        else break;
      }
      let href;
      try {
        const u = new URL(url);
        if (u.protocol !== 'http:' && u.protocol !== 'https:') continue;
        href = u.href;
      } catch (e) {
        continue;
      }
      if (m.index > at) el.append(text.slice(at, m.index));
      el.append(h('a', { href, target: '_blank', rel: 'noopener noreferrer nofollow ugc', text: url }));
      at = m.index + url.length;
    }
    if (at < text.length) el.append(text.slice(at));
  }

  // icon is an inline SVG of one path (24x24), hidden from screen readers.
  function icon(d, cls) {
    const NS = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    if (cls) svg.setAttribute('class', cls);
    const path = document.createElementNS(NS, 'path');
    path.setAttribute('d', d);
    svg.append(path);
    return svg;
  }

  // autosize grows a textarea with its text up to max pixels. CSSOM
  // (element.style) is allowed under the CSP; style attributes are not.
  function autosize(input, max) {
    input.style.height = 'auto';
    const border = input.offsetHeight - input.clientHeight;
    const height = input.scrollHeight + border;
    input.style.height = Math.min(height, max) + 'px';
    input.style.overflowY = height > max ? 'auto' : 'hidden';
  }

  // ---------------------------------------------------------------- cursors
  //
  // Each node numbers a conversation's events with seqs of its own; a
  // deliver's `at` ("origin.oseq") names its event the same on every node.
  // Per conversation a client keeps the highest oseq of each origin it
  // received (a vector) and resumes with it (`since`), so a reconnect that
  // lands on another node brings exactly what it missed; `after` (a seq)
  // only when a node sends no `at`. Seqs of the previous node are forgotten
  // on a new one (forgetSeqs) until the next list gives the new node's head
  // (settleSeqs). Both live as long as the messages they describe: in the
  // page.

  function noteStamp(vec, at) {
    if (typeof at !== 'string') return false;
    const i = at.lastIndexOf('.');
    const origin = at.slice(0, i);
    const n = Number(at.slice(i + 1));
    if (i <= 0 || !/^[a-z0-9_~-]+$/.test(origin) || !Number.isSafeInteger(n) || n < 1) return false;
    if (!(vec.get(origin) >= n)) vec.set(origin, n);
    return true;
  }

  const vectorString = (vec) => Array.from(vec, ([origin, n]) => origin + '.' + n).join(',');

  // resumeFrom sets a resume frame's cursor: the vector when there is one,
  // else the seq.
  function resumeFrom(frame, vec, seq) {
    if (vec.size) frame.since = vectorString(vec);
    else frame.after = seq;
    return frame;
  }

  // forgetSeqs marks the messages' seqs, another node's, as unknown.
  function forgetSeqs(messages) {
    for (const m of messages.values()) {
      if (m.seq) {
        m.seq = 0;
        m.seqStale = true;
      }
    }
  }

  // settleSeqs gives the messages kept from another node at most this
  // node's head, so "Seen" never shows early; it says whether there were
  // any.
  function settleSeqs(messages, head) {
    let stale = false;
    for (const m of messages.values()) {
      if (!m.seqStale) continue;
      stale = true;
      m.seqStale = false;
      if (!m.seq) m.seq = head;
    }
    return stale;
  }

  // ---------------------------------------------------------------- messages

  function hlcCompare(a, b) {
    if (!a || !b) return (a ? 1 : 0) - (b ? 1 : 0);
    return Math.sign(((a.w || 0) - (b.w || 0)) || ((a.l || 0) - (b.l || 0))) || cmp(a.n || '', b.n || '');
  }

  // mergeMessage folds a deliver's state of a message into the one entry
  // kept for its id, in whatever order states arrive (a replay from another
  // node brings them in that node's order), as the nodes merge them
  // (docs/protocol.md): the earliest creation (`ts`) gives the author fields
  // and, until an edit, the text, so an id that two nodes accepted shows
  // once, where the nodes put it; the later edit wins (a tie goes to the
  // larger text); a deletion is for good.
  function mergeMessage(m, msg) {
    const body = typeof msg.body === 'string' ? msg.body : '';
    const ts = msg.ts || null;
    const edited = msg.edited || null;
    if (!m.merged) {
      m.merged = true;
      m.author = msg.author;
      m.role = msg.role;
      m.name = msg.name;
      m.ts = ts;
      m.body = body;
      m.edited = edited;
      m.deleted = Boolean(msg.deleted);
    } else {
      const earlier = ts && (!m.ts || hlcCompare(ts, m.ts) < 0);
      if (earlier) {
        m.author = msg.author;
        m.role = msg.role;
        m.name = msg.name;
        m.ts = ts;
      }
      if (edited && m.edited) {
        const c = hlcCompare(edited, m.edited);
        if (c > 0 || (c === 0 && body > m.body)) {
          m.body = body;
          m.edited = edited;
        }
      } else if (edited) {
        m.body = body;
        m.edited = edited;
      } else if (!m.edited && earlier) {
        m.body = body;
      }
      if (msg.deleted) m.deleted = true;
    }
    if (m.deleted) {
      m.body = '';
      m.edited = null;
    }
  }

  // deliver applies a deliver frame f of one conversation: its stamps go
  // into vec, its message into the entry for its id in messages (a new one
  // is numbered by nextLocal()); it returns the entry.
  function deliver(f, messages, vec, nextLocal) {
    noteStamp(vec, f.at);
    if (Array.isArray(f.also)) for (const at of f.also) noteStamp(vec, at);
    const msg = f.message;
    let m = messages.get(msg.id);
    if (!m) {
      m = { id: msg.id, local: nextLocal() };
      messages.set(msg.id, m);
    }
    mergeMessage(m, msg);
    if (typeof f.seq === 'number' && f.seq > 0 && (!m.seq || f.seq < m.seq)) m.seq = f.seq;
    m.seqStale = false;
    m.state = 'sent';
    return m;
  }

  // acked applies an ack frame f to the message it acknowledges.
  function acked(m, f) {
    m.state = 'sent';
    if (typeof f.seq === 'number' && (!m.seq || f.seq < m.seq)) m.seq = f.seq;
    if (!m.ts && f.ts) m.ts = f.ts;
  }

  // pending is the entry of a message written here and not yet acked.
  const pending = (id, author, role, name, body, local) => ({
    id, author, localOnly: true, role, name, body, ts: null, seq: 0, state: 'pending', local,
  });

  // tsCompare orders messages by creation; pending ones (no ts yet) last,
  // in the order they were written.
  function tsCompare(a, b) {
    if (!a.ts || !b.ts) {
      if (a.ts) return -1;
      if (b.ts) return 1;
      return a.local - b.local;
    }
    return ((a.ts.w || 0) - (b.ts.w || 0)) || ((a.ts.l || 0) - (b.ts.l || 0)) ||
      cmp(a.ts.n, b.ts.n) || cmp(a.id, b.id);
  }

  // bodyError says why a message's text cannot be sent ('' when it can).
  function bodyError(body) {
    if (body.length > MAX_BODY) return 'long';
    if (byteLength(JSON.stringify({ body })) > MAX_FRAME_BYTES - 512) return 'frame';
    return '';
  }

  // The state a message shows: data-state, and the text under it.
  const stateName = (m) => (m.state === 'sent' ? 'sent' : m.state === 'failed' ? 'failed' : 'pending');

  // stateText's words are English unless words ({sending, notSent, edited})
  // gives the page's.
  function stateText(m, words) {
    const w = words || {};
    if (m.state === 'pending') return w.sending || 'Sending' + ELLIPSIS;
    if (m.state === 'failed') return (w.notSent || 'Not sent') + (m.error ? ': ' + m.error : '');
    if (m.edited && !m.deleted) return w.edited || 'edited';
    return '';
  }

  // ---------------------------------------------------------------- sessions
  //
  // A session state st is the caller's: {conn, refs (Map), refN, lastRecv,
  // heartbeatMs}. These helpers read and write those fields only.

  // plain neutralises what would reorder or hide text as it is shown, by
  // the node's rule (ident/text.go): bidirectional embeddings, overrides and
  // isolates (U+202E makes "exe.txt" read "txt.exe") and control characters
  // go (but newline and tab in a multi-line text); a single-line text (a
  // name) also loses every other invisible format character but ZWJ, ZWNJ
  // and the direction marks. The node refuses these characters; text it
  // stored before it did, or an older node's, is shown through this.
  const BIDI_CONTROLS = /[\u202a-\u202e\u2066-\u2069]/g;
  const CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;
  const LINE_BREAKS = /[\n\t]/g;
  const INVISIBLE = /(?![\u200c-\u200f\u061c])\p{Cf}/gu;
  function plain(s, multiline) {
    if (typeof s !== 'string') return s;
    s = s.replace(BIDI_CONTROLS, '').replace(CONTROLS, '');
    return multiline ? s : s.replace(LINE_BREAKS, ' ').replace(INVISIBLE, '');
  }

  // Fields of what the node sends that people read: multi-line, or names.
  const TEXT_FIELDS = { body: true, text: true };
  const NAME_FIELDS = { name: true, title: true };

  // neutralise passes every text a person reads in a frame or an API
  // answer (at any depth) through plain, in place, and returns it.
  function neutralise(v) {
    if (Array.isArray(v)) {
      v.forEach(neutralise);
    } else if (v && typeof v === 'object') {
      for (const k of Object.keys(v)) {
        const x = v[k];
        if (typeof x === 'string') {
          if (TEXT_FIELDS[k]) v[k] = plain(x, true);
          else if (NAME_FIELDS[k]) v[k] = plain(x, false);
        } else if (x && typeof x === 'object') {
          neutralise(x);
        }
      }
    }
    return v;
  }

  // parseFrame is the frame object of a line of text, its texts neutralised,
  // or null.
  function parseFrame(text) {
    let f;
    try { f = JSON.parse(text); } catch (e) { return null; }
    return f && typeof f === 'object' ? neutralise(f) : null;
  }

  function sendRaw(st, frame) {
    return Boolean(st.conn) && st.conn.send(JSON.stringify(frame));
  }

  // request sends a frame with a fresh ref and remembers what it was for.
  function request(st, frame, ctx) {
    const ref = 'r' + (++st.refN);
    frame.ref = ref;
    if (!sendRaw(st, frame)) return null;
    st.conn.expectReply();
    st.refs.set(ref, ctx || { kind: frame.type });
    return ref;
  }

  // takeRef is the context of the request a frame answers, forgotten now.
  function takeRef(st, f) {
    const ctx = f.ref ? st.refs.get(f.ref) : null;
    if (f.ref) st.refs.delete(f.ref);
    return ctx;
  }

  // retryMs is how long an error frame asks to wait before sending the
  // same frame again (retry_ms: overloaded, some rate_limited), capped at
  // a minute; 0 when it does not say.
  function retryMs(f) {
    const ms = Number(f.retry_ms);
    return ms > 0 ? Math.min(ms, 60000) : 0;
  }

  // retryAfter honours an error's retry_ms for an outbox entry ({sentAt}):
  // it dates the entry's last send so that the next flush of the outbox
  // once retry_ms has passed sends it again (with its id: never stored
  // twice), and returns that delay, 0 when the error says none (the ack
  // timeout resends it then).
  function retryAfter(entry, f) {
    const ms = retryMs(f);
    if (!entry || !ms) return 0;
    entry.sentAt = Date.now() - ACK_TIMEOUT_MS + ms;
    return ms;
  }

  // heartbeatMs is the interval a welcome asks for, within 1 s..120 s.
  function heartbeatMs(welcome) {
    const hb = Number(welcome.heartbeat_ms);
    return hb >= 1000 ? Math.min(hb, 120000) : 10000;
  }

  // beat is one heartbeat: false when nothing came for three intervals (the
  // connection is dead without a close frame), else it pings.
  function beat(st) {
    if (Date.now() - st.lastRecv > 3 * st.heartbeatMs) return false;
    if (sendRaw(st, { type: 'ping', ref: 'ping' })) st.conn.expectReply();
    return true;
  }

  // backoff is the delay before reconnect attempt n (from 0): exponential,
  // capped, with jitter.
  function backoff(n) {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** n);
    return Math.round(base / 2 + (Math.random() * base) / 2);
  }

  // ---------------------------------------------------------------- transports
  //
  // One connection to the node, over WebTransport or WebSocket: the rest of
  // a client sees only open(). WebTransport is preferred when the
  // browser has it and the node offers it (GET /v1/transport); WebSocket is
  // used when it is missing, when it cannot connect (UDP blocked: ready
  // fails or times out; remembered for WT_FAILED_TTL_MS, so that a visitor on
  // such a network does not wait every time), and for the next connection
  // after a WebTransport session broke mid-way (it ended without a close
  // code, or a ping got no answer within WT_REPLY_TIMEOUT_MS: the node sends
  // no QUIC keep-alives, so this is how a silently dropped path shows). Over
  // WebTransport the frames are the same JSON objects, one per line, on one
  // bidirectional stream; the session's close code means what the WebSocket
  // close code does.

  const WT_READY_TIMEOUT_MS = 3000;
  const WT_FAILED_TTL_MS = 5 * 60 * 1000;
  const WT_CLOSE_WAIT_MS = 2000;
  const WT_REPLY_TIMEOUT_MS = 5000;
  const MAX_LINE_CHARS = 4 * 1024 * 1024;

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function base64Bytes(s) {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  // transport is the connection maker of a node: its origin (scheme, host
  // and port of the page or of the script) and the URL of its WebSocket.
  function transport(ORIGIN, WS_URL) {
    const KEY_WT_FAILED = 'parley:wt-failed:' + ORIGIN;
    let wtBroke = false; // the last WebTransport session broke: use WebSocket once

    function wtFailedRecently() {
      const at = Number(storage.get('sessionStorage', KEY_WT_FAILED));
      return Boolean(at) && Date.now() - at < WT_FAILED_TTL_MS;
    }

    // What the node offers besides WebSocket, or null.
    async function transportInfo() {
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), WT_READY_TIMEOUT_MS);
      try {
        const res = await fetch(ORIGIN + '/v1/transport', { cache: 'no-store', credentials: 'omit', signal: ctl.signal });
        if (!res.ok) return null;
        const info = await res.json();
        const wt = info && info.webtransport;
        return wt && typeof wt.url === 'string' ? wt : null;
      } catch (e) {
        return null;
      } finally {
        clearTimeout(timer);
      }
    }

    /*
     * open connects and calls cb.open() once the connection carries
     * frames, cb.line(text) for each frame, and cb.close(code) once when it ends
     * by itself (not after conn.close()). conn.transport is 'wt' or 'ws' once
     * open; conn.send(text) returns false when the frame could not be sent.
     * conn.expectReply() says that an answer is due (a frame with a ref was
     * sent): over WebTransport, nothing at all received within
     * WT_REPLY_TIMEOUT_MS ends the connection.
     */
    function open(cb) {
      const conn = {
        transport: '', closed: false,
        send: () => false, expectReply: () => {}, close: () => { conn.closed = true; },
      };
      let ended = false;
      const end = (code) => {
        conn.send = () => false;
        if (ended || conn.closed) return;
        ended = true;
        cb.close(code || 0);
      };
      const useWS = () => {
        if (conn.closed) return;
        let ws;
        try {
          ws = new WebSocket(WS_URL);
        } catch (e) {
          setTimeout(() => end(0), 0);
          return;
        }
        conn.close = () => {
          conn.closed = true;
          try { ws.close(); } catch (e) { /* ignore */ }
        };
        ws.addEventListener('open', () => {
          if (conn.closed) return;
          conn.transport = 'ws';
          conn.send = (text) => {
            if (ws.readyState !== WebSocket.OPEN) return false;
            ws.send(text);
            return true;
          };
          cb.open();
        });
        ws.addEventListener('message', (ev) => {
          if (!conn.closed && typeof ev.data === 'string') cb.line(ev.data);
        });
        ws.addEventListener('close', (ev) => end(ev.code));
      };
      const tryWT = typeof WebTransport === 'function' && !wtBroke && !wtFailedRecently();
      wtBroke = false;
      if (!tryWT) {
        useWS();
        return conn;
      }
      (async () => {
        const info = await transportInfo();
        if (conn.closed) return;
        if (!info) {
          useWS(); // no WebTransport on this node, or the node is unreachable
          return;
        }
        const failed = () => {
          storage.set('sessionStorage', KEY_WT_FAILED, String(Date.now()));
          useWS();
        };
        let wt;
        try {
          const opts = {};
          if (Array.isArray(info.cert_hashes) && info.cert_hashes.length) {
            opts.serverCertificateHashes = info.cert_hashes.map((b) => ({ algorithm: 'sha-256', value: base64Bytes(b) }));
          }
          wt = new WebTransport(info.url, opts);
        } catch (e) {
          failed();
          return;
        }
        conn.close = () => {
          conn.closed = true;
          try { wt.close({ closeCode: 1000, reason: '' }); } catch (e) { /* ignore */ }
        };
        const closed = wt.closed.then((info) => ({ code: Number(info && info.closeCode) || 0 }), () => null);
        const ready = await Promise.race([wt.ready.then(() => true, () => false), sleep(WT_READY_TIMEOUT_MS).then(() => false)]);
        if (conn.closed) return;
        let stream;
        if (ready) {
          try { stream = await wt.createBidirectionalStream(); } catch (e) { stream = null; }
        }
        if (conn.closed) return;
        if (!stream) {
          try { wt.close(); } catch (e) { /* ignore */ }
          failed();
          return;
        }
        const writer = stream.writable.getWriter();
        const reader = stream.readable.getReader();
        const enc = new TextEncoder();
        let recvAt = Date.now();
        let replyTimer = 0;
        let broken = false;
        conn.transport = 'wt';
        conn.send = (text) => {
          writer.write(enc.encode(text + '\n')).catch(() => { /* the reader sees the end */ });
          return true;
        };
        let pendingSince = 0; // the oldest request sent after the last data received
        const checkReply = () => {
          replyTimer = 0;
          if (conn.closed || ended || pendingSince <= recvAt) return;
          const due = pendingSince + WT_REPLY_TIMEOUT_MS - Date.now();
          if (due > 0) {
            replyTimer = setTimeout(checkReply, due);
            return;
          }
          broken = true; // the path went silent: WebSocket next
          wtBroke = true;
          try { wt.close(); } catch (e) { /* ignore */ }
          end(0);
        };
        conn.expectReply = () => {
          if (pendingSince <= recvAt) pendingSince = Date.now();
          if (!replyTimer) replyTimer = setTimeout(checkReply, WT_REPLY_TIMEOUT_MS);
        };
        const closeConn = conn.close;
        conn.close = () => {
          clearTimeout(replyTimer);
          closeConn();
        };
        cb.open();
        // Frames are lines; the server ends the stream, then closes the
        // session with a code (read from `closed`) once we end ours.
        const dec = new TextDecoder();
        let buf = '';
        let clean = false;
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) {
              clean = true;
              break;
            }
            recvAt = Date.now();
            buf += dec.decode(value, { stream: true });
            let i;
            while (!conn.closed && (i = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, i);
              buf = buf.slice(i + 1);
              if (line.trim()) cb.line(line);
            }
            if (conn.closed) return;
            if (buf.length > MAX_LINE_CHARS) throw new Error('frame too long');
          }
        } catch (e) { /* the stream broke */ }
        clearTimeout(replyTimer);
        conn.send = () => false;
        if (conn.closed || broken) return;
        writer.close().catch(() => { /* ignore */ });
        const how = await Promise.race([closed, sleep(WT_CLOSE_WAIT_MS).then(() => undefined)]);
        try { wt.close(); } catch (e) { /* ignore */ }
        if (!clean || how === null) wtBroke = true; // broke mid-session: WebSocket next
        end(how ? how.code : 0);
      })().catch((e) => {
        console.warn('Parley: WebTransport:', e);
        if (conn.transport) end(0);
        else useWS();
      });
      return conn;
    }

    return { open };
  }

  return Object.freeze({
    PROTOCOL_VERSION, MAX_BODY, MAX_FRAME_BYTES, TYPING_THROTTLE_MS, TYPING_IDLE_MS,
    ACK_TIMEOUT_MS, ELLIPSIS,
    storage, newId, byteLength, cmp, clean, h, linkify, icon, autosize,
    noteStamp, vectorString, resumeFrom, forgetSeqs, settleSeqs,
    hlcCompare, mergeMessage, deliver, acked, pending, tsCompare, bodyError, stateName, stateText,
    plain, neutralise, parseFrame, sendRaw, request, takeRef, retryMs, retryAfter, heartbeatMs, beat, backoff,
    transport,
  });
})();
