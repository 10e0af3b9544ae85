package gateway

import (
	"sort"
	"strings"
	"sync"
	"time"

	"parley/crdt"
	"parley/gateway/wire"
	"parley/ident"
)

// Viewing: which conversation each agent connection has open, so that the
// console can warn an agent that another one is looking at (or typing in)
// the same conversation. Like presence it is a lease per connection,
// renewed with the presence lease, ended when the connection closes and
// carried to the other nodes as a signal (SignalView); a node that dies
// takes its agents' views with it. Only agents see it.

// SignalView is an agent connection's open conversation (Signal.LeaseID,
// Signal.Conversation; Expires 0 or an empty Conversation: none).
const SignalView SignalKind = "view"

// viewLease is one agent connection's view, and also its delta: last
// writer wins per lease ID, by TS.
type viewLease struct {
	ID           string
	Participant  string
	Name         string
	Conversation string
	TS           crdt.Timestamp
	Expires      int64 // unix ms; 0: ended
}

func (l viewLease) live(nowMS int64) bool {
	return l.Conversation != "" && l.Expires != 0 && nowMS < l.Expires
}

// views holds every view this node knows of, its own and other nodes'.
type views struct {
	mu     sync.Mutex
	leases map[string]map[string]viewLease // workspace -> lease ID -> lease
	// shown is what agents were last told: workspace -> conversation ->
	// participant -> name, compared with so that each change is announced
	// once.
	shown map[string]map[string]map[string]string
}

func newViews() *views {
	return &views{leases: map[string]map[string]viewLease{}, shown: map[string]map[string]map[string]string{}}
}

// apply joins a lease and returns the announcements it causes: for the
// conversation the lease left and the one it entered, whether its
// participant's viewing flipped compared with what was last shown.
func (v *views) apply(ws string, l viewLease, nowMS int64) []wire.Viewing {
	v.mu.Lock()
	defer v.mu.Unlock()
	set := v.leases[ws]
	cur, had := set[l.ID]
	if had && !newerView(l, cur) {
		return nil
	}
	if set == nil {
		set = map[string]viewLease{}
		v.leases[ws] = set
	}
	if l.Expires == 0 || l.Conversation == "" {
		delete(set, l.ID) // an ended lease never comes back: keep no tombstone
		if len(set) == 0 {
			delete(v.leases, ws)
		}
	} else {
		set[l.ID] = l
	}
	convs := []string{l.Conversation}
	if cur.Conversation != l.Conversation {
		convs = []string{cur.Conversation, l.Conversation} // left, then entered
	}
	var out []wire.Viewing
	for _, conv := range convs {
		if conv == "" {
			continue
		}
		if f, ok := v.reconcile(ws, conv, l.Participant, nowMS); ok {
			out = append(out, f)
		}
	}
	return out
}

// newerView is the last-writer-wins order; on a tie an end wins.
func newerView(a, b viewLease) bool {
	if c := a.TS.Compare(b.TS); c != 0 {
		return c > 0
	}
	return a.Expires == 0 && b.Expires != 0
}

// reconcile compares whether participant views conv now with what agents
// were last told, records the new state and returns the frame to send.
func (v *views) reconcile(ws, conv, participant string, nowMS int64) (wire.Viewing, bool) {
	name, now := "", false
	for _, l := range v.leases[ws] {
		if l.Participant == participant && l.Conversation == conv && l.live(nowMS) {
			name, now = l.Name, true
			break
		}
	}
	byConv := v.shown[ws]
	shownName, before := byConv[conv][participant]
	if before == now {
		return wire.Viewing{}, false
	}
	if now {
		if byConv == nil {
			byConv = map[string]map[string]string{}
			v.shown[ws] = byConv
		}
		if byConv[conv] == nil {
			byConv[conv] = map[string]string{}
		}
		byConv[conv][participant] = name
	} else {
		name = shownName
		delete(byConv[conv], participant)
		if len(byConv[conv]) == 0 {
			delete(byConv, conv)
		}
		if len(byConv) == 0 {
			delete(v.shown, ws)
		}
	}
	return wire.Viewing{Type: wire.TypeViewing, Conversation: conv, Participant: participant, Role: ident.Agent, Name: name, Viewing: now}, true
}

// get returns a lease by ID.
func (v *views) get(ws, id string) (viewLease, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	l, ok := v.leases[ws][id]
	return l, ok
}

// current returns the frames that describe who views what in ws now, for
// an agent that just connected.
func (v *views) current(ws string) []wire.Viewing {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []wire.Viewing
	for conv, ps := range v.shown[ws] {
		for p, name := range ps {
			out = append(out, wire.Viewing{Type: wire.TypeViewing, Conversation: conv, Participant: p, Role: ident.Agent, Name: name, Viewing: true})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Conversation != out[j].Conversation {
			return out[i].Conversation < out[j].Conversation
		}
		return out[i].Participant < out[j].Participant
	})
	return out
}

// matching lists the leases that match, by workspace.
func (v *views) matching(match func(viewLease) bool) map[string][]viewLease {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := map[string][]viewLease{}
	for ws, set := range v.leases {
		for _, l := range set {
			if match(l) {
				out[ws] = append(out[ws], l)
			}
		}
	}
	return out
}

// validateView checks a view frame: a conversation, and whether it is
// opened or left.
func (f *inFrame) validateView() *wireError {
	if err := checkConv(f.Conversation); err != nil {
		return err
	}
	if f.Viewing == nil {
		return errf(wire.CodeBadRequest, "viewing: required, true or false")
	}
	return nil
}

// view handles an agent's view frame: it opens a conversation (leaving the
// one this connection had open) or leaves one.
func (c *conn) view(f inFrame, now time.Time) *wireError {
	if c.id.Role != ident.Agent {
		return errf(wire.CodeForbidden, "view: only agents say which conversation they view")
	}
	if werr := c.authorize(f.Conversation); werr != nil {
		return werr
	}
	if *f.Viewing {
		c.setView(f.Conversation, now.UnixMilli()+3*c.srv.cfg.Heartbeat.Milliseconds())
	} else if cur, ok := c.srv.views.get(c.id.Workspace, c.leaseID); ok && cur.Conversation == f.Conversation {
		c.setView("", 0)
	} // else: not the one open, nothing to leave
	if f.Ref != "" {
		c.reply(wire.Ref{Type: wire.TypeAck, Ref: f.Ref, Conversation: f.Conversation})
	}
	return nil
}

// setView sets this connection's view lease (conv "" ends it), announces
// what it changed to the workspace's agents and signals it to the other
// nodes.
func (c *conn) setView(conv string, expMS int64) {
	if conv == "" {
		expMS = 0
	}
	l := viewLease{ID: c.leaseID, Participant: c.id.Participant, Name: c.id.Name, Conversation: conv, TS: c.srv.cfg.Clock.Now(), Expires: expMS}
	c.srv.applyView(c.id.Workspace, l)
	c.srv.emit(Signal{Kind: SignalView, Workspace: c.id.Workspace, Conversation: conv, Participant: c.id.Participant, Role: c.id.Role,
		Name: c.id.Name, LeaseID: l.ID, TS: l.TS, Expires: l.Expires})
}

// renewView extends the connection's view lease with its presence lease.
func (c *conn) renewView(expMS int64) {
	if c.id.Role != ident.Agent {
		return
	}
	if cur, ok := c.srv.views.get(c.id.Workspace, c.leaseID); ok && cur.Conversation != "" {
		c.setView(cur.Conversation, expMS)
	}
}

// endView ends the connection's view lease when it closes.
func (c *conn) endView() {
	if c.id.Role != ident.Agent {
		return
	}
	if _, ok := c.srv.views.get(c.id.Workspace, c.leaseID); ok {
		c.setView("", 0)
	}
}

// sendViews tells a newly welcomed agent who views which conversation.
func (c *conn) sendViews() {
	if c.id.Role != ident.Agent {
		return
	}
	for _, f := range c.srv.views.current(c.id.Workspace) {
		c.reply(f)
	}
}

// applyView joins a lease of this node or another and tells the
// workspace's agents (never its visitors) what changed.
func (s *Server) applyView(ws string, l viewLease) {
	for _, f := range s.views.apply(ws, l, time.Now().UnixMilli()) {
		s.hub.toRole(ws, ident.Agent, &outItem{kind: outFrame, data: encode(f)})
	}
}

// applyViewSignal applies another node's view signal.
func (s *Server) applyViewSignal(sig Signal) {
	if sig.Role != ident.Agent || !strings.Contains(sig.LeaseID, "/") || strings.HasPrefix(sig.LeaseID, s.cfg.Node+"/") {
		return
	}
	if sig.Conversation != "" && checkConv(sig.Conversation) != nil {
		return
	}
	s.applyView(sig.Workspace, viewLease{ID: sig.LeaseID, Participant: sig.Participant, Name: sig.Name,
		Conversation: sig.Conversation, TS: sig.TS, Expires: sig.Expires})
}

// endViews ends the views of other nodes that match: a dead node's, or
// those that ran out without an end.
func (s *Server) endViews(match func(viewLease) bool) {
	local := s.cfg.Node + "/"
	for ws, ls := range s.views.matching(func(l viewLease) bool { return !strings.HasPrefix(l.ID, local) && match(l) }) {
		for _, l := range ls {
			// An end at the lease's own TS still wins (ends win ties), should
			// this node's clock be behind the other's.
			ts := s.cfg.Clock.Now()
			if ts.Compare(l.TS) < 0 {
				ts = l.TS
			}
			s.applyView(ws, viewLease{ID: l.ID, Participant: l.Participant, Name: l.Name, TS: ts})
		}
	}
}
