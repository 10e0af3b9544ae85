package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"parley/crdt"
	"parley/internal/eventually"
)

// TestOneCommitOfInterleavedConversations: changes of two conversations
// queued while the writer is held (a send, its edit, and the other
// conversation's sends between them) commit in one transaction, which puts
// them in key order (sortSequenced, putMsgs); the message's record is then
// its edit's, not its send's, whose event became a reference to it, and
// every event reads back, before and after a restart.
func TestOneCommitOfInterleavedConversations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var hold atomic.Bool
	held := make(chan struct{}, 1)
	gate := make(chan struct{})
	var queued sync.Map // message ID and seq -> published
	var commits []int
	var mu sync.Mutex
	path := t.TempDir() + "/parley.db"
	cfg := Config{Path: path,
		Observer: observerFunc(func(_ time.Duration, ops int, _ error) {
			mu.Lock()
			commits = append(commits, ops)
			mu.Unlock()
			if hold.CompareAndSwap(true, false) {
				held <- struct{}{}
				<-gate
			}
		}),
		OnCommit: func(evs []Event) {
			for _, e := range evs {
				queued.Store(fmt.Sprintf("%s/%d", e.Message.ID, e.Seq), true)
			}
		},
	}
	s := openTest(t, cfg)
	for _, c := range []string{"b", "a"} {
		if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: c, Owner: "v:a"}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	apply := func(ch Change) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Apply(ctx, ch); err != nil {
				errs <- fmt.Errorf("%v %s: %w", ch.Kind, ch.Message.ID, err)
			}
		}()
	}
	send := func(conv, id string, wall int64) Change {
		return Change{Kind: Send, Workspace: "ws1", Conversation: conv, Participant: "v:a", Message: msg(id, "v:a", "first "+id, wall)}
	}
	// Hold the writer after its next commit.
	hold.Store(true)
	apply(send("b", "b0", 1))
	<-held
	waitQueued := func(n int) {
		eventually.Holds(t, 10*time.Second, fmt.Sprintf("%d changes queued", n), func() error {
			k := 0
			queued.Range(func(any, any) bool { k++; return true })
			if k < n {
				return fmt.Errorf("%d queued", k)
			}
			return nil
		})
	}
	mu.Lock()
	before := len(commits)
	mu.Unlock()
	// Queued behind the held writer, in this order: b1, a1, b2, the edit
	// of a1, a2, the edit of b1.
	for i, ch := range []Change{
		send("b", "b1", 2), send("a", "a1", 3), send("b", "b2", 4),
		{Kind: Edit, Workspace: "ws1", Conversation: "a", Participant: "v:a", Message: crdt.Message{ID: "a1"}, Body: "second a1", TS: crdt.Timestamp{Wall: 5, Node: "n1"}},
		send("a", "a2", 6),
		{Kind: Edit, Workspace: "ws1", Conversation: "b", Participant: "v:a", Message: crdt.Message{ID: "b1"}, Body: "second b1", TS: crdt.Timestamp{Wall: 7, Node: "n1"}},
	} {
		apply(ch)
		waitQueued(i + 2)
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	mu.Lock()
	if got := commits[before:]; len(got) != 1 || got[0] != 6 {
		t.Fatalf("commits after the held one: %v, want one of 6 changes", got)
	}
	mu.Unlock()
	want := map[string][]string{
		"a": {"second a1", "second a1", "first a2"},
		"b": {"first b0", "second b1", "first b2", "second b1"},
	}
	check := func(s *Store, when string) {
		t.Helper()
		for conv, bodies := range want {
			evs, _, err := s.Events("ws1", conv, 0, 10)
			if err != nil {
				t.Fatalf("%s: events of %s: %v", when, conv, err)
			}
			var got []string
			for _, e := range evs {
				got = append(got, e.Message.Body)
			}
			if fmt.Sprint(got) != fmt.Sprint(bodies) {
				t.Errorf("%s: bodies of %s: %q, want %q", when, conv, got, bodies)
			}
		}
		// The records in the file are the edits': a further edit starts
		// from them (nothing of a or b is in flight any more).
		for _, id := range []string{"a1", "b1"} {
			conv := id[:1]
			if _, err := s.Apply(ctx, Change{Kind: Edit, Workspace: "ws1", Conversation: conv, Participant: "v:a", Message: crdt.Message{ID: id}, Body: "second " + id, TS: crdt.Timestamp{Wall: 5, Node: "n1"}}); err != nil {
				t.Fatalf("%s: edit %s again: %v", when, id, err)
			}
			res, err := s.Apply(ctx, send(conv, id, 1))
			if err != nil || !res.Dup || res.Message.Body != "second "+id {
				t.Fatalf("%s: send of %s again: %+v, %v; want a duplicate with the edited body", when, id, res, err)
			}
		}
	}
	check(s, "before the restart")
	if err := s.Close(); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	cfg.Observer, cfg.OnCommit = nil, nil
	check(openTest(t, cfg), "after the restart")
}
