package node

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"parley/cluster"
	"parley/store"
)

// A backup (GET /v1/admin/cluster/backup, `parleyctl backup`) is a tar
// stream of what a node needs to start again where it was: the control
// plane's newest snapshot as its Raft directory keeps it, then the store's
// file as of one read transaction, then a manifest. The cluster key is not
// in it: the conversations' keys in the store are sealed under a key
// derived from it, the control plane's secrets under another, so a backup
// without the cluster key opens nothing sealed. docs/operations.md
// ("Backup and restore") gives the procedure.

// Names of a backup's entries; the snapshot's are raftDir + "/snapshots/ID/...".
const (
	backupStore    = "parley.db"
	backupManifest = "manifest.json"
	backupRaftDir  = "raft"
	backupFormat   = 1
)

// BackupManifest is a backup's last entry: a stream without it was cut
// short.
type BackupManifest struct {
	Format  int       `json:"format"`
	Node    string    `json:"node"`
	Region  string    `json:"region,omitempty"`
	TakenAt time.Time `json:"taken_at"`
	// StoreSize is the size of parley.db.
	StoreSize int64 `json:"store_size"`
	// Snapshot is the control plane's snapshot in the backup.
	Snapshot cluster.SnapshotCopy `json:"snapshot"`
	// Files lists the entries before the manifest, in order.
	Files []string `json:"files"`
}

// backup writes this node's backup to w. An error after the first byte
// leaves the stream without its manifest.
func (n *Node) backup(ctx context.Context, w io.Writer) error {
	tw := tar.NewWriter(w)
	m := BackupManifest{Format: backupFormat, Node: n.cfg.NodeID, Region: n.cfg.Region, TakenAt: time.Now().UTC()}
	add := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Size: size, Mode: 0o600, ModTime: m.TakenAt, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := io.Copy(tw, r); err != nil {
			return err
		}
		m.Files = append(m.Files, name)
		return nil
	}
	snap, err := n.ctl.c.BackupSnapshot(ctx, func(name string, size int64, r io.Reader) error {
		return add(path.Join(backupRaftDir, filepath.ToSlash(name)), size, r)
	})
	if err != nil {
		return err
	}
	m.Snapshot = snap
	size, err := n.store.BackupSized(func(size int64) (io.Writer, error) {
		return tw, tw.WriteHeader(&tar.Header{Name: backupStore, Size: size, Mode: 0o600, ModTime: m.TakenAt, Typeflag: tar.TypeReg})
	})
	if err != nil {
		return err
	}
	m.StoreSize = size
	m.Files = append(m.Files, backupStore)
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := tw.WriteHeader(&tar.Header{Name: backupManifest, Size: int64(len(b)), Mode: 0o600, ModTime: m.TakenAt, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(b); err != nil {
		return err
	}
	return tw.Close()
}

// RestoreConfig says what Restore restores where.
type RestoreConfig struct {
	// Backup is the backup file (`parleyctl backup -out`).
	Backup string
	// DataDir is the node's data directory (-data); it must not hold a
	// store (parley.db).
	DataDir string
	// NodeID is the node's ID (-node): the backup must be of this node.
	NodeID string
	// Now is the time of the restore. Zero: time.Now.
	Now time.Time
}

// Errors Restore returns that its caller branches on.
var (
	ErrRestoreExists = errors.New("the data directory already holds a store: move parley.db aside first")
	ErrBackupInvalid = errors.New("not a whole Parley backup")
)

// Restore unpacks a backup into a stopped node's data directory, for its
// next start: the store's file, marked restored (store.MarkRestored: its
// seq epoch moves past any the node may have used since the backup), and,
// when the directory holds no Raft state (raft/raft.db), the control
// plane's snapshot, which the node then starts from and catches up after.
// Raft state already there is newer than the backup's and is kept. It
// refuses a directory that holds a store, and a backup of another node.
func Restore(cfg RestoreConfig) (BackupManifest, error) {
	if cfg.Now.IsZero() {
		cfg.Now = time.Now()
	}
	dbPath := filepath.Join(cfg.DataDir, backupStore)
	if _, err := os.Stat(dbPath); err == nil {
		return BackupManifest{}, fmt.Errorf("restore into %s: %w", cfg.DataDir, ErrRestoreExists)
	}
	f, err := os.Open(cfg.Backup)
	if err != nil {
		return BackupManifest{}, fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return BackupManifest{}, fmt.Errorf("restore: %w", err)
	}
	// Unpacked beside where they go, moved into place once the manifest
	// says the backup is whole.
	tmp, err := os.MkdirTemp(cfg.DataDir, ".restore-")
	if err != nil {
		return BackupManifest{}, fmt.Errorf("restore: %w", err)
	}
	defer os.RemoveAll(tmp)
	m, err := unpackBackup(f, tmp)
	if err != nil {
		return m, err
	}
	if m.Node != cfg.NodeID {
		return m, fmt.Errorf("restore: the backup is of node %q, this is %q: restore each node from its own backup", m.Node, cfg.NodeID)
	}
	raftDir := filepath.Join(cfg.DataDir, backupRaftDir)
	if _, err := os.Stat(filepath.Join(raftDir, "raft.db")); errors.Is(err, os.ErrNotExist) {
		src := filepath.Join(tmp, backupRaftDir, "snapshots", m.Snapshot.ID)
		dst := filepath.Join(raftDir, "snapshots", m.Snapshot.ID)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return m, fmt.Errorf("restore: %w", err)
		}
		if err := os.Rename(src, dst); err != nil {
			return m, fmt.Errorf("restore: control-plane snapshot: %w", err)
		}
	} else {
		m.Snapshot = cluster.SnapshotCopy{} // kept the node's own, newer
	}
	if err := os.Rename(filepath.Join(tmp, backupStore), dbPath); err != nil {
		return m, fmt.Errorf("restore: %w", err)
	}
	if err := store.MarkRestored(dbPath, store.RestoredEpoch(cfg.Now)); err != nil {
		return m, fmt.Errorf("restore: %w", err)
	}
	return m, nil
}

// unpackBackup writes a backup's entries under dir and returns its
// manifest, once it has checked that every entry it lists came, and
// nothing else.
func unpackBackup(r io.Reader, dir string) (BackupManifest, error) {
	var m BackupManifest
	var got []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return m, fmt.Errorf("%w: %v", ErrBackupInvalid, err)
		}
		if h.Name == backupManifest {
			if err := json.NewDecoder(tr).Decode(&m); err != nil {
				return m, fmt.Errorf("%w: manifest: %v", ErrBackupInvalid, err)
			}
			continue
		}
		if !backupEntry(h.Name) || h.Typeflag != tar.TypeReg {
			return m, fmt.Errorf("%w: unexpected entry %q", ErrBackupInvalid, h.Name)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return m, err
		}
		out, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return m, err
		}
		_, err = io.Copy(out, tr)
		if err == nil {
			err = out.Sync()
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return m, fmt.Errorf("%w: %s: %v", ErrBackupInvalid, h.Name, err)
		}
		got = append(got, h.Name)
	}
	if m.Format != backupFormat {
		return m, fmt.Errorf("%w: no manifest of format %d (cut short?)", ErrBackupInvalid, backupFormat)
	}
	if strings.Join(got, "\n") != strings.Join(m.Files, "\n") || m.Snapshot.ID == "" {
		return m, fmt.Errorf("%w: entries %v, the manifest lists %v", ErrBackupInvalid, got, m.Files)
	}
	return m, nil
}

// backupEntry says whether name is an entry a backup may hold: the store,
// or a file of a snapshot directory.
func backupEntry(name string) bool {
	if name == backupStore {
		return true
	}
	parts := strings.Split(name, "/")
	return len(parts) == 4 && parts[0] == backupRaftDir && parts[1] == "snapshots" &&
		parts[2] != "" && parts[2] != "." && parts[2] != ".." && !strings.HasPrefix(parts[2], ".") &&
		(parts[3] == "meta.json" || parts[3] == "state.bin")
}
