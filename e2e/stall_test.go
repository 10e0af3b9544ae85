package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"parley/internal/eventually"
)

// stall stops a node's process (SIGSTOP: a long GC pause, a frozen VM, a
// saturated disk) for d, then lets it go on (SIGCONT). The test's end lets
// it go on whatever happens.
func (n *nodeProc) stall(t testing.TB, d time.Duration) {
	t.Helper()
	t.Cleanup(func() { n.Continue() })
	if err := n.Suspend(); err != nil {
		t.Fatalf("SIGSTOP %s: %v", n.Addr, err)
	}
	time.Sleep(d) // the stall itself
	if _, err := n.Continue(); err != nil {
		t.Fatalf("SIGCONT %s: %v", n.Addr, err)
	}
}

// movingVisitor writes as one visitor at a steady rate, 20 messages a
// second, without waiting for each ack (the widget's outbox sends what is
// queued), the way a client does when a node stops answering: once a send
// has had no answer for a second, it drops the connection without a
// goodbye, its unread frames still in the stalled node's socket, and sends
// everything unacknowledged again, with the same ids, through the next
// node. Three seconds after a move it goes back to its home node.
type movingVisitor struct {
	k     int
	ws    string
	nodes []*nodeProc
	home  int
	vis   map[string]any
	conv  string

	mu    sync.Mutex
	acked []string
	moves int
}

func (v *movingVisitor) ackedIDs() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.acked)
}

// run writes until stop is closed, then until every message it sent is
// acknowledged; it reports a failure that is not a stalled or refusing
// node.
func (v *movingVisitor) run(ctx context.Context, stop <-chan struct{}) error {
	var cl *wsClient
	defer func() {
		if cl != nil {
			cl.c.CloseNow()
		}
	}()
	cur := v.home
	var away time.Time
	pending := map[string]time.Time{} // unacknowledged id -> when last sent; zero: send again
	var order []string                // pending ids in send order
	tries := 0
	drop := func() {
		if cl != nil {
			cl.c.CloseNow()
			cl = nil
		}
		for _, id := range order {
			pending[id] = time.Time{}
		}
	}
	move := func() {
		drop()
		cur = (cur + 1) % len(v.nodes)
		away = time.Now()
		v.mu.Lock()
		v.moves++
		v.mu.Unlock()
	}
	connect := func() bool {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		c, err := dialNode(dctx, v.nodes[cur])
		if err == nil {
			if _, err = c.hello(dctx, v.ws, v.vis); err != nil {
				c.c.CloseNow()
			}
		}
		if err != nil {
			move()
			return false
		}
		cl = c
		return true
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	stopping := false
	for n := 0; ; {
		select {
		case <-ctx.Done():
			return fmt.Errorf("visitor %d: %d messages unacknowledged: %w", v.k, len(order), ctx.Err())
		case <-stop:
			stopping, stop = true, nil
		case <-tick.C:
		}
		if stopping && len(order) == 0 {
			return nil
		}
		if cur != v.home && time.Since(away) > 3*time.Second {
			drop()
			cur = v.home
		}
		if cl == nil && !connect() {
			continue
		}
		// Answers first.
		for more := true; more; {
			select {
			case f, ok := <-cl.c.Frames():
				m := frameMap(f)
				if !ok {
					move()
					more = false
					break
				}
				ref, _ := m["ref"].(string)
				id, _, _ := strings.Cut(ref, "#")
				if _, ok := pending[id]; !ok {
					continue
				}
				switch {
				case m["type"] == "ack":
					delete(pending, id)
					order = slices.DeleteFunc(order, func(s string) bool { return s == id })
					v.mu.Lock()
					v.acked = append(v.acked, id)
					v.mu.Unlock()
				case m["code"] == "unavailable" || m["code"] == "rate_limited":
					pending[id] = time.Time{}
				case m["type"] == "error":
					return fmt.Errorf("visitor %d: send %s via %s: %v", v.k, id, v.nodes[cur].Addr, m)
				}
			default:
				more = false
			}
		}
		if cl == nil {
			continue
		}
		if len(order) > 0 && !pending[order[0]].IsZero() && time.Since(pending[order[0]]) > time.Second {
			move() // the oldest send went unanswered
			continue
		}
		if !stopping && len(order) < 64 {
			id := fmt.Sprintf("m-%02d-%06d", v.k, n)
			n++
			pending[id] = time.Time{}
			order = append(order, id)
		}
		for _, id := range order {
			if !pending[id].IsZero() {
				continue
			}
			if tries++; tries > 100000 {
				return fmt.Errorf("visitor %d: too many sends", v.k)
			}
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			err := cl.send(wctx, map[string]any{"type": "send", "ref": fmt.Sprintf("%s#%d", id, tries), "conversation": v.conv, "id": id, "body": "order " + id})
			cancel()
			if err != nil {
				move()
				break
			}
			pending[id] = time.Now()
		}
	}
}

// liveView is what one agent connection was delivered live: every state of
// every message, by id.
type liveView struct {
	node   string
	mu     sync.Mutex
	states map[string][]string // id -> each deliver's ts
	err    error
}

// watch collects an agent connection's delivers until ctx ends, pinging so
// that the node keeps it.
func (lv *liveView) watch(ctx context.Context, cl *wsClient) {
	cl.keepAlive(ctx, 2*time.Second)
	for {
		m, err := cl.await(ctx, "deliver", nil)
		if err != nil {
			if ctx.Err() == nil {
				lv.mu.Lock()
				lv.err = err
				lv.mu.Unlock()
			}
			return
		}
		msg := m["message"].(map[string]any)
		lv.mu.Lock()
		lv.states[msg["id"].(string)] = append(lv.states[msg["id"].(string)], tsKey(msg["ts"]))
		lv.mu.Unlock()
	}
}

// tsKey is a message's hybrid logical clock stamp as a string that sorts
// like the stamp: wall, logical, node.
func tsKey(v any) string {
	ts, _ := v.(map[string]any)
	w, _ := ts["w"].(float64)
	l, _ := ts["l"].(float64)
	return fmt.Sprintf("%016d.%010d@%v", int64(w), int64(l), ts["n"])
}

// replayed is one message as a node's full replay of a conversation
// gives it.
type replayed struct {
	id, ts  string
	edited  bool
	copies  int      // deliver frames of the id in the replay
	origins []string // the origins of its events: at and also
}

// fullHistory reads a conversation's whole history on a node, as a new
// agent would, in the order clients show it: (ts, id).
func fullHistory(t testing.TB, ctx context.Context, ag *wsClient, conv string) []replayed {
	t.Helper()
	frames, err := ag.history(ctx, conv)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*replayed{}
	for _, f := range frames {
		msg := f["message"].(map[string]any)
		id := msg["id"].(string)
		r := byID[id]
		if r == nil {
			r = &replayed{id: id, ts: tsKey(msg["ts"])}
			byID[id] = r
		}
		r.copies++
		r.edited = r.edited || msg["edited"] != nil
		stamps := []any{f["at"]}
		if also, ok := f["also"].([]any); ok {
			stamps = append(stamps, also...)
		}
		for _, s := range stamps {
			at, _ := s.(string)
			if origin, _, ok := strings.Cut(at, "."); ok && !slices.Contains(r.origins, origin) {
				r.origins = append(r.origins, origin)
			}
		}
	}
	var out []replayed
	for _, r := range byID {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b replayed) int { return strings.Compare(a.ts+a.id, b.ts+b.id) })
	return out
}

// checkReplicas reads every node's full history of each conversation and
// checks it against what was acknowledged: every acknowledged id once, no
// other, not shown as edited, and the same (ts, id) order with the same ts
// on every node. It returns how many ids more than one origin accepted.
func checkReplicas(t *testing.T, ctx context.Context, tc *testCluster, ws string, acked map[string][]string) (twice int) {
	t.Helper()
	histories := make([]map[string][]replayed, len(tc.nodes))
	for i, nd := range tc.nodes {
		ag := tc.agentOn(t, ctx, tc.nodes[0], nd, ws, fmt.Sprintf("reader%d", i+1))
		histories[i] = map[string][]replayed{}
		for conv := range acked {
			histories[i][conv] = fullHistory(t, ctx, ag, conv)
		}
	}
	for conv, ids := range acked {
		want := map[string]bool{}
		for _, id := range ids {
			want[id] = true
		}
		multi := map[string]bool{}
		for i, nd := range tc.nodes {
			h := histories[i][conv]
			for _, r := range h {
				switch {
				case !want[r.id]:
					t.Errorf("n%d (%s) %s: %s was never acknowledged", i+1, nd.Addr, conv, r.id)
				case r.copies != 1:
					t.Errorf("n%d %s: the replay gave %s %d times", i+1, conv, r.id, r.copies)
				case r.edited:
					t.Errorf("n%d %s: %s shows as edited; nobody edited it", i+1, conv, r.id)
				}
				if len(r.origins) > 1 {
					multi[r.id] = true
				}
			}
			if len(h) != len(want) {
				t.Errorf("n%d %s: %d messages, %d acknowledged", i+1, conv, len(h), len(want))
			}
			if i == 0 {
				continue
			}
			first := histories[0][conv]
			for j := range min(len(h), len(first)) {
				if h[j].id != first[j].id || h[j].ts != first[j].ts {
					t.Errorf("n%d %s: message %d is %s@%s, on n1 %s@%s", i+1, conv, j, h[j].id, h[j].ts, first[j].id, first[j].ts)
					break
				}
			}
		}
		twice += len(multi)
	}
	return twice
}

// checkLiveViews checks that each agent connection was delivered every
// acknowledged id, and that the state a client keeps (the earliest ts it
// was given, as the widget and the console merge) is the nodes' state.
func checkLiveViews(t *testing.T, views []*liveView, acked map[string][]string, ts map[string]string) {
	t.Helper()
	for _, lv := range views {
		lv.mu.Lock()
		if lv.err != nil {
			t.Errorf("the agent on %s was cut off: %v", lv.node, lv.err)
		}
		updated := 0
		for _, ids := range acked {
			for _, id := range ids {
				states := lv.states[id]
				if len(states) == 0 {
					t.Errorf("the agent on %s never got %s", lv.node, id)
					continue
				}
				if len(states) > 1 {
					updated++
				}
				if got := slices.Min(states); got != ts[id] {
					t.Errorf("the agent on %s shows %s at %s, the nodes at %s", lv.node, id, got, ts[id])
				}
			}
		}
		t.Logf("agent on %s: %d messages delivered again with the merged state", lv.node, updated)
		lv.mu.Unlock()
	}
}

// TestStalledNodeKeepsOneCopy stops a node for 1 s, 6 s and 12 s (below and
// beyond the failure-detection time) while visitors write through it and
// through another node, each resending on a new connection through the
// next node when a send goes unanswered: the stalled node, when it goes on,
// reads the frames left in its sockets and accepts those messages a second
// time under its own origin. Afterwards every node's full history holds
// every acknowledged message once, with one ts, in the same order
// everywhere; every agent was delivered each, and usage counts each once.
func TestStalledNodeKeepsOneCopy(t *testing.T) {
	tc := startCluster(t, 3, "-usage-interval", "1s")
	stalled := tc.nodes[2]
	if tc.leader(t) == stalled {
		stalled = tc.nodes[1]
	}
	home := slices.Index(tc.nodes, stalled)
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "business"}, nil)
	ctx := testCtx(t, 240*time.Second)

	var views []*liveView
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	var watchers sync.WaitGroup
	for i, nd := range tc.nodes {
		lv := &liveView{node: nd.Addr, states: map[string][]string{}}
		views = append(views, lv)
		ag := tc.agentOn(t, ctx, tc.nodes[0], nd, "acme", fmt.Sprintf("agent%d", i+1))
		watchers.Add(1)
		go func() { defer watchers.Done(); lv.watch(watchCtx, ag) }()
	}

	// Four visitors: three at home on the node that stalls, one elsewhere
	// (its messages reach the stalled node as a replica).
	var visitors []*movingVisitor
	for k := range 4 {
		h := home
		if k == 3 {
			h = (home + 1) % 3
		}
		cl, welcome, conv := startVisitor(t, ctx, tc.nodes[h], "acme")
		cl.close()
		visitors = append(visitors, &movingVisitor{k: k, ws: "acme", nodes: tc.nodes, home: h, conv: conv,
			vis: map[string]any{"visitor_id": welcome["visitor_id"], "visitor_sig": welcome["visitor_sig"]}})
	}
	stop := make(chan struct{})
	errs := make(chan error, len(visitors))
	for _, v := range visitors {
		go func() { errs <- v.run(ctx, stop) }()
	}
	for _, d := range []time.Duration{time.Second, 6 * time.Second, 12 * time.Second} {
		time.Sleep(3 * time.Second)
		t.Logf("SIGSTOP %s for %v", stalled.Addr, d)
		stalled.stall(t, d)
	}
	time.Sleep(3 * time.Second)
	close(stop)
	for range visitors {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}

	acked := map[string][]string{}
	total, moves := 0, 0
	for _, v := range visitors {
		acked[v.conv] = v.ackedIDs()
		total += len(acked[v.conv])
		moves += v.moves
	}
	for conv, ids := range acked {
		tc.waitConverged(t, "acme", conv, len(ids), 60*time.Second)
	}
	twice := checkReplicas(t, ctx, tc, "acme", acked)
	t.Logf("%d messages acknowledged, %d moves to another node, %d ids accepted by two nodes", total, moves, twice)
	if twice == 0 {
		t.Error("no message was accepted by two nodes: the stalls did not exercise what this test is about")
	}

	// The state every node holds, to compare the agents' views with.
	ag := tc.agentOn(t, ctx, tc.nodes[0], tc.nodes[0], "acme", "checker")
	ts := map[string]string{}
	for conv := range acked {
		for _, r := range fullHistory(t, ctx, ag, conv) {
			ts[r.id] = r.ts
		}
	}
	eventually.Holds(t, 20*time.Second, "every agent has every message", func() error {
		for _, lv := range views {
			lv.mu.Lock()
			n := len(lv.states)
			lv.mu.Unlock()
			if n < total {
				return fmt.Errorf("the agent on %s has %d of %d messages", lv.node, n, total)
			}
		}
		return nil
	})
	stopWatching()
	watchers.Wait()
	checkLiveViews(t, views, acked, ts)

	// Usage counts each message once, whichever nodes accepted it.
	eventually.Holds(t, 30*time.Second, "usage", func() error {
		var u struct {
			Usage struct{ Messages int } `json:"usage"`
		}
		if code, body := api(tc.nodes[0], "GET", "/v1/admin/workspaces/acme/usage", tc.root, nil, &u); code != 200 {
			return errors.New(body)
		}
		if u.Usage.Messages != total {
			return fmt.Errorf("usage counts %d messages, %d acknowledged", u.Usage.Messages, total)
		}
		return nil
	})
}

// sendUntilAcked sends one message through cl until it is acknowledged,
// waiting out unavailable answers (a node that cannot reach a replica yet).
func sendUntilAcked(t *testing.T, ctx context.Context, cl *wsClient, conv, id, body string) {
	t.Helper()
	frameUntilAcked(t, ctx, cl, map[string]any{"type": "send", "conversation": conv, "id": id, "body": body})
}

// TestPartitionSidesAcceptOneID: a node is cut off from the other two, and
// one visitor's message is accepted on both sides with the same id (sent
// to each), among others sent on one side only. After the partition heals
// every node holds it once, with one ts, in the same order, not edited.
func TestPartitionSidesAcceptOneID(t *testing.T) {
	lab := newNetLab(t, 3)
	tc := startClusterOn(t, clusterSpec{bin: parleyBin, n: 3, lab: lab})
	n1, n3 := tc.nodes[0], tc.nodes[2]
	tc.createWorkspace(t, map[string]any{"id": "acme", "name": "Acme", "plan": "team"})
	ctx := testCtx(t, 150*time.Second)
	v1, welcome, conv := startVisitor(t, ctx, n1, "acme")
	defer v1.close()
	sendUntilAcked(t, ctx, v1, conv, "m-before", "order")
	tc.waitConverged(t, "acme", conv, 1, 30*time.Second)

	heal := cut(t, lab, 2)
	v3, err := dialNode(ctx, n3)
	if err != nil {
		t.Fatal(err)
	}
	defer v3.close()
	if _, err := v3.hello(ctx, "acme", map[string]any{"visitor_id": welcome["visitor_id"], "visitor_sig": welcome["visitor_sig"]}); err != nil {
		t.Fatal(err)
	}
	acked := []string{"m-before"}
	for i := range 3 {
		a, b := fmt.Sprintf("m-majority-%d", i), fmt.Sprintf("m-cut-off-%d", i)
		sendUntilAcked(t, ctx, v1, conv, a, "order")
		sendUntilAcked(t, ctx, v3, conv, b, "order")
		acked = append(acked, a, b)
	}
	// The same message on both sides, the cut-off side first.
	sendUntilAcked(t, ctx, v3, conv, "m-both-sides", "order")
	sendUntilAcked(t, ctx, v1, conv, "m-both-sides", "order")
	acked = append(acked, "m-both-sides")
	heal()
	for _, nd := range tc.nodes {
		tc.waitAlive(t, nd, 3, 60*time.Second)
	}
	tc.waitConverged(t, "acme", conv, len(acked), 60*time.Second)
	if twice := checkReplicas(t, ctx, tc, "acme", map[string][]string{conv: acked}); twice == 0 {
		t.Error("m-both was not accepted on both sides: the test did not exercise the merge")
	}
}
