package gateway

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"parley/internal/commitgate"
	"parley/internal/eventually"
	"parley/store"
)

// holdCommits holds st's writer in a commit of its own (a conversation of
// ws2 created) and returns once it waits there.
func holdCommits(t *testing.T, gate *commitgate.Gate, st *store.Store) {
	gate.Hold(t, func() {
		st.CreateConversation(context.Background(), store.Conversation{Workspace: "ws2", ID: "c_held", Owner: "v:held"})
	})
}

// A message resent while its first send is decided (delivered) but not yet
// durable is acked, as a duplicate, only once the first is, after the
// first's ack: an ack says the message is stored. Before, the resend was
// acked at once.
func TestResendOfAMessageNotYetDurableIsAckedAfterIt(t *testing.T) {
	t.Parallel()
	commits := commitgate.New()
	e := newEnvWith(t, commits, nil)
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	holdCommits(t, commits, e.st)
	send := map[string]any{"type": "send", "ref": "s1", "conversation": conv, "id": "m-0000001", "body": "hi"}
	v.send(send)
	v.expect("deliver", msgIs("m-0000001")) // decided and published
	send["ref"] = "s2"
	v.send(send)
	v.none("ack", 300*time.Millisecond)
	commits.Open()
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
	commits := commitgate.New()
	e := newEnvWith(t, commits, func(c *Config) { c.FrameRate, c.FrameBurst = 1000, 1000 })
	v, _ := e.visitor(t, "ws1", nil)
	var convs []string
	for range 4 {
		convs = append(convs, v.start())
	}
	holdCommits(t, commits, e.st)
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
	commits.Open()
	for i := range n {
		if ack := v.expect("ack", nil); ack["ref"] != fmt.Sprintf("s%02d", i) {
			t.Fatalf("ack %d is %v's, want s%02d's", i, ack["ref"], i)
		}
	}
}

// TestAcksAreWrittenByTheAnsweringGoroutine: once a held commit is made,
// the acks of the changes that waited for it are written by the
// connection's answering goroutine, which was running for them anyway,
// not handed to a writer worker to wake: one hop fewer on every ack
// (issue 16, item 2: 13 % more acked messages a second at saturation,
// docs/benchmarks.md). They still come in the order sent.
func TestAcksAreWrittenByTheAnsweringGoroutine(t *testing.T) {
	t.Parallel()
	commits := commitgate.New()
	e := newEnvWith(t, commits, func(c *Config) { c.FrameRate, c.FrameBurst = 1000, 1000 })
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	holdCommits(t, commits, e.st)
	const n = 16
	for i := range n {
		v.send(map[string]any{"type": "send", "ref": fmt.Sprintf("s%02d", i), "conversation": conv, "id": fmt.Sprintf("m-%07d", i), "body": "held"})
	}
	for range n {
		v.expect("deliver", nil) // written: the connection's writer is idle
	}
	pushed := func() uint64 {
		e.gw.writers.mu.Lock()
		defer e.gw.writers.mu.Unlock()
		return e.gw.writers.pushed
	}
	before := pushed()
	commits.Open()
	for i := range n {
		if ack := v.expect("ack", nil); ack["ref"] != fmt.Sprintf("s%02d", i) {
			t.Fatalf("ack %d is %v's, want s%02d's", i, ack["ref"], i)
		}
	}
	if d := pushed() - before; d != 0 {
		t.Fatalf("the acks of %d changes went through the writer workers' line %d times, want none", n, d)
	}
}
