package e2e

import (
	"fmt"
	"net/url"
	"testing"
	"time"
)

// TestBrowserConsoleListsPast200: with 230 conversations in the
// workspace, the console pages through the list and shows every one, the
// first started (the last of the order) included.
func TestBrowserConsoleListsPast200(t *testing.T) {
	needBrowser(t)
	node := startNode(t, t.TempDir(), "-frame-rate", "1000")
	ctx := testCtx(t, 3*time.Minute)
	v, err := dialNode(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()
	if _, err := v.hello(ctx, "demo", nil); err != nil {
		t.Fatal(err)
	}
	const n = 230
	first := ""
	for i := range n {
		ref := fmt.Sprintf("s%d", i)
		v.send(ctx, map[string]any{"type": "start", "ref": ref})
		m, err := v.awaitRef(ctx, ref)
		if err != nil || m["type"] != "started" {
			t.Fatalf("start %d: %v %v", i, m, err)
		}
		if first == "" {
			first = m["conversation"].(string)
		}
	}

	ct := &chatTest{t: t, node: node, dir: t.TempDir()}
	agent := newBrowser(t, ctx, "agent", 1280, 820)
	ct.all = []*browser{agent}
	ct.do(agent, "opening the console", navigate(
		node.URL+"/agent#token="+url.QueryEscape(node.Token)+"&workspace=demo"))
	waitFor[bool](ct, agent, "the console to list every conversation",
		fmt.Sprintf(`document.querySelectorAll('[data-testid=conv-item]').length >= %d`, n))
	if !eval[bool](ct, agent, "finding the first conversation", fmt.Sprintf(`!!document.querySelector('[data-testid=conv-item][data-id=%q]')`, first)) {
		ct.fail(agent, "the first conversation started is not in the list")
	}
	ct.checkPage(agent, "after listing")
}
