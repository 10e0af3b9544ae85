package gateway

import (
	"sync"
	"sync/atomic"
	"time"

	"parley/gateway/wire"
	"parley/ident"
	"parley/store"
)

// hub knows which connections want which events: every agent of a
// workspace gets all of its conversations' events, a visitor those of the
// conversations it subscribed to.
type hub struct {
	mu    sync.RWMutex
	rooms map[string]*room
	// hold is how long a room's changes are refused once one of its
	// agents is behind (Config.ShedHold; shed.go); an agent behind for
	// slowAfter is too slow to wait for, and no longer counts.
	hold, slowAfter time.Duration
}

type room struct {
	agents   map[*conn]struct{}
	visitors map[*conn]struct{}
	subs     map[string]map[*conn]struct{} // conversation -> visitor conns
	convsOf  map[*conn][]string            // for leave
	// behindUntil (unix ns): until then the workspace's changes are
	// refused overloaded, one of its agents being behind (shed.go).
	behindUntil atomic.Int64
	// behind holds the agent connections behind, since when (unix ns);
	// nBehind counts them (lagging).
	behindMu sync.Mutex
	behind   map[*conn]int64
	nBehind  atomic.Int32
}

func newHub(hold time.Duration) *hub {
	return &hub{rooms: map[string]*room{}, hold: hold, slowAfter: slowAfterHolds * hold}
}

// room returns a workspace's room, nil when none of its connections is
// here.
func (h *hub) room(ws string) *room {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.rooms[ws]
}

func (h *hub) join(c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rooms[c.id.Workspace]
	if r == nil {
		r = &room{agents: map[*conn]struct{}{}, visitors: map[*conn]struct{}{}, subs: map[string]map[*conn]struct{}{}, convsOf: map[*conn][]string{}}
		h.rooms[c.id.Workspace] = r
	}
	if c.id.Role == ident.Agent {
		r.agents[c] = struct{}{}
	} else {
		r.visitors[c] = struct{}{}
	}
}

func (h *hub) leave(c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rooms[c.id.Workspace]
	if r == nil {
		return
	}
	delete(r.agents, c)
	delete(r.visitors, c)
	for _, conv := range r.convsOf[c] {
		if s := r.subs[conv]; s != nil {
			delete(s, c)
			if len(s) == 0 {
				delete(r.subs, conv)
			}
		}
	}
	delete(r.convsOf, c)
	r.caughtUp(c)
	if len(r.agents) == 0 && len(r.visitors) == 0 {
		delete(h.rooms, c.id.Workspace)
	}
}

// subscribe adds a visitor connection to a conversation's events; agents
// have them all already.
func (h *hub) subscribe(c *conn, conv string) {
	if c.id.Role == ident.Agent {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rooms[c.id.Workspace]
	if r == nil {
		return
	}
	s := r.subs[conv]
	if s == nil {
		s = map[*conn]struct{}{}
		r.subs[conv] = s
	}
	if _, ok := s[c]; !ok {
		s[c] = struct{}{}
		r.convsOf[c] = append(r.convsOf[c], conv)
	}
}

// publish fans committed events out; it runs on the store's writer and must
// not block, which conn.send guarantees. Each event is encoded once, into
// one item that every recipient's queue shares: nothing is allocated per
// recipient. When one of a room's agents is behind after an event was
// queued on it (and has not been for long), the room's changes are
// refused for a while (shed.go).
func (h *hub) publish(events []store.Event) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, e := range events {
		r := h.rooms[e.Workspace]
		if r == nil {
			continue
		}
		it := &outItem{kind: outLive, conv: e.Conversation}
		switch e.Kind {
		case store.EventMessage:
			it.seq, it.start, it.at = e.Seq, e.Start, e.Stamp
			it.data = deliverFrame(e)
		case store.EventRead:
			it.data = encodeRead(wire.Read{Type: wire.TypeRead, Conversation: e.Conversation, Participant: e.Participant, Role: roleOf(e.Participant), Seq: e.ReadSeq})
		default:
			continue
		}
		if e.Kind == store.EventMessage && e.Message.Internal {
			// A note or an inbox change: agents only, never a visitor.
			for c := range r.agents {
				c.send(it)
			}
		} else {
			r.toConv(e.Conversation, it)
		}
		if r.lagging(h.slowAfter) {
			r.behindUntil.Store(time.Now().Add(h.hold).UnixNano())
		}
	}
}

// toConv sends to the agents of the room and the conversation's
// subscribers.
func (r *room) toConv(conv string, it *outItem) {
	for c := range r.agents {
		c.send(it)
	}
	for c := range r.subs[conv] {
		c.send(it)
	}
}

// lagging says whether one of the room's agent connections is behind,
// and has been for less than slowAfter: its writer, not the connection,
// falls behind what the node takes in (shed.go). It keeps when each fell
// behind. Caller holds h.mu (read).
func (r *room) lagging(slowAfter time.Duration) bool {
	var now int64
	lag := false
	for c := range r.agents {
		if !c.behind() {
			if r.nBehind.Load() > 0 {
				r.caughtUp(c)
			}
			continue
		}
		if now == 0 {
			now = time.Now().UnixNano()
		}
		if now-r.fellBehind(c, now) < int64(slowAfter) {
			lag = true
		}
	}
	return lag
}

// fellBehind returns when c fell behind, now if it just did.
func (r *room) fellBehind(c *conn, now int64) int64 {
	r.behindMu.Lock()
	defer r.behindMu.Unlock()
	if since, ok := r.behind[c]; ok {
		return since
	}
	if r.behind == nil {
		r.behind = map[*conn]int64{}
	}
	r.behind[c] = now
	r.nBehind.Add(1)
	return now
}

func (r *room) caughtUp(c *conn) {
	r.behindMu.Lock()
	defer r.behindMu.Unlock()
	if _, ok := r.behind[c]; ok {
		delete(r.behind, c)
		r.nBehind.Add(-1)
	}
}

func (h *hub) toConv(ws, conv string, it *outItem) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if r := h.rooms[ws]; r != nil {
		r.toConv(conv, it)
	}
}

// toRole sends to every connection of one role in a workspace.
func (h *hub) toRole(ws string, role ident.Role, it *outItem) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	r := h.rooms[ws]
	if r == nil {
		return
	}
	set := r.visitors
	if role == ident.Agent {
		set = r.agents
	}
	for c := range set {
		c.send(it)
	}
}

// conns returns every connection, for the sweeper and shutdown.
func (h *hub) conns() []*conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out []*conn
	for _, r := range h.rooms {
		for c := range r.agents {
			out = append(out, c)
		}
		for c := range r.visitors {
			out = append(out, c)
		}
	}
	return out
}
