package replication

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"parley/crdt"
	"parley/store"
)

// TestNoNewConversationBeforeCatchUp: until the node has caught up with the
// control plane's erasures, a peer's events of a conversation it does not
// hold are refused (it may be one erased while the node was away), those
// of one it holds are not; once caught up, both pass (the store's
// tombstones refuse erased ones).
func TestNoNewConversationBeforeCatchUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(store.Config{Path: filepath.Join(t.TempDir(), "parley.db"), Origin: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.PutWorkspace(ctx, store.Workspace{ID: "acme"}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateConversation(ctx, store.Conversation{Workspace: "acme", ID: "c_held", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	caught := false
	r := &Replicator{st: st, cfg: Config{CaughtUp: func() bool { return caught }}}
	if err := r.newBeforeCatchUp("acme", "c_held"); err != nil {
		t.Fatalf("held conversation refused: %v", err)
	}
	if err := r.newBeforeCatchUp("acme", "c_new"); !errors.Is(err, errNotCaughtUp) {
		t.Fatalf("new conversation before catch-up: %v", err)
	}
	caught = true
	if err := r.newBeforeCatchUp("acme", "c_new"); err != nil {
		t.Fatalf("new conversation after catch-up: %v", err)
	}
	// A tombstone left for a conversation never held refuses it.
	if held, err := st.Tombstone(ctx, "acme", "c_gone"); err != nil || held {
		t.Fatalf("tombstone: %v %v", held, err)
	}
	_, err = st.ApplyRemote(ctx, store.Remote{Conversation: store.Conversation{Workspace: "acme", ID: "c_gone", Owner: "v:a"},
		Stamp: store.Stamp{Origin: "n2", OSeq: 1}, Message: crdt.NewMessage("m1", "v:a", "visitor", "", "text", crdt.Timestamp{Wall: 1, Node: "n2"})})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("event of a tombstoned conversation: %v", err)
	}
}
