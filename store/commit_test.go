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

// writerHold holds the store's writer after a commit, with that commit's
// writes still in flight (the observer runs before they are retired).
type writerHold struct {
	arm  atomic.Bool
	held chan struct{}
	gate chan struct{}
}

func newWriterHold() *writerHold {
	return &writerHold{held: make(chan struct{}, 1)}
}

func (h *writerHold) observe(time.Duration, int, error) {
	if h.arm.CompareAndSwap(true, false) {
		h.held <- struct{}{}
		<-h.gate
	}
}

// holdAfter arms the hold, runs apply (which commits) in a goroutine and
// returns once the writer is held, with a release that lets it go on and
// waits for apply.
func (h *writerHold) holdAfter(t *testing.T, apply func() error) (release func()) {
	t.Helper()
	h.gate = make(chan struct{})
	h.arm.Store(true)
	done := make(chan error, 1)
	go func() { done <- apply() }()
	<-h.held
	return func() {
		t.Helper()
		close(h.gate)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestDuplicateSendWhileConversationIsBusy: a send of a message already
// stored is a duplicate when its conversation has other writes in flight,
// where the sequencer decides new sends without reading the file
// (idFilter): the conversation's filter holds every ID written since it
// was built, and, built while a write was queued, that write's ID too.
func TestDuplicateSendWhileConversationIsBusy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newWriterHold()
	var published sync.Map // message IDs
	s := openTest(t, Config{Observer: observerFunc(h.observe), OnCommit: func(evs []Event) {
		for _, e := range evs {
			published.Store(e.Message.ID, true)
		}
	}})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	send := func(id string) (Result, error) {
		wall := n.Add(1)
		return s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c", Participant: "v:a", Message: msg(id, "v:a", "body of "+id, wall)})
	}
	sendNew := func(id string) func() error {
		return func() error {
			if res, err := send(id); err != nil || res.Dup {
				return fmt.Errorf("send %s: %+v, %v", id, res, err)
			}
			return nil
		}
	}
	// decided starts a send and waits until it is decided: answered (a
	// duplicate) or queued (published, its commit to come).
	type sent struct {
		res  Result
		err  error
		done chan struct{}
	}
	decided := func(id string) *sent {
		t.Helper()
		published.Delete(id)
		r := &sent{done: make(chan struct{})}
		go func() { defer close(r.done); r.res, r.err = send(id) }()
		eventually.Holds(t, 10*time.Second, "send of "+id+" decided", func() error {
			select {
			case <-r.done:
				return nil
			default:
			}
			if _, ok := published.Load(id); ok {
				return nil
			}
			return errors.New("not yet")
		})
		return r
	}
	// sendWhileBusy sends id while the conversation has a write in flight
	// (busy's, held in the writer) and returns what it got.
	sendWhileBusy := func(busy, id string) Result {
		t.Helper()
		release := h.holdAfter(t, sendNew(busy))
		r := decided(id)
		release()
		<-r.done
		if r.err != nil {
			t.Fatalf("send %s: %v", id, r.err)
		}
		return r.res
	}
	if err := sendNew("m0")(); err != nil { // builds the filter
		t.Fatal(err)
	}
	if res := sendWhileBusy("b1", "m1"); res.Dup {
		t.Fatalf("m1 is new: %+v", res)
	}
	// m1 is in the file, not in flight: the filter must hold it.
	if res := sendWhileBusy("b2", "m1"); !res.Dup {
		t.Fatalf("m1 sent again while c was busy: %+v, want a duplicate", res)
	}
	// m2 is queued behind the held writer, not in the file, when m3's
	// send builds the conversation's filter again: it must hold m2.
	release := h.holdAfter(t, sendNew("b3"))
	m2 := decided("m2")
	s.seq.dropFilters()
	m3 := decided("m3")
	release()
	for _, r := range []*sent{m2, m3} {
		<-r.done
		if r.err != nil || r.res.Dup {
			t.Fatalf("send: %+v, %v", r.res, r.err)
		}
	}
	if res := sendWhileBusy("b4", "m2"); !res.Dup {
		t.Fatalf("m2 sent again while c was busy: %+v, want a duplicate", res)
	}
	evs, _, err := s.Events("ws1", "c", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.Message.ID)
	}
	if want := "[m0 b1 m1 b2 b3 m2 m3 b4]"; fmt.Sprint(ids) != want {
		t.Fatalf("events %v, want %s", ids, want)
	}
}

// TestFilterGrowsWithItsConversation: a conversation's filter, sized for
// few messages, is rebuilt larger as they come, and never loses one.
func TestFilterGrowsWithItsConversation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newWriterHold()
	s := openTest(t, Config{Observer: observerFunc(h.observe)})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	send := func(id string, wall int64) (Result, error) {
		return s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c", Participant: "v:a", Message: msg(id, "v:a", "x", wall)})
	}
	const n = 3 * filterMinIDs
	for i := range n {
		if _, err := send(fmt.Sprintf("m%d", i), int64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	// Each again while the conversation is busy: every one a duplicate.
	release := h.holdAfter(t, func() error { _, err := send("busy", n+1); return err })
	defer release()
	for i := range n {
		res, err := send(fmt.Sprintf("m%d", i), 1)
		if err != nil || !res.Dup {
			t.Fatalf("m%d again: %+v, %v; want a duplicate", i, res, err)
		}
	}
	cs := s.seq.acquire("ws1", "c")
	f := s.seq.filter(cs)
	s.seq.release(cs)
	if f == nil || f.max < n {
		t.Errorf("filter %+v, want one sized for %d", f, n)
	}
}

func TestIDFilterHasNoFalseAbsent(t *testing.T) {
	f := newIDFilter(10000)
	for i := range 10000 {
		f.add(idHash(fmt.Sprint("id-", i)))
	}
	fp := 0
	for i := range 10000 {
		if !f.mayHave(idHash(fmt.Sprint("id-", i))) {
			t.Fatalf("id-%d absent", i)
		}
		if f.mayHave(idHash(fmt.Sprint("other-", i))) {
			fp++
		}
	}
	if fp > 1000 {
		t.Errorf("%d of 10000 other IDs present", fp)
	}
}

// TestIDFilterFalsePresentWhenFull: a filter holding as many IDs as it was
// sized for says "maybe" for at most 0.2 % of other IDs (0.09 % expected):
// each such answer scans up to 4,096 events of the conversation, and at
// 12 bits and 4 hashes per ID (0.65 %) those scans took 7 % of a loaded
// node's CPU.
func TestIDFilterFalsePresentWhenFull(t *testing.T) {
	f := newIDFilter(5000)
	for i := range f.max {
		f.add(idHash(fmt.Sprint("id-", i)))
	}
	const others = 200000
	fp := 0
	for i := range others {
		if f.mayHave(idHash(fmt.Sprint("other-", i))) {
			fp++
		}
	}
	t.Logf("%d of %d other IDs maybe present (%.3f %%)", fp, others, 100*float64(fp)/others)
	if fp > others/500 {
		t.Errorf("%d of %d other IDs maybe present, want at most 0.2 %%", fp, others)
	}
}
