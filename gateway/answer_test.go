package gateway

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"parley/internal/eventually"
	"parley/store"
)

// heldCommits holds the store's writer in the Observer of its next commit
// once armed, until let go: whatever is queued after that commit is not
// written meanwhile.
type heldCommits struct {
	mu      sync.Mutex
	armed   bool
	held    chan struct{}
	release chan struct{}
	once    sync.Once
}

func newHeldCommits() *heldCommits {
	return &heldCommits{held: make(chan struct{}), release: make(chan struct{})}
}

func (h *heldCommits) ObserveCommit(time.Duration, int, error) {
	h.mu.Lock()
	armed := h.armed
	h.armed = false
	h.mu.Unlock()
	if armed {
		close(h.held)
		<-h.release
	}
}

// hold makes a commit of st's and returns once its writer waits in it.
func (h *heldCommits) hold(t *testing.T, st *store.Store) {
	t.Helper()
	h.mu.Lock()
	h.armed = true
	h.mu.Unlock()
	t.Cleanup(h.letGo) // before the store closes, even if the test fails
	go st.CreateConversation(context.Background(), store.Conversation{Workspace: "ws2", ID: "c_held", Owner: "v:held"})
	<-h.held
}

func (h *heldCommits) letGo() { h.once.Do(func() { close(h.release) }) }

// A message resent while its first send is decided (delivered) but not yet
// durable is acked, as a duplicate, only once the first is, after the
// first's ack: an ack says the message is stored. Before, the resend was
// acked at once.
func TestResendOfAMessageNotYetDurableIsAckedAfterIt(t *testing.T) {
	t.Parallel()
	commits := newHeldCommits()
	e := newEnvWith(t, commits, nil)
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	commits.hold(t, e.st)
	send := map[string]any{"type": "send", "ref": "s1", "conversation": conv, "id": "m-0000001", "body": "hi"}
	v.send(send)
	v.expect("deliver", msgIs("m-0000001")) // decided and published
	send["ref"] = "s2"
	v.send(send)
	v.none("ack", 300*time.Millisecond)
	commits.letGo()
	first := v.expect("ack", nil)
	again := v.expect("ack", nil)
	if first["ref"] != "s1" || again["ref"] != "s2" || first["dup"] == true || again["dup"] != true || first["seq"] != again["seq"] {
		t.Fatalf("acks %v then %v, want s1's then s2's (a duplicate, the same seq)", first, again)
	}
}

// A connection's changes in flight (as many as it may have, waiting for a
// commit held back) take no goroutine each, and are acked in the order
// they were sent once the commit is made. Before, each had a goroutine of
// its own, and the acks came in whatever order those ran.
func TestChangesInFlightAreAckedInOrderWithoutAGoroutineEach(t *testing.T) {
	// Not parallel: it counts the process's goroutines.
	commits := newHeldCommits()
	e := newEnvWith(t, commits, func(c *Config) { c.FrameRate, c.FrameBurst = 1000, 1000 })
	v, _ := e.visitor(t, "ws1", nil)
	var convs []string
	for range 4 {
		convs = append(convs, v.start())
	}
	commits.hold(t, e.st)
	base := runtime.NumGoroutine()
	n := e.gw.cfg.MaxInFlight
	for i := range n {
		v.send(map[string]any{"type": "send", "ref": fmt.Sprintf("s%02d", i), "conversation": convs[i%len(convs)], "id": fmt.Sprintf("m-%07d", i), "body": "held"})
	}
	for delivered := 0; delivered < n; delivered++ { // decided, in whatever order
		v.expect("deliver", nil)
	}
	eventually.Holds(t, 5*time.Second, "every change taken", func() error {
		if p := e.gw.shed.pending.Load(); p != int64(n) {
			return fmt.Errorf("%d changes waiting for the store", p)
		}
		return nil
	})
	if more := runtime.NumGoroutine() - base; more >= n/4 {
		t.Fatalf("%d goroutines more with %d changes waiting for a commit", more, n)
	}
	commits.letGo()
	for i := range n {
		if ack := v.expect("ack", nil); ack["ref"] != fmt.Sprintf("s%02d", i) {
			t.Fatalf("ack %d is %v's, want s%02d's", i, ack["ref"], i)
		}
	}
}
