package gateway

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"parley/gateway/wire"
	"parley/ident"
	"parley/internal/eventually"
	"parley/store"
)

// heldStore holds every change's answer until release is closed: a store
// whose writer does not keep up.
type heldStore struct {
	Store
	release chan struct{}
	applies atomic.Int32
}

func (h *heldStore) ApplyAsync(ctx context.Context, ch store.Change) (store.Result, store.Pending, error) {
	h.applies.Add(1)
	res, p, err := h.Store.ApplyAsync(ctx, ch)
	if err != nil {
		return res, p, err
	}
	return res, heldPending{h.release, p}, nil
}

type heldPending struct {
	release <-chan struct{}
	p       store.Pending
}

func (p heldPending) Done() bool {
	select {
	case <-p.release:
		return p.p == nil || p.p.Done()
	default:
		return false
	}
}

func (p heldPending) Wait() error {
	<-p.release
	if p.p == nil {
		return nil
	}
	return p.p.Wait()
}

// shedCount counts the overloaded error frames, as the node's
// parley_errors_total does.
type shedCount struct {
	noMetrics
	n atomic.Int32
}

func (s *shedCount) Error(code string) {
	if code == wire.CodeOverloaded {
		s.n.Add(1)
	}
}

// With more changes waiting for the store than ShedPending, a send is
// refused overloaded with retry_ms before it reaches the store; the
// connection goes on being served, and the same message resent once the
// store caught up is stored once.
func TestSendShedWhileTheStoreIsBehind(t *testing.T) {
	t.Parallel()
	held := &heldStore{release: make(chan struct{})}
	count := &shedCount{}
	e := newEnv(t, func(c *Config) {
		held.Store = c.Store
		c.Store, c.ShedPending, c.Metrics = held, 2, count
	})
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	for i := 1; i <= 2; i++ {
		v.send(map[string]any{"type": "send", "ref": fmt.Sprintf("s%d", i), "conversation": conv, "id": fmt.Sprintf("m-%07d", i), "body": "held"})
	}
	eventually.Holds(t, 5*time.Second, "both sends in the store", func() error {
		if n := held.applies.Load(); n != 2 {
			return fmt.Errorf("%d applies", n)
		}
		return nil
	})
	send3 := map[string]any{"type": "send", "ref": "s3", "conversation": conv, "id": "m-0000003", "body": "shed"}
	v.send(send3)
	got := v.expect("error", refIs("s3"))
	if got["code"] != wire.CodeOverloaded || got["retry_ms"] == nil || got["retry_ms"].(float64) <= 0 {
		t.Fatalf("third send: %v", got)
	}
	if n := held.applies.Load(); n != 2 {
		t.Fatalf("the shed send reached the store: %d applies", n)
	}
	if count.n.Load() != 1 {
		t.Fatalf("%d shed frames counted, want 1", count.n.Load())
	}
	// Reads are served meanwhile.
	v.send(map[string]any{"type": "ping", "ref": "p1"})
	v.expect("pong", refIs("p1"))
	v.send(map[string]any{"type": "list", "ref": "l1"})
	v.expect("conversations", refIs("l1"))

	close(held.release)
	acked := map[any]bool{}
	for len(acked) < 2 { // in either order
		acked[v.expect("ack", func(m map[string]any) bool { return m["ref"] == "s1" || m["ref"] == "s2" })["ref"]] = true
	}
	send3["ref"] = "s3b"
	v.send(send3)
	if ack := v.expect("ack", refIs("s3b")); ack["dup"] == true {
		t.Fatalf("the shed message was stored before its resend: %v", ack)
	}
	evs, _, _ := e.st.Events("ws1", conv, 0, 10)
	if len(evs) != 3 {
		t.Fatalf("%d events stored, want 3", len(evs))
	}
}

// stuckAgent joins an agent connection of ws to the hub whose writer is
// stuck in its first write: an agent whose writer does not keep up. The
// env's Config.ShedBehind says when it is behind.
func stuckAgent(t *testing.T, e *env, ws string) *conn {
	gate := &gateTransport{release: make(chan struct{})}
	t.Cleanup(func() { close(gate.release) })
	c := &conn{srv: e.gw, t: gate, stop: make(chan struct{}),
		id: identity{Workspace: ws, Role: ident.Agent, Participant: "a:stuck"}}
	c.writer = c.writeRun
	c.lastSeen.Store(time.Now().Add(time.Hour).UnixMilli())
	e.gw.hub.join(c)
	return c
}

// queued is how many items c holds not yet written.
func queued(c *conn) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queuedItems
}

// When a workspace's agents are behind (ShedBehind items not yet written), its
// changes are refused overloaded before they reach the store, while
// another workspace's are taken.
func TestChangesShedWhileAgentsAreBehind(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.ShedHold, c.ShedBehind = time.Hour, 4 })
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	stuck := []*conn{stuckAgent(t, e, "ws1"), stuckAgent(t, e, "ws1")}
	for i := 1; i <= 4; i++ { // 4 queued: behind
		v.say(conv, fmt.Sprintf("m-%07d", i), "fills the agents' queues")
	}
	held := []int{queued(stuck[0]), queued(stuck[1])}
	r := v.ref()
	v.send(map[string]any{"type": "send", "ref": r, "conversation": conv, "id": "m-0000005", "body": "shed"})
	got := v.expect("error", refIs(r))
	if got["code"] != wire.CodeOverloaded || got["retry_ms"] == nil {
		t.Fatalf("send with the agents behind: %v", got)
	}
	r = v.ref()
	v.send(map[string]any{"type": "start", "ref": r})
	if got := v.expect("error", refIs(r)); got["code"] != wire.CodeOverloaded {
		t.Fatalf("start with the agents behind: %v", got)
	}
	evs, _, _ := e.st.Events("ws1", conv, 0, 10)
	if len(evs) != 4 {
		t.Fatalf("%d events stored, want 4", len(evs))
	}
	for i, c := range stuck {
		if queued(c) != held[i] {
			t.Fatalf("a stuck agent got %d frames after the shed ones, want %d", queued(c), held[i])
		}
	}
	// The node still serves the workspace's reads, and other workspaces.
	v.send(map[string]any{"type": "ping", "ref": "p1"})
	v.expect("pong", refIs("p1"))
	other, _ := e.visitor(t, "ws2", nil)
	other.say(other.start(), "m-0000001", "another workspace")

}

// An agent connection that stays behind though its workspace's changes
// are refused is too slow to wait for: after slowAfterHolds holds it no
// longer holds the workspace back (it is closed as a slow consumer when
// its queue fills, as before), and the others' sends are taken again.
func TestAnAgentTooSlowStopsHoldingBack(t *testing.T) {
	t.Parallel()
	// slowAfterHolds holds of 100 ms: 2 s from the first refusal until the
	// agent counts as too slow, which outlasts a loaded machine's pause
	// between the sends below (at 10 ms, 200 ms did not: the agent was
	// already too slow when the first send after the four came, and
	// nothing was ever shed).
	e := newEnv(t, func(c *Config) { c.ShedHold, c.ShedBehind = 100*time.Millisecond, 4 })
	e.agent(t, "ws1")
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	stuck := stuckAgent(t, e, "ws1")
	for i := 1; i <= 4; i++ {
		v.say(conv, fmt.Sprintf("m-%07d", i), "fills the stuck agent's queue")
	}
	held := queued(stuck)
	answer := func(ref string) map[string]any {
		for {
			m, err := v.next(5 * time.Second)
			if err != nil {
				t.Fatalf("waiting for the answer to %s: %v", ref, err)
			}
			if m["ref"] == ref && (m["type"] == "ack" || m["type"] == "error") {
				return m
			}
		}
	}
	shed, i := 0, 5
	eventually.Holds(t, 10*time.Second, "a send taken again", func() error {
		r := v.ref()
		v.send(map[string]any{"type": "send", "ref": r, "conversation": conv, "id": fmt.Sprintf("m-%07d", i), "body": "again"})
		m := answer(r)
		if m["type"] == "error" {
			if m["code"] != wire.CodeOverloaded {
				t.Fatalf("send %d: %v", i, m)
			}
			shed++
			return fmt.Errorf("send %d shed", i)
		}
		i++
		return nil
	})
	if shed == 0 {
		t.Fatal("the stuck agent never held the workspace back")
	}
	if queued(stuck) != held+1 {
		t.Fatalf("the stuck agent holds %d frames, want %d", queued(stuck), held+1)
	}
}

// An agent connection keeping up (one frame waiting) is not behind, however
// many changes are in flight: only the frames queued on it count. Counted
// against the agent too, the changes in flight made every workspace with
// as many of them stop for a hold at each event (issue 16, item 2).
func TestAnAgentIsBehindByItsOwnQueue(t *testing.T) {
	srv := &Server{cfg: Config{ShedBehind: 4, SendQueueBytes: 1 << 20}}
	agent := &conn{srv: srv, queuedItems: 1}
	r := &room{agents: map[*conn]struct{}{agent: {}}}
	if r.lagging(time.Minute) {
		t.Fatal("an agent with one frame waiting counts as behind")
	}
	agent.queuedItems = 4 // ShedBehind: behind
	if !r.lagging(time.Minute) {
		t.Fatal("an agent with ShedBehind items waiting does not count as behind")
	}
	agent.queuedItems, agent.queuedBytes = 1, 256<<10 // a quarter of SendQueueBytes: behind
	r.caughtUp(agent)
	if !r.lagging(time.Minute) {
		t.Fatal("an agent with a quarter of SendQueueBytes waiting does not count as behind")
	}
}
