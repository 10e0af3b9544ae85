package crdt

import (
	"maps"
	"slices"
	"strings"
)

// Lease is one connection's claim that its participant is online, and also
// its delta. A lease vanishes at Expires unless renewed.
type Lease struct {
	ID          string    `json:"id"` // one per connection
	Participant string    `json:"p"`
	TS          Timestamp `json:"ts"`  // LWW per lease ID: a renewal or an end carries a later TS
	Expires     int64     `json:"exp"` // unix ms; an ended lease has Expires 0
	// Away: the connection's participant (an agent) said they are away;
	// they are online but not available (IsAvailable).
	Away bool `json:"away,omitempty"`
}

// Ended reports whether l was ended explicitly rather than left to expire.
func (l Lease) Ended() bool { return l.Expires == 0 }

// Live reports whether l counts as online at nowMS.
func (l Lease) Live(nowMS int64) bool { return nowMS < l.Expires }

// deadSince is when l stopped counting. An ended lease died when it was
// ended, not at the epoch, so that Prune keeps its tombstone for the grace
// period like any other.
func (l Lease) deadSince() int64 {
	if l.Ended() {
		return l.TS.Wall
	}
	return l.Expires
}

// compareLease is the last-writer-wins order. TS decides; the rest only
// breaks ties a misbehaving writer could cause. On a tie an end beats a
// renewal, so a closed connection is never kept online by accident.
func compareLease(a, b Lease) int {
	if c := a.TS.Compare(b.TS); c != 0 {
		return c
	}
	if a.Ended() != b.Ended() {
		if a.Ended() {
			return 1
		}
		return -1
	}
	if a.Expires != b.Expires {
		if a.Expires < b.Expires {
			return -1
		}
		return 1
	}
	if a.Away != b.Away {
		if a.Away {
			return 1
		}
		return -1
	}
	return strings.Compare(a.Participant, b.Participant)
}

// Presence is the set of connection leases, one last-writer-wins register per
// lease ID. A participant is online while any of their leases is live, so a
// second tab keeps them online when the first closes. The zero value is
// empty; not safe for concurrent use.
type Presence struct {
	leases map[string]Lease
	// byParticipant indexes lease IDs by participant, so that asking about
	// one participant does not scan every connection of a workspace.
	byParticipant map[string]map[string]struct{}
}

// NewPresence returns an empty presence set.
func NewPresence() *Presence { return &Presence{leases: make(map[string]Lease)} }

// Apply joins one lease into p, keeping the later by TS.
func (p *Presence) Apply(l Lease) (changed bool) {
	if cur, ok := p.leases[l.ID]; ok && compareLease(l, cur) <= 0 {
		return false
	}
	if p.leases == nil {
		p.leases = make(map[string]Lease)
	}
	if cur, ok := p.leases[l.ID]; ok && cur.Participant != l.Participant {
		p.unindex(cur)
	}
	p.leases[l.ID] = l
	p.index(l)
	return true
}

func (p *Presence) index(l Lease) {
	if p.byParticipant == nil {
		p.byParticipant = make(map[string]map[string]struct{})
	}
	ids := p.byParticipant[l.Participant]
	if ids == nil {
		ids = make(map[string]struct{})
		p.byParticipant[l.Participant] = ids
	}
	ids[l.ID] = struct{}{}
}

func (p *Presence) unindex(l Lease) {
	ids := p.byParticipant[l.Participant]
	delete(ids, l.ID)
	if len(ids) == 0 {
		delete(p.byParticipant, l.Participant)
	}
}

// Merge joins every lease of o into p.
func (p *Presence) Merge(o *Presence) {
	if o == nil {
		return
	}
	for _, l := range o.leases {
		p.Apply(l)
	}
}

// Get returns the lease with the given ID.
func (p *Presence) Get(id string) (Lease, bool) {
	if p == nil {
		return Lease{}, false
	}
	l, ok := p.leases[id]
	return l, ok
}

// Online returns, sorted and without duplicates, the participants with at
// least one live lease at nowMS.
func (p *Presence) Online(nowMS int64) []string {
	if p == nil {
		return nil
	}
	var out []string
	for _, l := range p.leases {
		if l.Live(nowMS) {
			out = append(out, l.Participant)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// IsOnline reports whether participant holds a live lease at nowMS.
func (p *Presence) IsOnline(participant string, nowMS int64) bool {
	if p == nil {
		return false
	}
	for id := range p.byParticipant[participant] {
		if p.leases[id].Live(nowMS) {
			return true
		}
	}
	return false
}

// IsAvailable reports whether participant holds a live lease at nowMS
// that is not away: online and not away on every connection.
func (p *Presence) IsAvailable(participant string, nowMS int64) bool {
	if p == nil {
		return false
	}
	for id := range p.byParticipant[participant] {
		if l := p.leases[id]; l.Live(nowMS) && !l.Away {
			return true
		}
	}
	return false
}

// Forget drops one lease whatever its state, for a node that knows the lease
// is over (its connection closed) and wants no tombstone kept locally. Like
// Prune, it steps outside the lattice.
func (p *Presence) Forget(id string) {
	if p == nil {
		return
	}
	if l, ok := p.leases[id]; ok {
		delete(p.leases, id)
		p.unindex(l)
	}
}

// Len returns how many leases p holds, live or not.
func (p *Presence) Len() int { return p.len() }

// Prune forgets leases dead for more than grace ms at nowMS and returns how
// many it forgot; an ended lease counts as dead from its TS.Wall. Pruning
// steps outside the lattice: a delta delivered after its lease was pruned is
// accepted again. With grace at least the longest lease term that is harmless,
// since any such delta has already expired and will be pruned in turn.
func (p *Presence) Prune(nowMS, grace int64) int {
	if p == nil {
		return 0
	}
	n := 0
	for id, l := range p.leases {
		if nowMS-l.deadSince() > grace {
			delete(p.leases, id)
			p.unindex(l)
			n++
		}
	}
	return n
}

// Clone returns an independent copy of p.
func (p *Presence) Clone() *Presence {
	c := NewPresence()
	if p != nil {
		for _, l := range p.leases {
			c.leases[l.ID] = l
			c.index(l)
		}
	}
	return c
}

// Equal reports whether p and o hold the same leases. A nil Presence equals
// an empty one.
func (p *Presence) Equal(o *Presence) bool {
	if p.len() != o.len() {
		return false
	}
	return p.len() == 0 || maps.Equal(p.leases, o.leases)
}

func (p *Presence) len() int {
	if p == nil {
		return 0
	}
	return len(p.leases)
}

// Leases returns every lease held, ended or not, by ID.
func (p *Presence) Leases() []Lease {
	out := slices.Collect(maps.Values(p.leases))
	slices.SortFunc(out, func(a, b Lease) int { return strings.Compare(a.ID, b.ID) })
	return out
}
