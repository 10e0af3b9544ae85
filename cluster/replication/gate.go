package replication

import (
	"fmt"
	"sync"
)

// Event is one origin-stamped change of a conversation: the node that
// accepted it (Origin) and its place among that node's changes of the
// conversation (OSeq, from 1, no gaps). Payload is the store's encoding;
// this package never reads it.
type Event struct {
	Workspace    string `json:"ws"`
	Conversation string `json:"conv"`
	Origin       string `json:"origin"`
	OSeq         uint64 `json:"oseq"`
	Payload      []byte `json:"p"`
}

// key names one origin's events of one conversation.
type key struct{ ws, conv, origin string }

// Gate admits each origin's events of a conversation exactly once and in
// oseq order, whatever order and however many times they arrive: an event
// whose predecessors are missing waits (up to MaxWaiting per origin and
// conversation; beyond that it is dropped, and anti-entropy brings it
// again); a duplicate is dropped.
type Gate struct {
	// Have returns how far a conversation's origin is in the store: the
	// gate's starting point for a key it has not seen.
	have       func(ws, conv, origin string) (uint64, error)
	maxWaiting int

	mu   sync.Mutex
	keys map[key]*gateKey
}

type gateKey struct {
	mu      sync.Mutex // held while applying, so batches apply in order
	loaded  bool
	next    uint64
	waiting map[uint64]Event
}

// NewGate returns a gate reading the stored positions with have.
func NewGate(have func(ws, conv, origin string) (uint64, error), maxWaiting int) *Gate {
	if maxWaiting <= 0 {
		maxWaiting = 1024
	}
	return &Gate{have: have, maxWaiting: maxWaiting, keys: map[key]*gateKey{}}
}

// Gap says that an event is held back: its origin's events from Next on
// have not arrived. The sender should send them (its ack carries the gap).
type Gap struct {
	Workspace    string `json:"ws"`
	Conversation string `json:"conv"`
	Origin       string `json:"origin"`
	Next         uint64 `json:"next"`
}

func (g Gap) Error() string {
	return fmt.Sprintf("events of %s in %s/%s missing from %d", g.Origin, g.Workspace, g.Conversation, g.Next)
}

// Admit offers an event. If it is the next of its origin, apply is called,
// with the key's lock held, on it and on every waiting event it unblocks,
// in order; the positions advance only if apply succeeds. It returns how
// many events were applied; an event held back for missing predecessors
// gives a *Gap error.
func (g *Gate) Admit(ev Event, apply func([]Event) error) (int, error) {
	k := key{ev.Workspace, ev.Conversation, ev.Origin}
	g.mu.Lock()
	gk := g.keys[k]
	if gk == nil {
		gk = &gateKey{waiting: map[uint64]Event{}}
		g.keys[k] = gk
	}
	g.mu.Unlock()

	gk.mu.Lock()
	defer gk.mu.Unlock()
	if !gk.loaded {
		have, err := g.have(ev.Workspace, ev.Conversation, ev.Origin)
		if err != nil {
			return 0, fmt.Errorf("position of %s in %s/%s: %w", ev.Origin, ev.Workspace, ev.Conversation, err)
		}
		gk.next, gk.loaded = have+1, true
	}
	switch {
	case ev.OSeq < gk.next:
		return 0, nil // had it
	case ev.OSeq > gk.next:
		if len(gk.waiting) < g.maxWaiting {
			gk.waiting[ev.OSeq] = ev
		}
		return 0, &Gap{Workspace: ev.Workspace, Conversation: ev.Conversation, Origin: ev.Origin, Next: gk.next}
	}
	batch := []Event{ev}
	for n := ev.OSeq + 1; ; n++ {
		w, ok := gk.waiting[n]
		if !ok {
			break
		}
		batch = append(batch, w)
	}
	if err := apply(batch); err != nil {
		gk.waiting[ev.OSeq] = ev // try again when it comes back
		return 0, err
	}
	for _, e := range batch {
		delete(gk.waiting, e.OSeq)
	}
	gk.next = batch[len(batch)-1].OSeq + 1
	// Waiting events at or below the new position were duplicates.
	for n := range gk.waiting {
		if n < gk.next {
			delete(gk.waiting, n)
		}
	}
	return len(batch), nil
}

// Waiting counts events held back for missing predecessors, for metrics.
func (g *Gate) Waiting() int {
	g.mu.Lock()
	keys := make([]*gateKey, 0, len(g.keys))
	for _, gk := range g.keys {
		keys = append(keys, gk)
	}
	g.mu.Unlock()
	n := 0
	for _, gk := range keys {
		gk.mu.Lock()
		n += len(gk.waiting)
		gk.mu.Unlock()
	}
	return n
}

// Forget drops what the gate knows of a conversation (erased, or moved
// away by placement); the next event reloads its position from the store.
func (g *Gate) Forget(ws, conv string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k := range g.keys {
		if k.ws == ws && k.conv == conv {
			delete(g.keys, k)
		}
	}
}
