package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserConsoleAlerts: with alerts on (asked on a click), the console
// raises a desktop notification for a new conversation and for a visitor's
// message in a conversation the agent does not have open, with the
// visitor's words and the conversation as its tag; none for the agent's own
// messages, none once alerts are off. Headless Chromium shows no desktop:
// the page's Notification is replaced by a recorder after it loads (the
// console looks it up at each alert), permission granted.
func TestBrowserConsoleAlerts(t *testing.T) {
	needBrowser(t)
	node := startNode(t, t.TempDir(), "-h3", "off")
	ctx := testCtx(t, 2*time.Minute)
	ct := &chatTest{t: t, node: node, dir: t.TempDir()}
	agent := newBrowser(t, ctx, "agent", 1280, 820)
	ct.all = []*browser{agent}
	ct.do(agent, "opening the console", navigate(node.URL+"/agent#token="+node.Token+"&workspace=demo"))
	waitFor[bool](ct, agent, "the console to connect", `document.querySelector('[data-testid=status]').dataset.state === 'ok'`)
	eval[any](ct, agent, "recording notifications", `(() => {
  window.__notes = [];
  window.Notification = class {
    constructor(title, o) { window.__notes.push({title, body: o.body, tag: o.tag}); }
    close() {}
    static permission = 'granted';
    static requestPermission() { return Promise.resolve('granted'); }
  };
  return null;
})()`)
	ct.do(agent, "turning alerts on", chromedp.Click(chromedp.CSS(`[data-testid=notify-toggle]`)))
	waitFor[bool](ct, agent, "alerts on", `document.querySelector('[data-testid=notify-toggle]').getAttribute('aria-pressed') === 'true'`)

	type note struct{ Title, Body, Tag string }
	notes := func(n int) []note {
		return waitFor[[]note](ct, agent, fmt.Sprintf("%d notifications", n), fmt.Sprintf(`window.__notes.length >= %d ? window.__notes : null`, n))
	}
	live, first := visitorConversation(t, ctx, node, "Hello, my order is late")
	got := notes(1)
	if !strings.HasPrefix(got[0].Title, "New conversation: Visitor ") || got[0].Body != "Hello, my order is late" || got[0].Tag != first {
		ct.fail(agent, "the first notification: %+v (conversation %s)", got[0], first)
	}
	// The agent opens it and answers: no alert for their own message.
	item := fmt.Sprintf(`[data-testid=conv-item][data-id=%q]`, first)
	ct.do(agent, "opening it and answering", chromedp.Click(chromedp.CSS(item)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=composer-input]`), "Let me check"),
		chromedp.Click(chromedp.CSS(`[data-testid=composer-send]`)))
	if _, err := live.await(ctx, "deliver", func(m map[string]any) bool {
		msg, _ := m["message"].(map[string]any)
		return msg != nil && msg["body"] == "Let me check"
	}); err != nil {
		t.Fatal(err)
	}
	// Another visitor writes while the first conversation is open.
	_, second := visitorConversation(t, ctx, node, "Do you ship to Norway?")
	got = notes(2)
	if len(got) != 2 || got[1].Tag != second || got[1].Body != "Do you ship to Norway?" {
		ct.fail(agent, "notifications %+v, want the second conversation's (%s) second", got, second)
	}
	// Off: nothing more.
	ct.do(agent, "turning alerts off", chromedp.Click(chromedp.CSS(`[data-testid=notify-toggle]`)))
	visitorConversation(t, ctx, node, "Anyone?")
	waitFor[bool](ct, agent, "the third conversation listed", `document.querySelectorAll('[data-testid=conv-item]').length === 3`)
	if n := eval[int](ct, agent, "counting", `window.__notes.length`); n != 2 {
		ct.fail(agent, "%d notifications with alerts off, want still 2", n)
	}
	ct.checkPage(agent, "after the alerts")
}
