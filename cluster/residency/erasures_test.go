package residency

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"parley/cluster"
	"parley/store"
)

// fakeLog is a control plane's log of erasures that grows when told.
type fakeLog struct {
	mu    sync.Mutex
	list  []cluster.Erasure
	moved chan struct{}
}

func (l *fakeLog) add(x cluster.Erasure) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = append(l.list, x)
	close(l.moved)
	l.moved = make(chan struct{})
}

func (l *fakeLog) ErasedAfter(index uint64) ([]cluster.Erasure, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []cluster.Erasure
	last := index
	for _, x := range l.list {
		if x.Index > index {
			out = append(out, x)
			last = max(last, x.Index)
		}
	}
	return out, last
}

func (l *fakeLog) WaitApplied(ctx context.Context, index uint64) error {
	for {
		l.mu.Lock()
		n := len(l.list)
		last := uint64(0)
		if n > 0 {
			last = l.list[n-1].Index
		}
		moved := l.moved
		l.mu.Unlock()
		if last >= index {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// runErasures runs e until the test ends, and returns its context.
func runErasures(t *testing.T, e *Erasures) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return ctx
}

type erasedSet map[string]bool

func (s erasedSet) Erased(ws, conv string) (bool, error) { return s[ws+"/"+conv], nil }

func (s erasedSet) Conversations(ws, owner string) ([]store.Conversation, error) { return nil, nil }

// TestErasuresApplyInOrderAndRetry: records are applied in index order,
// each forgotten before it is erased; one not held here counts as applied;
// one whose erasure fails holds back Wait until a retry succeeds; one whose
// tombstone the store already holds is not erased again.
func TestErasuresApplyInOrderAndRetry(t *testing.T) {
	t.Parallel()
	log := &fakeLog{moved: make(chan struct{})}
	var mu sync.Mutex
	var erased, forgotten []string
	fail := map[string]int{"acme/c_2": 1} // fails once
	e := NewErasures(ErasureConfig{
		Log:   log,
		Store: erasedSet{"acme/c_done": true},
		Erase: func(_ context.Context, ws, conv string) error {
			mu.Lock()
			defer mu.Unlock()
			k := ws + "/" + conv
			if fail[k] > 0 {
				fail[k]--
				return errors.New("disk busy")
			}
			if conv == "c_elsewhere" {
				return fmt.Errorf("conversation %s: %w", conv, store.ErrNotFound)
			}
			erased = append(erased, k)
			return nil
		},
		Forget: func(ws, conv string) {
			mu.Lock()
			defer mu.Unlock()
			forgotten = append(forgotten, ws+"/"+conv)
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx := runErasures(t, e)

	log.add(cluster.Erasure{Workspace: "acme", Conversation: "c_1", Index: 3})
	log.add(cluster.Erasure{Workspace: "acme", Conversation: "c_elsewhere", Index: 4})
	log.add(cluster.Erasure{Workspace: "acme", Conversation: "c_done", Index: 5})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := e.Wait(wctx, 5); err != nil {
		t.Fatal(err)
	}
	log.add(cluster.Erasure{Workspace: "acme", Conversation: "c_2", Index: 7})
	// The first try fails: Wait(7) returns only after the retry a second
	// later.
	if err := e.Wait(wctx, 7); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(erased) != "[acme/c_1 acme/c_2]" {
		t.Errorf("erased %v, want acme/c_1 then acme/c_2", erased)
	}
	if fmt.Sprint(forgotten) != "[acme/c_1 acme/c_elsewhere acme/c_2 acme/c_2]" {
		t.Errorf("forgotten %v", forgotten)
	}
	if fail["acme/c_2"] != 0 {
		t.Errorf("the failing erasure was not tried")
	}
}

// TestErasuresWaitEndsWithItsContext: Wait for an index no record reaches
// returns the context's error.
func TestErasuresWaitEndsWithItsContext(t *testing.T) {
	t.Parallel()
	e := NewErasures(ErasureConfig{Log: &fakeLog{moved: make(chan struct{})}, Store: erasedSet{}, Erase: func(context.Context, string, string) error { return nil }})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.Wait(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait: %v, want the deadline", err)
	}
}

// visitorStore holds conversations by owner; an erased one leaves it.
type visitorStore struct {
	mu    sync.Mutex
	convs map[string]string // conversation → owner
}

func (s *visitorStore) Erased(ws, conv string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, held := s.convs[conv]
	return !held, nil
}

func (s *visitorStore) Conversations(ws, owner string) ([]store.Conversation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Conversation
	for id, o := range s.convs {
		if o == owner {
			out = append(out, store.Conversation{Workspace: ws, ID: id, Owner: o})
		}
	}
	return out, nil
}

// TestVisitorErasureErasesTheirConversationsHere: a visitor's erasure
// erases each of the visitor's conversations held here, and no one
// else's, after recording each in the control plane; when recording fails
// nothing of that conversation is erased and Wait is held back until a
// retry records it.
func TestVisitorErasureErasesTheirConversationsHere(t *testing.T) {
	t.Parallel()
	log := &fakeLog{moved: make(chan struct{})}
	st := &visitorStore{convs: map[string]string{"c_a1": "v:a", "c_a2": "v:a", "c_b1": "v:b", "c_u1": "u:42"}}
	var mu sync.Mutex
	recorded := map[string]bool{}
	failRecord := 1
	e := NewErasures(ErasureConfig{
		Log:   log,
		Store: st,
		Erase: func(_ context.Context, ws, conv string) error {
			mu.Lock()
			defer mu.Unlock()
			if !recorded[conv] {
				t.Errorf("%s erased before its erasure was recorded", conv)
			}
			st.mu.Lock()
			defer st.mu.Unlock()
			delete(st.convs, conv)
			return nil
		},
		Record: func(_ context.Context, ws, conv string) error {
			mu.Lock()
			defer mu.Unlock()
			if failRecord > 0 {
				failRecord--
				return errors.New("no leader")
			}
			recorded[conv] = true
			return nil
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx := runErasures(t, e)
	log.add(cluster.Erasure{Workspace: "acme", Visitor: "v:a", Index: 3})
	log.add(cluster.Erasure{Workspace: "acme", Visitor: "u:42", Index: 4})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := e.Wait(wctx, 4); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	left := fmt.Sprint(st.convs)
	st.mu.Unlock()
	if left != "map[c_b1:v:b]" {
		t.Fatalf("left %s, want only the other visitor's conversation", left)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(recorded) != 3 || failRecord != 0 {
		t.Fatalf("recorded %v (failures left %d)", recorded, failRecord)
	}
}
