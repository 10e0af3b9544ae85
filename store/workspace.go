package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Workspace is a tenant's record on this node: that the node holds data of
// it. Who may connect to it, its secrets and its plan live in the Raft
// control plane (package cluster), never here. Records written before the
// control plane also carried secrets; rewriting a record drops them.
type Workspace struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Created int64  `json:"created"`
}

// PutWorkspace durably creates or replaces a workspace record.
func (s *Store) PutWorkspace(ctx context.Context, w Workspace) error {
	if w.ID == "" {
		return fmt.Errorf("workspace id required: %w", ErrInvalid)
	}
	v, err := json.Marshal(w)
	if err != nil {
		return err
	}
	return s.submit(ctx, func(b *batch) error {
		return b.tx.Bucket(bWorkspaces).Put([]byte(w.ID), v)
	})
}

// Workspace returns one workspace record.
func (s *Store) Workspace(id string) (Workspace, error) {
	var w Workspace
	err := s.db.View(func(tx *bolt.Tx) error {
		got, err := getWorkspace(tx, id)
		if err == nil {
			w = *got
		}
		return err
	})
	return w, err
}

func getWorkspace(tx *bolt.Tx, id string) (*Workspace, error) {
	v := tx.Bucket(bWorkspaces).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("workspace %s: %w", id, ErrNotFound)
	}
	var w Workspace
	if err := json.Unmarshal(v, &w); err != nil {
		return nil, fmt.Errorf("decode workspace %s: %w", id, err)
	}
	return &w, nil
}

// ForEachWorkspace calls fn with the ID of every workspace.
func (s *Store) ForEachWorkspace(fn func(id string) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bWorkspaces).ForEach(func(k, _ []byte) error { return fn(string(k)) })
	})
}

// PurgeWorkspace durably deletes everything this node holds of a workspace:
// every key under its prefix in every bucket (conversations, events,
// messages, receipts, stamps, tombstones, embeddings, saved replies) and its
// record. Call EraseConversation for each of its conversations first, so no
// write in flight brings one back; PurgeWorkspace then sweeps the rest. It
// returns how many keys it deleted. The node refuses the workspace's data
// from then on (a deleted workspace, or one pinned to another region):
// nothing here keeps it out by itself.
func (s *Store) PurgeWorkspace(ctx context.Context, ws string) (int, error) {
	if ws == "" {
		return 0, fmt.Errorf("purge: workspace required: %w", ErrInvalid)
	}
	n := 0
	err := s.submit(ctx, func(b *batch) error {
		n = 0
		p := prefix(ws)
		err := b.tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			if bytes.Equal(name, bMeta) {
				return nil
			}
			if bytes.Equal(name, bWorkspaces) {
				if bk.Get([]byte(ws)) != nil {
					n++
					return bk.Delete([]byte(ws))
				}
				return nil
			}
			var keys [][]byte
			cur := bk.Cursor()
			for k, _ := cur.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = cur.Next() {
				keys = append(keys, bytes.Clone(k))
			}
			for _, k := range keys {
				if err := bk.Delete(k); err != nil {
					return err
				}
			}
			n += len(keys)
			return nil
		})
		if err != nil {
			return err
		}
		// Records this batch loaded must not be written back by flush.
		b.forget(func(k convKey) bool { return k.ws == ws })
		b.keys.forgetWorkspace(ws)
		if n > 0 {
			b.removed() // the purged pages are zeroed (scrub.go)
		}
		return nil
	})
	return n, err
}

// HeldWorkspaces lists, sorted, every workspace this node holds anything
// of: a record, or a key under its prefix in any bucket (a conversation
// left without its record included). It seeks from one workspace's prefix
// to the next, so it costs a few reads per workspace, not per key.
func (s *Store) HeldWorkspaces() ([]string, error) {
	seen := map[string]bool{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			if bytes.Equal(name, bMeta) {
				return nil
			}
			cur := bk.Cursor()
			for k, _ := cur.First(); k != nil; {
				ws := k
				if i := bytes.IndexByte(k, sep); i >= 0 {
					ws = k[:i]
				} else if !bytes.Equal(name, bWorkspaces) {
					k, _ = cur.Next() // not keyed by workspace: none here
					continue
				}
				seen[string(ws)] = true
				k, _ = cur.Seek(append(bytes.Clone(ws), sep+1))
			}
			return nil
		})
	})
	out := make([]string, 0, len(seen))
	for ws := range seen {
		out = append(out, ws)
	}
	slices.Sort(out)
	return out, err
}

// Holds reports whether this node holds anything of a workspace: a key
// under its prefix in any bucket, or its record.
func (s *Store) Holds(ws string) (bool, error) {
	held := false
	err := s.db.View(func(tx *bolt.Tx) error {
		p := prefix(ws)
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			if held || bytes.Equal(name, bMeta) {
				return nil
			}
			if bytes.Equal(name, bWorkspaces) {
				held = bk.Get([]byte(ws)) != nil
				return nil
			}
			k, _ := bk.Cursor().Seek(p)
			held = k != nil && bytes.HasPrefix(k, p)
			return nil
		})
	})
	return held, err
}
