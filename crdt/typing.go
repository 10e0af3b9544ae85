package crdt

import (
	"maps"
	"slices"
)

// TypingState is one participant's typing indicator and also its delta.
type TypingState struct {
	Participant string    `json:"p"`
	Typing      bool      `json:"on"`
	TS          Timestamp `json:"ts"`
	Expires     int64     `json:"exp"` // unix ms; Typing true counts only before this
}

// compareTyping is the last-writer-wins order. TS decides; the remaining
// fields only break ties a misbehaving writer could cause, so that replicas
// agree on a winner anyway. On a tie "stopped" wins: it is the safe guess.
func compareTyping(a, b TypingState) int {
	if c := a.TS.Compare(b.TS); c != 0 {
		return c
	}
	if a.Typing != b.Typing {
		if a.Typing {
			return -1
		}
		return 1
	}
	// Participant is the register's key, so it is equal here.
	switch {
	case a.Expires < b.Expires:
		return -1
	case a.Expires > b.Expires:
		return 1
	}
	return 0
}

// Typing records who is typing, one last-writer-wins register per
// participant. Expiry is evaluated on read rather than by deleting entries,
// because deleting would let a late delta resurrect an older state. The zero
// value is empty; not safe for concurrent use.
type Typing struct {
	states map[string]TypingState
}

// NewTyping returns an empty typing set.
func NewTyping() *Typing { return &Typing{states: make(map[string]TypingState)} }

// Apply joins one participant's state into t, keeping the later by TS.
func (t *Typing) Apply(s TypingState) (changed bool) {
	if cur, ok := t.states[s.Participant]; ok && compareTyping(s, cur) <= 0 {
		return false
	}
	if t.states == nil {
		t.states = make(map[string]TypingState)
	}
	t.states[s.Participant] = s
	return true
}

// Merge joins every state of o into t.
func (t *Typing) Merge(o *Typing) {
	if o == nil {
		return
	}
	for _, s := range o.states {
		t.Apply(s)
	}
}

// Get returns participant's current state.
func (t *Typing) Get(participant string) (TypingState, bool) {
	if t == nil {
		return TypingState{}, false
	}
	s, ok := t.states[participant]
	return s, ok
}

// Active returns, sorted, the participants typing and not yet expired at nowMS.
func (t *Typing) Active(nowMS int64) []string {
	if t == nil {
		return nil
	}
	var out []string
	for p, s := range t.states {
		if s.Typing && nowMS < s.Expires {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// Clone returns an independent copy of t.
func (t *Typing) Clone() *Typing {
	c := NewTyping()
	if t != nil {
		maps.Copy(c.states, t.states)
	}
	return c
}

// Equal reports whether t and o hold the same states. A nil Typing equals an
// empty one.
func (t *Typing) Equal(o *Typing) bool {
	if t.len() != o.len() {
		return false
	}
	return t.len() == 0 || maps.Equal(t.states, o.states)
}

func (t *Typing) len() int {
	if t == nil {
		return 0
	}
	return len(t.states)
}
