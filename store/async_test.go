package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"parley/internal/commitgate"
)

// A message sent again while its first send is not yet durable is answered
// (a duplicate, with the first's seq) only once that send is: the answer
// says the message is stored. Before, the duplicate was answered at once,
// an ack for a message a crash could still lose.
func TestDuplicateOfAWriteInFlightWaitsForIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gate := commitgate.New()
	published := make(chan Event, 4)
	s := openTest(t, Config{Observer: gate, OnCommit: func(evs []Event) {
		for _, e := range evs {
			if e.Kind == EventMessage {
				published <- e
			}
		}
	}})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	gate.Hold(t, func() {
		s.CreateConversation(ctx, Conversation{Workspace: "ws2", ID: "held", Owner: "v:h"})
	})
	ch := Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg("m1", "v:a", "hi", 1)}
	type answer struct {
		res Result
		err error
	}
	first, again := make(chan answer, 1), make(chan answer, 1)
	go func() {
		res, err := s.Apply(ctx, ch)
		first <- answer{res, err}
	}()
	e := <-published // decided, queued behind the held commit
	go func() {
		res, err := s.Apply(ctx, ch)
		again <- answer{res, err}
	}()
	select {
	case a := <-again:
		t.Fatalf("the resend was answered (%+v, %v) before its message was durable", a.res, a.err)
	case a := <-first:
		t.Fatalf("the send was answered (%+v, %v) before its commit", a.res, a.err)
	case <-time.After(200 * time.Millisecond):
	}
	gate.Open()
	a, b := <-first, <-again
	if a.err != nil || b.err != nil || a.res.Seq != e.Seq || b.res.Seq != e.Seq || a.res.Dup || !b.res.Dup {
		t.Fatalf("answers %+v / %v and %+v / %v, want seq %d, the second a duplicate", a.res, a.err, b.res, b.err, e.Seq)
	}
}

// ApplyAsync returns with the change decided and published, its Pending
// completing with the commit; a change refused is refused at once, with
// nothing to wait for.
func TestApplyAsyncDecidesNowAndCompletesOnCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gate := commitgate.New()
	var mu sync.Mutex
	var published []uint64
	s := openTest(t, Config{Observer: gate, OnCommit: func(evs []Event) {
		mu.Lock()
		for _, e := range evs {
			published = append(published, e.Seq)
		}
		mu.Unlock()
	}})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	gate.Hold(t, func() {
		s.CreateConversation(ctx, Conversation{Workspace: "ws2", ID: "held", Owner: "v:h"})
	})
	var waits []Pending
	for i, id := range []string{"m1", "m2", "m3"} {
		res, p, err := s.ApplyAsync(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg(id, "v:a", "x", int64(i+1))})
		if err != nil || p == nil || res.Seq != uint64(i+1) || !res.Changed {
			t.Fatalf("%s: %+v, %v, %v", id, res, p, err)
		}
		waits = append(waits, p)
	}
	mu.Lock()
	if len(published) != 3 {
		t.Fatalf("published %v before any commit, want the three", published)
	}
	mu.Unlock()
	if _, p, err := s.ApplyAsync(ctx, Change{Kind: Edit, Workspace: "ws1", Conversation: "c1", Participant: "v:b", Message: msg("m1", "", "", 0), Body: "y"}); err == nil || p != nil {
		t.Fatalf("another's edit: %v, %v", p, err)
	}
	done := make(chan error, 3)
	for _, p := range waits {
		go func() { done <- p.Wait() }()
	}
	select {
	case err := <-done:
		t.Fatalf("a change completed (%v) before its commit", err)
	case <-time.After(100 * time.Millisecond):
	}
	gate.Open()
	for range waits {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// Durable, and a resend now waits for nothing.
	if res, p, err := s.ApplyAsync(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg("m2", "v:a", "x", 2)}); err != nil || p != nil || !res.Dup || res.Seq != 2 {
		t.Fatalf("resend after the commit: %+v, %v, %v", res, p, err)
	}
}
