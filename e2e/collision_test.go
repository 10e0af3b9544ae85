package e2e

import (
	"context"
	"testing"
	"time"
)

// TestCollisionWarningAcrossNodes: two agents on two nodes open the same
// conversation and each is told that the other views it (and types in it);
// an agent that connects later is told at its welcome; the visitor hears
// nothing of it; when a node dies its agent stops viewing for the other.
func TestCollisionWarningAcrossNodes(t *testing.T) {
	tc := startCluster(t, 2)
	n1, n2 := tc.nodes[0], tc.nodes[1]
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	ctx := testCtx(t, 90*time.Second)
	ana := tc.agentOn(t, ctx, n1, n1, "acme", "ana")
	ben := tc.agentOn(t, ctx, n1, n2, "acme", "ben")
	v, _, conv := startVisitor(t, ctx, n1, "acme")
	defer v.close()
	say(t, ctx, v, conv, "m-c-000001", "is anyone there?")
	if _, err := ben.await(ctx, "deliver", func(m map[string]any) bool { return msgID(m) == "m-c-000001" }); err != nil {
		t.Fatalf("the conversation never reached n2: %v", err)
	}

	view := func(who *wsClient, ref string, on bool) {
		t.Helper()
		who.send(ctx, map[string]any{"type": "view", "ref": ref, "conversation": conv, "viewing": on})
		if m, err := who.awaitRef(ctx, ref); err != nil || m["type"] != "ack" {
			t.Fatalf("view %s: %v %v", ref, m, err)
		}
	}
	viewing := func(who *wsClient, participant string, on bool) map[string]any {
		t.Helper()
		m, err := who.await(ctx, "viewing", func(m map[string]any) bool { return m["participant"] == participant && m["viewing"] == on })
		if err != nil {
			t.Fatalf("never told that %s viewing=%v: %v", participant, on, err)
		}
		if m["conversation"] != conv || m["role"] != "agent" {
			t.Fatalf("viewing frame %v", m)
		}
		return m
	}

	view(ana, "va", true)
	if m := viewing(ben, "a:ana", true); m["name"] != "Ana" {
		t.Fatalf("ben on n2 was told %v", m)
	}
	view(ben, "vb", true)
	viewing(ana, "a:ben", true)
	// Typing crosses nodes too, as an agent's.
	ben.send(ctx, map[string]any{"type": "typing", "conversation": conv, "typing": true})
	if _, err := ana.await(ctx, "typing", func(m map[string]any) bool {
		return m["participant"] == "a:ben" && m["role"] == "agent" && m["typing"] == true
	}); err != nil {
		t.Fatalf("ana on n1 never saw ben typing: %v", err)
	}
	// An agent that connects to n2 later learns at once who views it,
	// the agent of n1 included.
	kim := tc.agentOn(t, ctx, n1, n2, "acme", "kim")
	viewing(kim, "a:ana", true)
	// The visitor is told nothing of who views.
	vctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	m, err := v.await(vctx, "viewing", nil)
	cancel()
	if err == nil {
		t.Fatalf("the visitor was told %v", m)
	}
	// Leaving ends it for the others.
	view(ana, "va2", false)
	viewing(ben, "a:ana", false)
	// Ben's node dies: Ben stops viewing for Ana, within failure detection.
	n2.Kill9(t)
	killed := time.Now()
	viewing(ana, "a:ben", false)
	t.Logf("the killed node's agent stopped viewing for the other %s after the kill", time.Since(killed).Round(time.Millisecond))
}
