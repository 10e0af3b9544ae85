/*
 * Parley agent console (agent.js), loaded by agent.html.
 *
 * Agents answer visitors live: a conversation list with unread counts and
 * presence, one open conversation with typing and read receipts, a composer,
 * and a "Who is online" panel. It speaks the Parley wire protocol, version 1:
 * JSON frames over WebTransport at /v1/wt where the browser and the network
 * allow it, else over a WebSocket at /v1/ws, on the same node
 * (docs/protocol.md). The status element's data-transport says which.
 *
 * The operator token and the workspace come from the URL fragment
 * (#token=...&workspace=demo), are kept in sessionStorage and removed from the
 * address bar. Plain JavaScript with no dependencies; it runs under a strict
 * Content-Security-Policy, and untrusted text is only written with textContent.
 * What it shares with the widget (the connection, resume cursors, message
 * merging) is ParleyClient, from static/client.js, which agent.html loads
 * first.
 *
 * The Suggestions panel asks the node's HTTP API (with the same operator
 * token, as Authorization: Bearer) for the conversations most similar to the
 * open one, the saved replies that fit the visitor's last messages, and a
 * semantic search; the node computes them itself (GET /v1/embeddings says
 * whether it can).
 */
(() => {
  'use strict';

  const C = ParleyClient;
  const { PROTOCOL_VERSION, MAX_BODY, TYPING_THROTTLE_MS, TYPING_IDLE_MS, ACK_TIMEOUT_MS, ELLIPSIS } = C;
  const { storage, newId, cmp, clean, h } = C;
  const ORIGIN = location.origin;
  const WS_URL = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/v1/ws';

  const KEY_TOKEN = 'parley:agent:token';
  const KEY_WORKSPACE = 'parley:agent:workspace';
  const KEY_NAME = 'parley:agent:name';
  const KEY_SELECTED = 'parley:agent:selected';
  const KEY_AWAY = 'parley:agent:away';
  const KEY_ALERTS = 'parley:agent:alerts';

  // ---------------------------------------------------------------- helpers

  const $ = (id) => document.getElementById(id);
  const validWorkspace = (w) => /^[a-z0-9_-]{1,64}$/.test(w);

  function participantLabel(p) {
    if (!p) return 'Visitor';
    if (p.startsWith('u:')) return 'User ' + p.slice(2, 26);
    if (p.startsWith('a:')) return 'Agent ' + p.slice(2, 10);
    if (p.startsWith('b:')) return 'Bot';
    if (p.startsWith('v:')) return 'Visitor ' + p.slice(2, 8);
    return p.slice(0, 24);
  }

  // initials are an avatar's letters: the first letters of the first two
  // words of a name, leaving out what is in brackets and words with digits,
  // so a name made up from an ID ("Visitor 4f3a9c", "Visitor b31e07") gives
  // one letter whatever its digits.
  function initials(name) {
    const words = String(name || '').replace(/\(.*?\)/g, ' ').split(/[^\p{L}\p{N}]+/u)
      .filter((w) => /^\p{L}+$/u.test(w) && !/^[0-9a-f]{6}$/.test(w));
    if (words.length === 0) return '?';
    return (words.length > 1 ? words[0][0] + words[1][0] : words[0][0]).toUpperCase();
  }

  function formatTime(ms, withDate) {
    if (!ms) return '';
    const d = new Date(ms);
    const now = new Date();
    const sameDay = d.toDateString() === now.toDateString();
    const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    if (sameDay) return time;
    const date = d.toLocaleDateString([], { day: 'numeric', month: 'short' });
    return withDate ? date + ', ' + time : date;
  }

  // ---------------------------------------------------------------- state

  const A = {
    token: '',
    workspace: 'demo',
    name: '',
    away: false, // this agent said they are away (setAway)

    conn: null, // openConnection()
    welcomed: false,
    participant: null,
    heartbeatMs: 10000,
    hbTimer: 0,
    deletionTimer: 0,
    reconnectTimer: 0,
    attempt: 0,
    lastRecv: 0,
    stopped: true,
    node: '', // the node of the last welcome: seqs are its own
    viewing: null, // the conversation the node was told this console has open

    convs: new Map(), // id -> conversation state
    selected: storage.get('sessionStorage', KEY_SELECTED),
    outbox: new Map(), // message id -> {conv, frame, sentAt}
    refs: new Map(),
    refN: 0,
    listRef: null,
    listAgain: false,
    listTimer: 0,
    localSeq: 0,

    online: new Map(), // participant -> {role, name, conversations}

    typingConv: null,
    typingSentAt: 0,
    typingIdle: 0,

    renderPending: false,
    forceScroll: false,
  };

  function conv(id) {
    let c = A.convs.get(id);
    if (!c) {
      c = {
        id, owner: '', ownerName: '', created: 0, updated: 0,
        listHead: 0, listUnread: 0, listed: false,
        last: null, reads: {}, myRead: 0, readSent: 0,
        messages: new Map(), seenSeq: 0, loaded: false, resumeRef: null,
        vector: new Map(), // origin -> highest oseq received: resume's since
        typers: new Map(), el: null,
        viewers: new Map(), // other agents with it open: participant -> name
        // The inbox state, as the last list gave it (changes seen live
        // are shown at once, and the next list confirms them).
        status: 'open', until: 0, tags: [], assignee: '', context: null,
        assignVersion: null, // the assignment's version as last read, for expect_version
        ops: new Map(), // inbox changes seen (internal messages with a kind), by id
      };
      A.convs.set(id, c);
    }
    return c;
  }

  const isMine = (m) => (m.author ? m.author === A.participant : Boolean(m.localOnly));
  const convName = (c) => c.ownerName || participantLabel(c.owner);

  function convOnline(c) {
    if (c.owner && A.online.has(c.owner)) return true;
    for (const p of A.online.values()) {
      if (p.role !== 'agent' && Array.isArray(p.conversations) && p.conversations.includes(c.id)) return true;
    }
    return false;
  }

  function unreadOf(c) {
    const read = Math.max(c.myRead, c.readSent);
    let n = 0;
    if (c.loaded) {
      for (const m of c.messages.values()) if (!isMine(m) && !m.deleted && m.seq > read) n++;
      return n;
    }
    const base = c.listHead > read ? c.listUnread : 0;
    const from = Math.max(c.listHead, read);
    for (const m of c.messages.values()) if (!isMine(m) && !m.deleted && m.seq > from) n++;
    return base + n;
  }

  function visitorRead(c) {
    let seq = 0;
    for (const [p, s] of Object.entries(c.reads)) {
      if ((p.startsWith('v:') || p.startsWith('u:')) && s > seq) seq = s;
    }
    return seq;
  }

  // ---------------------------------------------------------------- DOM refs

  const el = {
    status: $('status'),
    workspace: $('workspace-name'),
    me: $('me-name'),
    signout: $('signout'),
    login: $('login'),
    loginForm: $('login-form'),
    away: $('away'),
    notify: $('notify'),
    loginToken: $('login-token'),
    loginEmail: $('login-email'),
    loginPassword: $('login-password'),
    loginAlt: $('login-alt'),
    loginSubmit: $('login-submit'),
    loginWorkspace: $('login-workspace'),
    loginName: $('login-name'),
    loginError: $('login-error'),
    console: $('console'),
    convList: $('conv-list'),
    convEmpty: $('conv-empty'),
    convCount: $('conv-count'),
    threadEmpty: $('thread-empty'),
    threadHead: $('thread-head'),
    threadAvatar: $('thread-avatar'),
    threadTitle: $('thread-title'),
    threadSub: $('thread-sub'),
    threadBody: $('thread-body'),
    messages: $('messages'),
    typing: $('typing'),
    collision: $('collision'),
    mailStatus: $('mail-status'),
    composer: $('composer'),
    input: $('composer-input'),
    send: $('composer-send'),
    back: $('back'),
    onlineList: $('online-list'),
    onlineEmpty: $('online-empty'),
    onlineCount: $('online-count'),
    deletionList: $('deletion-list'),
    deletionCount: $('deletion-count'),
    assist: $('assist'),
    assistOff: $('assist-off'),
    searchForm: $('search-form'),
    searchInput: $('search-input'),
    searchResults: $('search-results'),
    suggestions: $('suggestions'),
    suggestionsEmpty: $('suggestions-empty'),
    similar: $('similar'),
    similarEmpty: $('similar-empty'),
    replyForm: $('reply-form'),
    replyTitle: $('reply-title'),
    replyBody: $('reply-body'),
    replyNote: $('reply-note'),
    filterStatus: $('filter-status'),
    filterAssignee: $('filter-assignee'),
    filterTag: $('filter-tag'),
    inboxBar: $('inbox-bar'),
    convStatus: $('conv-status'),
    convUntil: $('conv-until'),
    convStatusSet: $('conv-status-set'),
    convAssignee: $('conv-assignee'),
    convAssign: $('conv-assign'),
    convUnassign: $('conv-unassign'),
    assignConflict: $('assign-conflict'),
    convTags: $('conv-tags'),
    tagForm: $('tag-form'),
    tagInput: $('tag-input'),
    visitorContext: $('visitor-context'),
    noteToggle: $('note-toggle'),
  };

  // ---------------------------------------------------------------- inbox

  const STATUS_LABEL = { open: 'Open', pending: 'Pending', snoozed: 'Snoozed', resolved: 'Resolved' };
  const TAG_RE = /^[a-z0-9][a-z0-9_-]{0,31}$/;
  const myOperator = () => (A.participant && A.participant.startsWith('a:') ? A.participant.slice(2) : '');

  // The list's filters: status, assignee (me, - for unassigned), a tag.
  function filterKeeps(c) {
    const st = el.filterStatus.value;
    if (st && c.status !== st) return false;
    const as = el.filterAssignee.value;
    if (as === 'me' && (!c.assignee || c.assignee !== myOperator())) return false;
    if (as === '-' && c.assignee) return false;
    const tag = el.filterTag.value.trim().toLowerCase();
    if (tag && !c.tags.includes(tag)) return false;
    return true;
  }

  // applyOp shows an inbox change seen live at once; the list that follows
  // (scheduleList) gives the state every node agrees on.
  function applyOp(c, msg) {
    let op = null;
    try { op = JSON.parse(msg.body || ''); } catch (e) { return; }
    if (!op || typeof op !== 'object') return;
    if (msg.kind === 'status' && STATUS_LABEL[op.status]) {
      c.status = op.status;
      c.until = op.status === 'snoozed' ? Number(op.until) || 0 : 0;
    } else if (msg.kind === 'tag' && typeof op.tag === 'string') {
      c.tags = c.tags.filter((t) => t !== op.tag);
      if (op.on) c.tags = c.tags.concat(op.tag).sort();
    } else if (msg.kind === 'context') {
      c.context = op;
    }
  }

  function sendInbox(c, fields) {
    const frame = Object.assign({ type: 'inbox', conversation: c.id, id: newId() }, fields);
    if (!request(frame, { kind: 'inbox', conv: c.id })) {
      flash('Not connected: try again in a moment.');
      return false;
    }
    applyOp(c, { kind: fields.tag ? 'tag' : 'status', body: JSON.stringify(fields) });
    scheduleRender();
    return true;
  }

  function setConvStatus() {
    const c = A.selected && A.convs.get(A.selected);
    if (!c) return;
    const status = el.convStatus.value;
    const fields = { status };
    if (status === 'snoozed') {
      const until = el.convUntil.value ? new Date(el.convUntil.value).getTime() : 0;
      if (!(until > Date.now())) {
        flash('Pick when the snooze ends.');
        el.convUntil.hidden = false;
        el.convUntil.focus();
        return;
      }
      fields.until = until;
    }
    sendInbox(c, fields);
  }

  function addTag() {
    const c = A.selected && A.convs.get(A.selected);
    const tag = el.tagInput.value.trim().toLowerCase();
    if (!c || !tag) return;
    if (!TAG_RE.test(tag)) {
      flash('A tag has 1 to 32 characters: a-z, 0-9, "_" and "-".');
      return;
    }
    if (sendInbox(c, { tag, on: true })) el.tagInput.value = '';
  }

  // The assignee is the control plane's: read with its version, changed
  // with that version expected, so that of two agents assigning at once
  // the second is told the first won.
  function assignPath(c) {
    return '/v1/admin/workspaces/' + encodeURIComponent(A.workspace) + '/assignments/' + encodeURIComponent(c.id);
  }

  async function loadAssignment(c) {
    try {
      const a = await api('GET', assignPath(c));
      c.assignee = a.operator || '';
      c.assignVersion = typeof a.version === 'number' ? a.version : 0;
      scheduleRender();
    } catch (e) { /* shown as the list said */ }
  }

  async function assign(operator) {
    const c = A.selected && A.convs.get(A.selected);
    if (!c) return;
    el.assignConflict.hidden = true;
    if (c.assignVersion === null) await loadAssignment(c);
    try {
      const a = await api('PUT', assignPath(c), { operator, expect_version: c.assignVersion || 0 });
      c.assignee = operator;
      c.assignVersion = a.version;
    } catch (e) {
      if (e.code === 'conflict') {
        await loadAssignment(c);
        el.assignConflict.textContent = 'Someone else changed the assignment first: now ' +
          (c.assignee ? 'assigned to ' + (c.assignee === myOperator() ? 'you' : c.assignee) : 'unassigned') + '.';
        el.assignConflict.hidden = false;
      } else {
        flash('Assignment failed: ' + (e.message || e.code));
      }
    }
    scheduleRender();
  }

  function renderInbox(c) {
    el.inboxBar.hidden = !c;
    el.visitorContext.hidden = true;
    if (!c) return;
    if (document.activeElement !== el.convStatus && el.convStatus.dataset.conv !== c.id + ':' + c.status) {
      el.convStatus.value = c.status;
      el.convStatus.dataset.conv = c.id + ':' + c.status;
    }
    el.convStatus.dataset.status = c.status;
    el.convUntil.hidden = el.convStatus.value !== 'snoozed';
    const me = myOperator();
    el.convAssignee.textContent = c.assignee ? 'Assigned to ' + (c.assignee === me ? 'you' : c.assignee) : 'Unassigned';
    el.convAssignee.dataset.assignee = c.assignee;
    el.convAssign.hidden = Boolean(me) && c.assignee === me;
    el.convUnassign.hidden = !c.assignee;
    el.convTags.replaceChildren(...c.tags.map((t) => {
      const rm = h('button', { type: 'button', 'aria-label': 'Remove tag ' + t, text: '\u00d7' });
      rm.addEventListener('click', () => sendInbox(c, { tag: t, on: false }));
      return h('span', { class: 'tag', 'data-testid': 'tag', 'data-tag': t }, h('span', { text: t }), rm);
    }));
    const x = c.context;
    if (x && (x.url || x.referrer || x.language || (x.attrs && Object.keys(x.attrs).length))) {
      const rows = [];
      const row = (k, v, id) => rows.push(h('dt', { text: k }), h('dd', { 'data-testid': id, dir: 'auto', text: v }));
      if (x.url) row('Page', x.url, 'context-url');
      if (x.referrer) row('Came from', x.referrer, 'context-referrer');
      if (x.language) row('Language', x.language, 'context-language');
      for (const [k, v] of Object.entries(x.attrs || {}).sort()) row(k, String(v), 'context-attr');
      el.visitorContext.replaceChildren(...rows);
      el.visitorContext.hidden = false;
    }
  }

  const seenEl = h('div', { class: 'seen', 'data-testid': 'seen', text: 'Seen' });
  seenEl.hidden = true;

  // ---------------------------------------------------------------- status

  function setStatus(text, state) {
    el.status.textContent = text;
    el.status.dataset.state = state || 'idle';
  }

  let flashTimer = 0;
  function flash(text) {
    clearTimeout(flashTimer);
    setStatus(text, 'error');
    flashTimer = setTimeout(() => {
      if (A.welcomed) setStatus('Connected', 'ok');
    }, 6000);
  }

  // ---------------------------------------------------------------- rendering

  function scheduleRender() {
    if (A.renderPending) return;
    A.renderPending = true;
    setTimeout(render, 0);
  }

  function render() {
    A.renderPending = false;
    renderList();
    renderThread();
    renderOnline();
    renderTitle();
  }

  function renderTitle() {
    let total = 0;
    for (const c of A.convs.values()) total += unreadOf(c);
    document.title = (total ? '(' + total + ') ' : '') + 'Parley console';
  }

  function previewOf(c) {
    let last = null;
    for (const m of c.messages.values()) if (!last || C.tsCompare(last, m) < 0) last = m;
    if (!last && c.last) last = c.last;
    if (!last) return { text: 'No messages yet', ms: c.updated };
    let text = last.deleted ? 'Message deleted' : last.body || '';
    if (last.role === 'agent' || last.role === 'bot' || isMine(last)) text = (isMine(last) ? 'You: ' : (last.name || 'Agent') + ': ') + text;
    return { text, ms: (last.ts && last.ts.w) || c.updated };
  }

  function convUpdated(c) {
    let u = c.updated || c.created || 0;
    for (const m of c.messages.values()) if (m.ts && m.ts.w > u) u = m.ts.w;
    return u;
  }

  // An eye, for the list's mark of a conversation another agent has open.
  function eyeIcon() {
    return C.icon('M12 5C6.5 5 2.7 9.1 1.5 12c1.2 2.9 5 7 10.5 7s9.3-4.1 10.5-7C21.3 9.1 17.5 5 12 5zm0 11.5a4.5 4.5 0 1 1 0-9 4.5 4.5 0 0 1 0 9zm0-2.5a2 2 0 1 0 0-4 2 2 0 0 0 0 4z',
      'conv-viewers-icon');
  }

  function buildConvItem(c) {
    const avatar = h('span', { class: 'avatar', 'aria-hidden': 'true' });
    const dot = h('span', { class: 'presence-dot', 'data-testid': 'conv-online' });
    const name = h('span', { class: 'conv-name', dir: 'auto' });
    const time = h('span', { class: 'conv-time' });
    const preview = h('span', { class: 'conv-preview', dir: 'auto' });
    const typing = h('span', { class: 'conv-typing', 'data-testid': 'conv-typing', text: 'typing' + ELLIPSIS });
    const unread = h('span', { class: 'badge', 'data-testid': 'conv-unread' });
    const statusLabel = h('span', { class: 'conv-status', 'data-testid': 'conv-status-label' });
    const assigneeLabel = h('span', { class: 'conv-status', 'data-testid': 'conv-assignee-label' });
    const viewersText = h('span');
    const viewers = h('span', { class: 'conv-viewers', 'data-testid': 'conv-viewers' }, eyeIcon(), viewersText);
    const button = h('button', {
      type: 'button', class: 'conv', 'data-testid': 'conv-item', 'data-id': c.id,
    }, h('span', { class: 'avatar-wrap' }, avatar, dot),
    h('span', { class: 'conv-main' },
      h('span', { class: 'conv-row' }, name, assigneeLabel, statusLabel, time),
      h('span', { class: 'conv-row' }, preview, typing, viewers, unread)));
    button.addEventListener('click', () => select(c.id));
    c.el = { li: h('li', null, button), button, avatar, dot, name, time, preview, typing, viewers, viewersText, unread, statusLabel, assigneeLabel };
    return c.el;
  }

  function renderList() {
    const list = Array.from(A.convs.values())
      // An empty conversation shows while its visitor is around (typing, online).
      .filter((c) => c.messages.size || c.id === A.selected || visitorTypers(c).length ||
        (c.listed && (c.listHead > 0 || c.last || convOnline(c))))
      .filter(filterKeeps)
      .sort((a, b) => convUpdated(b) - convUpdated(a) || cmp(a.id, b.id));
    list.forEach((c, i) => {
      const e = c.el || buildConvItem(c);
      const nm = convName(c);
      const online = convOnline(c);
      const unread = unreadOf(c);
      const p = previewOf(c);
      e.avatar.textContent = initials(nm);
      e.name.textContent = nm;
      e.time.textContent = formatTime(p.ms, false);
      e.preview.textContent = p.text;
      e.button.dataset.online = String(online);
      e.button.dataset.status = c.status;
      e.button.dataset.tags = c.tags.join(' ');
      e.statusLabel.hidden = c.status === 'open';
      e.statusLabel.textContent = STATUS_LABEL[c.status] || '';
      e.button.dataset.assignee = c.assignee;
      e.assigneeLabel.hidden = !c.assignee;
      e.assigneeLabel.textContent = c.assignee === myOperator() ? 'You' : c.assignee;
      e.assigneeLabel.title = c.assignee ? 'Assigned to ' + (c.assignee === myOperator() ? 'you' : c.assignee) : '';
      e.button.dataset.unread = String(unread);
      e.button.classList.toggle('is-selected', c.id === A.selected);
      e.button.classList.toggle('is-unread', unread > 0);
      if (c.id === A.selected) e.button.setAttribute('aria-current', 'true');
      else e.button.removeAttribute('aria-current');
      e.dot.hidden = !online;
      const visitorTyping = visitorTypers(c).length > 0;
      e.typing.hidden = !visitorTyping;
      e.preview.hidden = visitorTyping;
      const col = collisionOf(c);
      const others = col.typing.concat(col.viewing);
      e.viewers.hidden = others.length === 0;
      e.viewersText.textContent = others.map(initials).join(' ');
      e.viewers.title = col.text;
      e.button.dataset.collision = String(others.length > 0);
      e.unread.hidden = unread === 0;
      e.unread.textContent = unread > 99 ? '99+' : String(unread);
      e.button.setAttribute('aria-label', nm + (unread ? ', ' + unread + ' unread' : '') + (online ? ', online' : ''));
      if (el.convList.children[i] !== e.li) el.convList.insertBefore(e.li, el.convList.children[i] || null);
    });
    while (el.convList.children.length > list.length) el.convList.lastElementChild.remove();
    el.convEmpty.hidden = list.length > 0;
    el.convCount.textContent = String(list.length);
  }

  function renderMessage(m) {
    if (!m.el) {
      m.elAuthor = h('div', { class: 'msg-author', dir: 'auto' });
      m.elBody = h('div', { class: 'bubble', 'data-testid': 'message-body', dir: 'auto' });
      m.elTime = h('span', { class: 'msg-time' });
      m.elState = h('span', { class: 'msg-state' });
      m.el = h('div', { class: 'msg', 'data-testid': 'message', 'data-id': m.id },
        m.elAuthor, m.elBody, h('div', { class: 'msg-meta' }, m.elTime, m.elState));
    }
    const mine = isMine(m);
    const team = m.role === 'agent' || m.role === 'bot' || mine;
    m.el.classList.toggle('msg--team', team);
    m.el.classList.toggle('msg--mine', mine);
    m.el.classList.toggle('msg--deleted', Boolean(m.deleted));
    m.el.classList.toggle('msg--note', Boolean(m.internal));
    m.el.dataset.internal = String(Boolean(m.internal));
    m.el.dataset.state = C.stateName(m);
    m.el.dataset.authorRole = m.role || 'agent';
    m.elAuthor.textContent = (mine ? 'You'
      : (m.name || participantLabel(m.author)) + (m.role === 'bot' ? ' \u00b7 Bot' : '')) + (m.internal ? ' \u00b7 Note' : '');
    const shown = m.deleted ? null : m.body; // rebuilt only when it changes (links keep focus)
    if (m.elShown !== shown) {
      m.elShown = shown;
      if (m.deleted) m.elBody.textContent = 'This message was deleted';
      else C.linkify(m.elBody, m.body);
    }
    m.elTime.textContent = formatTime(m.ts && m.ts.w, true);
    m.elState.textContent = C.stateText(m);
  }

  function renderThread() {
    const c = A.selected ? A.convs.get(A.selected) : null;
    document.body.classList.toggle('has-selection', Boolean(c));
    el.threadEmpty.hidden = Boolean(c);
    el.threadHead.hidden = !c;
    el.threadBody.hidden = !c;
    el.composer.hidden = !c;
    renderInbox(c);
    if (!c) {
      el.typing.hidden = true;
      el.messages.replaceChildren();
      return;
    }
    const nm = convName(c);
    const online = convOnline(c);
    el.threadAvatar.textContent = initials(nm);
    el.threadAvatar.dataset.online = String(online);
    el.threadTitle.textContent = nm;
    const bits = [online ? 'Online' : 'Offline'];
    if (c.created) bits.push('started ' + formatTime(c.created, true));
    el.threadSub.textContent = bits.join(' \u00b7 ');
    el.threadSub.dataset.online = String(online);

    const body = el.threadBody;
    const atBottom = body.scrollHeight - body.scrollTop - body.clientHeight < 60;
    const list = Array.from(c.messages.values()).sort(C.tsCompare);
    let lastTeam = null;
    list.forEach((m, i) => {
      renderMessage(m);
      const prev = list[i - 1];
      m.elAuthor.hidden = Boolean(prev && prev.author === m.author && m.author);
      if (el.messages.children[i] !== m.el) el.messages.insertBefore(m.el, el.messages.children[i] || null);
      if (m.role === 'agent' || m.role === 'bot' || isMine(m)) lastTeam = m;
    });
    while (el.messages.children.length > list.length) el.messages.lastElementChild.remove();
    if (!c.loaded && list.length === 0) {
      el.messages.replaceChildren(h('p', { class: 'loading', text: 'Loading' + ELLIPSIS }));
    }

    if (lastTeam && lastTeam.seq && visitorRead(c) >= lastTeam.seq) {
      if (seenEl.parentNode !== lastTeam.el) lastTeam.el.append(seenEl);
      seenEl.hidden = false;
    } else {
      seenEl.hidden = true;
    }
    if (atBottom || A.forceScroll) body.scrollTop = body.scrollHeight;
    A.forceScroll = false;

    const typer = visitorTypers(c)[0];
    el.typing.hidden = !typer;
    el.typing.textContent = typer ? (typer.name || 'The visitor') + ' is typing' + ELLIPSIS : '';
    const col = collisionOf(c);
    el.collision.hidden = !col.text;
    el.collision.textContent = col.text;
    el.collision.dataset.typing = String(col.typing.length > 0);
  }

  const visitorTypers = (c) => Array.from(c.typers.values()).filter((t) => t.role !== 'agent');

  const joinNames = (names) => (names.length < 2 ? names.join('')
    : names.slice(0, -1).join(', ') + ' and ' + names[names.length - 1]);

  // collisionOf says which other agents are typing in or viewing c, for the
  // warning that keeps two agents from answering the same visitor at once.
  function collisionOf(c) {
    const typing = [];
    const viewing = [];
    for (const [p, t] of c.typers) {
      if (t.role === 'agent' && p !== A.participant) typing.push(t.name || participantLabel(p));
    }
    for (const [p, name] of c.viewers) {
      if (p === A.participant) continue;
      const t = c.typers.get(p);
      if (!(t && t.role === 'agent')) viewing.push(name || participantLabel(p));
    }
    const bits = [];
    if (typing.length) bits.push(joinNames(typing) + (typing.length > 1 ? ' are' : ' is') + ' typing' + ELLIPSIS);
    if (viewing.length) bits.push(joinNames(viewing) + (viewing.length > 1 ? ' are' : ' is') + ' also viewing');
    return { typing, viewing, text: bits.join(' \u00b7 ') };
  }

  let onlineShown = '';
  function renderOnline() {
    const people = Array.from(A.online.entries()).map(([p, info]) => {
      const convs = (info.conversations || []).filter((id) => A.convs.has(id));
      for (const c of A.convs.values()) if (c.owner === p && !convs.includes(c.id)) convs.push(c.id);
      return [p, info, convs, onlineName(p, info)];
    }).sort((a, b) => cmp(a[1].role, b[1].role) || cmp(a[3], b[3]));
    // Rebuild only when something changed, so keyboard focus survives renders.
    const shown = JSON.stringify([A.participant, people.map(([p, info, convs, name]) => [p, info.role, info.away, convs, name])]);
    if (shown === onlineShown) return;
    onlineShown = shown;
    el.onlineList.replaceChildren(...people.map(([p, info, convs]) => {
      const you = p === A.participant;
      const item = h('li', {
        class: 'online-item', 'data-testid': 'online-item', 'data-participant': p, 'data-role': info.role || '',
      },
      h('span', { class: 'avatar avatar--small', 'aria-hidden': 'true', text: initials(onlineName(p, info)) }),
      h('span', { class: 'online-main' },
        h('span', { class: 'online-name', text: onlineName(p, info) }),
        h('span', { class: 'online-sub', text: info.role === 'agent' ? (you ? 'Agent \u00b7 you' : 'Agent') + (info.away ? ' \u00b7 away' : '')
          : 'Visitor' + (convs.length ? ' \u00b7 ' + convs.length + ' conversation' + (convs.length > 1 ? 's' : '') : '') })),
      h('span', { class: 'presence-dot presence-dot--inline', 'aria-hidden': 'true' }));
      if (info.role !== 'agent' && convs.length) {
        item.classList.add('is-link');
        item.tabIndex = 0;
        item.setAttribute('role', 'button');
        const open = () => select(convs[convs.length - 1]);
        item.addEventListener('click', open);
        item.addEventListener('keydown', (ev) => {
          if (ev.key === 'Enter' || ev.key === ' ') {
            ev.preventDefault();
            open();
          }
        });
      }
      return item;
    }));
    el.onlineEmpty.hidden = people.length > 0;
    el.onlineCount.textContent = String(people.length);
  }

  function onlineName(p, info) {
    if (info.name) return info.name;
    for (const c of A.convs.values()) if (c.owner === p && c.ownerName) return c.ownerName;
    return participantLabel(p);
  }

  function autosize() {
    C.autosize(el.input, 160);
  }

  // ---------------------------------------------------------------- connection

  // One connection to the node, over WebTransport or WebSocket (client.js).
  const openConnection = C.transport(ORIGIN, WS_URL).open;

  function connect() {
    if (A.conn || A.stopped) return;
    clearTimeout(A.reconnectTimer);
    A.reconnectTimer = 0;
    setStatus('Connecting' + ELLIPSIS, 'warn');
    const conn = openConnection({
      open() {
        if (A.conn !== conn) return;
        el.status.dataset.transport = conn.transport;
        const hello = { type: 'hello', v: PROTOCOL_VERSION, workspace: A.workspace, role: 'agent', token: A.token };
        if (A.name) hello.name = A.name.slice(0, 80);
        if (A.away) hello.away = true; // never announced available on the way
        request(hello, { kind: 'hello' });
      },
      line(text) {
        if (A.conn !== conn) return;
        A.lastRecv = Date.now();
        const f = C.parseFrame(text);
        if (!f) return;
        try {
          onFrame(f);
        } catch (err) {
          flash('Internal error: ' + (err && err.message ? err.message : err));
          console.warn('Parley console:', err);
        }
      },
      close(code) {
        if (A.conn !== conn) return;
        // The error frame normally says why; the close code is the fallback.
        if (code === 4403) onError({ type: 'error', code: 'auth_failed' });
        else if (code === 4400) onError({ type: 'error', code: 'version_unsupported' });
        else onClosed();
      },
    });
    A.conn = conn;
  }

  function teardown() {
    const conn = A.conn;
    A.conn = null;
    if (conn) conn.close();
    delete el.status.dataset.transport;
    clearInterval(A.hbTimer);
    A.hbTimer = 0;
    clearInterval(A.deletionTimer);
    A.deletionTimer = 0;
    A.welcomed = false;
    A.listRef = null;
    A.refs.clear();
    A.typingConv = null;
    A.viewing = null;
    for (const e of A.outbox.values()) e.sentAt = 0;
    for (const c of A.convs.values()) {
      if (c.resumeRef) c.loaded = false; // a resume that did not finish: load it fully again
      c.resumeRef = null;
      c.readSent = 0;
      for (const t of c.typers.values()) clearTimeout(t.timer);
      c.typers.clear();
    }
    scheduleRender();
  }

  function onClosed() {
    teardown();
    if (!A.stopped) scheduleReconnect();
  }

  function scheduleReconnect() {
    if (A.reconnectTimer || A.stopped) return;
    const delay = C.backoff(A.attempt);
    A.attempt++;
    setStatus((navigator.onLine === false ? 'Offline' : 'Disconnected') + ', reconnecting in ' +
      Math.max(1, Math.round(delay / 1000)) + ' s' + ELLIPSIS, 'warn');
    A.reconnectTimer = setTimeout(() => {
      A.reconnectTimer = 0;
      connect();
    }, delay);
  }

  window.addEventListener('online', () => {
    if (!A.conn && !A.stopped) {
      A.attempt = 0;
      connect();
    }
  });

  function sendRaw(frame) {
    return C.sendRaw(A, frame);
  }

  function request(frame, ctx) {
    return C.request(A, frame, ctx);
  }

  function heartbeat() {
    if (!A.conn) return;
    if (!C.beat(A)) {
      onClosed(); // dead connection without a close frame
      return;
    }
    flushOutbox();
  }

  // ---------------------------------------------------------------- frames

  function onFrame(f) {
    switch (f.type) {
      case 'welcome': onWelcome(f); break;
      case 'conversations': onConversations(f); break;
      case 'resumed': onResumed(f); break;
      case 'deliver': onDeliver(f); break;
      case 'ack': onAck(f); break;
      case 'read': onRead(f); break;
      case 'typing': onTyping(f); break;
      case 'presence': onPresence(f); break;
      case 'viewing': onViewing(f); break;
      case 'error': onError(f); break;
      default: break; // pong and frames of later versions
    }
  }

  // rebase forgets the seqs of another node when a connection lands on a new
  // one: the vectors carry the resumes; the messages kept get this node's
  // positions from the next list (onConversations).
  function rebase(node) {
    const moved = Boolean(A.node) && node !== A.node;
    A.node = node;
    if (!moved) return;
    for (const c of A.convs.values()) {
      c.seenSeq = 0;
      c.listHead = 0;
      c.listUnread = 0;
      c.reads = {};
      c.myRead = 0;
      c.readSent = 0;
      C.forgetSeqs(c.messages);
    }
  }

  // sendView tells the node which conversation this console has open, so
  // that other agents see it (collision warning); one at a time.
  function sendView() {
    const want = A.selected || null;
    if (!A.welcomed || A.viewing === want) return;
    const prev = A.viewing;
    if (want) {
      if (request({ type: 'view', conversation: want, viewing: true }, { kind: 'view', conv: want })) A.viewing = want;
    } else if (prev && request({ type: 'view', conversation: prev, viewing: false }, { kind: 'view', conv: prev })) {
      A.viewing = null;
    }
  }

  function onViewing(f) {
    if (typeof f.conversation !== 'string' || !f.participant) return;
    const c = conv(f.conversation);
    if (f.viewing) c.viewers.set(f.participant, f.name || '');
    else c.viewers.delete(f.participant);
    if (!c.listed) scheduleList();
    scheduleRender();
  }

  function onWelcome(f) {
    A.welcomed = true;
    A.attempt = 0;
    A.participant = f.participant || null;
    A.heartbeatMs = C.heartbeatMs(f);
    clearInterval(A.hbTimer);
    A.hbTimer = setInterval(heartbeat, A.heartbeatMs);
    A.online.clear(); // the current presence follows
    for (const c of A.convs.values()) c.viewers.clear(); // and who views what
    rebase(typeof f.node === 'string' ? f.node : '');
    A.viewing = null;
    sendView();
    setStatus('Connected', 'ok');
    loadDeletions();
    clearInterval(A.deletionTimer);
    A.deletionTimer = setInterval(() => { loadDeletions(); loadMailStatus(); }, DELETIONS_EVERY_MS);
    el.me.textContent = A.name ? 'Signed in as ' + A.name : '';
    // Asked again at each connection: the node may have restarted with the
    // model since it said suggestions were off (or this is another node).
    if (!assist.enabled) assistInit();
    list();
    // Catch up on what was missed while disconnected: no gap, no duplicate.
    for (const c of A.convs.values()) if (c.loaded || c.id === A.selected) resumeConv(c);
    flushOutbox();
    scheduleRender();
  }

  function list() {
    if (!A.welcomed) return;
    if (A.listRef) {
      A.listAgain = true; // one more after the answer in flight
      return;
    }
    A.listRef = request({ type: 'list' }, { kind: 'list' });
  }

  function scheduleList() {
    if (A.listTimer) return;
    A.listTimer = setTimeout(() => {
      A.listTimer = 0;
      list();
    }, 150);
  }

  function onConversations(f) {
    if (f.ref && f.ref === A.listRef) A.listRef = null;
    for (const item of Array.isArray(f.items) ? f.items : []) {
      if (!item || typeof item.id !== 'string') continue;
      const c = conv(item.id);
      c.listed = true;
      c.owner = item.owner || c.owner;
      c.ownerName = item.owner_name || c.ownerName;
      c.created = item.created || c.created;
      c.updated = Math.max(c.updated, item.updated || 0);
      c.listHead = item.head || 0;
      c.listUnread = item.unread || 0;
      if (item.last) c.last = item.last;
      c.status = STATUS_LABEL[item.status] ? item.status : 'open';
      c.until = item.until || 0;
      c.tags = Array.isArray(item.tags) ? item.tags.filter((t) => typeof t === 'string') : [];
      c.assignee = typeof item.assignee === 'string' ? item.assignee : '';
      c.context = item.context && typeof item.context === 'object' ? item.context : null;
      mergeReads(c, item.reads);
      if (c.listHead > 0) {
        // Messages kept from another node: at most this node's head here.
        const stale = C.settleSeqs(c.messages, c.listHead);
        if (stale && c.listHead > c.seenSeq) c.seenSeq = c.listHead;
      }
    }
    if (A.selected) {
      const c = A.convs.get(A.selected);
      if (c && !c.loaded && !c.resumeRef) resumeConv(c);
    }
    if (typeof f.next === 'string' && f.next && !A.listRef) {
      // A list answers 200 at a time: ask for the next page until the last.
      A.listRef = request({ type: 'list', cursor: f.next }, { kind: 'list' });
    } else if (A.listAgain) {
      A.listAgain = false;
      list();
    }
    scheduleRender();
    const sel = A.selected && A.convs.get(A.selected);
    if (sel) maybeSendRead(sel);
  }

  function mergeReads(c, reads) {
    if (!reads || typeof reads !== 'object') return;
    for (const [p, seq] of Object.entries(reads)) {
      if (typeof seq !== 'number') continue;
      if (!(c.reads[p] >= seq)) c.reads[p] = seq;
      if (p === A.participant) c.myRead = Math.max(c.myRead, seq);
    }
  }

  function resumeConv(c) {
    if (!A.welcomed || c.resumeRef) return;
    c.resumeRef = request(resumeFrame(c, !c.loaded), { kind: 'resume', conv: c.id });
  }

  // resumeFrame: a first load replays the whole log (live events seen
  // before it are in the vector too, and must not skip the rest); a
  // catch-up or the next page resumes by vector.
  function resumeFrame(c, first) {
    const frame = { type: 'resume', conversation: c.id };
    if (first) frame.after = 0;
    else C.resumeFrom(frame, c.vector, c.seenSeq);
    return frame;
  }

  function onResumed(f) {
    const c = A.convs.get(f.conversation);
    if (!c) return;
    c.resumeRef = null;
    if (typeof f.head === 'number' && f.head > c.seenSeq) c.seenSeq = f.head;
    if (f.more) {
      // The replay was cut short: continue after what arrived.
      c.resumeRef = request(resumeFrame(c, false), { kind: 'resume', conv: c.id });
      scheduleRender();
      return;
    }
    c.loaded = true;
    scheduleRender();
    maybeSendRead(c);
  }

  function onDeliver(f) {
    if (!f.message || typeof f.conversation !== 'string') return;
    const known = A.convs.has(f.conversation);
    const c = conv(f.conversation);
    const fresh = !c.messages.has(f.message.id);
    if (!known || !c.listed) scheduleList(); // a new conversation: fetch its details
    const msg = f.message;
    if (typeof f.seq === 'number' && f.seq > c.seenSeq) c.seenSeq = f.seq;
    if (msg.internal && msg.kind) {
      // An inbox change: shown in the conversation's state, not as a message.
      const op = C.deliver(f, c.ops, c.vector, () => ++A.localSeq);
      if (!op.applied) {
        op.applied = true;
        applyOp(c, msg);
        scheduleList();
      }
      scheduleRender();
      return;
    }
    const dm = C.deliver(f, c.messages, c.vector, () => ++A.localSeq);
    dm.internal = Boolean(msg.internal);
    if (fresh && msg.role === 'visitor' && !msg.internal && c.status !== 'open') {
      // A visitor's message reopens the conversation (the list confirms).
      c.status = 'open';
      c.until = 0;
      scheduleList();
    }
    if (!c.owner && msg.role === 'visitor') {
      c.owner = msg.author;
      if (msg.name) c.ownerName = msg.name;
    }
    if (f.conversation === A.selected && msg.role === 'visitor') assistSchedule();
    if (fresh && msg.role === 'visitor' && !msg.deleted) alertAgent(c, msg, !known || c.messages.size === 1);
    if (msg.author === A.participant) {
      const pending = A.outbox.get(msg.id);
      if (pending && pending.frame.type === 'send') A.outbox.delete(msg.id);
    }
    const typer = c.typers.get(msg.author);
    if (typer) {
      clearTimeout(typer.timer);
      c.typers.delete(msg.author);
    }
    scheduleRender();
    maybeSendRead(c);
  }

  function onAck(f) {
    const ctx = C.takeRef(A, f);
    if (ctx && ctx.kind === 'read') {
      const c = A.convs.get(ctx.conv);
      if (c) c.myRead = Math.max(c.myRead, ctx.seq);
      return;
    }
    if (ctx && (ctx.kind === 'view' || ctx.kind === 'status')) return;
    if (ctx && ctx.kind === 'inbox') {
      scheduleList();
      return;
    }
    if (!f.id) return;
    const pending = A.outbox.get(f.id);
    A.outbox.delete(f.id);
    const c = A.convs.get(f.conversation || (pending && pending.conv) || (ctx && ctx.conv));
    const m = c && c.messages.get(f.id);
    if (!m) return;
    C.acked(m, f);
    scheduleRender();
  }

  function onRead(f) {
    if (typeof f.conversation !== 'string' || typeof f.seq !== 'number' || !f.participant) return;
    const c = conv(f.conversation);
    if (!(c.reads[f.participant] >= f.seq)) c.reads[f.participant] = f.seq;
    if (f.participant === A.participant) c.myRead = Math.max(c.myRead, f.seq);
    scheduleRender();
  }

  function onTyping(f) {
    if (typeof f.conversation !== 'string' || !f.participant || f.participant === A.participant) return;
    const known = A.convs.has(f.conversation);
    const c = conv(f.conversation);
    if (!known || !c.listed) {
      if (!c.owner && f.role === 'visitor') {
        c.owner = f.participant;
        if (f.name) c.ownerName = f.name;
      }
      c.listed = true; // show it at once; list() fills in the details
      scheduleList();
    }
    const old = c.typers.get(f.participant);
    if (old) clearTimeout(old.timer);
    if (f.typing) {
      const ttl = Number(f.expires_ms) > 0 ? Number(f.expires_ms) : 5000;
      const entry = {
        role: f.role === 'agent' ? 'agent' : 'visitor',
        name: f.name || (f.role === 'agent' ? 'An agent' : c.ownerName || participantLabel(f.participant)),
      };
      entry.timer = setTimeout(() => {
        if (c.typers.get(f.participant) === entry) {
          c.typers.delete(f.participant);
          scheduleRender();
        }
      }, ttl);
      c.typers.set(f.participant, entry);
    } else {
      c.typers.delete(f.participant);
    }
    scheduleRender();
  }

  function onPresence(f) {
    if (!f.participant) return;
    if (f.online) {
      A.online.set(f.participant, {
        role: f.role || '', name: f.name || '', away: Boolean(f.away),
        conversations: Array.isArray(f.conversations) ? f.conversations : [],
      });
      // Signed in with a password: the name is the operator's, as the node
      // knows it.
      if (f.participant === A.participant && !A.name && f.name) el.me.textContent = 'Signed in as ' + f.name;
      for (const id of Array.isArray(f.conversations) ? f.conversations : []) {
        if (!A.convs.has(id)) scheduleList();
      }
    } else {
      A.online.delete(f.participant);
    }
    scheduleRender();
  }

  function onError(f) {
    const ctx = C.takeRef(A, f);
    switch (f.code) {
      case 'auth_failed':
        if (A.stopped) return;
        signOut('The token was refused for workspace "' + A.workspace + '". Check it and try again.');
        return;
      case 'version_unsupported':
        A.stopped = true;
        teardown();
        setStatus('This console is out of date: reload the page.', 'error');
        return;
      case 'unavailable':
        if (ctx && ctx.kind === 'resume') {
          // Not answered yet (this node could not ask the conversation's
          // replicas): ask again on this connection; a closing one is
          // resumed on the next.
          const c = A.convs.get(ctx.conv);
          if (c && c.resumeRef === f.ref) {
            c.resumeRef = null;
            const conn = A.conn;
            setTimeout(() => { if (A.conn === conn) resumeConv(c); }, C.retryMs(f) || 1000);
          }
        }
        return; // else the connection closes; we reconnect and resume
      case 'slow_consumer':
        return; // the connection closes; we reconnect and resume
      default:
        break;
    }
    if (ctx) {
      switch (ctx.kind) {
        case 'hello':
          signOut('The node refused to sign in: ' + (f.message || f.code));
          return;
        case 'list':
          A.listRef = null;
          break;
        case 'view':
          // Not known here yet (a conversation still on its way to this
          // node): the warning is best effort; the next selection retries.
          if (A.viewing === ctx.conv) A.viewing = null;
          return;
        case 'resume': {
          const c = A.convs.get(ctx.conv);
          if (c) c.resumeRef = null;
          if (f.code === 'not_found' && c) {
            A.convs.delete(c.id);
            if (A.selected === c.id) select(null);
            scheduleRender();
          }
          break;
        }
        case 'send': {
          if (f.code === 'rate_limited' || f.code === 'overloaded' || f.code === 'internal') {
            // Resent after retry_ms when the error says it, else after the ack timeout.
            const ms = C.retryAfter(A.outbox.get(ctx.id), f);
            if (ms) setTimeout(flushOutbox, ms);
            if (f.code === 'overloaded') return; // the node is busy: no flash per refused message
            break;
          }
          const pending = A.outbox.get(ctx.id);
          A.outbox.delete(ctx.id);
          const c = pending && A.convs.get(pending.conv);
          const m = c && c.messages.get(ctx.id);
          if (m) {
            m.state = 'failed';
            m.error = f.code;
            scheduleRender();
          }
          break;
        }
        default:
          break;
      }
    }
    if (!(ctx && ctx.kind === 'read')) flash(f.message ? f.code + ': ' + f.message : f.code || 'error');
  }

  // ---------------------------------------------------------------- actions

  function select(id) {
    if (A.typingConv && A.typingConv !== id) stopTyping();
    A.selected = id;
    if (id) storage.set('sessionStorage', KEY_SELECTED, id);
    else storage.del('sessionStorage', KEY_SELECTED);
    sendView();
    A.forceScroll = true;
    assistRefresh();
    loadMailStatus();
    if (id) {
      const c = conv(id);
      if (!c.loaded) resumeConv(c);
      el.assignConflict.hidden = true;
      loadAssignment(c);
      render();
      maybeSendRead(c);
      if (!window.matchMedia || !window.matchMedia('(max-width: 800px)').matches) el.input.focus();
    } else {
      render();
    }
  }

  function maybeSendRead(c) {
    if (!c || c.id !== A.selected || !A.welcomed || !c.loaded) return;
    if (document.visibilityState !== 'visible') return;
    const read = Math.max(c.myRead, c.readSent);
    let need = false;
    for (const m of c.messages.values()) {
      if (!isMine(m) && m.seq > read) { need = true; break; }
    }
    const seq = c.seenSeq;
    if (!need || !seq) return;
    if (request({ type: 'read', conversation: c.id, seq }, { kind: 'read', conv: c.id, seq })) {
      c.readSent = seq;
      scheduleRender();
    }
  }

  function flushOutbox() {
    if (!A.welcomed) return;
    const now = Date.now();
    for (const [id, e] of A.outbox) {
      if (e.sentAt && now - e.sentAt < ACK_TIMEOUT_MS) continue;
      if (request(Object.assign({}, e.frame), { kind: e.frame.type, id, conv: e.conv })) e.sentAt = now;
    }
  }

  function submit() {
    const c = A.selected && A.convs.get(A.selected);
    const body = clean(el.input.value);
    if (!c || !body) return;
    const why = C.bodyError(body);
    if (why) {
      flash(why === 'long' ? 'A message can be at most ' + MAX_BODY + ' characters.' : 'This message is too long.');
      return;
    }
    stopTyping();
    const id = newId();
    const note = el.noteToggle.checked;
    const pm = C.pending(id, A.participant, 'agent', A.name, body, ++A.localSeq);
    pm.internal = note;
    c.messages.set(id, pm);
    const frame = { type: 'send', conversation: c.id, id, body };
    if (note) frame.internal = true;
    A.outbox.set(id, { conv: c.id, frame, sentAt: 0 });
    el.input.value = '';
    autosize();
    A.forceScroll = true;
    render();
    flushOutbox();
  }

  function onInput() {
    autosize();
    const c = A.selected;
    if (!c || !el.input.value.trim() || el.noteToggle.checked) {
      // A note is between agents: the visitor never sees it being typed.
      stopTyping();
      return;
    }
    const now = Date.now();
    if (A.typingConv !== c || now - A.typingSentAt >= TYPING_THROTTLE_MS) {
      if (A.typingConv && A.typingConv !== c) stopTyping();
      if (sendRaw({ type: 'typing', conversation: c, typing: true })) {
        A.typingConv = c;
        A.typingSentAt = now;
      }
    }
    clearTimeout(A.typingIdle);
    A.typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function stopTyping() {
    clearTimeout(A.typingIdle);
    if (A.typingConv) sendRaw({ type: 'typing', conversation: A.typingConv, typing: false });
    A.typingConv = null;
  }

  // ---------------------------------------------------------------- suggestions

  const ASSIST_DELAY_MS = 600;
  const MAX_QUERY = 500;
  const assist = { enabled: null, reason: '', timer: 0, gen: 0 };

  class APIError extends Error {
    constructor(status, code, message) {
      super(message || code);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const opts = { method, headers: { Authorization: 'Bearer ' + A.token }, cache: 'no-store' };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const url = path.startsWith('/v1/') ? path : '/v1/workspaces/' + encodeURIComponent(A.workspace) + path;
    const resp = await fetch(url, opts);
    let data = null;
    try { data = C.neutralise(await resp.json()); } catch (e) { /* not JSON */ }
    if (!resp.ok) {
      // The admin API wraps its errors ({"error": {code, message}}).
      const e = data && data.error && typeof data.error === 'object' ? data.error : data;
      throw new APIError(resp.status, (e && e.code) || 'http_' + resp.status, e && e.message);
    }
    return data || {};
  }

  // -------------------------------------------------- mail to the visitor

  // A mail to the selected conversation's visitor that failed (a permanent
  // SMTP error) or is being retried shows above the thread (docs/api.md,
  // E-mail): read on selection and every 10 s.
  async function loadMailStatus() {
    const id = A.selected;
    if (!id) {
      el.mailStatus.hidden = true;
      return;
    }
    let st = null;
    try {
      const resp = await fetch('/v1/admin/workspaces/' + encodeURIComponent(A.workspace) + '/email/deliveries/' + encodeURIComponent(id),
        { headers: { Authorization: 'Bearer ' + A.token }, cache: 'no-store' });
      if (resp.ok) st = C.neutralise(await resp.json());
    } catch (e) { /* best effort: the next round tries again */ }
    if (id !== A.selected) return;
    const what = st && st.kind === 'transcript' ? 'The transcript mail to the visitor' : 'The e-mail to the visitor';
    const text = !st ? ''
      : st.status === 'failed' ? what + ' failed: ' + (st.error || 'unknown error')
        : st.status === 'retrying' ? what + ' is being retried: ' + (st.error || 'temporary error') : '';
    el.mailStatus.hidden = !text;
    el.mailStatus.textContent = text;
    el.mailStatus.dataset.status = (st && st.status) || '';
  }

  // -------------------------------------------------- deletion requests

  // Visitors who asked from the widget to be forgotten, in a workspace
  // where an agent confirms it: listed on welcome and every 10 s; a click
  // erases the visitor on every node.
  const DELETIONS_EVERY_MS = 10000;

  async function loadDeletions() {
    let data;
    try {
      data = await api('GET', '/deletion-requests');
    } catch (e) {
      return; // best effort: the next round tries again
    }
    const items = Array.isArray(data.items) ? data.items : [];
    el.deletionCount.textContent = String(items.length);
    el.deletionList.replaceChildren(...items.map((r) => {
      const btn = h('button', { type: 'button', class: 'btn-link', 'data-testid': 'deletion-confirm', text: 'Delete' });
      btn.addEventListener('click', () => confirmDeletion(r.visitor, btn));
      return h('li', { class: 'online-item', 'data-testid': 'deletion-item', 'data-visitor': r.visitor },
        h('span', { class: 'online-name', text: r.visitor.length > 26 ? r.visitor.slice(0, 25) + ELLIPSIS : r.visitor }), btn);
    }));
  }

  async function confirmDeletion(visitor, btn) {
    btn.disabled = true;
    try {
      await api('POST', '/deletion-requests/confirm', { visitor });
    } catch (e) {
      btn.disabled = false;
      flash('Could not delete: ' + (e.message || e.code));
      return;
    }
    for (const [id, c] of A.convs) {
      if (c.owner === visitor) {
        A.convs.delete(id);
        if (A.selected === id) A.selected = null;
      }
    }
    scheduleRender();
    loadDeletions();
  }

  function assistSetOff(reason) {
    assist.enabled = false;
    assist.reason = reason || 'unavailable on this node';
    el.assist.dataset.state = 'off';
    el.assistOff.hidden = false;
    el.assistOff.textContent = 'Suggestions off: ' + assist.reason;
  }

  async function assistInit() {
    el.assist.dataset.state = 'loading';
    try {
      const resp = await fetch('/v1/embeddings', { cache: 'no-store' });
      const st = await resp.json();
      if (!st.enabled) {
        assistSetOff(st.reason);
        return;
      }
      assist.enabled = true;
      el.assist.dataset.state = 'on';
      el.assistOff.hidden = true;
      assistRefresh();
    } catch (e) {
      assistSetOff('the node did not answer (' + e.message + ')');
    }
  }

  function assistReset() {
    assist.gen++;
    clearTimeout(assist.timer);
    el.searchResults.replaceChildren();
    el.searchResults.hidden = true;
    el.searchInput.value = '';
    el.suggestions.replaceChildren();
    el.similar.replaceChildren();
  }

  // A new visitor message: refresh once they pause.
  function assistSchedule() {
    clearTimeout(assist.timer);
    assist.timer = setTimeout(assistRefresh, ASSIST_DELAY_MS);
  }

  function assistFailed(e) {
    if (e && e.code === 'embedder_off') {
      assistSetOff(String(e.message).replace(/^.*?: /, ''));
      return true;
    }
    if (e && e.code === 'auth_failed') {
      flash('Suggestions: the operator token was refused.');
      return true;
    }
    return false;
  }

  function scoreText(s) {
    return typeof s === 'number' ? Math.round(Math.max(0, s) * 100) + '%' : '';
  }

  function convHitItem(hit) {
    const name = hit.owner_name || participantLabel(hit.owner);
    const button = h('button', {
      type: 'button', class: 'assist-item', 'data-testid': 'similar-item', 'data-id': hit.conversation,
      title: 'Open this conversation',
    }, h('span', { class: 'assist-item-head' }, h('span', { text: name }),
      h('span', { class: 'assist-score', text: scoreText(hit.score) })),
    h('span', { class: 'assist-item-text', text: hit.preview || 'No messages' }));
    button.addEventListener('click', () => select(hit.conversation));
    return h('li', null, button);
  }

  function replyItem(r) {
    const button = h('button', {
      type: 'button', class: 'assist-item', 'data-testid': 'suggestion-item', 'data-id': r.id,
      title: 'Put this reply in the composer',
    }, h('span', { class: 'assist-item-head' }, h('span', { 'data-testid': 'suggestion-title', text: r.title }),
      h('span', { class: 'assist-score', text: scoreText(r.score) })),
    h('span', { class: 'assist-item-text', text: r.body }));
    button.addEventListener('click', () => {
      el.input.value = r.body;
      autosize();
      el.input.focus();
      onInput();
    });
    return h('li', null, button);
  }

  function showList(list, empty, items, make, emptyText) {
    list.replaceChildren(...items.map(make));
    empty.hidden = items.length > 0;
    empty.textContent = emptyText;
  }

  // Fetches the similar conversations and suggested replies of the open
  // conversation; answers for a conversation no longer open are dropped.
  async function assistRefresh() {
    clearTimeout(assist.timer);
    const gen = ++assist.gen;
    const id = A.selected;
    if (!assist.enabled || !id || !/^c_[0-9a-f]{24}$/.test(id)) {
      el.suggestions.replaceChildren();
      el.similar.replaceChildren();
      el.suggestionsEmpty.hidden = false;
      el.similarEmpty.hidden = false;
      el.suggestionsEmpty.textContent = 'Open a conversation to see suggested replies.';
      el.similarEmpty.textContent = 'Open a conversation to see similar past ones.';
      el.assist.dataset.conversation = '';
      return;
    }
    el.assist.dataset.conversation = id;
    const base = '/conversations/' + id;
    const [sug, sim] = await Promise.allSettled([api('GET', base + '/suggestions?k=3'), api('GET', base + '/similar?k=5')]);
    if (gen !== assist.gen) return;
    if (sug.status === 'fulfilled') {
      showList(el.suggestions, el.suggestionsEmpty, sug.value.items || [], replyItem,
        'No saved reply fits yet. Save one below.');
    } else if (!assistFailed(sug.reason)) {
      showList(el.suggestions, el.suggestionsEmpty, [], replyItem, 'Suggestions unavailable: ' + sug.reason.message);
    }
    if (sim.status === 'fulfilled') {
      showList(el.similar, el.similarEmpty, sim.value.items || [], convHitItem,
        'No similar past conversation yet.');
    } else if (!assistFailed(sim.reason)) {
      showList(el.similar, el.similarEmpty, [], convHitItem, 'Similar conversations unavailable: ' + sim.reason.message);
    }
    el.assist.dataset.loaded = id;
  }

  async function assistSearch() {
    const q = el.searchInput.value.trim();
    if (!q) {
      el.searchResults.hidden = true;
      el.searchResults.replaceChildren();
      return;
    }
    if (q.length > MAX_QUERY) {
      flash('A search can be at most ' + MAX_QUERY + ' characters.');
      return;
    }
    try {
      const res = await api('GET', '/search?k=5&q=' + encodeURIComponent(q));
      const items = res.items || [];
      const none = res.mode === 'keyword' ? 'No conversation holds every word of “' + q + '”.' : 'Nothing close to “' + q + '”.';
      el.searchResults.dataset.mode = res.mode || '';
      const shown = res.mode === 'keyword' ? items.map((it) => Object.assign({}, it, { score: undefined })) : items;
      el.searchResults.replaceChildren(...(shown.length ? shown.map(convHitItem)
        : [h('li', { class: 'assist-empty', text: none })]));
      el.searchResults.hidden = false;
    } catch (e) {
      if (!assistFailed(e)) flash('Search failed: ' + e.message);
    }
  }

  async function assistSaveReply() {
    const title = clean(el.replyTitle.value);
    const body = clean(el.replyBody.value);
    if (!title || !body) {
      el.replyNote.textContent = 'A saved reply needs a title and a text.';
      return;
    }
    try {
      await api('POST', '/replies', { title, body });
      el.replyTitle.value = '';
      el.replyBody.value = '';
      el.replyNote.textContent = 'Saved “' + title + '”.';
      assistRefresh();
    } catch (e) {
      el.replyNote.textContent = 'Not saved: ' + e.message;
    }
  }

  el.searchForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    assistSearch();
  });
  el.replyForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    assistSaveReply();
  });

  // ---------------------------------------------------------------- sign in / out

  function showLogin(message) {
    el.notify.hidden = true;
    el.away.hidden = true;
    el.console.hidden = true;
    el.login.hidden = false;
    el.signout.hidden = true;
    el.workspace.textContent = '';
    el.me.textContent = '';
    el.loginWorkspace.value = A.workspace || 'demo';
    el.loginName.value = A.name || '';
    el.loginError.hidden = !message;
    el.loginError.textContent = message || '';
    el.loginPassword.value = '';
    el.loginSubmit.disabled = false;
    setStatus('', 'idle');
    (el.loginAlt.open ? el.loginToken : el.loginEmail.value ? el.loginPassword : el.loginEmail).focus();
  }

  // setAway says this agent is away (true) or back, to every node: visitors
  // see that nobody is available while every agent of the workspace is
  // away. Kept in this browser across reloads and reconnects.
  function setAway(away) {
    A.away = away;
    if (away) storage.set('localStorage', KEY_AWAY, '1');
    else storage.del('localStorage', KEY_AWAY);
    el.away.setAttribute('aria-pressed', String(away));
    el.away.textContent = away ? 'Away: set available' : 'Set away';
    el.away.dataset.away = String(away);
    if (A.welcomed) request({ type: 'status', away }, { kind: 'status' });
  }

  // ---------------------------------------------------------------- alerts
  //
  // A desktop notification and a short sound for a visitor's new message or
  // conversation, when the agent is looking elsewhere (another tab or window,
  // or another conversation). Asked for on a click (browsers allow the
  // permission prompt and sound only then), kept in this browser.
  const alerts = { on: false, audio: null, count: 0 };

  function setAlerts(on) {
    alerts.on = on;
    if (on) storage.set('localStorage', KEY_ALERTS, '1');
    else storage.del('localStorage', KEY_ALERTS);
    el.notify.setAttribute('aria-pressed', String(on));
    el.notify.textContent = on ? 'Alerts on' : 'Alerts off';
  }

  async function toggleAlerts() {
    if (alerts.on) {
      setAlerts(false);
      return;
    }
    if (!alerts.audio && window.AudioContext) alerts.audio = new AudioContext();
    if (alerts.audio && alerts.audio.state === 'suspended') alerts.audio.resume().catch(() => {});
    if (window.Notification && Notification.permission === 'default') {
      try { await Notification.requestPermission(); } catch (e) { /* refused */ }
    }
    setAlerts(true);
  }

  function beep() {
    const ctx = alerts.audio;
    if (!ctx || ctx.state !== 'running') return false;
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.08, ctx.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + 0.25);
    osc.connect(gain).connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + 0.25);
    return true;
  }

  function alertAgent(c, msg, isNew) {
    if (!alerts.on) return;
    const elsewhere = document.hidden || !document.hasFocus() || c.id !== A.selected;
    if (!elsewhere) return;
    const who = msg.name || c.ownerName || participantLabel(c.owner);
    let shown = false;
    if (window.Notification && Notification.permission === 'granted') {
      try {
        const n = new Notification(isNew ? 'New conversation: ' + who : who, { body: C.plain(msg.body || ''), tag: c.id });
        n.onclick = () => {
          window.focus();
          select(c.id);
          n.close();
        };
        shown = true;
      } catch (e) { /* not allowed here */ }
    }
    const rang = beep();
    alerts.count++;
    el.notify.dataset.alerts = String(alerts.count);
    el.notify.dataset.last = (shown ? 'notification' : '') + (rang ? '+sound' : '');
  }

  function start() {
    el.notify.hidden = false;
    el.away.hidden = false;
    el.login.hidden = true;
    el.console.hidden = false;
    el.signout.hidden = false;
    el.workspace.textContent = A.workspace;
    A.stopped = false;
    A.attempt = 0;
    render();
    connect();
  }

  // signOut leaves the console. revoke: the agent asked, so the session
  // ends on the node too (POST /v1/logout), not only in this tab; a token
  // the node refused is only forgotten.
  async function signOut(message, revoke) {
    const token = A.token;
    A.stopped = true;
    clearTimeout(A.reconnectTimer);
    A.reconnectTimer = 0;
    teardown();
    A.token = '';
    storage.del('sessionStorage', KEY_TOKEN);
    A.convs.clear();
    A.outbox.clear();
    A.online.clear();
    el.convList.replaceChildren();
    A.selected = null;
    storage.del('sessionStorage', KEY_SELECTED);
    assistReset();
    render();
    showLogin(message);
    if (!revoke || !token) return;
    el.login.dataset.revoked = 'pending';
    try {
      const resp = await fetch('/v1/logout', { method: 'POST', headers: { Authorization: 'Bearer ' + token } });
      if (!resp.ok && resp.status !== 401) throw new Error('HTTP ' + resp.status);
      el.login.dataset.revoked = 'yes';
    } catch (e) {
      el.login.dataset.revoked = 'failed';
      showLogin('Signed out here, but the node did not confirm that the session ended (' + e.message +
        '): sign in and out again, or ask an admin to revoke it.');
    }
  }

  // signIn trades an email and password for a session token
  // (POST /v1/login, docs/api.md).
  async function signIn(workspace, email, password) {
    el.loginSubmit.disabled = true;
    el.loginError.hidden = true;
    let resp;
    let body = {};
    try {
      resp = await fetch('/v1/login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ workspace, email, password }),
      });
      body = await resp.json().catch(() => ({}));
    } catch (e) {
      showLogin('The node did not answer (' + e.message + '). Try again.');
      return;
    }
    if (resp.ok && typeof body.token === 'string') {
      A.token = body.token;
      A.workspace = workspace;
      A.name = '';
      storage.set('sessionStorage', KEY_TOKEN, A.token);
      storage.set('sessionStorage', KEY_WORKSPACE, workspace);
      storage.del('localStorage', KEY_NAME);
      el.loginPassword.value = '';
      el.loginSubmit.disabled = false;
      start();
      return;
    }
    const code = body && body.error && body.error.code;
    const wait = Number(resp.headers.get('Retry-After')) || 1;
    if (resp.status === 401) showLogin('The workspace, email or password is wrong.');
    else if (code === 'rate_limited') showLogin('Too many attempts: try again in ' + wait + ' s.');
    else if (code === 'busy') showLogin('The node is busy: try again in a moment.');
    else showLogin('Signing in failed: ' + ((body.error && body.error.message) || 'HTTP ' + resp.status));
  }

  // ---------------------------------------------------------------- events

  el.loginForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = el.loginToken.value.trim();
    const workspace = el.loginWorkspace.value.trim() || 'demo';
    const email = el.loginEmail.value.trim();
    const password = el.loginPassword.value;
    if (!validWorkspace(workspace)) {
      showLogin('A workspace name has 1 to 64 characters: a-z, 0-9, "_" and "-".');
      return;
    }
    if (!token) {
      if (!email || !password) {
        showLogin('Give your email and password (or open "Use an operator token instead").');
        return;
      }
      signIn(workspace, email, password);
      return;
    }
    A.token = token;
    A.workspace = workspace;
    A.name = el.loginName.value.trim().slice(0, 80);
    el.loginToken.value = '';
    storage.set('sessionStorage', KEY_TOKEN, token);
    storage.set('sessionStorage', KEY_WORKSPACE, workspace);
    if (A.name) storage.set('localStorage', KEY_NAME, A.name);
    else storage.del('localStorage', KEY_NAME);
    start();
  });
  el.signout.addEventListener('click', () => signOut('', true));
  el.away.addEventListener('click', () => setAway(!A.away));
  el.notify.addEventListener('click', toggleAlerts);
  // After a reload with alerts on, the first click anywhere lets the sound
  // play again (browsers start audio only on a gesture).
  document.addEventListener('pointerdown', () => {
    if (!alerts.on || !window.AudioContext) return;
    if (!alerts.audio) alerts.audio = new AudioContext();
    if (alerts.audio.state === 'suspended') alerts.audio.resume().catch(() => {});
  });
  el.back.addEventListener('click', () => select(null));
  for (const f of [el.filterStatus, el.filterAssignee]) f.addEventListener('change', scheduleRender);
  el.filterTag.addEventListener('input', scheduleRender);
  el.convStatus.addEventListener('change', () => {
    el.convUntil.hidden = el.convStatus.value !== 'snoozed';
  });
  el.convStatusSet.addEventListener('click', setConvStatus);
  el.convAssign.addEventListener('click', () => assign(myOperator()));
  el.convUnassign.addEventListener('click', () => assign(''));
  el.tagForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    addTag();
  });
  el.tagInput.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.isComposing) {
      ev.preventDefault();
      addTag();
    }
  });
  el.noteToggle.addEventListener('change', () => {
    el.composer.classList.toggle('is-note', el.noteToggle.checked);
    el.input.placeholder = el.noteToggle.checked ? 'Write a note for agents (the visitor never sees it)' : 'Write a reply…';
    if (el.noteToggle.checked) stopTyping();
  });
  el.input.addEventListener('input', onInput);
  el.input.addEventListener('blur', stopTyping);
  el.input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      submit();
    }
  });
  el.send.addEventListener('pointerdown', (ev) => ev.preventDefault()); // keep the focus in the composer
  el.send.addEventListener('click', () => {
    submit();
    el.input.focus();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') {
      const c = A.selected && A.convs.get(A.selected);
      if (c) maybeSendRead(c);
    } else {
      stopTyping();
    }
  });
  setInterval(() => {
    if (A.convs.size) scheduleRender(); // keeps the relative times fresh
  }, 60000);
  // Assignments are the control plane's, with no frame of their own, and
  // snoozes run out: while the list is filtered it is asked again now and
  // then.
  setInterval(() => {
    if (el.filterStatus.value || el.filterAssignee.value || el.filterTag.value.trim()) list();
  }, 20000);

  // ---------------------------------------------------------------- boot

  (function boot() {
    if (location.hash.length > 1) {
      const frag = new URLSearchParams(location.hash.slice(1));
      if (frag.get('token')) {
        storage.set('sessionStorage', KEY_TOKEN, frag.get('token'));
        storage.set('sessionStorage', KEY_WORKSPACE, frag.get('workspace') || 'demo');
        if (frag.get('name')) storage.set('localStorage', KEY_NAME, frag.get('name'));
      }
      // Keep the token out of the address bar, the history and bookmarks.
      history.replaceState(null, '', location.pathname + location.search);
    }
    A.token = storage.get('sessionStorage', KEY_TOKEN) || '';
    A.workspace = storage.get('sessionStorage', KEY_WORKSPACE) || 'demo';
    A.name = storage.get('localStorage', KEY_NAME) || '';
    setAway(storage.get('localStorage', KEY_AWAY) === '1');
    // Alerts stay on across reloads; the sound waits for the next click.
    setAlerts(storage.get('localStorage', KEY_ALERTS) === '1');
    if (!validWorkspace(A.workspace)) A.workspace = 'demo';
    if (A.token) start();
    else showLogin('');
  })();
})();
