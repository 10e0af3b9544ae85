package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"parley/cluster/clusterkey"
	"parley/internal/eventually"
	"parley/store"

	bolt "go.etcd.io/bbolt"
)

// Canaries of a visitor's personal data: their name, and a card number and
// an e-mail address in a message body. No byte of them may be left on a
// node that must not hold the workspace.
const (
	canaryName  = "Zelda Canaryfield"
	canaryCard  = "4111222233334444"
	canaryEmail = "zelda.canary@example.test"
)

var canaries = []string{canaryName, canaryCard, canaryEmail}

// residentCluster is the cluster the issue reproduced on: five nodes in
// eu, eu, us, ap, eu.
func residentCluster(t *testing.T) *testCluster {
	return startClusterOn(t, clusterSpec{bin: parleyBin, n: 5, regions: []string{"eu", "eu", "us", "ap", "eu"}})
}

// writeCanaries starts n conversations of ws through nd, each from a
// visitor named canaryName with a message carrying the card and e-mail.
func writeCanaries(t *testing.T, ctx context.Context, nd *nodeProc, ws string, n int) []string {
	t.Helper()
	var convs []string
	for i := range n {
		v, err := dialNode(ctx, nd)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.hello(ctx, ws, map[string]any{"name": canaryName}); err != nil {
			v.close()
			t.Fatal(err)
		}
		v.send(ctx, map[string]any{"type": "start", "ref": "s"})
		st, err := v.await(ctx, "started", nil)
		if err != nil {
			v.close()
			t.Fatal(err)
		}
		conv := st["conversation"].(string)
		say(t, ctx, v, conv, fmt.Sprintf("m-canary-%03d", i), fmt.Sprintf("my card is %s, write to %s", canaryCard, canaryEmail))
		v.close()
		convs = append(convs, conv)
	}
	return convs
}

// digestOf is what a node holds of ws: conversation -> messages, read from
// its store by the admin digest (which answers for a deleted workspace).
func digestOf(t *testing.T, nd *nodeProc, root, ws string) map[string]int {
	t.Helper()
	var d struct {
		Conversations map[string]struct{ Messages int } `json:"conversations"`
	}
	mustAPI(t, nd, "GET", "/v1/admin/workspaces/"+ws+"/digest", root, nil, &d)
	out := map[string]int{}
	for c, x := range d.Conversations {
		out[c] = x.Messages
	}
	return out
}

// scanLive stops a node and lists the canaries found in the keys and
// values of its store's buckets, sealed values opened with the node's keys
// (a copy of its store opened under the KEK the node derives from the
// cluster key): what it holds, as opposed to bytes left in pages bbolt
// freed (which the byte scan of its files also finds).
func scanLive(t *testing.T, tc *testCluster, nd *nodeProc) []string {
	t.Helper()
	nd.Stop()
	raw, err := os.ReadFile(filepath.Join(nd.DataDir, "parley.db"))
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "parley.db")
	if err := os.WriteFile(cp, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(cp, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var hits []string
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				for _, c := range canaries {
					if bytes.Contains(k, []byte(c)) || bytes.Contains(v, []byte(c)) {
						hits = append(hits, fmt.Sprintf("%s: bucket %s key %q holds %q", nd.DataDir, name, k, c))
					}
				}
				return nil
			})
		})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	key, err := clusterkey.Load(tc.keyFile, false)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(store.Config{Path: cp, KEK: key.StoreKEK(), ScrubAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.ForEachConversation(func(c store.Conversation) error {
		text, _ := json.Marshal(c)
		evs, _, err := st.Events(c.Workspace, c.ID, 0, 100000)
		if err != nil {
			return err
		}
		for _, e := range evs {
			m, _ := json.Marshal(e.Message)
			text = append(text, m...)
		}
		for _, cn := range canaries {
			if bytes.Contains(text, []byte(cn)) {
				hits = append(hits, fmt.Sprintf("%s: conversation %s/%s holds %q", nd.DataDir, c.Workspace, c.ID, cn))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// TestDeletedWorkspaceLeavesNoData reproduces issue 12, 3a and 3b: a
// workspace's conversations are written, one node holding them is killed,
// and the workspace is deleted. The answer says which nodes purged it (not
// the dead one); the ID cannot be given to another tenant; every live
// node's store holds nothing of it at once, the dead one purges it when it
// comes back, and a node that joins later never gets it. At the end no
// file of any node's data holds a byte of the visitor's name, card number
// or e-mail.
func TestDeletedWorkspaceLeavesNoData(t *testing.T) {
	tc := residentCluster(t)
	n1 := tc.nodes[0]
	ctx := testCtx(t, 180*time.Second)
	var created struct{ Index uint64 }
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "tenantx", "name": "Tenant X", "plan": "team"}, &created)
	for _, nd := range tc.nodes {
		mustAPI(t, nd, "GET", fmt.Sprintf("/v1/admin/workspaces/tenantx?min_index=%d", created.Index), tc.root, nil, nil)
	}
	convs := writeCanaries(t, ctx, tc.nodes[2], "tenantx", 4)
	// Wait for the replicas to hold them, and pick a holder to kill that
	// is not the node the test talks to.
	holders := map[int]bool{}
	eventually.Holds(t, 30*time.Second, "replicas hold the conversations", func() error {
		per := map[string]int{}
		for i, nd := range tc.nodes {
			for c := range digestOf(t, nd, tc.root, "tenantx") {
				per[c]++
				holders[i] = true
			}
		}
		for _, c := range convs {
			if per[c] < 3 {
				return fmt.Errorf("conversation %s on %d nodes", c, per[c])
			}
		}
		return nil
	})
	down, lead := -1, tc.leader(t)
	for i := len(tc.nodes) - 1; i > 0; i-- {
		if holders[i] && tc.nodes[i] != lead {
			down = i
			break
		}
	}
	if down < 0 {
		t.Fatalf("no follower other than n1 holds the conversations: %v", holders)
	}
	dead := tc.nodes[down]
	dead.Kill9(t)
	deadID := fmt.Sprintf("n%d", down+1)

	var del struct {
		Purge struct{ Confirmed, Unconfirmed []string }
	}
	mustAPI(t, n1, "DELETE", "/v1/admin/workspaces/tenantx", tc.root, nil, &del)
	if !slices.Contains(del.Purge.Unconfirmed, deadID) || len(del.Purge.Confirmed) != 4 || slices.Contains(del.Purge.Confirmed, deadID) {
		t.Errorf("purge answer %+v, want the 4 live nodes confirmed and %s not", del.Purge, deadID)
	}
	// The ID is never handed to another tenant.
	if st, body := api(n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "tenantx", "name": "Someone else", "plan": "team"}, nil); st != 409 {
		t.Fatalf("re-creating a deleted workspace: %d %s", st, body)
	}
	for i, nd := range tc.nodes {
		if i == down {
			continue
		}
		if d := digestOf(t, nd, tc.root, "tenantx"); len(d) > 0 {
			t.Errorf("%s still holds %v after the deletion", nd.Addr, d)
		}
		// A visitor of the deleted workspace is refused everywhere.
		v, err := dialNode(ctx, nd)
		if err != nil {
			t.Fatal(err)
		}
		if w, err := v.visitorHelloIn(ctx, "tenantx"); err == nil {
			t.Errorf("%s welcomed a visitor of the deleted workspace: %v", nd.Addr, w)
		}
		v.close()
	}

	// The node down at the time purges when it comes back.
	dead.Restart(t)
	eventually.Holds(t, 60*time.Second, "the node down during the deletion purges", func() error {
		if d := digestOf(t, dead, tc.root, "tenantx"); len(d) > 0 {
			return fmt.Errorf("%s holds %v", deadID, d)
		}
		return nil
	})
	// Nor did it hand its copy back to the others meanwhile (anti-entropy
	// runs as it comes back): an unknown or deleted workspace is refused.
	for _, nd := range tc.nodes {
		if d := digestOf(t, nd, tc.root, "tenantx"); len(d) > 0 {
			t.Errorf("%s holds %v after the dead node came back", nd.Addr, d)
		}
	}
	// A node that joins later never gets it.
	late := startNodeAt(t, parleyBin, nil, freeAddr(t), filepath.Join(t.TempDir(), "n6"), "-node", "n6", "-raft-addr", freeAddr(t),
		"-gossip-addr", freeAddr(t), "-cluster-key", tc.keyFile, "-region", "us", "-h3", "off", "-join", tc.raft[0])
	all := append(slices.Clone(tc.nodes), late)
	tc.waitAlive(t, late, 6, 30*time.Second)

	if d := digestOf(t, late, tc.root, "tenantx"); len(d) > 0 {
		t.Errorf("the node that joined later holds %v", d)
	}
	// Every byte of the visitor's data is gone from every node's files
	// (freed pages included, which the store scrubs).
	if err := eventually.Poll(60*time.Second, func() error {
		if hits := scanFiles(t, all, canaries); len(hits) > 0 {
			return fmt.Errorf("%s", strings.Join(hits, "; "))
		}
		return nil
	}); err != nil {
		t.Errorf("files still hold the canaries after 60s: %v", err)
	}
	// And no key or value of any store.
	for _, nd := range all {
		for _, h := range scanLive(t, tc, nd) {
			t.Error(h)
		}
	}
}

// TestPinningMovesDataToItsRegion reproduces issue 12, 3d: an unpinned
// workspace's conversations are spread over the five nodes; the ap node is
// stopped, and the workspace is pinned to eu. The answer says which nodes
// confirmed (not the ap one); every eu node holds every message; the us
// node holds nothing at once, the ap node purges when it comes back, and
// no file of theirs holds a byte of the visitor's data.
func TestPinningMovesDataToItsRegion(t *testing.T) {
	tc := residentCluster(t)
	n1, us, ap := tc.nodes[0], tc.nodes[2], tc.nodes[3]
	eu := []*nodeProc{tc.nodes[0], tc.nodes[1], tc.nodes[4]}
	ctx := testCtx(t, 180*time.Second)
	var created struct{ Index uint64 }
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "open", "name": "Open", "plan": "team"}, &created)
	for _, nd := range tc.nodes {
		mustAPI(t, nd, "GET", fmt.Sprintf("/v1/admin/workspaces/open?min_index=%d", created.Index), tc.root, nil, nil)
	}
	convs := writeCanaries(t, ctx, us, "open", 6)
	eventually.Holds(t, 30*time.Second, "replicas hold the conversations", func() error {
		per := map[string]int{}
		for _, nd := range tc.nodes {
			for c := range digestOf(t, nd, tc.root, "open") {
				per[c]++
			}
		}
		for _, c := range convs {
			if per[c] < 3 {
				return fmt.Errorf("conversation %s on %d nodes", c, per[c])
			}
		}
		return nil
	})
	for _, nd := range []*nodeProc{us, ap} {
		if len(digestOf(t, nd, tc.root, "open")) == 0 {
			t.Logf("%s holds none of the conversations before the pin", nd.Addr)
		}
	}
	ap.Kill9(t)

	var pin struct {
		Purge struct{ Confirmed, Unconfirmed []string }
	}
	mustAPI(t, n1, "PATCH", "/v1/admin/workspaces/open", tc.root, map[string]any{"region": "eu"}, &pin)
	if !slices.Contains(pin.Purge.Unconfirmed, "n4") || len(pin.Purge.Confirmed) != 4 {
		t.Errorf("purge answer %+v, want the 4 live nodes confirmed and n4 not", pin.Purge)
	}
	// Nothing lost: every eu node holds every conversation, whole.
	eventually.Holds(t, 60*time.Second, "every eu node holds every conversation", func() error {
		for _, nd := range eu {
			d := digestOf(t, nd, tc.root, "open")
			for _, c := range convs {
				if d[c] != 1 {
					return fmt.Errorf("%s holds %d messages of %s", nd.Addr, d[c], c)
				}
			}
		}
		return nil
	})
	if d := digestOf(t, us, tc.root, "open"); len(d) > 0 {
		t.Errorf("the us node still holds %v after the pin", d)
	}
	ap.Restart(t)
	eventually.Holds(t, 60*time.Second, "the ap node down during the pin purges", func() error {
		if d := digestOf(t, ap, tc.root, "open"); len(d) > 0 {
			return fmt.Errorf("ap holds %v", d)
		}
		return nil
	})
	// An agent of the workspace reads the conversations through any node.
	agent := tc.agentOn(t, ctx, n1, us, "open", "olga")
	for _, c := range convs {
		hist, err := agent.history(ctx, c)
		if err != nil || len(hist) != 1 {
			t.Fatalf("agent through the us node reads %d messages of %s: %v", len(hist), c, err)
		}
	}
	if err := eventually.Poll(60*time.Second, func() error {
		if hits := scanFiles(t, []*nodeProc{us, ap}, canaries); len(hits) > 0 {
			return fmt.Errorf("%s", strings.Join(hits, "; "))
		}
		return nil
	}); err != nil {
		t.Errorf("files of the us and ap nodes still hold the canaries after 60s: %v", err)
	}
	for _, nd := range []*nodeProc{us, ap} {
		for _, h := range scanLive(t, tc, nd) {
			t.Error(h)
		}
	}
}
