package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"parley/crdt"
)

// TestOriginReadsMatchTheLog checks OriginEvents and EventsSince against
// the log itself (Events) on a conversation where this store's own events
// interleave with two other origins', some of whose events change nothing
// here (so their oseqs have no event), over many entries of the stamps'
// index (stampEvery): for every origin and every starting oseq, and for
// vectors at random, they return exactly the events the log says, in order.
func TestOriginReadsMatchTheLog(t *testing.T) {
	s := openTest(t, Config{Origin: "n1"})
	ctx := context.Background()
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Conversation("ws1", "c1")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	oseq := map[string]uint64{}
	var remote []crdt.Message
	for i := range 300 {
		switch r := rng.IntN(10); {
		case r < 4:
			if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a",
				Message: msg(fmt.Sprintf("l%d", i), "v:a", "local", int64(i+1))}); err != nil {
				t.Fatal(err)
			}
		default:
			origin := "n2"
			if r >= 7 {
				origin = "n3"
			}
			oseq[origin]++
			m := crdt.NewMessage(fmt.Sprintf("%s-%d", origin, i), "a:s", "agent", "", "remote", crdt.Timestamp{Wall: int64(i + 1), Node: origin})
			if len(remote) > 0 && rng.IntN(3) == 0 {
				m = remote[rng.IntN(len(remote))] // held already: changes nothing here
			} else {
				remote = append(remote, m)
			}
			if _, err := s.ApplyRemote(ctx, Remote{Conversation: rec, Stamp: Stamp{Origin: origin, OSeq: oseq[origin]}, Message: m, Start: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	log, more, err := s.Events("ws1", "c1", 0, 10_000)
	if err != nil || more {
		t.Fatal(more, err)
	}
	ids := func(evs []Event) []string {
		out := make([]string, len(evs))
		for i, e := range evs {
			out[i] = fmt.Sprintf("%d:%s.%d:%s", e.Seq, e.Stamp.Origin, e.Stamp.OSeq, e.Message.ID)
		}
		return out
	}
	front, err := s.Frontier("ws1", "c1")
	if err != nil {
		t.Fatal(err)
	}
	for _, origin := range []string{"n1", "n2", "n3"} {
		for from := uint64(1); from <= front[origin]+1; from++ {
			var want []Event
			for _, e := range log {
				if e.Stamp.Origin == origin && e.Stamp.OSeq >= from {
					want = append(want, e)
				}
			}
			for _, limit := range []int{3, 10_000} {
				got, err := s.OriginEvents("ws1", "c1", origin, from, limit)
				if err != nil {
					t.Fatal(err)
				}
				w := want[:min(limit, len(want))]
				if !slices.Equal(ids(got), ids(w)) {
					t.Fatalf("OriginEvents(%s, %d, %d) = %v, want %v", origin, from, limit, ids(got), ids(w))
				}
			}
		}
	}
	for range 200 {
		have := map[string]uint64{}
		for _, origin := range []string{"n1", "n2", "n3"} {
			if rng.IntN(4) > 0 {
				have[origin] = uint64(rng.IntN(int(front[origin]) + 2))
			}
		}
		var want []Event
		for _, e := range log {
			if e.Stamp.OSeq > have[e.Stamp.Origin] {
				want = append(want, e)
			}
		}
		got, more, err := s.EventsSince("ws1", "c1", have, 10_000)
		if err != nil || more {
			t.Fatal(more, err)
		}
		if !slices.Equal(ids(got), ids(want)) {
			t.Fatalf("EventsSince(%v) = %v, want %v", have, ids(got), ids(want))
		}
	}
}
