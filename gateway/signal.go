package gateway

import (
	"strings"
	"time"

	"parley/crdt"
	"parley/gateway/wire"
	"parley/ident"
)

// Signal is an ephemeral change of a participant connected to some node:
// a presence lease, an agent's view, a typing state or a read receipt. A
// node's gateway emits its own (Config.OnSignal); the node carries them to
// the other nodes serving the workspace, whose gateways apply them
// (ApplySignal) like their own. Leases, views and typing are CRDTs (last
// writer wins per lease, per participant's typing), so order and
// repetition do not matter.
//
// Every signal is of one participant (Participant, Role); the fields after
// those are each of the kinds named beside them, and absent (zero) in the
// others. The node's own signals between nodes are not Signals: they carry
// no participant (cluster/replication/signal.go lists every kind). The JSON names are
// the wire's, shared with nodes of earlier versions.
type Signal struct {
	Kind         SignalKind     `json:"k"`
	Workspace    string         `json:"ws"`
	Conversation string         `json:"conv,omitempty"` // typing, view, read
	Participant  string         `json:"p"`
	Role         ident.Role     `json:"r"`
	Name         string         `json:"n,omitempty"` // lease, view, typing
	LeaseID      string         `json:"l,omitempty"` // lease, view: "<node>/<n>"
	Typing       bool           `json:"t,omitempty"` // typing
	Away         bool           `json:"a,omitempty"` // lease: the agent is away
	TS           crdt.Timestamp `json:"ts"`          // lease, view, typing
	Expires      int64          `json:"e"`           // lease, view, typing: unix ms; a lease of 0 has ended
	// Seq is a read receipt's position in this node's log; the node turns
	// it into Vector (what the reader had seen) for the others, which turn
	// it back into positions of their own logs.
	Seq    uint64 `json:"seq,omitempty"` // read, as the gateway emits it
	Vector string `json:"v,omitempty"`   // read, between nodes
}

// SignalKind says what a signal between nodes is about; on the wire, the
// string itself ("k").
type SignalKind string

// The kinds of Signal.
const (
	SignalLease  SignalKind = "lease"
	SignalTyping SignalKind = "typing"
	// SignalRead is a read receipt; the node applies it to its store, not
	// the gateway (see Signal.Vector).
	SignalRead SignalKind = "read"
	// SignalView is in view.go.
)

// OfParticipant says whether k is a kind of Signal: a signal of one
// participant, which the gateway emits.
func (k SignalKind) OfParticipant() bool {
	switch k {
	case SignalLease, SignalTyping, SignalView, SignalRead:
		return true
	}
	return false
}

func (s *Server) emit(sig Signal) {
	if s.cfg.OnSignal != nil {
		s.cfg.OnSignal(sig)
	}
}

func leaseSignal(c *conn, l crdt.Lease) Signal {
	return Signal{Kind: SignalLease, Workspace: c.id.Workspace, Participant: c.id.Participant, Role: c.id.Role, Name: c.id.Name,
		LeaseID: l.ID, TS: l.TS, Expires: l.Expires, Away: l.Away}
}

// ApplySignal applies another node's signal: its participants come online
// or leave, start or stop typing, for this node's clients as for its own.
// A malformed signal is dropped.
func (s *Server) ApplySignal(sig Signal) {
	if sig.Workspace == "" || sig.Participant == "" || !sig.Role.Valid() {
		return
	}
	now := time.Now().UnixMilli()
	switch sig.Kind {
	case SignalLease:
		if !strings.Contains(sig.LeaseID, "/") || strings.HasPrefix(sig.LeaseID, s.cfg.Node+"/") {
			return // not another node's lease
		}
		l := crdt.Lease{ID: sig.LeaseID, Participant: sig.Participant, TS: sig.TS, Expires: sig.Expires, Away: sig.Away}
		if ch := s.presence.applyLease(sig.Workspace, l, peer{role: sig.Role, name: sig.Name}, now); ch.changed {
			s.announceParticipant(sig.Workspace, sig.Participant, sig.Role, sig.Name, ch)
		}
	case SignalView:
		s.applyViewSignal(sig)
	case SignalTyping:
		if sig.Conversation == "" {
			return
		}
		st := crdt.TypingState{Participant: sig.Participant, Typing: sig.Typing, TS: sig.TS, Expires: sig.Expires}
		if s.presence.applyTyping(sig.Workspace, sig.Conversation, st) {
			ttl := max(sig.Expires-now, 0)
			s.hub.toConv(sig.Workspace, sig.Conversation, &outItem{kind: outLive, conv: sig.Conversation,
				data: encode(wire.Typing{Type: wire.TypeTyping, Conversation: sig.Conversation, Participant: sig.Participant, Role: sig.Role, Name: sig.Name, Typing: sig.Typing, ExpiresMS: ttl})})
		}
	}
}

// DropNode ends every lease another node gave, when it is declared dead:
// its participants leave at once rather than when their leases run out.
func (s *Server) DropNode(node string) {
	s.endLeases(func(l crdt.Lease) bool { return strings.HasPrefix(l.ID, node+"/") })
	s.endViews(func(l viewLease) bool { return strings.HasPrefix(l.ID, node+"/") })
}

// Resync renews this node's presence leases and agents' views and passes
// them to send, for a node that has just joined or come back: one that was
// cut off from this node ended them when it declared this node dead, and
// would otherwise learn of them only at each client's next heartbeat.
// Renewed, not repeated: the other node's end of a lease carries a later
// timestamp than the lease it ended, and only a later renewal beats it.
func (s *Server) Resync(send func(Signal)) int {
	now := time.Now().UnixMilli()
	n := 0
	for _, c := range s.hub.conns() {
		ws := c.id.Workspace
		cur, ok := s.presence.get(ws, c.leaseID)
		if !ok || cur.Ended() || !cur.Live(now) {
			continue
		}
		l := crdt.Lease{ID: cur.ID, Participant: cur.Participant, TS: s.cfg.Clock.Now(), Expires: cur.Expires, Away: cur.Away}
		s.presence.applyLease(ws, l, peer{role: c.id.Role, name: c.id.Name}, now)
		send(leaseSignal(c, l))
		n++
		if v, ok := s.views.get(ws, c.leaseID); ok && v.live(now) {
			v.TS = s.cfg.Clock.Now()
			s.applyView(ws, v)
			send(Signal{Kind: SignalView, Workspace: ws, Conversation: v.Conversation, Participant: v.Participant, Role: c.id.Role,
				Name: v.Name, LeaseID: v.ID, TS: v.TS, Expires: v.Expires})
		}
	}
	return n
}

// endExpiredRemote ends the leases of other nodes that ran out: their end
// signal was lost, or their node stopped without one.
func (s *Server) endExpiredRemote(nowMS int64) {
	local := s.cfg.Node + "/"
	s.endLeases(func(l crdt.Lease) bool { return !strings.HasPrefix(l.ID, local) && !l.Live(nowMS) })
	s.endViews(func(l viewLease) bool { return !l.live(nowMS) })
}

func (s *Server) endLeases(match func(crdt.Lease) bool) {
	now := time.Now().UnixMilli()
	for ws, leases := range s.presence.remoteLeases(match) {
		for _, l := range leases {
			who := s.presence.peerOf(ws, l.Participant)
			end := crdt.Lease{ID: l.ID, Participant: l.Participant, TS: s.cfg.Clock.Now(), Expires: 0}
			if ch := s.presence.applyLease(ws, end, who, now); ch.changed {
				s.announceParticipant(ws, l.Participant, who.role, who.name, ch)
			}
		}
	}
}

// announceParticipant tells the workspace that a participant came online,
// left, or went away or back: visitors are seen by agents, agents by
// everyone.
func (s *Server) announceParticipant(ws, participant string, role ident.Role, name string, ch presenceChange) {
	it := &outItem{kind: outFrame, data: encode(wire.Presence{Type: wire.TypePresence, Participant: participant, Role: role, Name: name, Online: ch.online, Away: ch.away})}
	s.hub.toRole(ws, ident.Agent, it)
	if role == ident.Agent {
		s.hub.toRole(ws, ident.Visitor, it)
	}
}
