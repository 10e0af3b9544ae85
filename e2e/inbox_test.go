package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"parley/internal/eventually"
)

// frameUntilAcked sends a frame with an id (a send, an inbox change)
// until it is acknowledged, resending the same id after unavailable (no
// second replica confirmed it yet), as the console and the widget do.
func frameUntilAcked(t *testing.T, ctx context.Context, cl *wsClient, frame map[string]any) {
	t.Helper()
	for try := 0; ; try++ {
		ref := fmt.Sprintf("r-%s-%d", frame["id"], try)
		frame["ref"] = ref
		cl.send(ctx, frame)
		m, err := cl.awaitRef(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if m["type"] == "ack" {
			return
		}
		if m["code"] != "unavailable" || try > 300 {
			t.Fatalf("%v: %v", frame, m)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestInboxConvergesAcrossAPartition: agents on both sides of a partition
// set a conversation's status and tags and write notes; after the heal
// every replica holds the same inbox state, the one the later changes
// make (the status set last, each tag by its last setting), with every
// change and note once; a visitor's message then reopens the conversation
// on every replica.
func TestInboxConvergesAcrossAPartition(t *testing.T) {
	lab := newNetLab(t, 3)
	tc := startClusterOn(t, clusterSpec{bin: parleyBin, n: 3, lab: lab})
	n1, n3 := tc.nodes[0], tc.nodes[2]
	tc.createWorkspace(t, map[string]any{"id": "acme", "name": "Acme", "plan": "team"})
	ctx := testCtx(t, 50*time.Second)
	w := newVisitorWriter(t, ctx, "acme", "my invoice is wrong")
	w.write(n1, "m-before", 1)
	sam := tc.login(t, n1, n1, "acme", "sam")
	kim := tc.login(t, n1, n3, "acme", "kim")
	a1 := agentConn(t, ctx, n1, "acme", sam)
	a3 := agentConn(t, ctx, n3, "acme", kim)

	heal := cut(t, lab, 2)
	changes := 0
	do := func(cl *wsClient, frame map[string]any) {
		frame["conversation"] = w.conv
		frameUntilAcked(t, ctx, cl, frame)
		changes++
	}
	// The majority's changes first, then the cut-off node's: those are
	// later on every clock.
	do(a1, map[string]any{"type": "inbox", "id": "i-maj-status", "status": "resolved"})
	do(a1, map[string]any{"type": "inbox", "id": "i-maj-vip", "tag": "vip", "on": true})
	do(a1, map[string]any{"type": "send", "id": "n-maj-note", "body": "refund approved", "internal": true})
	time.Sleep(5 * time.Millisecond) // a later wall-clock millisecond on the other side
	do(a3, map[string]any{"type": "inbox", "id": "i-min-status", "status": "pending"})
	do(a3, map[string]any{"type": "inbox", "id": "i-min-vip", "tag": "vip", "on": false})
	do(a3, map[string]any{"type": "inbox", "id": "i-min-billing", "tag": "billing", "on": true})
	do(a3, map[string]any{"type": "send", "id": "n-min-note", "body": "asked for the invoice number", "internal": true})
	heal()
	for _, nd := range tc.nodes {
		tc.waitAlive(t, nd, 3, 30*time.Second)
	}
	tc.waitConverged(t, "acme", w.conv, len(w.acked)+changes, 30*time.Second)

	// Each node's own state (read from its store); a node that has not
	// caught up with the control plane yet pauses sign-ins (503): asked
	// again.
	state := func(nd *nodeProc) string {
		var c struct {
			Status string   `json:"status"`
			Tags   []string `json:"tags"`
		}
		if st, code := api(nd, "GET", "/v1/workspaces/acme/conversations/"+w.conv, sam, nil, &c); st != 200 {
			return fmt.Sprintf("%d %s", st, code)
		}
		return fmt.Sprintf("%s %v", c.Status, c.Tags)
	}
	check := func(want string) {
		t.Helper()
		eventually.Holds(t, 20*time.Second, "every replica's inbox state is "+want, func() error {
			var got []string
			for _, nd := range tc.nodes {
				got = append(got, state(nd))
			}
			if slices.ContainsFunc(got, func(s string) bool { return s != want }) {
				return fmt.Errorf("n1..n3: %q", got)
			}
			return nil
		})
	}
	check("pending [billing]")
	// The visitor writes again: open on every replica.
	w.write(n1, "m-after", 1)
	check("open [billing]")
}
