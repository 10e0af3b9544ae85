package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"parley/cluster/clusterkey"
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

// TestRotatedClusterKeyKeepsConversations: a node's store is sealed under a
// key derived from the cluster key. Started with a new cluster key alone it
// refuses to open its store (rather than serve conversations it cannot
// read); given the old one too (-previous-cluster-key) it seals its
// conversations' keys again under the new one and serves them as before,
// and from then on starts with the new key alone.
func TestRotatedClusterKeyKeepsConversations(t *testing.T) {
	dir := t.TempDir()
	keyFile := func(name string) (string, clusterkey.Key) {
		raw := make([]byte, 32)
		rand.Read(raw)
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, []byte(hex.EncodeToString(raw)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path, raw
	}
	oldFile, oldKey := keyFile("old.key")
	newFile, newKey := keyFile("new.key")
	nd := startNode(t, dir, "-cluster-key", oldFile)
	ctx := testCtx(t, 90*time.Second)
	body := canary("rotated")
	v, _, conv := startVisitor(t, ctx, nd, "demo")
	for i := range 3 {
		say(t, ctx, v, conv, fmt.Sprintf("m-%06d", i), body)
	}
	v.close()
	digest := func(token string) convDigest {
		t.Helper()
		var d struct {
			Conversations map[string]convDigest `json:"conversations"`
		}
		mustAPI(t, nd, "GET", "/v1/admin/workspaces/demo/digest", token, nil, &d)
		return d.Conversations[conv]
	}
	before := digest(oldKey.AdminToken())
	if before.Messages != 3 {
		t.Fatalf("digest before the rotation: %+v", before)
	}
	nd.Stop()

	// The new key alone: the node does not start.
	args := slices.Clone(nd.Args)
	args[slices.Index(args, oldFile)] = newFile
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	out, err := exec.CommandContext(cctx, parleyBin, args...).CombinedOutput()
	cancel()
	if err == nil || !strings.Contains(string(out), "previous") {
		t.Fatalf("a node given another cluster key alone: %v\n%s", err, out)
	}

	// With the old one too, it serves the conversation as it was.
	nd.Args = append(args, "-previous-cluster-key", oldFile)
	nd.Restart(t)
	if after := digest(newKey.AdminToken()); after.State != before.State || after.Messages != 3 {
		t.Fatalf("digest after the rotation %+v, before %+v", after, before)
	}
	nd.Stop()
	nd.Args = args
	nd.Restart(t)
	if after := digest(newKey.AdminToken()); after.State != before.State || after.Messages != 3 {
		t.Fatalf("digest with the new key alone %+v, before %+v", after, before)
	}
	if hits := scanFiles(t, []*nodeProc{nd}, []string{body}); len(hits) > 0 {
		t.Fatalf("text in plaintext on disk: %v", hits)
	}
}
