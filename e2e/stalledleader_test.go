package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"parley/internal/eventually"
)

// TestClusterWritesThroughFollowersOutliveStalledLeader writes through both
// followers of a 3-node cluster, from four clients without pause, and
// freezes the leader (SIGSTOP) in the middle: forwards are in flight to it
// at that moment, some perhaps already in its log. Every write answers 200
// once a new leader is elected (none waits out the apply timeout to answer
// 503 uncertain, as they did: a follower now sends the same request to the
// next leader, and the state machine applies a request once). A write sent
// to the frozen leader itself answers 200 after SIGCONT. Then every node,
// the old leader included, holds each workspace and each key exactly once.
func TestClusterWritesThroughFollowersOutliveStalledLeader(t *testing.T) {
	tc := startCluster(t, 3)
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "business"}, nil)
	var before []struct{ ID string }
	mustAPI(t, tc.nodes[0], "GET", "/v1/admin/workspaces", tc.root, nil, &before) // acme and the demo's
	old := tc.leader(t)
	var followers []*nodeProc
	for _, nd := range tc.nodes {
		if nd != old {
			followers = append(followers, nd)
		}
	}

	type write struct {
		workspace  bool // else a key of acme
		name       string
		via        *nodeProc
		start, end time.Time
		status     int
		code       string
	}
	var mu sync.Mutex
	var writes []write
	acked := func(after time.Time) (n int, byWriter map[int]int) {
		mu.Lock()
		defer mu.Unlock()
		byWriter = map[int]int{}
		for _, w := range writes {
			if w.status == 200 && w.start.After(after) {
				n++
				var g, i int
				fmt.Sscanf(w.name[1:], "%d-%d", &g, &i)
				byWriter[g]++
			}
		}
		return n, byWriter
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const writers = 4
	for g := range writers {
		via := followers[g%2]
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				w := write{workspace: i%2 == 0, via: via, start: time.Now()}
				if w.workspace {
					w.name = fmt.Sprintf("w%d-%d", g, i)
					w.status, w.code = api(via, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": w.name, "name": w.name, "plan": "free"}, nil)
				} else {
					w.name = fmt.Sprintf("k%d-%d", g, i)
					w.status, w.code = api(via, "POST", "/v1/admin/workspaces/acme/keys", tc.root, map[string]any{"name": w.name}, nil)
				}
				w.end = time.Now()
				mu.Lock()
				writes = append(writes, w)
				mu.Unlock()
			}
		})
	}
	stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopWriters)
	if err := eventually.Poll(30*time.Second, func() error {
		if n, _ := acked(time.Time{}); n < 8 {
			return fmt.Errorf("%d writes acknowledged", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// A write to the leader itself, sent as it freezes: it answers once the
	// node runs again, has stepped down and passed the write on.
	onOld := make(chan [2]any, 1)
	go func() {
		st, code := api(old, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "on-old-leader", "name": "On the old leader", "plan": "free"}, nil)
		onOld <- [2]any{st, code}
	}()
	if err := old.Suspend(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	t.Cleanup(func() { old.Continue() })
	elected := tc.waitNewLeader(t, old)
	t.Logf("new leader %s after the stop", elected.Sub(stopped).Round(time.Millisecond))

	// Writes go on through the new leader: each writer gets one more
	// through after the election (a write that waited out the old leader
	// would hold its writer up for the apply timeout, 10s).
	if err := eventually.Poll(60*time.Second, func() error {
		if _, by := acked(elected); len(by) < writers || minValue(by) < 1 {
			return fmt.Errorf("writes acknowledged since the election, by writer: %v", by)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	stopWriters()
	if _, err := old.Continue(); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	got := <-onOld
	if got[0] != 200 {
		t.Errorf("write to the frozen leader: %v %v after SIGCONT", got[0], got[1])
	}
	t.Logf("write to the frozen leader answered %v %s after SIGCONT", got[0], time.Since(resumed).Round(time.Millisecond))

	// Every write answered 200; count those that were out when the leader
	// froze, the ones that may have reached it.
	var inFlight, slowest int
	var slow time.Duration
	wantWS, wantKeys := map[string]bool{"on-old-leader": got[0] == 200}, map[string]bool{}
	for _, w := range before {
		wantWS[w.ID] = true
	}
	for i, w := range writes {
		if w.start.Before(stopped) && w.end.After(stopped) {
			inFlight++
			t.Logf("in flight at the stop: %s via %s, %d %s after %s", w.name, w.via.Addr, w.status, w.code, w.end.Sub(w.start).Round(time.Millisecond))
		}
		if d := w.end.Sub(w.start); d > slow {
			slow, slowest = d, i
		}
		if w.status != 200 {
			t.Errorf("%s via %s (%s after the stop): %d %s after %s", w.name, w.via.Addr, w.start.Sub(stopped).Round(time.Millisecond), w.status, w.code, w.end.Sub(w.start).Round(time.Millisecond))
		}
		// A write that failed may or may not have been applied: at most
		// once, then.
		if w.workspace {
			wantWS[w.name] = w.status == 200
		} else {
			wantKeys[w.name] = w.status == 200
		}
	}
	must := func(m map[string]bool) (n int) {
		for _, ok := range m {
			if ok {
				n++
			}
		}
		return n
	}
	if inFlight == 0 {
		t.Fatal("no write was in flight when the leader froze: the test did not exercise a resend")
	}
	t.Logf("%d writes (%d in flight at the stop); slowest %s: %s", len(writes), inFlight, writes[slowest].name, slow.Round(time.Millisecond))

	// Copies a new leader found applied already (forwards the frozen leader
	// had taken in and replicated): logged by every node that applies one.
	for _, nd := range tc.nodes {
		t.Logf("%s (old leader: %v): %d request copies answered as their first", nd.Addr, nd == old,
			strings.Count(nd.Logs(), "request applied before, answered as then"))
	}

	// Every node, the old leader included, converges on each write once.
	for _, nd := range tc.nodes {
		var ws []struct{ ID string }
		var keys []struct{ Name string }
		err := eventually.Poll(30*time.Second, func() error {
			ws, keys = nil, nil
			if st, code := api(nd, "GET", "/v1/admin/workspaces", tc.root, nil, &ws); st != 200 {
				return fmt.Errorf("workspaces: %d %s", st, code)
			}
			if st, code := api(nd, "GET", "/v1/admin/workspaces/acme/keys", tc.root, nil, &keys); st != 200 {
				return fmt.Errorf("keys: %d %s", st, code)
			}
			if len(ws) < must(wantWS) || len(keys) < must(wantKeys) {
				return fmt.Errorf("%d workspaces and %d keys, want %d and %d", len(ws), len(keys), must(wantWS), must(wantKeys))
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", nd.Addr, err)
			continue
		}
		seenWS, seenKeys := map[string]int{}, map[string]int{}
		for _, w := range ws {
			seenWS[w.ID]++
		}
		for _, k := range keys {
			seenKeys[k.Name]++
		}
		for name, n := range seenWS {
			if _, written := wantWS[name]; n != 1 || !written {
				t.Errorf("%s: workspace %s listed %d times (written: %v)", nd.Addr, name, n, written)
			}
		}
		for name, acked := range wantWS {
			if acked && seenWS[name] == 0 {
				t.Errorf("%s: workspace %s missing", nd.Addr, name)
			}
		}
		for name, n := range seenKeys {
			if _, written := wantKeys[name]; n != 1 || !written {
				t.Errorf("%s: key %s minted %d times (written: %v)", nd.Addr, name, n, written)
			}
		}
		for name, acked := range wantKeys {
			if acked && seenKeys[name] == 0 {
				t.Errorf("%s: key %s missing", nd.Addr, name)
			}
		}
	}
}

func minValue(m map[int]int) int {
	first, out := true, 0
	for _, v := range m {
		if first || v < out {
			first, out = false, v
		}
	}
	return out
}
