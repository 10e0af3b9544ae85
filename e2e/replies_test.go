package e2e

import (
	"fmt"
	"testing"
	"time"

	"parley/internal/eventually"
)

// TestSavedRepliesReachEveryNode: a saved reply made through one node is
// listed by the others; one deleted through another node is gone
// everywhere; a node that was down while a reply was saved has it soon
// after it is back.
func TestSavedRepliesReachEveryNode(t *testing.T) {
	tc := startCluster(t, 3)
	n1, n2, n3 := tc.nodes[0], tc.nodes[1], tc.nodes[2]
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	ctx := testCtx(t, 120*time.Second)
	tc.agentOn(t, ctx, n1, n1, "acme", "sam")
	var login struct{ Token string }
	mustAPI(t, n1, "POST", "/v1/login", "", map[string]any{"workspace": "acme", "email": "sam@acme.test", "password": "a good long password"}, &login)

	titles := func(nd *nodeProc) map[string]bool {
		var out struct{ Items []struct{ Title string } }
		mustAPI(t, nd, "GET", "/v1/workspaces/acme/replies", login.Token, nil, &out)
		m := map[string]bool{}
		for _, it := range out.Items {
			m[it.Title] = true
		}
		return m
	}
	// listed says whether titles(nd) lists title as want.
	listed := func(nd *nodeProc, title string, want bool) error {
		if got := titles(nd); got[title] != want {
			return fmt.Errorf("%s: %q listed %v, titles %v", nd.Addr, title, !want, got)
		}
		return nil
	}

	var first struct{ ID string }
	mustAPI(t, n1, "POST", "/v1/workspaces/acme/replies", login.Token, map[string]any{"title": "Refunds", "body": "Refunds take five days."}, &first)
	for _, nd := range []*nodeProc{n2, n3} {
		eventually.Holds(t, 20*time.Second, "the reply saved on n1 listed", func() error { return listed(nd, "Refunds", true) })
	}
	mustAPI(t, n2, "DELETE", "/v1/workspaces/acme/replies/"+first.ID, login.Token, nil, nil)
	for _, nd := range tc.nodes {
		eventually.Holds(t, 20*time.Second, "the reply deleted on n2 gone", func() error { return listed(nd, "Refunds", false) })
	}

	n3.Kill9(t)
	mustAPI(t, n1, "POST", "/v1/workspaces/acme/replies", login.Token, map[string]any{"title": "Shipping", "body": "We ship in two days."}, nil)
	n3.Restart(t)
	tc.waitAlive(t, n3, 3, 30*time.Second)
	start := time.Now()
	eventually.Holds(t, 20*time.Second, "the reply saved while n3 was down listed on n3", func() error {
		if err := listed(n3, "Shipping", true); err != nil {
			return err
		}
		return listed(n3, "Refunds", false)
	})
	t.Logf("n3 had the reply saved while it was down %s after it was back", time.Since(start).Round(time.Millisecond))
}
