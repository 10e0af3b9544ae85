package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"parley/cluster/membership"
	"parley/gateway/client"
	"parley/internal/eventually"
)

// TestAgentsOutsideThePlacementSeeEverything: four nodes, three replicas
// per conversation, so at least one node holds none of a conversation by
// placement. An agent on every node still gets each of the visitor's
// messages live, once, and the visitor gets every agent's reply: events go
// to the replicas and to the nodes where the conversation's participants
// are connected.
func TestAgentsOutsideThePlacementSeeEverything(t *testing.T) {
	tc := startCluster(t, 4)
	var created struct{ Index uint64 }
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, &created)
	for _, nd := range tc.nodes {
		mustAPI(t, nd, "GET", fmt.Sprintf("/v1/admin/workspaces/acme?min_index=%d", created.Index), tc.root, nil, nil)
	}
	ctx := testCtx(t, 90*time.Second)
	var agents []*wsClient
	for i, nd := range tc.nodes {
		agents = append(agents, tc.agentOn(t, ctx, tc.nodes[0], nd, "acme", fmt.Sprintf("agent%d", i+1)))
	}
	time.Sleep(1500 * time.Millisecond) // the agents' presence reaches every node
	v, _, conv := startVisitor(t, ctx, tc.nodes[0], "acme")
	defer v.close()
	want := map[string]bool{}
	for i := range 10 {
		id := fmt.Sprintf("m-v-%06d", i)
		say(t, ctx, v, conv, id, "from the visitor")
		want[id] = true
	}
	// Live, the visitor's messages reach every agent, once.
	for i, ag := range agents {
		got := map[string]int{}
		wait, cancel := context.WithTimeout(ctx, 10*time.Second)
		for len(got) < len(want) {
			m, err := ag.await(wait, "deliver", func(m map[string]any) bool { return m["conversation"] == conv })
			if err != nil {
				t.Errorf("the agent on %s: %v", tc.nodes[i].Addr, err)
				break
			}
			got[msgID(m)]++
		}
		cancel()
		for id := range want {
			if got[id] != 1 {
				t.Errorf("the agent on %s got %s %d times live", tc.nodes[i].Addr, id, got[id])
			}
		}
	}
	// Every agent's reply reaches the visitor and the other agents.
	for i, ag := range agents {
		id := fmt.Sprintf("m-a%d-%06d", i+1, 0)
		ag.send(ctx, map[string]any{"type": "send", "ref": "r" + id, "conversation": conv, "id": id, "body": "from an agent"})
		if m, err := ag.awaitRef(ctx, "r"+id); err != nil || m["type"] != "ack" {
			t.Fatalf("agent on %s: reply %v %v", tc.nodes[i].Addr, m, err)
		}
		want[id] = true
		for j, cl := range append(agents, v) {
			if j == i {
				continue
			}
			wait, cancel := context.WithTimeout(ctx, 10*time.Second)
			if _, err := cl.await(wait, "deliver", func(m map[string]any) bool { return msgID(m) == id }); err != nil {
				t.Errorf("the reply from the agent on %s never reached client %d: %v", tc.nodes[i].Addr, j, err)
			}
			cancel()
		}
	}
	// History: each node's replay holds every message once.
	for i, ag := range agents {
		hist, err := ag.history(ctx, conv)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for _, d := range hist {
			seen[msgID(d)]++
		}
		for id := range want {
			if seen[id] != 1 {
				t.Errorf("history on %s holds %s %d times", tc.nodes[i].Addr, id, seen[id])
			}
		}
	}

	// History written before any agent connected: a visitor of another
	// workspace writes with no agent anywhere; agents then connect on every
	// node, and each sees the whole conversation in its replay (anti-entropy
	// fills the nodes that serve the workspace without holding it by
	// placement).
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "later", "name": "Later", "plan": "team"}, &created)
	for _, nd := range tc.nodes {
		mustAPI(t, nd, "GET", fmt.Sprintf("/v1/admin/workspaces/later?min_index=%d", created.Index), tc.root, nil, nil)
	}
	v2, _, conv2 := startVisitor(t, ctx, tc.nodes[1], "later")
	defer v2.close()
	for i := range 10 {
		say(t, ctx, v2, conv2, fmt.Sprintf("m-l-%06d", i), "before any agent")
	}
	for i, nd := range tc.nodes {
		ag := tc.agentOn(t, ctx, tc.nodes[0], nd, "later", fmt.Sprintf("late%d", i+1))
		seen := pollHistory(t, ctx, ag, conv2, 10)
		for j := range 10 {
			if id := fmt.Sprintf("m-l-%06d", j); seen[id] != 1 {
				t.Errorf("history on %s, for an agent that connected after it was written, holds %s %d times", nd.Addr, id, seen[id])
			}
		}
	}

	// A visitor, with no agent anywhere, comes back through every node in
	// turn: each shows the whole conversation (a node serving the visitor
	// holds the conversations they started).
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "solo", "name": "Solo", "plan": "team"}, &created)
	for _, nd := range tc.nodes {
		mustAPI(t, nd, "GET", fmt.Sprintf("/v1/admin/workspaces/solo?min_index=%d", created.Index), tc.root, nil, nil)
	}
	v3, w3, conv3 := startVisitor(t, ctx, tc.nodes[0], "solo")
	// A conversation placed on n1, so that the node it is not placed on
	// is one the visitor comes back through.
	conv3, _ = placedOnN1(t, ctx, v3, conv3)
	for i := range 10 {
		say(t, ctx, v3, conv3, fmt.Sprintf("m-s-%06d", i), "with no agent anywhere")
	}
	v3.close()
	for _, nd := range tc.nodes[1:] {
		cl, err := dialNode(ctx, nd)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.visitorHello(ctx, map[string]any{"workspace": "solo", "visitor_id": w3["visitor_id"], "visitor_sig": w3["visitor_sig"]}); err != nil {
			t.Fatal(err)
		}
		seen := pollHistory(t, ctx, cl, conv3, 10)
		for j := range 10 {
			if id := fmt.Sprintf("m-s-%06d", j); seen[id] != 1 {
				t.Errorf("history on %s, for the visitor who came back there, holds %s %d times", nd.Addr, id, seen[id])
			}
		}
		cl.close()
	}
}

// pollHistory replays conv until it holds want messages or 15 s pass, and
// returns how many times the last replay held each: a node that serves a
// participant without holding the conversation by placement gets it from
// anti-entropy within seconds. Live delivers of what arrives meanwhile are
// dropped, so that only the replay is counted.
func pollHistory(t *testing.T, ctx context.Context, cl *wsClient, conv string, want int) map[string]int {
	t.Helper()
	var seen map[string]int
	eventually.Poll(15*time.Second, func() error {
		for drained := false; !drained; {
			select {
			case <-cl.c.Frames():
			case <-time.After(100 * time.Millisecond):
				drained = true
			}
		}
		hist, err := cl.history(ctx, conv) // not_found until it arrives
		seen = map[string]int{}
		for _, d := range hist {
			seen[msgID(d)]++
		}
		if len(seen) < want {
			return fmt.Errorf("%d of %d messages (%v)", len(seen), want, err)
		}
		return nil
	}) // the caller says which messages the last replay lacks
	return seen
}

// TestVisitorBackThroughANodeHoldingNothing: four nodes, three replicas.
// A visitor writes through a replica, then comes back through the node
// outside the placement, which holds nothing of the conversation (no
// participant of it was ever connected there), and at once resumes and
// sends: the node fetches the conversation from its replicas before it
// answers, so the resume returns the whole history and the send is
// acknowledged, never not_found (which makes the widget forget the
// conversation). Another visitor who names the conversation gets
// not_found and the node stores nothing of it; neither does an ID no
// replica holds. Afterwards every node holds every message once.
func TestVisitorBackThroughANodeHoldingNothing(t *testing.T) {
	tc := startCluster(t, 4)
	tc.createWorkspace(t, map[string]any{"id": "acme", "name": "Acme", "plan": "team"})
	ctx := testCtx(t, 50*time.Second)
	v, welcome, conv := startVisitor(t, ctx, tc.nodes[0], "acme")
	// A conversation placed on n1, where the visitor is; the node it is
	// not placed on is the one the visitor comes back through.
	conv, out := placedOnN1(t, ctx, v, conv)
	outside := tc.nodes[out]
	const n = 5
	for i := range n {
		say(t, ctx, v, conv, fmt.Sprintf("m-%06d", i), "before the move")
	}
	v.close()
	if d := tc.digests(t, "acme")[slices.Index(tc.nodes, outside)]; d[conv].Messages != 0 {
		t.Fatalf("the node outside the placement holds the conversation already: %+v", d[conv])
	}

	// resume resumes conv from the start on cl and returns its replay's
	// message IDs, or the error frame that answered it.
	resume := func(cl *wsClient, ref string) (map[string]int, map[string]any) {
		t.Helper()
		cl.send(ctx, map[string]any{"type": "resume", "ref": ref, "conversation": conv, "after": 0})
		seen := map[string]int{}
		for {
			var m map[string]any
			_, err := cl.c.Await(ctx, func(f client.Frame) bool {
				m = frameMap(f)
				return m != nil && (m["type"] == "deliver" && m["conversation"] == conv || f.Ref == ref)
			}, nil)
			if err != nil {
				t.Fatalf("resume on %s: %v", outside.Addr, err)
			}
			switch m["type"] {
			case "deliver":
				seen[msgID(m)]++
			case "resumed":
				return seen, nil
			default:
				return seen, m
			}
		}
	}

	// Another visitor naming the conversation, and an ID nobody holds.
	other, err := dialNode(ctx, outside)
	if err != nil {
		t.Fatal(err)
	}
	defer other.close()
	if _, err := other.visitorHelloIn(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, m := resume(other, "other"); m == nil || m["code"] != "not_found" {
		t.Fatalf("another visitor's resume of the conversation on %s: %v, want not_found", outside.Addr, m)
	}
	forged := "c_0123456789abcdef01234567"
	other.send(ctx, map[string]any{"type": "send", "ref": "forged", "conversation": forged, "id": "m-forged", "body": "hello?"})
	if m, err := other.awaitRef(ctx, "forged"); err != nil || m["code"] != "not_found" {
		t.Fatalf("a send to an unknown conversation on %s: %v %v, want not_found", outside.Addr, m, err)
	}
	d := tc.digests(t, "acme")[slices.Index(tc.nodes, outside)]
	if _, ok := d[conv]; ok {
		t.Fatalf("the node outside the placement stored another visitor's conversation: %+v", d[conv])
	}
	if _, ok := d[forged]; ok {
		t.Fatalf("the node outside the placement stored an unknown conversation")
	}

	// The visitor, back through that node: resume and send at once.
	back, err := dialNode(ctx, outside)
	if err != nil {
		t.Fatal(err)
	}
	defer back.close()
	if _, err := back.visitorHello(ctx, map[string]any{"workspace": "acme", "visitor_id": welcome["visitor_id"], "visitor_sig": welcome["visitor_sig"]}); err != nil {
		t.Fatal(err)
	}
	asked := time.Now()
	seen, m := resume(back, "back")
	if m != nil {
		t.Fatalf("the visitor's resume on %s, outside the placement: %v", outside.Addr, m)
	}
	t.Logf("the resume through the node that held nothing took %s (the fetch included)", time.Since(asked).Round(time.Millisecond))
	for i := range n {
		if id := fmt.Sprintf("m-%06d", i); seen[id] != 1 {
			t.Errorf("the resume on %s holds %s %d times", outside.Addr, id, seen[id])
		}
	}
	say(t, ctx, back, conv, fmt.Sprintf("m-%06d", n), "after the move")

	// Every node, the one outside the placement included, holds every
	// message once.
	tc.waitConverged(t, "acme", conv, n+1, 15*time.Second)
}

// placedOnN1 starts conversations with visitor v (on n1) until one is
// placed on n1 among four nodes, RF 3, starting from conv; it returns the
// conversation and the index of the node it is not placed on.
func placedOnN1(t testing.TB, ctx context.Context, v *wsClient, conv string) (string, int) {
	t.Helper()
	members := []membership.Member{{ID: "n1"}, {ID: "n2"}, {ID: "n3"}, {ID: "n4"}}
	for {
		placed := membership.Replicas(members, conv, "", 3)
		if slices.ContainsFunc(placed, func(m membership.Member) bool { return m.ID == "n1" }) {
			for i, m := range members {
				if !slices.Contains(placed, m) {
					return conv, i
				}
			}
		}
		v.send(ctx, map[string]any{"type": "start", "ref": "again"})
		st, err := v.await(ctx, "started", nil)
		if err != nil {
			t.Fatal(err)
		}
		conv = st["conversation"].(string)
	}
}
