package store

import (
	"context"
	"encoding/json"
	"fmt"

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
