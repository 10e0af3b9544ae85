package e2e

import (
	"fmt"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"parley/internal/eventually"
	"parley/node"

	"github.com/chromedp/chromedp"
)

// TestBrowserVisitorAsksToBeForgotten: in a workspace that waits for an
// agent (the default), a visitor's "Delete my data" in the widget is
// recorded; the console lists the request and the agent's click erases
// the conversation, which leaves the console and the node. Once the
// workspace erases at once, another visitor's request erases their
// conversation before the answer and the widget shows it empty. No file
// of the node keeps either text.
func TestBrowserVisitorAsksToBeForgotten(t *testing.T) {
	needBrowser(t)
	nd := startNode(t, t.TempDir())
	root, err := node.AdminToken(filepath.Join(nd.DataDir, "cluster.key"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 4*time.Minute)
	ct := &chatTest{t: t, node: nd, dir: t.TempDir()}
	agent := newBrowser(t, ctx, "agent", 1280, 820)
	first := newBrowser(t, ctx, "visitor", 1100, 820)
	second := newBrowser(t, ctx, "visitor2", 1100, 820)
	ct.all = []*browser{agent, first, second}
	held := func() map[string]convDigest {
		var d struct {
			Conversations map[string]convDigest `json:"conversations"`
		}
		mustAPI(t, nd, "GET", "/v1/admin/workspaces/demo/digest", root, nil, &d)
		return d.Conversations
	}

	ct.do(agent, "opening the console", navigate(
		nd.URL+"/agent#token="+url.QueryEscape(nd.Token)+"&workspace=demo"))
	waitFor[bool](ct, agent, "the console to connect",
		`document.querySelector('[data-testid=status]').dataset.state === 'ok'`)

	say := func(b *browser, text string) string {
		t.Helper()
		ct.do(b, "writing in the widget",
			navigate(nd.URL+"/demo"),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-launcher]`)),
			chromedp.Click(chromedp.CSS(`[data-testid=parley-launcher]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-panel]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-agent-online][data-online=true]`)),
			chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), text),
			chromedp.Click(chromedp.CSS(`[data-testid=parley-send]`)))
		waitFor[[]shownMessage](ct, b, "the message to be sent", messagesJS("parley-message", "parley-message-body", 1))
		return waitFor[string](ct, agent, "the conversation in the console", fmt.Sprintf(`(() => {
  for (const item of document.querySelectorAll('[data-testid=conv-item]')) {
    if (item.textContent.includes(%q)) return item.dataset.id;
  }
  return '';
})()`, text))
	}
	forget := func(b *browser) {
		t.Helper()
		ct.do(b, "asking to be forgotten",
			chromedp.Click(chromedp.CSS(`[data-testid=parley-forget]`)),
			chromedp.Click(chromedp.CSS(`[data-testid=parley-forget]`)))
	}

	// The default: the request waits for an agent.
	text1 := canary("forget-me")
	conv1 := say(first, text1)
	forget(first)
	waitFor[bool](ct, first, "the widget to say the request was sent",
		`document.querySelector('[data-testid=parley-status]').textContent.includes('an agent will delete')`)
	if _, ok := held()[conv1]; !ok {
		ct.fail(first, "the conversation was erased before an agent confirmed")
	}
	waitFor[bool](ct, agent, "the request in the console",
		`document.querySelectorAll('[data-testid=deletion-item]').length === 1`)
	ct.do(agent, "confirming the deletion", chromedp.Click(chromedp.CSS(`[data-testid=deletion-confirm]`)))
	waitFor[bool](ct, agent, "the request and the conversation to leave the console", fmt.Sprintf(
		`document.querySelectorAll('[data-testid=deletion-item]').length === 0 && !document.querySelector('[data-testid=conv-item][data-id=%q]')`, conv1))
	if _, ok := held()[conv1]; ok {
		ct.fail(agent, "the node still holds the conversation after the confirmation")
	}

	// At once, when the workspace says so.
	mustAPI(t, nd, "PUT", "/v1/admin/workspaces/demo/visitor-deletion", root, map[string]any{"mode": "immediate"}, nil)
	text2 := canary("forget-me-now")
	conv2 := say(second, text2)
	forget(second)
	waitFor[bool](ct, second, "the widget to say the chats were deleted, and show none",
		`document.querySelector('[data-testid=parley-status]').textContent.includes('were deleted') && document.querySelectorAll('[data-testid=parley-message]').length === 0`)
	if _, ok := held()[conv2]; ok {
		ct.fail(second, "the node still holds the conversation after an immediate deletion")
	}
	for _, b := range ct.all {
		ct.checkPage(b, "at the end")
	}
	eventually.Holds(t, 60*time.Second, "no file of the node holds the texts", func() error {
		if hits := scanFiles(t, []*nodeProc{nd}, []string{text1, text2}); len(hits) > 0 {
			return fmt.Errorf("still in %v", hits)
		}
		return nil
	})
}
