package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserShowsOneIDOnce: the widget and the console are on a node that
// is cut off from the other. An agent's reply is accepted on the other side
// first, then a second reply there, then the same first reply (same id) on
// the cut-off node, which delivers it to both pages at once with its own,
// later ts. After the partition heals the nodes merge the two copies into
// one, with the earlier ts, and both pages show it once, before the second
// reply: where every node puts it, not where it was first seen.
func TestBrowserShowsOneIDOnce(t *testing.T) {
	needBrowser(t)
	lab := newNetLab(t, 2)
	tc := startClusterOn(t, clusterSpec{bin: parleyBin, n: 2, lab: lab})
	n1 := tc.nodes[0]
	ctx := testCtx(t, 4*time.Minute)
	ct := &chatTest{t: t, node: n1, dir: t.TempDir()}
	agent := newBrowser(t, ctx, "agent", 1280, 820)
	visitor := newBrowser(t, ctx, "visitor", 1100, 820)
	ct.all = []*browser{agent, visitor}

	const (
		first  = "Where is my parcel?"
		reply  = "It left the warehouse this morning."
		second = "The tracking number follows."
	)
	convID := ct.startChat(agent, visitor, n1.URL, n1.Token, first)
	ct.do(agent, "opening the conversation", chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-testid=conv-item][data-id=%q]`, convID))))
	tc.waitConverged(t, "demo", convID, 1+widgetContext, 30*time.Second)

	// Ben signs in and connects to both nodes before the cut (a cut-off
	// node takes no new operator credentials).
	token := tc.login(t, n1, n1, "demo", "ben")
	var ben []*wsClient
	for _, nd := range tc.nodes {
		cl, err := dialNode(ctx, nd)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.close)
		cl.send(ctx, map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "agent", "token": token})
		if _, err := cl.await(ctx, "welcome", nil); err != nil {
			t.Fatalf("agent hello on %s: %v", nd.Addr, err)
		}
		ben = append(ben, cl)
	}

	heal := cut(t, lab, 0)
	sendUntilAcked(t, ctx, ben[1], convID, "m-ben-000001", reply)
	sendUntilAcked(t, ctx, ben[1], convID, "m-ben-000002", second)
	sendUntilAcked(t, ctx, ben[0], convID, "m-ben-000001", reply)
	// The cut-off node delivered its copy: both pages show it, last.
	waitFor[[]shownMessage](ct, visitor, "the cut-off node's copy in the widget", messagesJS("parley-message", "parley-message-body", 2))
	heal()
	for _, nd := range tc.nodes {
		tc.waitAlive(t, nd, 2, 60*time.Second)
	}
	tc.waitConverged(t, "demo", convID, 3+widgetContext, 60*time.Second)

	want := []shownMessage{
		{Role: "visitor", Body: first},
		{ID: "m-ben-000001", Role: "agent", Body: reply},
		{ID: "m-ben-000002", Role: "agent", Body: second},
	}
	ct.waitHistory(visitor, "parley-message", "parley-message-body", want)
	ct.waitHistory(agent, "message", "message-body", want)
	for _, b := range ct.all {
		ct.checkPage(b, "after the merge")
	}
}
