package node

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"parley/cluster"
	"parley/cluster/replication"
	"parley/crdt"
	"parley/store"
)

// peerEvent is an event of a conversation of ws as a peer sends it.
func peerEvent(t *testing.T, ws, conv string) replication.Event {
	t.Helper()
	b, err := json.Marshal(payload{
		Conversation: store.Conversation{Workspace: ws, ID: conv, Owner: "v:zelda"},
		Message:      crdt.NewMessage("m1", "v:zelda", "visitor", "Zelda", "card 4111222233334444", crdt.Timestamp{Wall: 1, Node: "n9"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return replication.Event{Workspace: ws, Conversation: conv, Origin: "n9", OSeq: 1, Payload: b}
}

// TestUnknownWorkspaceIsRefused: a node refuses a peer's events of a
// workspace it does not know, of one deleted, and of one pinned to another
// region, and stores nothing of them; before the fix an unknown workspace
// was taken for an unpinned one and stored.
func TestUnknownWorkspaceIsRefused(t *testing.T) {
	t.Parallel()
	r := runNode(t, Config{DataDir: t.TempDir(), Region: "eu"})
	ctx := context.Background()
	c := r.n.ctl.c
	now := time.Now().UTC()
	for _, cmd := range []cluster.Command{
		cluster.CreateWorkspace{ID: "gone", Name: "Gone", Plan: "team", Created: now},
		cluster.DeleteWorkspace{ID: "gone"},
		cluster.CreateWorkspace{ID: "usonly", Name: "US only", Region: "us", Plan: "team", Created: now},
		cluster.CreateWorkspace{ID: "here", Name: "Here", Plan: "team", Created: now},
	} {
		if _, err := c.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	for ws, want := range map[string]error{"nowhere": errWorkspaceUnknown, "gone": errWorkspaceDeleted, "usonly": errPinnedElsewhere, "here": nil} {
		if err := r.n.ctl.serves(ws); !errors.Is(err, want) {
			t.Errorf("serves(%s): %v, want %v", ws, err, want)
		}
		wait, err := r.n.repl.store("n9", []replication.Event{peerEvent(t, ws, "c_"+ws)})
		if werr := wait(); werr != nil && err == nil {
			err = werr
		}
		if want == nil && err != nil {
			t.Errorf("event of %s refused: %v", ws, err)
		}
		if want != nil && !errors.Is(err, want) {
			t.Errorf("event of %s: %v, want %v", ws, err, want)
		}
		held, herr := r.n.store.Holds(ws)
		if herr != nil || held != (want == nil) {
			t.Errorf("after a peer's event of %s the store holds it: %v (%v)", ws, held, herr)
		}
	}
	if err := r.n.auth.ensureLocal(ctx, "nowhere"); !errors.Is(err, errWorkspaceUnknown) {
		t.Errorf("a session of an unknown workspace: %v", err)
	}
}

// TestDeletionPurgesTheStore: a workspace's conversations and saved
// replies are in the store; once its deletion is applied the purger
// removes every key of it, and the ID cannot be created again.
func TestDeletionPurgesTheStore(t *testing.T) {
	t.Parallel()
	r := runNode(t, Config{DataDir: t.TempDir(), Region: "eu"})
	ctx := context.Background()
	c := r.n.ctl.c
	if _, err := c.Apply(ctx, cluster.CreateWorkspace{ID: "tenantx", Name: "X", Plan: "team", Created: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	wait, err := r.n.repl.store("n9", []replication.Event{peerEvent(t, "tenantx", "c_1")})
	if err != nil || wait() != nil {
		t.Fatalf("event of a known workspace: %v", err)
	}
	if err := r.n.store.PutReply(ctx, "tenantx", store.Reply{ID: "r1", Title: "t", Body: "b"}, 0); err != nil {
		t.Fatal(err)
	}
	res, err := c.Apply(ctx, cluster.DeleteWorkspace{ID: "tenantx"})
	if err != nil {
		t.Fatal(err)
	}
	conf := r.n.purge.confirmPurge(ctx, "tenantx", res.Index)
	if len(conf.Confirmed) != 1 || len(conf.Unconfirmed) != 0 {
		t.Fatalf("purge confirmation %+v", conf)
	}
	if held, err := r.n.store.Holds("tenantx"); err != nil || held {
		t.Fatalf("store still holds the deleted workspace: %v %v", held, err)
	}
	if _, err := c.Apply(ctx, cluster.CreateWorkspace{ID: "tenantx", Name: "Other tenant", Plan: "team", Created: time.Now().UTC()}); !errors.Is(err, cluster.ErrExists) {
		t.Fatalf("re-creating a deleted workspace: %v", err)
	}
}
