package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"parley/internal/eventually"
)

// TestIdleClusterLeaderLossLetsAgentsBackIn takes the leader of an idle
// cluster away, first frozen (SIGSTOP for 4 s, then SIGCONT) and then
// killed (SIGKILL): once a new leader is elected, every live node is ready
// and accepts an agent's hello within a few leases, without any write to
// the control plane. A new leader's first entry is a no-op, which the
// state machine never sees: a node that waited for its state to reach the
// leader's commit index stayed locked out until the next write.
func TestIdleClusterLeaderLossLetsAgentsBackIn(t *testing.T) {
	const lease = 3 * time.Second // the default -lease
	// Generous for a loaded machine running race-built nodes; the fault
	// was 40 s to 5 minutes.
	const bound = 5 * lease
	tc := startCluster(t, 3)
	var inv struct{ Index uint64 }
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces/acme/operators", tc.root,
		map[string]any{"id": "sam", "email": "sam@acme.test", "name": "Sam", "password": "a good long password"}, &inv)
	var login struct{ Token string }
	mustAPI(t, tc.nodes[0], "POST", fmt.Sprintf("/v1/login?min_index=%d", inv.Index), "",
		map[string]any{"workspace": "acme", "email": "sam@acme.test", "password": "a good long password"}, &login)
	for _, nd := range tc.nodes {
		if err := agentHello(t, nd, login.Token); err != nil {
			t.Fatalf("agent on %s before the leader loss: %v", nd.Addr, err)
		}
	}

	// backIn waits until every live node is ready and admits the agent,
	// and returns how long that took after the new leader was elected.
	backIn := func(what string, old *nodeProc, elected time.Time) time.Duration {
		t.Helper()
		for _, nd := range tc.nodes {
			if !nd.Running() {
				continue
			}
			err := eventually.Poll(time.Until(elected.Add(bound)), func() error {
				if err := readyz(nd); err != nil {
					return err
				}
				return agentHello(t, nd, login.Token)
			})
			if err != nil {
				t.Fatalf("%s: %s (old leader: %v) still refuses agents %s after the new leader's election: %v",
					what, nd.Addr, nd == old, bound, err)
			}
		}
		return time.Since(elected)
	}

	// Frozen leader.
	old := tc.leader(t)
	if err := old.Suspend(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { old.Continue() })
	stopped := time.Now()
	elected := tc.waitNewLeader(t, old)
	time.Sleep(time.Until(stopped.Add(4 * time.Second)))
	if _, err := old.Continue(); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	frozen := backIn("SIGSTOP", old, elected)
	t.Logf("leader frozen 4s: new leader elected %s after the stop; agents accepted on every node %s after the election (%s after SIGCONT)",
		elected.Sub(stopped).Round(time.Millisecond), frozen.Round(time.Millisecond), time.Since(resumed).Round(time.Millisecond))

	// Killed leader.
	old = tc.leader(t)
	old.Kill9(t)
	killed := time.Now()
	elected = tc.waitNewLeader(t, old)
	// Until a lease after the kill, a node may still be fresh from a
	// catch-up round before it: check once that has run out.
	time.Sleep(time.Until(killed.Add(lease + 100*time.Millisecond)))
	gone := backIn("SIGKILL", old, elected)
	t.Logf("leader killed: new leader elected %s after the kill; agents accepted on every live node %s after the election (checked from a lease after the kill on)",
		elected.Sub(killed).Round(time.Millisecond), gone.Round(time.Millisecond))
}

// waitNewLeader waits until a node other than old reports a leader other
// than old, and returns when it first did.
func (tc *testCluster) waitNewLeader(t testing.TB, old *nodeProc) time.Time {
	t.Helper()
	oldID := ""
	for i, nd := range tc.nodes {
		if nd == old {
			oldID = fmt.Sprintf("n%d", i+1)
		}
	}
	err := eventually.Poll(30*time.Second, func() error {
		for _, nd := range tc.nodes {
			if nd == old || !nd.Running() {
				continue
			}
			var info struct {
				Raft struct {
					LeaderID string `json:"leader_id"`
				} `json:"raft"`
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, _ := apiCtx(ctx, nd, "GET", "/v1/admin/cluster", tc.root, nil, &info)
			cancel()
			if st == 200 && info.Raft.LeaderID != "" && info.Raft.LeaderID != oldID {
				return nil
			}
		}
		return fmt.Errorf("no node names a leader other than %s", oldID)
	})
	if err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// agentHello opens an agent connection to nd with an operator's session
// token and returns nil once welcomed, the refusal otherwise.
func agentHello(t testing.TB, nd *nodeProc, token string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := dialNode(ctx, nd)
	if err != nil {
		return err
	}
	defer cl.close()
	if err := cl.send(ctx, map[string]any{"type": "hello", "v": 1, "workspace": "acme", "role": "agent", "token": token}); err != nil {
		return err
	}
	_, err = cl.await(ctx, "welcome", nil)
	return err
}

// readyz returns nil when nd's /readyz answers 200.
func readyz(nd *nodeProc) error {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(nd.URL + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}
