package gateway

import (
	"sort"
	"sync"
	"time"

	"parley/crdt"
	"parley/gateway/wire"
	"parley/ident"
)

// presence holds this node's view of who is online and who is typing, as
// CRDTs, so that replicas on other nodes can later be merged in unchanged.
// A connection holds one lease; a participant is online while any lease of
// theirs is live.
type presence struct {
	mu     sync.Mutex
	clock  *crdt.Clock
	leases map[string]*crdt.Presence // workspace -> leases
	peers  map[string]map[string]peer
	shown  map[string]map[string]bool // workspace -> participants announced online
	away   map[string]map[string]bool // workspace -> participants announced away (and online)
	agents map[string]map[string]bool // workspace -> agents announced online
	typing map[string]*crdt.Typing    // workspace\x00conversation -> typing
	// servingIdx caches, per workspace, where its participants are
	// connected (serving.go).
	servingIdx map[string]*servingIndex
}

type peer struct {
	role ident.Role
	name string
}

func newPresence(clock *crdt.Clock) *presence {
	return &presence{clock: clock, leases: map[string]*crdt.Presence{}, peers: map[string]map[string]peer{}, shown: map[string]map[string]bool{}, away: map[string]map[string]bool{}, agents: map[string]map[string]bool{}, typing: map[string]*crdt.Typing{}, servingIdx: map[string]*servingIndex{}}
}

// presenceChange is what a lease did to its participant as last announced:
// whether to announce again (changed) and what (online, away).
type presenceChange struct{ changed, online, away bool }

// lease sets c's lease to expire at expMS (0 ends it), away as c says, and
// reports what to announce of c's participant, with the lease as applied
// (for the other nodes).
func (p *presence) lease(c *conn, nowMS, expMS int64) (presenceChange, crdt.Lease) {
	l := crdt.Lease{ID: c.leaseID, Participant: c.id.Participant, TS: p.clock.Now(), Expires: expMS, Away: c.away.Load()}
	return p.applyLease(c.id.Workspace, l, peer{role: c.id.Role, name: c.id.Name}, nowMS), l
}

// applyLease applies a lease of this node or of another and reports whether
// its participant must now be announced as having come, gone, gone away or
// come back: compared with what was last announced, not with the lease
// state a moment ago, since a lease may expire before its connection is
// closed.
func (p *presence) applyLease(ws string, l crdt.Lease, who peer, nowMS int64) presenceChange {
	p.mu.Lock()
	defer p.mu.Unlock()
	set := p.leases[ws]
	if set == nil {
		set = crdt.NewPresence()
		p.leases[ws] = set
		p.peers[ws] = map[string]peer{}
		p.shown[ws] = map[string]bool{}
		p.away[ws] = map[string]bool{}
		p.agents[ws] = map[string]bool{}
	}
	before, beforeAway := p.shown[ws][l.Participant], p.away[ws][l.Participant]
	set.Apply(l)
	p.peers[ws][l.Participant] = who
	after := set.IsOnline(l.Participant, nowMS)
	afterAway := after && !set.IsAvailable(l.Participant, nowMS)
	if afterAway {
		p.away[ws][l.Participant] = true
	} else {
		delete(p.away[ws], l.Participant)
	}
	if after {
		p.shown[ws][l.Participant] = true
		if who.role == ident.Agent {
			p.agents[ws][l.Participant] = true
		}
	} else {
		delete(p.shown[ws], l.Participant)
		delete(p.agents[ws], l.Participant)
	}
	if l.Ended() {
		// Forget an ended lease at once: it can never come back to life,
		// and a long-running node must not grow with them. Only this
		// lease: a scan of all would make every disconnect cost as much as
		// the workspace is large.
		set.Forget(l.ID)
		if !after {
			delete(p.peers[ws], l.Participant)
		}
		if set.Len() == 0 {
			delete(p.leases, ws)
			delete(p.peers, ws)
			delete(p.shown, ws)
			delete(p.away, ws)
			delete(p.agents, ws)
		}
	}
	return presenceChange{changed: before != after || beforeAway != afterAway, online: after, away: afterAway}
}

// get returns the lease with that ID in ws.
func (p *presence) get(ws, id string) (crdt.Lease, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leases[ws].Get(id)
}

// remoteLeases lists the leases that match: of one node (to end them when
// it is declared dead), or of other nodes that ran out without an end (its
// signal was lost): ws -> lease ID -> lease.
func (p *presence) remoteLeases(match func(crdt.Lease) bool) map[string]map[string]crdt.Lease {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]map[string]crdt.Lease{}
	for ws, set := range p.leases {
		for _, l := range set.Leases() {
			if match(l) {
				if out[ws] == nil {
					out[ws] = map[string]crdt.Lease{}
				}
				out[ws][l.ID] = l
			}
		}
	}
	return out
}

// online returns the presence frames of everyone online in ws with role.
func (p *presence) online(ws string, role ident.Role, nowMS int64) []wire.Presence {
	p.mu.Lock()
	defer p.mu.Unlock()
	set := p.leases[ws]
	if set == nil {
		return nil
	}
	// A visitor's hello asks for the agents only: walk that small set, not
	// every connection of the workspace.
	candidates := p.shown[ws]
	if role == ident.Agent {
		candidates = p.agents[ws]
	}
	var out []wire.Presence
	for part := range candidates {
		pr := p.peers[ws][part]
		if pr.role == role && set.IsOnline(part, nowMS) {
			out = append(out, wire.Presence{Type: wire.TypePresence, Participant: part, Role: pr.role, Name: pr.name, Online: true, Away: !set.IsAvailable(part, nowMS)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Participant < out[j].Participant })
	return out
}

// setTyping records this node's participant's typing state and reports
// whether it changed anything, with the state as applied.
func (p *presence) setTyping(ws, conv, participant string, on bool, expMS int64) (bool, crdt.TypingState) {
	st := crdt.TypingState{Participant: participant, Typing: on, TS: p.clock.Now(), Expires: expMS}
	return p.applyTyping(ws, conv, st), st
}

// applyTyping records a typing state of this node or another.
func (p *presence) applyTyping(ws, conv string, st crdt.TypingState) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := ws + "\x00" + conv
	t := p.typing[k]
	if t == nil {
		t = crdt.NewTyping()
		p.typing[k] = t
	}
	return t.Apply(st)
}

// typers returns who is typing in a conversation now.
func (p *presence) typers(ws, conv string, nowMS int64) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.typing[ws+"\x00"+conv]
	if t == nil {
		return nil
	}
	active := t.Active(nowMS)
	if len(active) == 0 {
		delete(p.typing, ws+"\x00"+conv)
	}
	return active
}

func (p *presence) peerOf(ws, participant string) peer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peers[ws][participant]
}

func (p *presence) name(ws, participant string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peers[ws][participant].name
}

// Online says whether participant holds a live lease in ws, on this node
// or, as presence is shared, on any node: a visitor with no connection
// anywhere is not (package email mails such a visitor the replies).
func (s *Server) Online(ws, participant string) bool {
	p := s.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	set := p.leases[ws]
	return set != nil && set.IsOnline(participant, time.Now().UnixMilli())
}
