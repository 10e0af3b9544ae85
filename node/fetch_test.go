package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"parley/cluster/membership"
	"parley/gateway"
	"parley/store"
)

// TestFetchAsksTheReplicas: four nodes in one process, three replicas per
// conversation. The node outside a conversation's placement, holding
// nothing of it, fetches it from the replicas (Replicator.Fetch): for its
// owner it gets every message once, and an empty conversation's record;
// for another owner, or an ID no replica holds, not found and nothing
// stored; cut off from the replicas, unreachable (never not found), also
// once gossip has declared them dead.
func TestFetchAsksTheReplicas(t *testing.T) {
	f := newFaultNet()
	nodes, root := inProcessCluster(t, f, 4)
	n1 := nodes[0]
	if st, code, m := call(t, n1.base, "POST", "/v1/admin/workspaces", root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}); st != 200 {
		t.Fatalf("create workspace: %d %s %v", st, code, m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	v := helloTest(t, ctx, n1.base, map[string]any{"type": "hello", "v": 1, "workspace": "acme", "role": "visitor"},
		func(m map[string]any) bool { return m["type"] == "welcome" })
	placed := func(conv string) []string {
		var ids []string
		for _, m := range membership.Replicas(n1.n.gossip.m.Members(), conv, "", 3) {
			ids = append(ids, m.ID)
		}
		return ids
	}
	// start starts conversations on n1 until one is placed on n1 and not
	// on outside ("" for any), and sends it msgs messages.
	start := func(outside string, msgs int) string {
		for {
			ref := fmt.Sprintf("s%d", time.Now().UnixNano())
			v.send(map[string]any{"type": "start", "ref": ref})
			conv := v.await(func(m map[string]any) bool { return m["ref"] == ref })["conversation"].(string)
			if p := placed(conv); !slices.Contains(p, "n1") || outside != "" && slices.Contains(p, outside) {
				continue
			}
			for i := range msgs {
				ref := fmt.Sprintf("m-%s-%d", conv, i)
				v.send(map[string]any{"type": "send", "ref": ref, "conversation": conv, "id": fmt.Sprintf("m-%06d", i), "body": "held by the replicas"})
				if m := v.await(func(m map[string]any) bool { return m["ref"] == ref }); m["type"] != "ack" {
					t.Fatalf("send: %v", m)
				}
			}
			return conv
		}
	}
	conv := start("", 3)
	var x *running
	for _, r := range nodes {
		if !slices.Contains(placed(conv), r.n.cfg.NodeID) {
			x = r
		}
	}
	rec, err := n1.n.store.Conversation("acme", conv)
	if err != nil {
		t.Fatal(err)
	}
	notHeld := func(conv string) {
		t.Helper()
		if _, err := x.n.store.Conversation("acme", conv); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s holds %s: %v", x.n.cfg.NodeID, conv, err)
		}
	}
	notHeld(conv)

	// Another owner's, and an ID nobody holds: not found, nothing stored.
	if err := x.n.repl.Fetch(ctx, "acme", conv, "v:someone-else"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("fetch for another owner: %v, want not found", err)
	}
	notHeld(conv)
	forged := "c_0123456789abcdef01234567"
	if err := x.n.repl.Fetch(ctx, "acme", forged, ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("fetch of an unknown ID: %v, want not found", err)
	}
	notHeld(forged)

	// Cut off: unreachable, before and after gossip declares the others dead.
	var others []string
	for _, r := range nodes {
		if r != x {
			others = append(others, r.n.cfg.NodeID)
		}
	}
	heal := f.partition([]string{x.n.cfg.NodeID}, others)
	if err := x.n.repl.Fetch(ctx, "acme", conv, rec.Owner); !errors.Is(err, gateway.ErrReplicasUnreachable) || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("fetch while cut off: %v, want unreachable", err)
	}
	waitMembers(t, x, 1)
	if err := x.n.repl.Fetch(ctx, "acme", conv, rec.Owner); !errors.Is(err, gateway.ErrReplicasUnreachable) || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("fetch alone: %v, want unreachable", err)
	}
	notHeld(conv)
	heal()
	waitMembers(t, x, 4)

	// Its owner's: every message once.
	if err := x.n.repl.Fetch(ctx, "acme", conv, rec.Owner); err != nil {
		t.Fatalf("fetch for its owner: %v", err)
	}
	h := held(t, x, "acme", conv)
	for i := range 3 {
		if id := fmt.Sprintf("m-%06d", i); h[id] != 1 {
			t.Errorf("%s holds %s %d times after the fetch", x.n.cfg.NodeID, id, h[id])
		}
	}
	// An empty one, started on a replica: its record.
	empty := start(x.n.cfg.NodeID, 0)
	notHeld(empty)
	if err := x.n.repl.Fetch(ctx, "acme", empty, ""); err != nil {
		t.Fatalf("fetch of an empty conversation: %v", err)
	}
	if got, err := x.n.store.Conversation("acme", empty); err != nil || got.Owner != rec.Owner {
		t.Fatalf("the empty conversation on %s: %+v %v", x.n.cfg.NodeID, got, err)
	}
}
