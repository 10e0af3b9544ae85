package node

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"parley/cluster"
	"parley/store"
)

// testBackup builds a backup file of node id as Node.backup lays it out,
// with a real store file; cut drops entries from the end.
func testBackup(t *testing.T, id string, cut int) string {
	t.Helper()
	dir := t.TempDir()
	kek := make([]byte, store.KEKSize)
	rand.Read(kek)
	st, err := store.Open(store.Config{Path: filepath.Join(dir, "src.db"), KEK: kek})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var db bytes.Buffer
	if _, err := st.Backup(&db); err != nil {
		t.Fatal(err)
	}
	type entry struct {
		name string
		body []byte
	}
	entries := []entry{
		{"raft/snapshots/2-10-1/meta.json", []byte(`{"ID":"2-10-1"}`)},
		{"raft/snapshots/2-10-1/state.bin", []byte("state")},
		{"parley.db", db.Bytes()},
	}
	m := BackupManifest{Format: backupFormat, Node: id, TakenAt: time.Now().UTC(), StoreSize: int64(db.Len()),
		Snapshot: cluster.SnapshotCopy{ID: "2-10-1", Index: 10, Term: 2, Size: 5}}
	for _, e := range entries {
		m.Files = append(m.Files, e.name)
	}
	var mb bytes.Buffer
	if err := json.NewEncoder(&mb).Encode(m); err != nil {
		t.Fatal(err)
	}
	entries = append(entries, entry{"manifest.json", mb.Bytes()})
	entries = entries[:len(entries)-cut]
	p := filepath.Join(dir, "backup.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for _, e := range entries {
		tw.WriteHeader(&tar.Header{Name: e.name, Size: int64(len(e.body)), Mode: 0o600, Typeflag: tar.TypeReg})
		tw.Write(e.body)
	}
	tw.Close()
	f.Close()
	return p
}

// TestRestore unpacks a backup into an empty data directory, and refuses
// what would overwrite a store, another node's backup and a backup cut
// short; a surviving Raft directory is kept.
func TestRestore(t *testing.T) {
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	full := testBackup(t, "n2", 0)

	data := t.TempDir()
	m, err := Restore(RestoreConfig{Backup: full, DataDir: data, NodeID: "n2", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if m.Snapshot.Index != 10 {
		t.Fatalf("manifest %+v", m)
	}
	for _, f := range []string{"parley.db", "raft/snapshots/2-10-1/meta.json", "raft/snapshots/2-10-1/state.bin"} {
		if _, err := os.Stat(filepath.Join(data, f)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(data, ".restore-*")); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
	// Once restored, a second restore would overwrite the store.
	if _, err := Restore(RestoreConfig{Backup: full, DataDir: data, NodeID: "n2", Now: now}); !errors.Is(err, ErrRestoreExists) {
		t.Fatalf("restore over a store: %v", err)
	}

	if _, err := Restore(RestoreConfig{Backup: full, DataDir: t.TempDir(), NodeID: "n3", Now: now}); err == nil || !strings.Contains(err.Error(), `of node "n2"`) {
		t.Fatalf("restore of another node's backup: %v", err)
	}
	for cut := 1; cut <= 2; cut++ {
		d := t.TempDir()
		if _, err := Restore(RestoreConfig{Backup: testBackup(t, "n2", cut), DataDir: d, NodeID: "n2", Now: now}); !errors.Is(err, ErrBackupInvalid) {
			t.Fatalf("a backup without its last %d entries: %v", cut, err)
		}
		if _, err := os.Stat(filepath.Join(d, "parley.db")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a backup cut short left a store: %v", err)
		}
	}

	// Raft state that survived is the node's own, newer: kept.
	d := t.TempDir()
	os.MkdirAll(filepath.Join(d, "raft"), 0o700)
	os.WriteFile(filepath.Join(d, "raft", "raft.db"), []byte("own"), 0o600)
	m, err = Restore(RestoreConfig{Backup: full, DataDir: d, NodeID: "n2", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if m.Snapshot.ID != "" {
		t.Fatalf("manifest says the snapshot was restored: %+v", m.Snapshot)
	}
	if _, err := os.Stat(filepath.Join(d, "raft", "snapshots")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("snapshot put beside a surviving Raft state: %v", err)
	}
}
