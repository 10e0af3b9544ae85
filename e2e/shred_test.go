package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestErasureShredsEveryReplica: a visitor whose name is a canary writes
// another canary in a conversation that reaches its replicas. No file of
// any node's data directory (the store, its keys, Raft's files) holds
// either in plaintext, neither before the erasure nor the moment the API
// confirms it: the text is sealed at rest under the conversation's key, and
// the erasure destroys the key on every replica (crypto-shredding), with no
// wait for a scrub.
func TestErasureShredsEveryReplica(t *testing.T) {
	tc := startCluster(t, 3)
	n1, n2 := tc.nodes[0], tc.nodes[1]
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	ctx := testCtx(t, 180*time.Second)
	body, name := canary("body"), canary("visitor-name")
	canaries := []string{body, name}

	v, err := dialNode(ctx, n1)
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()
	if _, err := v.hello(ctx, "acme", map[string]any{"name": name}); err != nil {
		t.Fatal(err)
	}
	v.send(ctx, map[string]any{"type": "start", "ref": "s"})
	st, err := v.await(ctx, "started", nil)
	if err != nil {
		t.Fatal(err)
	}
	conv := st["conversation"].(string)
	for i := range 3 {
		say(t, ctx, v, conv, fmt.Sprintf("m-%06d", i), fmt.Sprintf("%s message %d", body, i))
	}
	// An agent on another node reads it there (and so holds a replica).
	agent := tc.agentOn(t, ctx, n1, n2, "acme", "ann")
	defer agent.close()
	tc.waitConverged(t, "acme", conv, 3, 30*time.Second)
	var holders []string
	for _, nd := range tc.nodes {
		if held, n := tc.holds(t, nd, "acme", conv); held && n == 3 {
			holders = append(holders, nd.Addr)
		}
	}
	if len(holders) < 2 {
		t.Fatalf("the conversation is held by %v only: no replica to check", holders)
	}
	hist, err := agent.history(ctx, conv)
	if err != nil || len(hist) != 3 {
		t.Fatalf("agent's history: %d events, %v", len(hist), err)
	}
	m := hist[0]["message"].(map[string]any)
	if !strings.HasPrefix(m["body"].(string), body) || m["name"] != name {
		t.Fatalf("agent reads %v", m)
	}

	// Before the erasure: readable through the API, in no file.
	if hits := scanFiles(t, tc.nodes, canaries); len(hits) > 0 {
		slices.Sort(hits)
		t.Fatalf("text in plaintext in the files before the erasure:\n%s", strings.Join(hits, "\n"))
	}

	token := tc.login(t, n1, n2, "acme", "sam")
	var ans struct {
		Erased      string   `json:"erased"`
		Confirmed   []string `json:"confirmed"`
		Unconfirmed []string `json:"unconfirmed"`
	}
	mustAPI(t, n2, "DELETE", "/v1/workspaces/acme/conversations/"+conv, token, nil, &ans)
	// The moment it is confirmed: no file of any node holds the text.
	hits := scanFiles(t, tc.nodes, canaries)
	if ans.Erased != conv || len(ans.Unconfirmed) != 0 || len(ans.Confirmed) != 3 {
		t.Fatalf("erasure answered %+v", ans)
	}
	if len(hits) > 0 {
		slices.Sort(hits)
		t.Fatalf("text in plaintext in the files the moment the erasure was confirmed:\n%s", strings.Join(hits, "\n"))
	}
	for _, nd := range tc.nodes {
		if held, n := tc.holds(t, nd, "acme", conv); held {
			t.Errorf("%s still holds the conversation (%d messages)", nd.Addr, n)
		}
	}
	t.Logf("held by %v; no plaintext before the erasure nor when it was confirmed by %v", holders, ans.Confirmed)
}
