package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"parley/internal/eventually"
	"parley/internal/localcluster"
)

// testCluster is a control-plane cluster of node processes on loopback,
// started by the launcher (internal/localcluster).
type testCluster struct {
	cl      *localcluster.Cluster
	nodes   []*nodeProc
	keyFile string
	root    string // the cluster admin token
	// raft and gossip are each node's addresses, by index.
	raft, gossip []string
}

// startCluster starts n nodes: the first bootstraps, the others join it as
// voters. Every node gets its regions from regions, in turn.
func startCluster(t testing.TB, n int, extra ...string) *testCluster {
	return startClusterBin(t, parleyBin, n, extra...)
}

// startClusterBin is startCluster with another node binary.
func startClusterBin(t testing.TB, bin string, n int, extra ...string) *testCluster {
	return startClusterOn(t, clusterSpec{bin: bin, n: n, extra: extra})
}

// clusterSpec says how to start a test cluster: by default on 127.0.0.1
// with free ports; with lab, node i in the lab's namespace i (fixed ports).
type clusterSpec struct {
	bin   string
	n     int
	extra []string
	lab   *localcluster.NetLab
	// links, when set, are the nodes' link (-raft-addr) addresses;
	// argsFor(i) adds flags to node i.
	links   []string
	argsFor func(i int) []string
	// regions gives node i its region, in turn; zero: eu, us, ap.
	regions []string
}

func startClusterOn(t testing.TB, spec clusterSpec) *testCluster {
	t.Helper()
	cl, err := localcluster.Start(context.Background(), localcluster.Config{Bin: spec.bin, Nodes: spec.n, Dir: t.TempDir(),
		Lab: spec.lab, Links: spec.links, Regions: spec.regions, Voters: true, Token: testAgentToken,
		Args: append(append([]string{"-h3", "off"}, loosePerIP...), spec.extra...), ArgsFor: spec.argsFor})
	if cl != nil {
		t.Cleanup(cl.Stop)
	}
	if err != nil {
		t.Fatal(err)
	}
	tc := &testCluster{cl: cl, keyFile: cl.KeyFile, root: cl.AdminToken}
	// A failed test shows what the nodes warned of: in CI that is all
	// there is to read of them afterwards.
	t.Cleanup(func() {
		if t.Failed() {
			for _, nd := range tc.nodes {
				t.Logf("%s warned:\n%s", nd.ID, lastWarnings(nd.Logs(), 40))
			}
		}
	})
	for _, nd := range cl.Nodes {
		tc.nodes = append(tc.nodes, &nodeProc{nd})
		tc.raft = append(tc.raft, nd.Link)
		tc.gossip = append(tc.gossip, flagValue(nd.Args, "-gossip-addr"))
	}
	tc.waitVoters(t, spec.n)
	return tc
}

// createWorkspace creates a workspace through the first node and waits
// until every node has applied its creation, secrets included (three Raft
// entries: a node may know the workspace a moment before its secrets). A
// test that cuts a node off right after must wait so: a node cut off
// before it has the secrets answers its visitors unavailable until healed.
func (tc *testCluster) createWorkspace(t testing.TB, body map[string]any) {
	t.Helper()
	var created struct {
		Index uint64 `json:"index"`
	}
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, body, &created)
	for _, nd := range tc.nodes {
		mustAPI(t, nd, "GET", fmt.Sprintf("/v1/admin/workspaces/%s?min_index=%d", body["id"], created.Index), tc.root, nil, nil)
	}
}

// lastWarnings is the last n lines of a node's log at level WARN or ERROR.
func lastWarnings(log string, n int) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
			out = append(out, l)
		}
	}
	return strings.Join(out[max(0, len(out)-n):], "\n")
}

// flagValue is the value of flag in args, or "".
func flagValue(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

// waitVoters waits until every node sees n voters and a leader.
func (tc *testCluster) waitVoters(t testing.TB, n int) {
	t.Helper()
	if err := tc.cl.WaitVoters(context.Background(), n, 30*time.Second); err != nil {
		t.Fatalf("every node sees %d voters and a leader: %v", n, err)
	}
}

// leader returns the node process that leads, by the view of any live one.
func (tc *testCluster) leader(t testing.TB) *nodeProc {
	t.Helper()
	ld, err := tc.cl.Leader(context.Background(), 20*time.Second)
	if err != nil {
		t.Fatalf("a live node names a leader: %v", err)
	}
	for _, nd := range tc.nodes {
		if nd.Node == ld {
			return nd
		}
	}
	t.Fatalf("the leader %s is not one of the cluster's nodes", ld.ID)
	return nil
}

// api calls the admin API of a node and decodes the reply into out (when
// not nil); it returns the status, 0 when the request failed, and the
// reply's error code.
func api(nd *nodeProc, method, path, token string, body, out any) (int, string) {
	return apiCtx(context.Background(), nd, method, path, token, body, out)
}

func apiCtx(ctx context.Context, nd *nodeProc, method, path, token string, body, out any) (int, string) {
	resp, b, err := request(ctx, nd, method, path, token, body)
	if err != nil {
		return 0, err.Error()
	}
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if resp.StatusCode != 200 {
		json.Unmarshal(b, &e)
		return resp.StatusCode, e.Error.Code
	}
	if out != nil {
		json.Unmarshal(b, out)
	}
	return resp.StatusCode, ""
}

// request sends a JSON request with a bearer token to a node and reads
// the whole reply (its body closed).
func request(ctx context.Context, nd *nodeProc, method, path, token string, body any) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, nd.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func mustAPI(t testing.TB, nd *nodeProc, method, path, token string, body, out any) {
	t.Helper()
	if st, code := api(nd, method, path, token, body, out); st != 200 {
		t.Fatalf("%s %s on %s: %d %s", method, path, nd.Addr, st, code)
	}
}

// TestClusterRevocationIsImmediate keeps using an API key on every node
// while another node revokes it: no request that starts after the revoke
// returned is accepted, anywhere.
func TestClusterRevocationIsImmediate(t *testing.T) {
	tc := startCluster(t, 3)
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "region": "eu", "plan": "team"}, nil)
	var minted struct {
		Key  string `json:"key"`
		Info struct {
			ID string `json:"id"`
		} `json:"info"`
	}
	mustAPI(t, tc.nodes[1], "POST", "/v1/admin/workspaces/acme/keys", tc.root, map[string]any{"name": "integration"}, &minted)

	type attempt struct {
		start, end time.Time
		status     int
	}
	ctx, cancel := context.WithCancel(context.Background())
	results := make(chan []attempt, len(tc.nodes))
	// Per node: requests accepted, and requests started after the revoke
	// returned (revokedAt, UnixNano, once set).
	accepted, startedAfter := make([]atomic.Int64, len(tc.nodes)), make([]atomic.Int64, len(tc.nodes))
	var revokedAt atomic.Int64
	for i, nd := range tc.nodes {
		go func(i int, nd *nodeProc) {
			var out []attempt
			for ctx.Err() == nil {
				r := revokedAt.Load()
				a := attempt{start: time.Now()}
				a.status, _ = api(nd, "GET", "/v1/admin/workspaces/acme", minted.Key, nil, nil)
				a.end = time.Now()
				out = append(out, a)
				if a.status == 200 {
					accepted[i].Add(1)
				}
				if r != 0 {
					startedAfter[i].Add(1)
				}
			}
			results <- out
		}(i, nd)
	}
	everyNode := func(what string, n int64, count []atomic.Int64) {
		eventually.Holds(t, 20*time.Second, fmt.Sprintf("every node has %d requests %s", n, what), func() error {
			for i := range count {
				if got := count[i].Load(); got < n {
					return fmt.Errorf("%s: %d", tc.nodes[i].Addr, got)
				}
			}
			return nil
		})
	}
	everyNode("accepted", 5, accepted)
	var conf struct {
		Confirmed   []string `json:"confirmed"`
		Unconfirmed []string `json:"unconfirmed"`
	}
	mustAPI(t, tc.nodes[2], "DELETE", "/v1/admin/workspaces/acme/keys/"+minted.Info.ID, tc.root, nil, &conf)
	revoked := time.Now()
	revokedAt.Store(revoked.UnixNano())
	everyNode("started after the revoke", 20, startedAfter)
	cancel()
	var before, after, acceptedAfter int
	for range tc.nodes {
		for _, a := range <-results {
			switch {
			case a.end.Before(revoked) && a.status == 200:
				before++
			case a.start.After(revoked):
				after++
				if a.status != 401 {
					acceptedAfter++
					t.Errorf("request started %s after the revoke returned: %d, want 401", a.start.Sub(revoked), a.status)
				}
			}
		}
	}
	if before == 0 || after == 0 {
		t.Fatalf("%d accepted before, %d tried after: the test did not exercise the key", before, after)
	}
	if len(conf.Confirmed) != 3 {
		t.Errorf("revoke confirmed by %v, unconfirmed %v; want all 3", conf.Confirmed, conf.Unconfirmed)
	}
	t.Logf("%d requests accepted before the revoke, %d refused after, %d accepted after", before, after, acceptedAfter)

	// Read-your-writes across nodes: a write's index, given as min_index,
	// makes another node's read wait until it has applied that write.
	for i := range 20 {
		var rep struct {
			Result struct{ Index uint64 } `json:"result"`
		}
		mustAPI(t, tc.nodes[i%2], "POST", "/v1/admin/workspaces/acme/billing", tc.root,
			map[string]any{"idempotency_key": fmt.Sprintf("ryw-%d", i), "kind": "charge", "amount": 1}, &rep)
		var evs []json.RawMessage
		mustAPI(t, tc.nodes[2], "GET", fmt.Sprintf("/v1/admin/workspaces/acme/billing?min_index=%d", rep.Result.Index), tc.root, nil, &evs)
		if len(evs) != i+1 {
			t.Fatalf("read at min_index %d on n3 after write %d: %d events", rep.Result.Index, i, len(evs))
		}
	}
	if st, code := api(tc.nodes[2], "GET", "/v1/admin/workspaces/acme/billing?min_index=x", tc.root, nil, nil); st != 400 || code != "invalid" {
		t.Fatalf("bad min_index: %d %s", st, code)
	}
}

// TestClusterLeaderKillKeepsWritesExactlyOnce writes billing events through
// every node while the leader is killed with SIGKILL: every acknowledged
// event is applied exactly once on every node, nothing refused outright is
// applied, and the restarted node catches up from its bbolt files.
func TestClusterLeaderKillKeepsWritesExactlyOnce(t *testing.T) {
	tc := startCluster(t, 3)
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)

	type outcome int
	const (
		acked outcome = iota
		refused
		uncertain
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	results := make(chan map[string]outcome, len(tc.nodes))
	var nAckedSoFar atomic.Int64
	for w, nd := range tc.nodes {
		go func(w int, nd *nodeProc) {
			got := map[string]outcome{}
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("ev-%d-%d", w, i)
				st, code := apiCtx(ctx, nd, "POST", "/v1/admin/workspaces/acme/billing", tc.root,
					map[string]any{"idempotency_key": key, "kind": "charge", "amount": 100 + i, "currency": "EUR"}, nil)
				switch {
				case st == 200:
					got[key] = acked
					nAckedSoFar.Add(1)
				case st >= 400 && st < 500, code == "not_leader" || code == "closed":
					got[key] = refused
				default: // connection lost, uncertain: may or may not be applied
					got[key] = uncertain
					if st == 0 {
						time.Sleep(20 * time.Millisecond)
					}
				}
			}
			results <- got
		}(w, nd)
	}
	ackedAtLeast := func(n int64, what string) {
		eventually.Holds(t, 30*time.Second, what, func() error {
			if got := nAckedSoFar.Load(); got < n {
				return fmt.Errorf("%d writes acknowledged, want %d", got, n)
			}
			return nil
		})
	}
	ackedAtLeast(60, "writes are acknowledged before the kill")
	victim := tc.leader(t)
	victim.Kill9(t)
	killedAt := time.Now()
	// Writes go on through the nodes left, under a new leader.
	ackedAtLeast(nAckedSoFar.Load()+60, "writes are acknowledged again after the leader's kill")
	cancel()
	all := map[string]outcome{}
	for range tc.nodes {
		for k, o := range <-results {
			all[k] = o
		}
	}
	newLeader := tc.leader(t)
	t.Logf("new leader %s after the kill (%s later)", newLeader.Addr, time.Since(killedAt).Round(time.Millisecond))
	victim.Restart(t)

	// Retry every uncertain event with its key, as a client would: each is
	// then applied exactly once whether or not the first try was.
	var retried int
	for k, o := range all {
		if o != uncertain {
			continue
		}
		w, _ := strconv.Atoi(strings.Split(k, "-")[1])
		i, _ := strconv.Atoi(strings.Split(k, "-")[2])
		var rep struct {
			Result struct {
				Duplicate bool `json:"duplicate"`
			} `json:"result"`
		}
		mustAPI(t, newLeader, "POST", "/v1/admin/workspaces/acme/billing", tc.root,
			map[string]any{"idempotency_key": k, "kind": "charge", "amount": 100 + i, "currency": "EUR"}, &rep)
		_ = w
		all[k] = acked
		retried++
	}
	var nAcked, nRefused int
	for _, o := range all {
		switch o {
		case acked:
			nAcked++
		case refused:
			nRefused++
		}
	}
	if nAcked < 50 {
		t.Fatalf("only %d writes acknowledged: the test did not exercise the cluster", nAcked)
	}
	// Every node converges on the same events: each acknowledged one once,
	// no refused one.
	for _, nd := range tc.nodes {
		var evs []struct {
			Key string `json:"idempotency_key"`
		}
		eventually.Holds(t, 30*time.Second, nd.Addr+" holds every acknowledged event", func() error {
			evs = nil
			if st, _ := api(nd, "GET", "/v1/admin/workspaces/acme/billing", tc.root, nil, &evs); st != 200 || len(evs) < nAcked {
				return fmt.Errorf("status %d, %d events, want %d", st, len(evs), nAcked)
			}
			return nil
		})
		seen := map[string]int{}
		for _, e := range evs {
			seen[e.Key]++
		}
		for k, o := range all {
			switch {
			case o == acked && seen[k] != 1:
				t.Errorf("%s: acknowledged event %s applied %d times", nd.Addr, k, seen[k])
			case o == refused && seen[k] != 0:
				t.Errorf("%s: refused event %s applied", nd.Addr, k)
			}
		}
		if len(seen) != len(evs) || len(evs) != nAcked {
			t.Errorf("%s: %d events, %d distinct, want %d", nd.Addr, len(evs), len(seen), nAcked)
		}
	}
	t.Logf("%d events acknowledged (%d of them retried after an uncertain outcome), %d refused", nAcked, retried, nRefused)
}

// TestClusterFollowerCatchesUpFromSnapshot stops a node, writes far past
// what the leader keeps in its log, and restarts it: it catches up by
// installing the leader's snapshot, from its own bbolt files plus that.
func TestClusterFollowerCatchesUpFromSnapshot(t *testing.T) {
	tc := startCluster(t, 3, "-raft-snapshot-threshold", "64", "-raft-trailing-logs", "16")
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	lag := tc.nodes[2]
	lagIndex := metric(t, lag, "parley_raft_applied_index")
	lag.Kill9(t)
	ld := tc.leader(t)
	const writes = 300
	for i := range writes {
		mustAPI(t, ld, "POST", "/v1/admin/workspaces/acme/billing", tc.root,
			map[string]any{"idempotency_key": fmt.Sprintf("snap-%d", i), "kind": "charge", "amount": i}, nil)
	}
	// The leader would snapshot on its own timer (every 2 to 4 minutes);
	// an operator can ask for one at once.
	mustAPI(t, ld, "POST", "/v1/admin/cluster/snapshot", tc.root, nil, nil)
	snap := metric(t, ld, "parley_raft_last_snapshot_index")
	if snap-16 <= lagIndex {
		t.Fatalf("leader snapshot at %v, lagging node at %v: no snapshot past the lag", snap, lagIndex)
	}
	lag.Restart(t)
	eventually.Holds(t, 30*time.Second, "the restarted node catches up", func() error {
		var evs []json.RawMessage
		if st, _ := api(lag, "GET", "/v1/admin/workspaces/acme/billing", tc.root, nil, &evs); st != 200 || len(evs) != writes {
			return fmt.Errorf("status %d, %d events, want %d", st, len(evs), writes)
		}
		return nil
	})
	if got := metric(t, lag, "parley_raft_snapshots_restored_total"); got < 1 {
		t.Fatalf("restarted node restored %v snapshots, want at least 1", got)
	}
	t.Logf("lagging node was at index %v; leader snapshot at %v", lagIndex, snap)
}

// TestPlanLimitReachesTheWire puts a workspace on a plan of 3 messages a
// month: once the nodes' usage reports reach the control plane, a visitor
// on any node gets over_limit, and nothing over the plan is stored.
func TestPlanLimitReachesTheWire(t *testing.T) {
	tc := startCluster(t, 2, "-usage-interval", "200ms")
	mustAPI(t, tc.nodes[0], "PUT", "/v1/admin/plans/tiny", tc.root, map[string]any{"name": "tiny", "seats": 1, "messages_per_month": 3}, nil)
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "tiny"}, nil)
	ctx := testCtx(t, 60*time.Second)
	var overOn string
	for i, nd := range tc.nodes {
		cl, err := dialNode(ctx, nd)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.close()
		if _, err := cl.visitorHelloIn(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		cl.send(ctx, map[string]any{"type": "start", "ref": "s"})
		st, err := cl.awaitRef(ctx, "s")
		if err != nil {
			t.Fatal(err)
		}
		if st["type"] == "error" {
			if st["code"] != "over_limit" {
				t.Fatalf("start: %v", st)
			}
			overOn = nd.Addr
			break
		}
		conv := st["conversation"].(string)
		if overOn != "" {
			continue
		}
		// Sends until the node refuses one, once the usage reports have
		// reached the control plane; else on to the next node.
		j := 0
		_ = eventually.Poll(20*time.Second, func() error {
			j++
			ref := fmt.Sprintf("r%d-%d", i, j)
			cl.send(ctx, map[string]any{"type": "send", "ref": ref, "conversation": conv, "id": fmt.Sprintf("m-%03d-%06d", i, j), "body": "hello"})
			m, err := cl.awaitRef(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if m["type"] != "error" {
				return fmt.Errorf("%d messages accepted", j)
			}
			// The address's part of a plan this small is the whole plan
			// (-ip-plan-fraction 1): once it has sent 3 messages here, it is
			// refused rate_limited until the reports make it over_limit.
			if m["code"] == "rate_limited" {
				return fmt.Errorf("%d sends, the last refused rate_limited", j)
			}
			if m["code"] != "over_limit" || !strings.Contains(fmt.Sprint(m["message"]), "messages") {
				t.Fatalf("send: %v", m)
			}
			overOn = nd.Addr
			return nil
		})
	}
	if overOn == "" {
		t.Fatal("no over_limit after 3 messages of a 3-message plan")
	}
	var u struct {
		Usage struct {
			Messages int64 `json:"messages"`
		} `json:"usage"`
		OverLimit string `json:"over_limit"`
	}
	// The node that said over_limit had the reports applied; another node
	// applies them a moment later.
	eventually.Holds(t, 10*time.Second, "usage over the plan on another node", func() error {
		mustAPI(t, tc.nodes[1], "GET", "/v1/admin/workspaces/acme/usage", tc.root, nil, &u)
		if u.Usage.Messages < 3 || u.OverLimit == "" {
			return fmt.Errorf("usage %+v", u)
		}
		return nil
	})
	t.Logf("over_limit on %s at %d messages reported", overOn, u.Usage.Messages)
}

// alive returns the IDs of the nodes a node's gossip sees alive.
func (tc *testCluster) alive(nd *nodeProc) []string {
	var info struct {
		Alive []struct {
			ID string `json:"id"`
		} `json:"alive"`
	}
	if st, _ := api(nd, "GET", "/v1/admin/cluster", tc.root, nil, &info); st != 200 {
		return nil
	}
	var ids []string
	for _, m := range info.Alive {
		ids = append(ids, m.ID)
	}
	return ids
}

func (tc *testCluster) waitAlive(t testing.TB, nd *nodeProc, n int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	eventually.Holds(t, within, fmt.Sprintf("%s sees %d nodes alive", nd.Addr, n), func() error {
		if alive := tc.alive(nd); len(alive) != n {
			return fmt.Errorf("alive: %v", alive)
		}
		return nil
	})
	return time.Since(start)
}

// TestGossipDetectsAKilledNode kills a node with SIGKILL: the others drop it
// from their view within the failure-detection time, count a failure, and
// see it again once it restarts from its data directory.
func TestGossipDetectsAKilledNode(t *testing.T) {
	tc := startCluster(t, 3)
	for _, nd := range tc.nodes {
		tc.waitAlive(t, nd, 3, 20*time.Second)
	}
	victim := tc.nodes[2]
	victim.Kill9(t)
	detected := tc.waitAlive(t, tc.nodes[0], 2, 20*time.Second)
	tc.waitAlive(t, tc.nodes[1], 2, 5*time.Second)
	if f := metric(t, tc.nodes[0], "parley_gossip_member_failures_total"); f < 1 {
		t.Errorf("failures counted: %v", f)
	}
	victim.Restart(t)
	for _, nd := range tc.nodes {
		tc.waitAlive(t, nd, 3, 20*time.Second)
	}
	t.Logf("a SIGKILLed node left the others' view after %s", detected.Round(time.Millisecond))
}
