package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"parley/internal/eventually"
)

// TestSequencingIsPerConversation: while a subscriber is busy with an event
// of one conversation (OnCommit has not returned), changes of another
// conversation are still decided, published and made durable, and a second
// change of the busy conversation waits behind it: order is kept per
// conversation, not store-wide.
func TestSequencingIsPerConversation(t *testing.T) {
	entered := make(chan struct{})
	unblock := make(chan struct{})
	var mu sync.Mutex
	var published []string
	var once sync.Once
	s := openTest(t, Config{OnCommit: func(evs []Event) {
		for _, e := range evs {
			if e.Kind != EventMessage {
				continue
			}
			if e.Conversation == "busy" && e.Message.ID == "m1" {
				once.Do(func() { close(entered) })
				<-unblock
			}
			mu.Lock()
			published = append(published, e.Conversation+"/"+e.Message.ID)
			mu.Unlock()
		}
	}})
	var released sync.Once
	release := func() { released.Do(func() { close(unblock) }) }
	t.Cleanup(release) // before Close, on failure too
	ctx := context.Background()
	for _, c := range []string{"busy", "free"} {
		if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: c, Owner: "v:a"}); err != nil {
			t.Fatal(err)
		}
	}
	send := func(conv, id string) <-chan error {
		done := make(chan error, 1)
		go func() {
			_, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: conv, Participant: "v:a", Message: msg(id, "v:a", "hello", 1)})
			done <- err
		}()
		return done
	}
	busy1 := send("busy", "m1")
	<-entered
	busy2 := send("busy", "m2")
	free := send("free", "m1")
	var freeErr error
	freeDone := false
	eventually.Holds(t, 10*time.Second, "a change of another conversation made durable while a subscriber holds one", func() error {
		if !freeDone {
			select {
			case freeErr = <-free:
				freeDone = true
			default:
				return errors.New("the send to the free conversation is not answered")
			}
		}
		return nil
	})
	release()
	if freeErr != nil {
		t.Fatal(freeErr)
	}
	for _, c := range []<-chan error{busy1, busy2} {
		if err := <-c; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"free/m1", "busy/m1", "busy/m2"}
	if len(published) != len(want) {
		t.Fatalf("published %v, want %v", published, want)
	}
	for i := range want {
		if published[i] != want[i] {
			t.Fatalf("published %v, want %v", published, want)
		}
	}
	evs, _, err := s.Events("ws1", "busy", 0, 10)
	if err != nil || len(evs) != 2 || evs[0].Message.ID != "m1" || evs[1].Message.ID != "m2" || evs[0].Seq >= evs[1].Seq {
		t.Fatalf("busy log %+v, %v: want m1 then m2", evs, err)
	}
}

// TestCloseAnswersAChangeUnderWay: a change decided before Close and
// queued after it (its subscriber was slow) is still committed and
// answered: the writer does not stop while a change holds a place in its
// queue.
func TestCloseAnswersAChangeUnderWay(t *testing.T) {
	inside := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	s := openTest(t, Config{OnCommit: func(evs []Event) {
		for _, e := range evs {
			if e.Kind == EventMessage && e.Conversation == "slow" {
				once.Do(func() { close(inside) })
				<-release
			}
		}
	}})
	var released sync.Once
	t.Cleanup(func() { released.Do(func() { close(release) }) })
	ctx := context.Background()
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "slow", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	applied := make(chan error, 1)
	go func() {
		_, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "slow", Participant: "v:a", Message: msg("m1", "v:a", "hi", 1)})
		applied <- err
	}()
	<-inside
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	eventually.Holds(t, 10*time.Second, "the store refuses changes", func() error {
		if err := s.Err(); !errors.Is(err, ErrClosed) {
			return fmt.Errorf("Err() = %v", err)
		}
		return nil
	})
	released.Do(func() { close(release) })
	var applyErr error
	eventually.Holds(t, 10*time.Second, "the change under way answered", func() error {
		select {
		case applyErr = <-applied:
			return nil
		default:
			return errors.New("Apply has not returned")
		}
	})
	if applyErr != nil {
		t.Fatalf("the change decided before Close: %v", applyErr)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}
