package store

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"parley/crdt"

	bolt "go.etcd.io/bbolt"
)

// TestPurgeWorkspace: after its conversations are erased, a purge leaves no
// key of the workspace in any bucket, and another workspace's data intact.
func TestPurgeWorkspace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{})
	for _, ws := range []string{"ws1", "ws2"} {
		for _, c := range []string{"c1", "c2"} {
			if err := s.CreateConversation(ctx, Conversation{Workspace: ws, ID: c, Owner: "v:a"}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: ws, Conversation: c, Participant: "v:a", Message: msg("m1", "v:a", "card 4111111111111111", 1)}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Apply(ctx, Change{Kind: Edit, Workspace: ws, Conversation: c, Participant: "v:a", Message: crdt.Message{ID: "m1"}, Body: "x", TS: crdt.Timestamp{Wall: 2}}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.MarkRead(ctx, ws, c, "a:s", 1, time.Now()); err != nil {
				t.Fatal(err)
			}
			if _, err := s.PutVector(ctx, ws, c, 2, []float32{1, 0, 0}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.PutReply(ctx, ws, Reply{ID: "r1", Title: "t", Body: "b", Vector: []float32{0, 1, 0}}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.EraseConversation(ctx, "ws1", "c1"); err != nil {
		t.Fatal(err)
	}
	// A conversation left without its workspace's record is listed too.
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bConvs).Put(key("ws3", "c1"), []byte("{}")) }); err != nil {
		t.Fatal(err)
	}
	if wss, err := s.HeldWorkspaces(); err != nil || !slices.Equal(wss, []string{"ws1", "ws2", "ws3"}) {
		t.Fatalf("held workspaces %v %v", wss, err)
	}
	if n, err := s.PurgeWorkspace(ctx, "ws3"); err != nil || n != 1 {
		t.Fatalf("purge of a record-less workspace: %d %v", n, err)
	}
	n, err := s.PurgeWorkspace(ctx, "ws1")
	if err != nil || n < 10 {
		t.Fatalf("purge: %d keys, %v", n, err)
	}
	if held, err := s.Holds("ws1"); err != nil || held {
		t.Fatalf("ws1 still held after the purge: %v %v", held, err)
	}
	if held, err := s.Holds("ws2"); err != nil || !held {
		t.Fatalf("ws2 not held: %v %v", held, err)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, _ []byte) error {
				if bytes.HasPrefix(k, []byte("ws1")) {
					t.Errorf("bucket %s still has %q", name, k)
				}
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Conversation("ws2", "c2"); err != nil {
		t.Fatalf("other workspace: %v", err)
	}
	if rs, err := s.Replies("ws2"); err != nil || len(rs) != 1 {
		t.Fatalf("other workspace's replies: %v %v", rs, err)
	}
	if _, err := s.Conversation("ws1", "c2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("purged conversation: %v", err)
	}
	if wss, err := s.HeldWorkspaces(); err != nil || !slices.Equal(wss, []string{"ws2"}) {
		t.Fatalf("held workspaces after the purges %v %v", wss, err)
	}
	// A purge of what is not held is a no-op.
	if n, err := s.PurgeWorkspace(ctx, "ws1"); err != nil || n != 0 {
		t.Fatalf("second purge: %d %v", n, err)
	}
}
