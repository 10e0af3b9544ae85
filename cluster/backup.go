package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// SnapshotCopy describes the control-plane snapshot a backup holds.
type SnapshotCopy struct {
	// ID names the snapshot's directory under DataDir/snapshots.
	ID string `json:"id"`
	// Index and Term are those of the last entry it holds.
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	// Size is the size of its state (state.bin).
	Size int64 `json:"size"`
}

// BackupSnapshot takes a snapshot now (Snapshot) and hands the newest one
// the snapshot store keeps to add, file by file, as the store keeps them
// under DataDir: "snapshots/ID/meta.json" then "snapshots/ID/state.bin"
// (its integrity checked as it is read). Those files put back in a node's
// Raft directory are a snapshot it starts from. The secrets in the state
// stay sealed under the cluster's master key (secrets.go).
func (c *Cluster) BackupSnapshot(ctx context.Context, add func(name string, size int64, r io.Reader) error) (SnapshotCopy, error) {
	if err := c.Snapshot(ctx); err != nil {
		return SnapshotCopy{}, fmt.Errorf("backup: snapshot: %w", err)
	}
	list, err := c.snaps.List()
	if err != nil {
		return SnapshotCopy{}, fmt.Errorf("backup: list snapshots: %w", err)
	}
	if len(list) == 0 {
		return SnapshotCopy{}, errors.New("backup: no snapshot after taking one")
	}
	meta, state, err := c.snaps.Open(list[0].ID)
	if err != nil {
		return SnapshotCopy{}, fmt.Errorf("backup: open snapshot %s: %w", list[0].ID, err)
	}
	defer state.Close()
	// Opening it holds its state file open: a newer snapshot reaping the
	// directory meanwhile removes no byte of it from under this copy. The
	// meta file is read now, as small as it is.
	dir := filepath.Join("snapshots", meta.ID)
	metaJSON, err := os.ReadFile(filepath.Join(c.cfg.DataDir, dir, "meta.json"))
	if err != nil {
		return SnapshotCopy{}, fmt.Errorf("backup: snapshot meta: %w", err)
	}
	if err := add(filepath.Join(dir, "meta.json"), int64(len(metaJSON)), bytes.NewReader(metaJSON)); err != nil {
		return SnapshotCopy{}, err
	}
	if err := add(filepath.Join(dir, "state.bin"), meta.Size, state); err != nil {
		return SnapshotCopy{}, err
	}
	return SnapshotCopy{ID: meta.ID, Index: meta.Index, Term: meta.Term, Size: meta.Size}, nil
}
