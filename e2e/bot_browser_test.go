package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserShowsABotsMessage: a message a bot posts through the
// conversations API with an API key appears live in the visitor's widget
// and in the agent's console, named as the bot chose and marked a bot.
func TestBrowserShowsABotsMessage(t *testing.T) {
	needBrowser(t)
	tc := startCluster(t, 1)
	nd := tc.nodes[0]
	ctx := testCtx(t, 3*time.Minute)
	ct := &chatTest{t: t, node: nd, dir: t.TempDir()}
	agent := newBrowser(t, ctx, "agent", 1280, 820)
	visitor := newBrowser(t, ctx, "visitor", 1100, 820)
	ct.all = []*browser{agent, visitor}
	conv := ct.startChat(agent, visitor, nd.URL, nd.Token, "Where is my parcel?")
	ct.do(agent, "opening the conversation", chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-testid=conv-item][data-id=%q]`, conv))))

	var minted struct{ Key string }
	mustAPI(t, nd, "POST", "/v1/admin/workspaces/demo/keys", tc.root, map[string]any{"name": "integration"}, &minted)
	mustConvAPI(t, nd, "POST", "/v1/workspaces/demo/conversations/"+conv+"/messages", minted.Key,
		map[string]any{"id": "m-bot-000001", "body": "Your parcel ships today", "bot": "Parcel bot"}, nil)

	shown := func(b *browser, testid string) string {
		return waitFor[string](ct, b, "the bot's message", fmt.Sprintf(`(() => {
  const el = document.querySelector('[data-testid=%s][data-id="m-bot-000001"]');
  if (!el || el.dataset.authorRole !== 'bot' || !el.textContent.includes('Your parcel ships today')) return '';
  return el.querySelector('[class$=msg-author]').textContent;
})()`, testid))
	}
	if got := shown(visitor, "parley-message"); got != "Parcel bot \u00b7 Bot" {
		ct.fail(visitor, "the widget names the bot %q", got)
	}
	if got := shown(agent, "message"); got != "Parcel bot \u00b7 Bot" {
		ct.fail(agent, "the console names the bot %q", got)
	}
	for _, b := range ct.all {
		ct.checkPage(b, "after the bot's message")
	}
}
