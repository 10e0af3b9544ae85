package replication

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"pgregory.net/rapid"
)

// TestGateAppliesEachEventOnceInOrder delivers every origin's events in any
// order, duplicated, from several goroutines, with failing applies: the
// applied sequence of each origin is exactly 1..n.
func TestGateAppliesEachEventOnceInOrder(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		origins := rapid.IntRange(1, 3).Draw(t, "origins")
		n := rapid.IntRange(1, 30).Draw(t, "events")
		var evs []Event
		for o := range origins {
			for i := 1; i <= n; i++ {
				evs = append(evs, Event{Workspace: "w", Conversation: "c", Origin: fmt.Sprintf("n%d", o), OSeq: uint64(i)})
			}
		}
		// Every event at least once, some twice, in a random order.
		deliveries := append(evs, rapid.SliceOf(rapid.SampledFrom(evs)).Draw(t, "dups")...)
		perm := rapid.Permutation(deliveries).Draw(t, "order")
		failEvery := rapid.IntRange(0, 5).Draw(t, "failEvery")

		var mu sync.Mutex
		applied := map[string][]uint64{}
		calls := 0
		g := NewGate(func(ws, conv, origin string) (uint64, error) { return 0, nil }, 0)
		apply := func(batch []Event) error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if failEvery > 0 && calls%failEvery == 0 {
				return errors.New("disk full")
			}
			for _, e := range batch {
				applied[e.Origin] = append(applied[e.Origin], e.OSeq)
			}
			return nil
		}
		var wg sync.WaitGroup
		half := len(perm) / 2
		for _, part := range [][]Event{perm[:half], perm[half:]} {
			wg.Go(func() {
				for _, e := range part {
					g.Admit(e, apply)
				}
			})
		}
		wg.Wait()
		// A failed apply keeps its events for a later delivery; deliver
		// everything once more without failures, as anti-entropy would.
		failEvery = 0
		for _, e := range evs {
			g.Admit(e, apply)
		}
		for o := range origins {
			got := applied[fmt.Sprintf("n%d", o)]
			if len(got) != n {
				t.Fatalf("origin n%d: applied %v, want 1..%d", o, got, n)
			}
			for i, s := range got {
				if s != uint64(i+1) {
					t.Fatalf("origin n%d: applied %v, want 1..%d", o, got, n)
				}
			}
		}
		if g.Waiting() != 0 {
			t.Fatalf("%d events still waiting", g.Waiting())
		}
	})
}

func TestGateStartsFromTheStore(t *testing.T) {
	t.Parallel()
	g := NewGate(func(ws, conv, origin string) (uint64, error) { return 5, nil }, 2)
	var got []uint64
	apply := func(b []Event) error {
		for _, e := range b {
			got = append(got, e.OSeq)
		}
		return nil
	}
	for _, s := range []uint64{3, 5, 8, 9, 10, 6, 7} { // 10 is over the bound of 2 waiting
		g.Admit(Event{Workspace: "w", Conversation: "c", Origin: "n1", OSeq: s}, apply)
	}
	if fmt.Sprint(got) != "[6 7 8 9]" {
		t.Fatalf("applied %v, want [6 7 8 9]", got)
	}
	g.Admit(Event{Workspace: "w", Conversation: "c", Origin: "n1", OSeq: 10}, apply)
	if fmt.Sprint(got) != "[6 7 8 9 10]" {
		t.Fatalf("applied %v after the dropped one came again", got)
	}
}
