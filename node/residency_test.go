package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"parley/gateway/client"

	"parley/cluster"
	"parley/cluster/membership"
	"parley/cluster/replication"
	"parley/crdt"
	"parley/store"
)

// peerEvent is an event of a conversation of ws as a peer sends it: its
// payload is the conversation's record and the message.
func peerEvent(t *testing.T, ws, conv string) replication.Event {
	t.Helper()
	b, err := json.Marshal(struct {
		Conversation store.Conversation `json:"c"`
		Message      crdt.Message       `json:"m"`
	}{
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
	for ws, want := range map[string]error{"nowhere": replication.ErrWorkspaceUnknown, "gone": replication.ErrWorkspaceDeleted, "usonly": replication.ErrPinnedElsewhere, "here": nil} {
		if err := r.n.ctl.Serves(ws); !errors.Is(err, want) {
			t.Errorf("serves(%s): %v, want %v", ws, err, want)
		}
		wait, err := r.n.repl.Apply(ctx, "n9", []replication.Event{peerEvent(t, ws, "c_"+ws)})
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
	if err := r.n.auth.ensureLocal(ctx, "nowhere"); !errors.Is(err, replication.ErrWorkspaceUnknown) {
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
	if _, err := c.SetIdentitySecret(ctx, "tenantx", random(32)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetVisitorKey(ctx, "tenantx", random(32)); err != nil {
		t.Fatal(err)
	}
	// A visitor connected when the workspace is deleted is let go.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ws := dialTest(t, wctx, r.base, client.Options{})
	ws.send(map[string]any{"type": "hello", "v": 1, "workspace": "tenantx", "role": "visitor"})
	if f, err := ws.c.Next(wctx); err != nil || f.Type != "welcome" {
		t.Fatalf("visitor hello: %s %v", f.Raw, err)
	}
	wait, err := r.n.repl.Apply(ctx, "n9", []replication.Event{peerEvent(t, "tenantx", "c_1")})
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
	conf := r.n.ctl.confirmPurge(ctx, r.n.purge, "tenantx", res.Index)
	if len(conf.Confirmed) != 1 || len(conf.Unconfirmed) != 0 {
		t.Fatalf("purge confirmation %+v", conf)
	}
	if held, err := r.n.store.Holds("tenantx"); err != nil || held {
		t.Fatalf("store still holds the deleted workspace: %v %v", held, err)
	}
	if _, err := c.Apply(ctx, cluster.CreateWorkspace{ID: "tenantx", Name: "Other tenant", Plan: "team", Created: time.Now().UTC()}); !errors.Is(err, cluster.ErrExists) {
		t.Fatalf("re-creating a deleted workspace: %v", err)
	}
	for {
		f, err := ws.c.Next(wctx)
		if err != nil {
			t.Fatalf("the visitor's connection ended without auth_failed: %v", err)
		}
		if strings.Contains(string(f.Raw), `"auth_failed"`) {
			break
		}
	}
}

// regionCluster starts in-process nodes, node i in regions[i].
func regionCluster(t *testing.T, regions []string) []*running {
	t.Helper()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "cluster.key")
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(key)), 0o600); err != nil {
		t.Fatal(err)
	}
	var nodes []*running
	for i, region := range regions {
		id := fmt.Sprintf("n%d", i+1)
		cfg := Config{NodeID: id, DataDir: filepath.Join(dir, id), ClusterKey: keyFile, Region: region, NoDemo: true, H3Addr: h3Off,
			LogLevel: "warn", FrameRate: 10000, WorkspaceRate: 10000, passwordIterations: cluster.MinPasswordIterations}
		if i > 0 {
			cfg.Join, cfg.Voter = []string{nodes[0].n.ctl.c.Addr()}, voterYes
		}
		nodes = append(nodes, runNode(t, cfg))
	}
	for _, r := range nodes {
		waitMembers(t, r, len(regions))
	}
	return nodes
}

// TestPinHandsOverBeforePurging: a conversation and a saved reply of an
// unpinned workspace are held by the three eu nodes only; the workspace is
// pinned to us while its only us node is down. No eu node drops the data
// (none can hand it over): the purge is unconfirmed. Once the us node is
// back, the eu nodes hand everything over to it and only then purge.
func TestPinHandsOverBeforePurging(t *testing.T) {
	t.Parallel()
	nodes := regionCluster(t, []string{"eu", "eu", "eu", "us"})
	n1, us := nodes[0], nodes[3]
	ctx := context.Background()
	c := n1.n.ctl.c
	if _, err := c.Apply(ctx, cluster.CreateWorkspace{ID: "open", Name: "Open", Plan: "team", Created: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetIdentitySecret(ctx, "open", random(32)); err != nil {
		t.Fatal(err)
	}
	res, err := c.SetVisitorKey(ctx, "open", random(32))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range nodes {
		if err := r.n.ctl.c.WaitApplied(ctx, res.Index); err != nil {
			t.Fatal(err)
		}
	}
	// A conversation the us node does not hold: placed on n1, n2, n3.
	var v *inProcVisitor
	for {
		v = &inProcVisitor{t: t, ws: "open", acked: map[string]bool{}}
		v.write(n1, "m", 3)
		rs := membership.Replicas(n1.n.gossip.m.Members(), v.conv, "", replication.ReplicationFactor)
		if !slices.ContainsFunc(rs, func(m membership.Member) bool { return m.ID == "n4" }) {
			break
		}
	}
	for _, r := range nodes[:3] {
		waitHeld(t, r, "open", v.conv, 3)
		if err := r.n.store.PutReply(ctx, "open", store.Reply{ID: "r1", Title: "t", Body: "resident reply", Updated: 1}, 0); err != nil {
			t.Fatal(err)
		}
	}
	usCfg := us.n.cfg
	us.stop()
	res, err = c.Apply(ctx, cluster.UpdateWorkspace{ID: "open", Region: ptrTo("us")})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	conf := n1.n.ctl.confirmPurge(cctx, n1.n.purge, "open", res.Index)
	cancel()
	if len(conf.Confirmed) != 0 || len(conf.Unconfirmed) != 4 {
		t.Errorf("purge with the region's only node down: %+v, want none confirmed", conf)
	}
	for _, r := range nodes[:3] {
		if got := held(t, r, "open", v.conv); len(got) != 3 {
			t.Fatalf("%s dropped the conversation before the region held it: %v", r.n.cfg.NodeID, got)
		}
	}
	us = runNode(t, usCfg)
	for _, r := range nodes[:3] {
		waitMembers(t, r, 4)
	}
	// The eu nodes' next passes hand the data over, then purge it.
	deadline := time.Now().Add(60 * time.Second)
	for _, r := range nodes[:3] {
		for {
			h, err := r.n.store.Holds("open")
			if err == nil && !h {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still holds the workspace pinned to us", r.n.cfg.NodeID)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if got := held(t, us, "open", v.conv); len(got) != 3 {
		t.Fatalf("the us node holds %v of the conversation after the hand-over", got)
	}
	rs, err := us.n.store.Replies("open")
	if err != nil || len(rs) != 1 || rs[0].Body != "resident reply" {
		t.Fatalf("the us node's saved replies after the hand-over: %+v %v", rs, err)
	}
}

// waitHeld waits until a node holds n messages of conv.
func waitHeld(t *testing.T, r *running, ws, conv string, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		evs, _, err := r.n.store.Events(ws, conv, 0, 10000)
		if err == nil && len(evs) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d events of %s, want %d (%v)", r.n.cfg.NodeID, len(evs), conv, n, err)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
