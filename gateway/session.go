package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"parley/crdt"
	"parley/gateway/wire"
	"parley/ident"
	"parley/store"
	"parley/tracing"
)

// readLoop reads a transport that is not polled and handles its frames,
// until reading fails or a frame ends the connection.
func (c *conn) readLoop(ctx context.Context) {
	for {
		data, err := c.t.Read(ctx)
		if errors.Is(err, errBinary) {
			data, err = nil, nil
		}
		if err != nil {
			break
		}
		c.mu.Lock()
		stopped := c.readStop
		c.mu.Unlock()
		if stopped {
			// The connection is ending: read on only for the client's
			// close.
			continue
		}
		if !c.handleFrame(ctx, data) {
			c.mu.Lock()
			c.readStop = true
			c.mu.Unlock()
			c.fail(nil)
		}
	}
	c.endRelay()
}

// deliver is a poller's: it queues a message for drain, which it starts
// if none runs.
func (c *conn) deliver(data []byte) bool {
	c.mu.Lock()
	if c.readStop {
		c.mu.Unlock()
		return true
	}
	if c.inbox == nil {
		c.inbox = c.inbox1[:0]
	}
	c.inbox = append(c.inbox, data)
	start := !c.handling
	c.handling = true
	more := len(c.inbox) < inboxMax
	if !more {
		c.paused = true
	}
	c.mu.Unlock()
	if start {
		go c.drain()
	}
	return more
}

// full is a poller's: whether deliver asked for a pause that drain has
// not lifted yet.
func (c *conn) full() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paused
}

// readEnd is a poller's: nothing more comes from the client.
func (c *conn) readEnd() {
	c.mu.Lock()
	c.readEOF = true
	start := !c.handling
	c.handling = true
	c.mu.Unlock()
	if start {
		go c.drain()
	}
}

// drain handles the frames of a polled connection while there are any,
// on a goroutine of the connection's that ends when the inbox is empty:
// a frame may block (a send waits for a free op slot, a resume for room in
// the send queue), the poller must not.
func (c *conn) drain() {
	for {
		c.mu.Lock()
		if c.readStop {
			c.inbox = nil
		}
		if len(c.inbox) == 0 {
			c.inbox, c.inbox1[0] = nil, nil
			c.handling = false
			resume := c.paused
			c.paused = false
			eof := c.readEOF && !c.readDone
			if eof {
				c.readDone = true
			}
			c.mu.Unlock()
			if eof {
				c.endRelay()
				c.fail(nil)
				c.ended()
				return
			}
			if resume {
				c.t.(polledTransport).resumeReading()
			}
			return
		}
		data := c.inbox[0]
		c.inbox[0] = nil
		c.inbox = c.inbox[1:]
		c.mu.Unlock()
		if !c.handleFrame(c.ctx, data) {
			c.mu.Lock()
			c.readStop = true
			c.mu.Unlock()
			c.fail(nil)
		}
	}
}

// handleFrame reads, validates and dispatches one frame of the client's (nil
// for a binary frame); false when the connection ends with it. Nothing
// here waits for the store's fsync: a change is decided here and answered
// by the connection's answering goroutine once durable (answer.go), other
// slow work runs in op goroutines, both bounded per connection, so that
// one client's acks never hold up its pings or reads.
func (c *conn) handleFrame(ctx context.Context, data []byte) bool {
	if c.relaying.Load() {
		return c.relayFrame(ctx, data)
	}
	if data == nil {
		c.replyErr("", errf(wire.CodeBadFrame, "binary frames are not part of the protocol"))
		return true
	}
	now := time.Now()
	c.lastSeen.Store(now.UnixMilli())
	// Decoded first, so that every refusal names the frame it refuses
	// (its ref), the rate limit's included: a client resends what it
	// can tell was dropped.
	f, werr := decodeFrame(data)
	lim := c.limiter
	if werr == nil && f.Type == "resume" {
		lim = c.resumes
	}
	if !lim.AllowN(now, 1) {
		c.violations++
		if c.violations > c.srv.cfg.FrameBurst {
			c.fail(fatalf(wire.CodeRateLimited, wire.CloseRateLimited, "too many frames"))
			return false
		}
		c.replyErr(f.Ref, errf(wire.CodeRateLimited, "too many frames: slow down"))
		return true
	}
	c.violations = 0
	c.srv.metrics.FrameIn(c.t.Name())
	if werr != nil {
		c.replyErr(f.Ref, werr)
		return werr.close == 0
	}
	if !c.authed.Load() && f.Type != wire.TypeHello {
		c.replyErr(f.Ref, fatalf(wire.CodeUnauthenticated, wire.CloseUnauthentic, "send hello first"))
		return false
	}
	if f.Type == wire.TypeHello && !c.authed.Load() {
		relayed, werr := c.relayHello(ctx, f, data)
		if werr != nil {
			c.replyErr(f.Ref, werr)
			return false
		}
		if relayed {
			c.startRelay(ctx)
			return true
		}
	}
	c.renewLease(now)
	if werr := c.handle(ctx, f, now); werr != nil {
		c.replyErr(f.Ref, werr)
		return werr.close == 0
	}
	return true
}

func (c *conn) handle(ctx context.Context, f inFrame, now time.Time) *wireError {
	switch f.Type {
	case wire.TypeHello:
		werr := c.hello(ctx, f)
		if werr == nil {
			c.sendViews()
		}
		return werr
	case wire.TypePing:
		c.reply(wire.Ref{Type: wire.TypePong, Ref: f.Ref})
		return nil
	case wire.TypeStart:
		return c.start(ctx, f)
	case wire.TypeList:
		return c.list(f)
	case wire.TypeResume:
		return c.resume(f)
	case wire.TypeSend, wire.TypeEdit, wire.TypeDelete, wire.TypeInbox, wire.TypeContext:
		return c.change(ctx, f, now)
	case wire.TypeTyping:
		return c.typing(f, now)
	case wire.TypeView:
		return c.view(f, now)
	case wire.TypeStatus:
		return c.status(f, now)
	case wire.TypeRead:
		return c.read(ctx, f, now)
	case wire.TypeForget:
		return c.forget(ctx, f)
	}
	return errf(wire.CodeUnknownType, "type %q", f.Type)
}

func (c *conn) hello(ctx context.Context, f inFrame) *wireError {
	if c.authed.Load() {
		return errf(wire.CodeBadRequest, "hello: already said")
	}
	ctx, span := c.srv.cfg.Tracer.Root(ctx, "parley.hello")
	defer span.End()
	id, werr := authenticate(ctx, c.srv.cfg.Auth, f)
	if werr != nil {
		if werr.cause != nil {
			c.srv.log.Warn("hello refused", "code", werr.Code, "err", werr.cause)
		}
		if span.IsRecording() {
			span.SetAttributes(tracing.Transport(c.t.Name()), tracing.Code(werr.Code))
			tracing.Fail(span, "refused")
		}
		return werr
	}
	if span.IsRecording() {
		span.SetAttributes(tracing.Transport(c.t.Name()), tracing.Workspace(id.Workspace), tracing.Role(string(id.Role)))
	}
	c.id = id
	// An agent away from the start is never announced available.
	c.away.Store(f.Away != nil && *f.Away)
	c.authed.Store(true)
	c.srv.hub.join(c)
	c.reply(wire.Welcome{
		Type: wire.TypeWelcome, V: wire.ProtocolVersion, Workspace: id.Workspace, Role: id.Role,
		Participant: id.Participant, VisitorID: id.VisitorID, VisitorSig: id.VisitorSig,
		Node: c.srv.cfg.Node, HeartbeatMS: c.srv.cfg.Heartbeat.Milliseconds(),
	})
	now := time.Now()
	visible := ident.Agent
	if id.Role == ident.Agent {
		visible = ident.Visitor
		for _, p := range c.srv.presence.online(id.Workspace, ident.Agent, now.UnixMilli()) {
			c.reply(p)
		}
	}
	for _, p := range c.srv.presence.online(id.Workspace, visible, now.UnixMilli()) {
		c.reply(p)
	}
	c.leaseAt = 0
	c.renewLease(now)
	return nil
}

// renewLease extends the connection's presence lease, at most a few times
// per heartbeat, and tells the workspace when its participant comes online.
func (c *conn) renewLease(now time.Time) {
	if !c.authed.Load() {
		return
	}
	hb := c.srv.cfg.Heartbeat.Milliseconds()
	ms := now.UnixMilli()
	if c.leaseAt != 0 && ms-c.leaseAt < hb/2 {
		return
	}
	c.leaseAt = ms
	ch, l := c.srv.presence.lease(c, ms, ms+3*hb)
	c.srv.emit(leaseSignal(c, l))
	c.renewView(ms + 3*hb)
	if ch.changed {
		c.srv.announce(c, ch)
	}
}

// status handles an agent's status frame: away, or back. The connection's
// lease is renewed at once with it, so the workspace (visitors included)
// learns now rather than at the next heartbeat.
func (c *conn) status(f inFrame, now time.Time) *wireError {
	if c.id.Role != ident.Agent {
		return errf(wire.CodeForbidden, "status: only agents say they are away")
	}
	c.away.Store(*f.Away)
	c.leaseAt = 0
	c.renewLease(now)
	if f.Ref != "" {
		c.reply(wire.Ref{Type: wire.TypeAck, Ref: f.Ref})
	}
	return nil
}

func (c *conn) start(ctx context.Context, f inFrame) *wireError {
	if c.id.Role != ident.Visitor {
		return errf(wire.CodeForbidden, "start: only visitors start conversations")
	}
	now := time.Now()
	if werr := c.overloaded(now); werr != nil {
		return werr
	}
	if werr := c.srv.overLimit(c.id.Workspace, now); werr != nil {
		return werr
	}
	if werr := c.srv.budgets.take(c.id.Workspace, c.ip, true, actStart, now); werr != nil {
		return werr
	}
	var raw [12]byte
	rand.Read(raw[:])
	conv := store.Conversation{Workspace: c.id.Workspace, ID: "c_" + hex.EncodeToString(raw[:]), Owner: c.id.Participant, OwnerName: c.id.Name}
	c.srv.shed.taken()
	c.async(func() {
		err := c.srv.cfg.Store.CreateConversation(ctx, conv)
		c.srv.shed.answered()
		if err != nil {
			c.replyErr(f.Ref, c.storeError(err))
			return
		}
		// Not counted for the plan yet: see change.
		c.srv.hub.subscribe(c, conv.ID)
		c.reply(wire.Ref{Type: wire.TypeStarted, Ref: f.Ref, Conversation: conv.ID})
	})
	// The reader may not use conv.ID until "started" is sent, but the
	// visitor owns it from now: record it for the frames that follow.
	c.allow(conv.ID)
	return nil
}

// authorize checks, once per connection and conversation, that the
// conversation exists in the connection's workspace and that a visitor owns it.
// One this node does not hold is fetched from its replicas first (fetch).
func (c *conn) authorize(conv string) *wireError {
	if c.convs[conv] {
		return nil
	}
	rec, err := c.srv.cfg.Store.Conversation(c.id.Workspace, conv)
	if errors.Is(err, store.ErrNotFound) && c.srv.cfg.Fetch != nil {
		rec, err = c.fetch(conv)
	}
	if err != nil {
		return c.storeError(err)
	}
	if c.id.Role != ident.Agent && rec.Owner != c.id.Participant {
		return errf(wire.CodeNotFound, "conversation %s not found", conv)
	}
	c.allow(conv)
	return nil
}

// maxFetchMisses is how many conversations one connection may ask about
// that no replica holds (or holds for another owner): past it, a
// conversation not held here is not_found without asking, so that a
// client naming unknown IDs cannot make this node ask its peers without end.
const maxFetchMisses = 8

// fetch brings conv from its replicas, waiting at most FetchWait, and
// reads it again. The frame's handler waits for it, so a connection has
// one fetch at a time; the Fetcher bounds them per node. A visitor's
// fetch names them as the owner: another's conversation is not fetched.
func (c *conn) fetch(conv string) (store.Conversation, error) {
	ws := c.id.Workspace
	if c.fetchMisses >= maxFetchMisses {
		return store.Conversation{}, fmt.Errorf("conversation %s: %w", conv, store.ErrNotFound)
	}
	owner := c.id.Participant
	if c.id.Role == ident.Agent {
		owner = ""
	}
	rec, err := c.srv.fetch(c.ctx, ws, conv, owner)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.fetchMisses++
	case err != nil:
		c.srv.log.Warn("conversation not fetched from its replicas", "workspace", ws, "conversation", conv, "err", err)
	}
	return rec, err
}

// allow records that the connection may touch conv; the map is made on
// first use (an idle connection holds none).
func (c *conn) allow(conv string) {
	if c.convs == nil {
		c.convs = map[string]bool{}
	}
	c.convs[conv] = true
}

// maxListed is the most conversations one list answers with; next pages
// the rest.
const maxListed = 200

func (c *conn) list(f inFrame) *wireError {
	owner := c.id.Participant
	if c.id.Role == ident.Agent {
		owner = ""
	}
	after, _ := store.ParseCursor(f.Cursor) // validated
	st := c.srv.cfg.Store
	agent := c.id.Role == ident.Agent
	nowMS := time.Now().UnixMilli()
	var keep func(store.Conversation) bool
	if agent && (f.Status != "" || f.Tag != "" || f.Assignee != "") {
		keep = func(cv store.Conversation) bool { return c.listKeeps(f, cv, nowMS) }
	} else if f.Status != "" || f.Tag != "" || f.Assignee != "" {
		return errf(wire.CodeForbidden, "list: only agents filter")
	}
	convs, next, err := st.ConversationsPageFunc(c.id.Workspace, owner, after, maxListed, keep)
	if err != nil {
		return c.storeError(err)
	}
	items := make([]wire.Conversation, 0, len(convs))
	for _, cv := range convs {
		reads, err := st.Reads(c.id.Workspace, cv.ID)
		if err != nil {
			return c.storeError(err)
		}
		unread, err := st.Unread(c.id.Workspace, cv.ID, c.id.Participant, reads[c.id.Participant], 100)
		if err != nil {
			return c.storeError(err)
		}
		w := toWireConversation(cv, reads, unread)
		if agent {
			withInbox(&w, cv, c.srv.assignee(c.id.Workspace, cv.ID), nowMS)
		}
		items = append(items, w)
	}
	c.reply(wire.Conversations{Type: wire.TypeConversations, Ref: f.Ref, Items: items, Next: next.String()})
	return nil
}

// listKeeps says whether an agent's list filters keep cv: its status at
// nowMS, a tag it has on, its assignee ("me": the agent's operator ID;
// "-": none).
func (c *conn) listKeeps(f inFrame, cv store.Conversation, nowMS int64) bool {
	x := cv.InboxState()
	if f.Status != "" && x.Status(nowMS) != crdt.Status(f.Status) {
		return false
	}
	if f.Tag != "" && !x.HasTag(f.Tag) {
		return false
	}
	switch a := c.srv.assignee(c.id.Workspace, cv.ID); f.Assignee {
	case "":
	case "me":
		return a != "" && "a:"+a == c.id.Participant
	case "-":
		return a == ""
	default:
		return a == f.Assignee
	}
	return true
}

// assignee is Config.Assignee's answer, "" without one.
func (s *Server) assignee(ws, conv string) string {
	if s.cfg.Assignee == nil {
		return ""
	}
	return s.cfg.Assignee(ws, conv)
}

// resume subscribes first and reads the log second, so that no event falls
// between the two; the writer drops the ones that arrive both ways. The
// replay starts (live events of the conversation held back) before the
// conversation is authorized: an agent gets the events a fetch brings
// (authorize) live, and they must come once, in the replay's order.
func (c *conn) resume(f inFrame) *wireError {
	if !c.waitRoom() {
		return nil
	}
	ws, conv := c.id.Workspace, f.Conversation
	var since crdt.Vector
	if f.Since != "" {
		since, _ = crdt.ParseVector(f.Since) // validated
	}
	c.send(&outItem{kind: outReplayStart, conv: conv, since: since})
	if werr := c.authorize(conv); werr != nil {
		if werr.close != 0 {
			return werr
		}
		// Release what was held, behind the refusal.
		c.srv.metrics.Error(werr.Code)
		c.send(&outItem{kind: outReplay, conv: conv, data: encode(wire.Error{Type: wire.TypeError, Ref: f.Ref, Code: werr.Code, Message: werr.Message, RetryMS: werr.retry})})
		return nil
	}
	c.srv.hub.subscribe(c, conv)
	st := c.srv.cfg.Store
	var events []store.Event
	var more bool
	var err error
	if since != nil {
		// Resume by vector: what the client lacks, whichever node it had
		// the rest from.
		events, more, err = st.EventsSince(ws, conv, since, c.srv.cfg.MaxReplay)
	} else {
		events, more, err = st.Events(ws, conv, f.After, c.srv.cfg.MaxReplay)
	}
	var reads map[string]uint64
	if err == nil {
		reads, err = st.Reads(ws, conv)
	}
	if err != nil {
		// Release the held live events; the client retries the resume.
		c.send(&outItem{kind: outReplay, conv: conv, data: encode(wire.Error{Type: wire.TypeError, Ref: f.Ref, Code: wire.CodeUnavailable, Message: "resume failed: retry"})})
		return nil
	}
	replay := make([]outItem, 0, len(events)+len(reads)+2)
	head := f.After
	replay = appendReplay(replay, conv, events, c.id.Role != ident.Agent)
	for _, e := range events {
		head = max(head, e.Seq)
	}
	for p, s := range reads {
		replay = append(replay, outItem{kind: outFrame, conv: conv,
			data: encodeRead(wire.Read{Type: wire.TypeRead, Conversation: conv, Participant: p, Role: roleOf(p), Seq: s})})
	}
	nowMS := time.Now().UnixMilli()
	for _, p := range c.srv.presence.typers(ws, conv, nowMS) {
		replay = append(replay, outItem{kind: outFrame, conv: conv,
			data: encode(wire.Typing{Type: wire.TypeTyping, Conversation: conv, Participant: p, Role: roleOf(p), Name: c.srv.presence.name(ws, p), Typing: true, ExpiresMS: c.srv.cfg.TypingTTL.Milliseconds()})})
	}
	c.send(&outItem{kind: outReplay, conv: conv, replay: replay, more: more,
		data: encode(wire.Resumed{Type: wire.TypeResumed, Ref: f.Ref, Conversation: conv, Head: head, More: more})})
	return nil
}

// appendReplay appends a replay's deliver frames: one per message. Every
// event of a message reads as the message's current state (the store keeps
// no other), so of the events of one message in the replay only the last
// is written; the others' stamps travel in its also, for the client's
// vector, and their seqs count as sent. For a visitor (notAgent), internal
// messages (notes, inbox changes) count as sent and are never written.
func appendReplay(replay []outItem, conv string, events []store.Event, notAgent bool) []outItem {
	last := make(map[string]int, len(events))
	for i, e := range events {
		last[e.Message.ID] = i
	}
	also := map[string][]string{}
	for i, e := range events {
		it := outItem{kind: outFrame, conv: conv, seq: e.Seq, at: e.Stamp}
		if notAgent && e.Message.Internal {
			it.quiet = true
		} else if last[e.Message.ID] != i {
			it.quiet = true
			if at := stampString(e.Stamp); at != "" {
				also[e.Message.ID] = append(also[e.Message.ID], at)
			}
		} else {
			it.data = encodeDeliver(wire.Deliver{Type: wire.TypeDeliver, Conversation: conv, Seq: e.Seq, At: stampString(e.Stamp),
				Also: also[e.Message.ID], Message: toWire(e.Message)})
		}
		replay = append(replay, it)
	}
	return replay
}

func (c *conn) change(ctx context.Context, f inFrame, now time.Time) (werr *wireError) {
	ctx, span := c.srv.cfg.Tracer.Root(ctx, changeSpan(f.Type))
	if span.IsRecording() {
		span.SetAttributes(tracing.Transport(c.t.Name()), tracing.Workspace(c.id.Workspace), tracing.Role(string(c.id.Role)))
		if f.Body != nil {
			span.SetAttributes(tracing.Bytes(len(*f.Body)))
		}
		defer func() {
			if werr != nil {
				span.SetAttributes(tracing.Code(werr.Code))
				tracing.Fail(span, "refused")
				span.End()
			}
		}()
	}
	if werr := c.overloaded(now); werr != nil {
		return werr
	}
	if werr := c.authorize(f.Conversation); werr != nil {
		return werr
	}
	visitor := c.id.Role == ident.Visitor
	switch {
	case f.Type == wire.TypeSend && f.Internal && c.id.Role != ident.Agent:
		return errf(wire.CodeBadRequest, "internal: only agents write notes")
	case f.Type == wire.TypeInbox && c.id.Role != ident.Agent:
		return errf(wire.CodeForbidden, "inbox: agents only")
	case f.Type == wire.TypeContext && !visitor:
		return errf(wire.CodeForbidden, "context: visitors only")
	}
	if (f.Internal || f.Type == wire.TypeInbox || f.Type == wire.TypeContext) && c.srv.cfg.InternalMessages != nil {
		if err := c.srv.cfg.InternalMessages(); err != nil {
			return errf(wire.CodeClusterUpgrading, "%s", err.Error())
		}
	}
	first := f.Type == wire.TypeSend && !f.Internal && c.firstMessage(f.Conversation)
	ch := changeOf(f, c.id.Workspace, c.id.Participant, c.id.Role, c.id.Name)
	act, werr := c.srv.admitChange(ch, c.ip, visitor, first, now)
	if werr != nil {
		if first {
			c.uncountable(f.Conversation)
		}
		return werr
	}
	if f.Type == wire.TypeSend || f.Type == wire.TypeEdit {
		c.clearTyping(f.Conversation, now)
	}
	c.srv.stampChange(&ch, now, c.t.Name())
	// A place among the connection's changes in flight first: a client
	// with too many unanswered is slowed down here, not buffered without
	// end.
	c.ops <- struct{}{}
	c.opsWG.Add(1)
	c.srv.shed.taken()
	// Decided and published here, on the reader: the answer waits for
	// the commit on the connection's answering goroutine (answer.go), if
	// there is anything to wait for.
	res, p, err := c.srv.cfg.Store.ApplyAsync(ctx, ch)
	c.queueAnswer(changeWait{p: p, err: err, res: res, span: span, ref: f.Ref, conv: f.Conversation, id: f.ID,
		taken: takenChange{ws: ch.Workspace, ip: c.ip, kind: ch.Kind, plain: ch.Message.Kind == "", act: act, first: first, now: now}})
	return nil
}

// changeSpan names the span of a change frame: parley.send, parley.edit,
// parley.delete.
func changeSpan(typ string) string {
	switch typ {
	case wire.TypeEdit:
		return "parley.edit"
	case wire.TypeDelete:
		return "parley.delete"
	}
	return "parley.send"
}

// changeOf is the store change a validated send, edit or delete frame
// asks for, made by participant; stampChange gives it its time.
func changeOf(f inFrame, ws, participant string, role ident.Role, name string) store.Change {
	ch := store.Change{Workspace: ws, Conversation: f.Conversation, Participant: participant}
	switch f.Type {
	case wire.TypeSend:
		ch.Kind = store.Send
		ch.Message = crdt.Message{ID: f.ID, Author: participant, Role: role, Name: name, Body: *f.Body, Internal: f.Internal}
	case wire.TypeInbox:
		op, kind := crdt.InboxOp{Status: crdt.Status(f.Status), Until: f.Until}, crdt.KindStatus
		if f.Tag != "" {
			op, kind = crdt.InboxOp{Tag: f.Tag, On: f.On}, crdt.KindTag
		}
		body, _ := json.Marshal(op)
		ch.Kind = store.Send
		ch.Message = crdt.Message{ID: f.ID, Author: participant, Role: role, Name: name, Body: string(body), Internal: true, Kind: kind}
	case wire.TypeContext:
		body, _ := json.Marshal(f.Context)
		ch.Kind = store.Send
		ch.Message = crdt.Message{ID: f.ID, Author: participant, Role: role, Name: name, Body: string(body), Internal: true, Kind: crdt.KindContext}
	case wire.TypeEdit:
		ch.Kind, ch.Message.ID, ch.Body = store.Edit, f.ID, *f.Body
	case wire.TypeDelete:
		ch.Kind, ch.Message.ID = store.Delete, f.ID
	}
	return ch
}

// admitChange is what every message change goes through before the
// store, from a connection or from the conversations API (Post): the
// workspace's plan for a send, then the budgets it draws on (a visitor's
// address's and the workspace's; anyone else's, the workspace's only).
// first says the send would be the conversation's first message. It
// returns the action taken from the budgets, or the refusal.
func (s *Server) admitChange(ch store.Change, ip string, visitor, first bool, now time.Time) (action, *wireError) {
	if ch.Kind == store.Send {
		if werr := s.overLimit(ch.Workspace, now); werr != nil {
			return 0, werr
		}
	}
	act := actChange
	switch {
	case visitor && first:
		act = actFirstSend
	case visitor && ch.Kind == store.Send:
		act = actSend
	}
	if werr := s.budgets.take(ch.Workspace, ip, visitor, act, now); werr != nil {
		return 0, werr
	}
	return act, nil
}

// stampChange gives an admitted change the node's hybrid logical clock
// and counts a send in transport's messages.
func (s *Server) stampChange(ch *store.Change, now time.Time, transport string) {
	ts := s.cfg.Clock.Now()
	ch.TS, ch.Start = ts, now
	if ch.Kind == store.Send {
		m := ch.Message
		ch.Message = crdt.NewMessage(m.ID, m.Author, m.Role, m.Name, m.Body, ts)
		ch.Message.Internal, ch.Message.Kind = m.Internal, m.Kind
		s.metrics.MessageIn(transport)
	}
}

// applyChange hands an admitted, stamped change to the store (on a node
// with peers, acknowledged once a second replica has it too) after the
// shedder counted it taken (shed.taken), waits for its answer and settles
// it (settle). Its event reaches subscribers and peers through the
// store's OnCommit, as every change's does.
func (s *Server) applyChange(ctx context.Context, ch store.Change, ip string, act action, first bool, now time.Time) (store.Result, error) {
	res, p, err := s.cfg.Store.ApplyAsync(ctx, ch)
	res, err = waited(res, p, err)
	s.settle(&takenChange{ws: ch.Workspace, ip: ip, kind: ch.Kind, plain: ch.Message.Kind == "", act: act, first: first, now: now}, res.Changed)
	return res, err
}

// waited is the answer to a change the store decided (res, or err) once
// its Pending p completed: a change whose commit failed stored nothing,
// and its result says nothing; one stored here that no second replica
// confirmed (ErrUnconfirmed) keeps its result, for settle.
func waited(res store.Result, p store.Pending, err error) (store.Result, error) {
	if err != nil || p == nil {
		return res, err
	}
	if err := p.Wait(); err != nil {
		if !errors.Is(err, ErrUnconfirmed) {
			res = store.Result{}
		}
		return res, err
	}
	return res, nil
}

// takenChange is a change handed to the store, for what its answer
// settles.
type takenChange struct {
	ws    string
	ip    string
	kind  store.ChangeKind
	plain bool // a message of the plan's, not an inbox change or the visitor's context
	act   action
	first bool
	now   time.Time
}

// settle ends what taking a change began, once the store answered it
// (changed: it stored something): the shedder's count, and the plan's
// for what it stored; a send that stored nothing gives back its place in
// the address's part of the plan.
func (s *Server) settle(t *takenChange, changed bool) {
	s.shed.answered()
	if t.kind == store.Send && changed && !t.plain {
		// An inbox change or the visitor's context: no message of the
		// plan's.
	} else if t.kind == store.Send && changed {
		// Stored here, counted here, even when the answer is an error
		// (no replica confirmed it yet): the resend finds it stored.
		// The conversation counts with its first message: one started
		// and left empty never does, so a flood of starts costs the
		// plan nothing.
		var convs int64
		if t.first {
			convs = 1
		}
		s.cfg.Meter.Count(t.ws, convs, 1)
	} else {
		s.budgets.giveBack(t.ws, t.ip, t.act, t.now)
	}
}

// overloaded refuses a change when the node is past what it can carry
// (shed.go), before any work is done for it.
func (c *conn) overloaded(now time.Time) *wireError {
	return c.srv.shed.overloaded(c.srv.hub.room(c.id.Workspace), now)
}

// firstMessage says whether a send to conv would be the first message of
// the conversation, which then counts for the plan: the conversation holds
// no message in the store yet and no send of this connection to it is
// pending. A send that turns out not to store anything gives the claim
// back (uncountable), for the next one.
func (c *conn) firstMessage(conv string) bool {
	c.countMu.Lock()
	defer c.countMu.Unlock()
	if c.counted[conv] {
		return false
	}
	if c.counted == nil {
		c.counted = map[string]bool{}
	}
	c.counted[conv] = true
	rec, err := c.srv.cfg.Store.Conversation(c.id.Workspace, conv)
	return err == nil && rec.Last == nil
}

func (c *conn) uncountable(conv string) {
	c.countMu.Lock()
	delete(c.counted, conv)
	c.countMu.Unlock()
}

func (c *conn) typing(f inFrame, now time.Time) *wireError {
	if werr := c.authorize(f.Conversation); werr != nil {
		return werr
	}
	ttl := c.srv.cfg.TypingTTL
	exp := int64(0)
	if f.Typing {
		exp = now.Add(ttl).UnixMilli()
	}
	changed, st := c.srv.presence.setTyping(c.id.Workspace, f.Conversation, c.id.Participant, f.Typing, exp)
	if changed {
		c.srv.emit(Signal{Kind: SignalTyping, Workspace: c.id.Workspace, Conversation: f.Conversation, Participant: c.id.Participant,
			Role: c.id.Role, Name: c.id.Name, Typing: f.Typing, TS: st.TS, Expires: st.Expires})
		c.srv.hub.toConv(c.id.Workspace, f.Conversation, &outItem{kind: outLive, conv: f.Conversation,
			data: encode(wire.Typing{Type: wire.TypeTyping, Conversation: f.Conversation, Participant: c.id.Participant, Role: c.id.Role, Name: c.id.Name, Typing: f.Typing, ExpiresMS: ttl.Milliseconds()})})
	}
	return nil
}

// clearTyping ends the sender's typing state when their message goes out,
// and says so only if they were typing: most sends need no extra frame.
func (c *conn) clearTyping(conv string, now time.Time) {
	for _, p := range c.srv.presence.typers(c.id.Workspace, conv, now.UnixMilli()) {
		if p == c.id.Participant {
			c.typing(inFrame{Conversation: conv, Typing: false}, now)
			return
		}
	}
}

func (c *conn) read(ctx context.Context, f inFrame, now time.Time) *wireError {
	if werr := c.authorize(f.Conversation); werr != nil {
		return werr
	}
	c.async(func() {
		changed, err := c.srv.cfg.Store.MarkRead(ctx, c.id.Workspace, f.Conversation, c.id.Participant, f.Seq, now)
		if err != nil {
			c.replyErr(f.Ref, c.storeError(err))
			return
		}
		if changed {
			c.srv.emit(Signal{Kind: SignalRead, Workspace: c.id.Workspace, Conversation: f.Conversation,
				Participant: c.id.Participant, Role: c.id.Role, Seq: f.Seq})
		}
		c.reply(wire.Ack{Type: wire.TypeAck, Ref: f.Ref, Conversation: f.Conversation, Seq: f.Seq})
	})
	return nil
}

// async runs fn in an op goroutine, waiting for a free slot first: a client
// with too many ops in flight is slowed down, not buffered without end.
// (A change takes a slot too, without a goroutine: change.)
func (c *conn) async(fn func()) {
	c.ops <- struct{}{}
	c.opsWG.Add(1)
	go func() {
		defer func() { <-c.ops; c.opsWG.Done() }()
		fn()
	}()
}

// storeError maps store errors to wire errors.
func (c *conn) storeError(err error) *wireError {
	if e := storeWireError(err); e != nil {
		return e
	}
	c.srv.log.Error("store failure", "err", err, "workspace", c.id.Workspace)
	return errf(wire.CodeInternal, "internal error")
}

// storeWireError is the wire error of a store error a client is told
// about; nil for a failure, which is internal.
func storeWireError(err error) *wireError {
	switch {
	case errors.Is(err, ErrReplicasUnreachable):
		// The cause names nodes and addresses: for the log, not the client.
		return errf(wire.CodeUnavailable, "%v: retry", ErrReplicasUnreachable)
	case errors.Is(err, store.ErrNotFound):
		return errf(wire.CodeNotFound, "%v", err)
	case errors.Is(err, store.ErrForbidden):
		return errf(wire.CodeForbidden, "%v", err)
	case errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrExists):
		return errf(wire.CodeBadRequest, "%v", err)
	case errors.Is(err, store.ErrClosed), errors.Is(err, context.Canceled):
		return fatalf(wire.CodeUnavailable, wire.CloseRestart, "node shutting down: reconnect")
	case errors.Is(err, ErrUnconfirmed):
		// The cause names nodes and addresses: for the log, not the client.
		return errf(wire.CodeUnavailable, "%v: retry with the same id", ErrUnconfirmed)
	}
	return nil
}
