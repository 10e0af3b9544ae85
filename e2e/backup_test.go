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
	"strings"
	"testing"
	"time"

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
	var origins []string
	for o := range ds[2][w.conv].Vector {
		origins = append(origins, o)
	}
	t.Logf("origins after the restore: %v", origins)
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
