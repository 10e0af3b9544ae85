package e2e

import (
	"context"
	"testing"
	"time"
)

// TestPresenceReconcilesAfterPartition: an agent on n1 sees a visitor of n3
// online; n3 is cut off, and once n1 declares it dead the visitor goes
// offline for the agent; after the heal the visitor is online again for
// the agent although the visitor sent nothing since its hello: n3 renews
// and sends its clients' presence to a node that comes back, rather than
// waiting for each client's next heartbeat.
func TestPresenceReconcilesAfterPartition(t *testing.T) {
	lab := newNetLab(t, 3)
	tc := startClusterOn(t, clusterSpec{bin: parleyBin, n: 3, lab: lab})
	n1, n3 := tc.nodes[0], tc.nodes[2]
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	ctx := testCtx(t, 60*time.Second)
	agent := tc.agentOn(t, ctx, n1, n1, "acme", "sam")

	v, err := dialNode(ctx, n3)
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()
	welcome, err := v.visitorHelloIn(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	who := welcome["participant"]
	isVisitor := func(online bool) func(map[string]any) bool {
		return func(m map[string]any) bool { return m["participant"] == who && m["online"] == online }
	}
	if _, err := agent.await(ctx, "presence", isVisitor(true)); err != nil {
		t.Fatalf("agent on n1 never saw the visitor on n3 online: %v", err)
	}

	// A last frame from the visitor, past the node's renewal interval (half
	// a heartbeat) after its hello, so that its lease runs 30 s from here:
	// time enough for the cut, the others declaring n3 dead, and the heal.
	time.Sleep(5500 * time.Millisecond)
	v.send(ctx, map[string]any{"type": "ping", "ref": "last"})
	if _, err := v.await(ctx, "pong", nil); err != nil {
		t.Fatal(err)
	}
	last := time.Now()
	heal := cut(t, lab, 2)
	cutAt := time.Now()
	if _, err := agent.await(ctx, "presence", isVisitor(false)); err != nil {
		t.Fatalf("the visitor of a cut-off node stayed online: %v", err)
	}
	offline := time.Since(cutAt)
	heal()
	healed := time.Now()
	// The visitor's lease outlives the test's wait: what brings it back
	// can only be n3's resync, not the lease running out or a renewal.
	back, cancel := context.WithDeadline(ctx, last.Add(27*time.Second))
	defer cancel()
	if _, err := agent.await(back, "presence", isVisitor(true)); err != nil {
		t.Fatalf("the visitor did not come back online for the agent after the heal (%s after it): %v", time.Since(healed).Round(time.Millisecond), err)
	}
	t.Logf("offline %s after the cut; online again %s after the heal, with no frame from the visitor",
		offline.Round(time.Millisecond), time.Since(healed).Round(time.Millisecond))
}
