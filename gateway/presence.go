package gateway

import (
	"sort"
	"sync"

	"parley/crdt"
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
	agents map[string]map[string]bool // workspace -> agents announced online
	typing map[string]*crdt.Typing    // workspace\x00conversation -> typing
}

type peer struct{ role, name string }

func newPresence(clock *crdt.Clock) *presence {
	return &presence{clock: clock, leases: map[string]*crdt.Presence{}, peers: map[string]map[string]peer{}, shown: map[string]map[string]bool{}, agents: map[string]map[string]bool{}, typing: map[string]*crdt.Typing{}}
}

// lease sets c's lease to expire at expMS (0 ends it) and reports whether
// c's participant must now be announced as having come or gone: compared
// with what was last announced, not with the lease state a moment ago, since
// a lease may expire before its connection is closed.
func (p *presence) lease(c *conn, nowMS, expMS int64) (flipped bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ws := c.id.Workspace
	set := p.leases[ws]
	if set == nil {
		set = crdt.NewPresence()
		p.leases[ws] = set
		p.peers[ws] = map[string]peer{}
		p.shown[ws] = map[string]bool{}
		p.agents[ws] = map[string]bool{}
	}
	before := p.shown[ws][c.id.Participant]
	set.Apply(crdt.Lease{ID: c.leaseID, Participant: c.id.Participant, TS: p.clock.Now(), Expires: expMS})
	p.peers[ws][c.id.Participant] = peer{role: c.id.Role, name: c.id.Name}
	after := set.IsOnline(c.id.Participant, nowMS)
	if after {
		p.shown[ws][c.id.Participant] = true
		if c.id.Role == "agent" {
			p.agents[ws][c.id.Participant] = true
		}
	} else {
		delete(p.shown[ws], c.id.Participant)
		delete(p.agents[ws], c.id.Participant)
	}
	if expMS == 0 {
		// Forget an ended lease at once: it can never come back to life on
		// this node, and a long-running node must not grow with them. Only
		// this lease: a scan of all would make every disconnect cost as much
		// as the workspace is large.
		set.Forget(c.leaseID)
		if !after {
			delete(p.peers[ws], c.id.Participant)
		}
		if set.Len() == 0 {
			delete(p.leases, ws)
			delete(p.peers, ws)
			delete(p.shown, ws)
			delete(p.agents, ws)
		}
	}
	return before != after
}

// online returns the presence frames of everyone online in ws with role.
func (p *presence) online(ws, role string, nowMS int64) []presenceFrame {
	p.mu.Lock()
	defer p.mu.Unlock()
	set := p.leases[ws]
	if set == nil {
		return nil
	}
	// A visitor's hello asks for the agents only: walk that small set, not
	// every connection of the workspace.
	candidates := p.shown[ws]
	if role == "agent" {
		candidates = p.agents[ws]
	}
	var out []presenceFrame
	for part := range candidates {
		pr := p.peers[ws][part]
		if pr.role == role && set.IsOnline(part, nowMS) {
			out = append(out, presenceFrame{Type: "presence", Participant: part, Role: pr.role, Name: pr.name, Online: true})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Participant < out[j].Participant })
	return out
}

// setTyping records a typing state and reports whether it changed anything.
func (p *presence) setTyping(ws, conv, participant string, on bool, expMS int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := ws + "\x00" + conv
	t := p.typing[k]
	if t == nil {
		t = crdt.NewTyping()
		p.typing[k] = t
	}
	return t.Apply(crdt.TypingState{Participant: participant, Typing: on, TS: p.clock.Now(), Expires: expMS})
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

func (p *presence) name(ws, participant string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peers[ws][participant].name
}
