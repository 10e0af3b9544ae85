package cluster

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestBackupSnapshotRestoresANode backs up a follower's control plane,
// wipes its Raft directory, puts the backup's files back and restarts it:
// it starts from the snapshot (not from nothing: with Bootstrap it would
// otherwise found a cluster of its own) and catches up with what was
// written after the backup.
func TestBackupSnapshotRestoresANode(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t, 3, nil)
	ctx := testContext(t)
	leader := tc.leader()
	res := mustApply(t, leader, CreateWorkspace{ID: "acme", Name: "Acme", Plan: "team", Created: t0})
	tc.waitApplied(res.Index)

	files := map[string][]byte{}
	var names []string
	snap, err := tc.node("n3").BackupSnapshot(ctx, func(name string, size int64, r io.Reader) error {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if int64(len(b)) != size {
			t.Errorf("%s: %d bytes, said %d", name, len(b), size)
		}
		files[name] = b
		names = append(names, name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Index < res.Index {
		t.Fatalf("snapshot at index %d, before the workspace's %d", snap.Index, res.Index)
	}
	want := []string{filepath.Join("snapshots", snap.ID, "meta.json"), filepath.Join("snapshots", snap.ID, "state.bin")}
	if len(names) != 2 || names[0] != want[0] || names[1] != want[1] {
		t.Fatalf("backup files %v, want %v", names, want)
	}

	dir := tc.dir("n3")
	tc.stop("n3")
	later := mustApply(t, tc.leader(), CreateWorkspace{ID: "later", Name: "Later", Plan: "team", Created: t0})
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := tc.start("n3", true)
	if c.fsm.restores.Load() == 0 {
		t.Fatal("the restored node did not start from the backup's snapshot")
	}
	if _, err := c.Workspace("acme"); err != nil {
		t.Fatalf("restored node: %v", err)
	}
	if err := c.WaitApplied(ctx, later.Index); err != nil {
		t.Fatalf("restored node did not catch up: %v", err)
	}
	if _, err := c.Workspace("later"); err != nil {
		t.Fatalf("restored node after catching up: %v", err)
	}
	if got := len(c.Members()); got != 3 {
		t.Fatalf("restored node sees %d members", got)
	}
}
