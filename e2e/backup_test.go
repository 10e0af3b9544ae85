package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"parley/internal/eventually"

	bolt "go.etcd.io/bbolt"
)

// backupNode writes nd's backup to a new file with `parleyctl backup` and
// returns its path.
func (tc *testCluster) backupNode(t *testing.T, c *ctl, nd *nodeProc, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	r := c.ok("-node", nd.URL, "-cluster-key", tc.keyFile, "backup", "-out", out)
	if !strings.Contains(r.stdout, "wrote "+out+": ") || !strings.Contains(r.stdout, "node "+nd.ID) {
		t.Fatalf("parleyctl backup said: %s", r)
	}
	return out
}

// restoreNode kills nd with SIGKILL, wipes its data directory as a lost
// disk would, restores it from the backup with `parley restore` and starts
// it again (Restart returns once /readyz answers: a member caught up with
// the control plane, erasures included).
func restoreNode(t *testing.T, nd *nodeProc, backup string) {
	t.Helper()
	nd.Kill9(t)
	if err := os.RemoveAll(nd.DataDir); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(parleyBin, "restore", "-data", nd.DataDir, "-node", nd.ID, backup).CombinedOutput()
	if err != nil {
		t.Fatalf("parley restore: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "control-plane snapshot at index") {
		t.Fatalf("parley restore said: %s", out)
	}
	nd.Restart(t)
}

// backupStore returns the store file (parley.db) in a backup.
func backupStore(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s holds no parley.db", path)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "parley.db" {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// holdsConversationKey says whether a store file holds the (sealed) key of
// a conversation: erasing it destroys the key.
func holdsConversationKey(t *testing.T, db []byte, ws, conv string) bool {
	t.Helper()
	p := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(p, db, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := bolt.Open(p, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	held := false
	err = b.View(func(tx *bolt.Tx) error {
		keys := tx.Bucket([]byte("keys"))
		if keys == nil {
			return errors.New("no keys bucket")
		}
		held = keys.Get([]byte(ws+"\x00"+conv)) != nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return held
}

// TestNodeRestoredFromBackupCatchesUp backs a node of a 3-node cluster up
// while a visitor writes, goes on writing (also through that node, which
// then restarts uncleanly and writes under a new epoch), kills it, wipes
// its data directory and restores it from the backup: it rejoins and
// converges with the others by anti-entropy, every message written after
// the backup included, and what it writes afterwards reaches the others
// (its origin name and seqs are new, not those it gave out after the
// backup).
func TestNodeRestoredFromBackupCatchesUp(t *testing.T) {
	tc := startCluster(t, 3)
	c := newCtl(t)
	n1, n3 := tc.nodes[0], tc.nodes[2]
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	ctx := testCtx(t, 240*time.Second)
	w := newVisitorWriter(t, ctx, "acme", "restore")
	w.write(n1, "m-first", 10)
	w.write(n3, "m-n3-first", 5)

	// The backup is taken while the visitor writes through n1.
	done := make(chan struct{})
	var backup string
	go func() {
		defer close(done)
		backup = filepath.Join(t.TempDir(), "n3.tar")
		cmd := exec.Command(c.bin, "-node", n3.URL, "-cluster-key", tc.keyFile, "backup", "-out", backup)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("parleyctl backup: %v\n%s", err, out)
		}
	}()
	w.write(n1, "m-during", 30)
	<-done
	if t.Failed() {
		t.FailNow()
	}
	// Never overwritten.
	c.fails(1, []string{"exists: not overwriting"}, "-node", n3.URL, "-cluster-key", tc.keyFile, "backup", "-out", backup)

	w.write(n1, "m-after", 10)
	w.write(n3, "m-n3-after", 5)
	// An unclean restart after the backup: n3 writes under a new epoch,
	// which the backup knows nothing of.
	n3.Kill9(t)
	n3.Restart(t)
	w.write(n3, "m-n3-epoch", 5)
	tc.waitConverged(t, "acme", w.conv, len(w.acked), 60*time.Second)

	restoreNode(t, n3, backup)
	// At once through the restored node, before anti-entropy has brought
	// it what it wrote after the backup.
	w.write(n3, "m-n3-restored", 5)
	w.write(n1, "m-restored", 5)
	ds := tc.waitConverged(t, "acme", w.conv, len(w.acked), 90*time.Second)
	if len(w.acked) != 75 {
		t.Fatalf("%d messages acknowledged, want 75", len(w.acked))
	}
	// What the restored node wrote is under an origin name of its own,
	// past every epoch it may have used before (store.RestoredEpoch).
	var origins []string
	restored := false
	for o := range ds[2][w.conv].Vector {
		origins = append(origins, o)
		var epoch uint64
		if _, err := fmt.Sscanf(o, "n3~%d", &epoch); err == nil && epoch > 50000 {
			restored = true
		}
	}
	if !restored {
		t.Fatalf("no origin of the restored node's new epoch among %v", origins)
	}
}

// heldAlike waits until each node of want holds conv with n messages, all
// with the same state and vector.
func (tc *testCluster) heldAlike(t testing.TB, ws, conv string, want []int, n int, within time.Duration) {
	t.Helper()
	eventually.Holds(t, within, fmt.Sprintf("%s held alike with %d messages on %v", conv, n, want), func() error {
		ds := tc.digests(t, ws)
		first := ds[want[0]][conv]
		for _, i := range want {
			d, ok := ds[i][conv]
			if !ok || d.Messages != n || d.State != first.State || replicationVectorString(d.Vector) != replicationVectorString(first.Vector) {
				return fmt.Errorf("n%d: %+v (held %v); n%d: %+v", i+1, d, ok, want[0]+1, first)
			}
		}
		return nil
	})
}

// TestLostRegionRebuiltFromBackups loses both nodes of region eu of a
// 5-node cluster (eu, us, ap, eu, us) at once, disks and all, and rebuilds
// them from their backups, the first of them the node that bootstrapped
// the cluster: conversations with replicas in other regions come back
// whole, messages written after the backups included; a workspace pinned
// to eu comes back as its backups held it (what was acknowledged after
// them lived only in eu, and is lost with it), and takes messages again.
func TestLostRegionRebuiltFromBackups(t *testing.T) {
	tc := startCluster(t, 5)
	c := newCtl(t)
	eu := []int{0, 3}
	var created struct{ Index uint64 }
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "global", "name": "Global", "plan": "team"}, nil)
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "euonly", "name": "EU only", "region": "eu", "plan": "team"}, &created)
	for _, nd := range tc.nodes {
		mustAPI(t, nd, "GET", fmt.Sprintf("/v1/admin/workspaces/euonly?min_index=%d", created.Index), tc.root, nil, nil)
	}
	ctx := testCtx(t, 300*time.Second)
	pinned := newVisitorWriter(t, ctx, "euonly", "resident")
	pinned.write(tc.nodes[0], "m-eu", 10)
	// Global conversations, written through an eu node: replicas by
	// rendezvous, three of five nodes each; at least one held in eu.
	var globals []*visitorWriter
	for i := range 4 {
		w := newVisitorWriter(t, ctx, "global", "everywhere")
		w.write(tc.nodes[eu[i%2]], "m-g", 10)
		globals = append(globals, w)
	}
	tc.heldAlike(t, "euonly", pinned.conv, eu, 10, 60*time.Second)
	// Held whole (10) outside eu: a replica there to write through after
	// the backups (the eu nodes also keep what they served, a copy that
	// stops growing once the visitor has gone).
	outside := map[string]int{}
	eventually.Holds(t, 60*time.Second, "global conversations replicated outside eu", func() error {
		ds := tc.digests(t, "global")
		for _, w := range globals {
			for _, i := range []int{1, 2, 4} {
				if ds[i][w.conv].Messages == 10 {
					outside[w.conv] = i
				}
			}
			if _, ok := outside[w.conv]; !ok {
				return fmt.Errorf("%s held whole on no node outside eu", w.conv)
			}
		}
		return nil
	})

	backups := map[int]string{}
	for _, i := range eu {
		backups[i] = tc.backupNode(t, c, tc.nodes[i], tc.nodes[i].ID+".tar")
	}
	// After the backups: acknowledged in eu only (lost with it), and in
	// every region (kept).
	pinned.write(tc.nodes[3], "m-eu-lost", 5)
	for _, w := range globals {
		w.write(tc.nodes[outside[w.conv]], "m-g-after", 5)
	}
	// The replicas of each (three nodes by rendezvous) hold all 15; at
	// least one conversation has a replica in eu.
	replicas := map[string][]int{}
	eventually.Holds(t, 60*time.Second, "global conversations on their replicas", func() error {
		ds := tc.digests(t, "global")
		for _, w := range globals {
			replicas[w.conv] = nil
			for i, d := range ds {
				if d[w.conv].Messages == 15 {
					replicas[w.conv] = append(replicas[w.conv], i)
				}
			}
			if len(replicas[w.conv]) < 3 {
				return fmt.Errorf("%s held whole on %v", w.conv, replicas[w.conv])
			}
		}
		return nil
	})
	inEU := 0
	for _, w := range globals {
		if slices.Contains(replicas[w.conv], 0) || slices.Contains(replicas[w.conv], 3) {
			inEU++
		}
	}
	if inEU == 0 {
		t.Fatalf("no global conversation has a replica in eu: %v", replicas)
	}
	for _, w := range globals {
		tc.heldAlike(t, "global", w.conv, replicas[w.conv], 15, 60*time.Second)
	}

	// The region is lost: both nodes at once.
	for _, i := range eu {
		tc.nodes[i].Kill9(t)
		if err := os.RemoveAll(tc.nodes[i].DataDir); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range eu {
		out, err := exec.Command(parleyBin, "restore", "-data", tc.nodes[i].DataDir, "-node", tc.nodes[i].ID, backups[i]).CombinedOutput()
		if err != nil {
			t.Fatalf("parley restore: %v\n%s", err, out)
		}
	}
	for _, i := range eu {
		tc.nodes[i].Restart(t)
	}
	tc.waitVoters(t, 5)
	// n1, started without -join, bootstrapped the cluster once, at its
	// first start: restored, it starts from the backup's snapshot instead
	// of founding a cluster of its own.
	if n := strings.Count(tc.nodes[0].Logs(), "cluster: bootstrapped"); n != 1 {
		t.Fatalf("n1 bootstrapped a cluster %d times", n)
	}
	for _, w := range globals {
		tc.heldAlike(t, "global", w.conv, replicas[w.conv], 15, 90*time.Second)
	}
	tc.heldAlike(t, "euonly", pinned.conv, eu, 10, 60*time.Second)
	pinned.write(tc.nodes[0], "m-eu-again", 3)
	tc.heldAlike(t, "euonly", pinned.conv, eu, 13, 60*time.Second)
	// Nothing of the pinned workspace outside eu.
	for i, d := range tc.digests(t, "euonly") {
		if i != 0 && i != 3 && len(d) > 0 {
			t.Errorf("n%d holds conversations of the eu-pinned workspace: %v", i+1, d)
		}
	}
}

// TestErasureAfterBackupSurvivesRestore erases a conversation after a
// node's backup and restores the node from that backup: the node, ready
// again, does not hold the conversation (it applied the control plane's
// erasures before answering ready), its store holds no key of it any more,
// and no file of its data directory holds the conversation's text.
func TestErasureAfterBackupSurvivesRestore(t *testing.T) {
	tc := startCluster(t, 3)
	c := newCtl(t)
	n1, n2, n3 := tc.nodes[0], tc.nodes[1], tc.nodes[2]
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	ctx := testCtx(t, 120*time.Second)
	canary := fmt.Sprintf("erased after the backup %x", time.Now().UnixNano())
	gone := newVisitorWriter(t, ctx, "acme", canary)
	gone.write(n1, "m-gone", 5)
	kept := newVisitorWriter(t, ctx, "acme", "kept")
	kept.write(n1, "m-kept", 5)
	tc.waitConverged(t, "acme", gone.conv, 5, 60*time.Second)
	tc.waitConverged(t, "acme", kept.conv, 5, 60*time.Second)

	backup := tc.backupNode(t, c, n3, "n3.tar")
	raw, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	// Sealed in the copy: the text is not in its bytes, and the key that
	// opens it is, sealed under the cluster key.
	if bytes.Contains(raw, []byte(canary)) {
		t.Fatal("the backup holds the conversation's text in clear")
	}
	if !holdsConversationKey(t, backupStore(t, backup), "acme", gone.conv) {
		t.Fatal("the backup holds no key of the conversation: the check below would prove nothing")
	}

	var inv struct{ Index uint64 }
	mustAPI(t, n1, "POST", "/v1/admin/workspaces/acme/operators", tc.root, map[string]any{"id": "sam", "email": "sam@acme.test", "name": "Sam", "password": "a good long password"}, &inv)
	var login struct{ Token string }
	mustAPI(t, n2, "POST", fmt.Sprintf("/v1/login?min_index=%d", inv.Index), "", map[string]any{"workspace": "acme", "email": "sam@acme.test", "password": "a good long password"}, &login)
	mustAPI(t, n2, "DELETE", "/v1/workspaces/acme/conversations/"+gone.conv, login.Token, nil, nil)

	restoreNode(t, n3, backup)
	// Ready means caught up with the control plane's erasures: no wait.
	var d struct {
		Conversations map[string]convDigest `json:"conversations"`
	}
	mustAPI(t, n3, "GET", "/v1/admin/workspaces/acme/digest", tc.root, nil, &d)
	if _, ok := d.Conversations[gone.conv]; ok {
		t.Fatalf("the restored node holds the conversation erased after its backup: %+v", d.Conversations)
	}
	if _, ok := d.Conversations[kept.conv]; !ok {
		t.Fatalf("the restored node lost a conversation it should hold: %+v", d.Conversations)
	}
	// Nor does it list it to an agent signed in there.
	var list json.RawMessage
	mustAPI(t, n3, "GET", "/v1/workspaces/acme/conversations", login.Token, nil, &list)
	if bytes.Contains(list, []byte(gone.conv)) || !bytes.Contains(list, []byte(kept.conv)) {
		t.Fatalf("the restored node lists: %s", list)
	}
	if holdsConversationKey(t, backupStore(t, tc.backupNode(t, c, n3, "n3-after.tar")), "acme", gone.conv) {
		t.Fatal("the restored node's store still holds the erased conversation's key")
	}
	if found := scanFiles(t, []*nodeProc{n3}, []string{canary}); len(found) > 0 {
		t.Fatalf("the erased text is in the restored node's files: %v", found)
	}
	tc.waitConverged(t, "acme", kept.conv, 5, 60*time.Second)
}
