package e2e

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserVisitorsNodeKilled: a visitor chats through a balancer with
// an agent whose console is on another node; the visitor's node is killed
// with SIGKILL mid-conversation, just after the visitor wrote. The
// balancer sends the widget to a third node; meanwhile the agent keeps
// answering and the visitor keeps writing. The visitor's last message
// before the kill was committed, but its acknowledgement never reached
// the page. The widget reconnects there,
// resends what was not acknowledged and gets what it missed: both pages
// end with every message exactly once, in order; the killed node comes
// back and every replica holds the same conversation.
func TestBrowserVisitorsNodeKilled(t *testing.T) {
	needBrowser(t)
	tc := startCluster(t, 3)
	n1, n2, n3 := tc.nodes[0], tc.nodes[1], tc.nodes[2]
	ctx := testCtx(t, 4*time.Minute)
	px := newSwitchProxy(t, n2.Addr)
	ct := &chatTest{t: t, node: n1, dir: t.TempDir()}
	agent := newBrowser(t, ctx, "agent", 1280, 820)
	visitor := newBrowser(t, ctx, "visitor", 1100, 820)
	ct.all = []*browser{agent, visitor}

	const (
		first  = "Hi, my order never arrived."
		reply1 = "Sorry to hear that! Which order is it?"
		second = "Order 4411, placed on Monday."
		third  = "Are you still there?"
		reply2 = "Yes, I am looking at 4411 now."
		fourth = "Thank you!"
	)
	// The console on n1, the widget on n2 through the balancer.
	ct.do(agent, "opening the console on n1",
		navigate("http://"+n1.Addr+"/agent#token="+url.QueryEscape(n1.Token)+"&workspace=demo"))
	waitFor[bool](ct, agent, "the console to connect",
		`document.querySelector('[data-testid=status]').dataset.state === 'ok'`)
	ct.do(visitor, "opening the widget and writing",
		navigate(px.URL+"/demo"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-panel]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), first),
		pressEnter,
	)
	waitFor[[]shownMessage](ct, visitor, "the first message to be sent", messagesJS("parley-message", "parley-message-body", 1))
	convID := waitFor[string](ct, agent, "the conversation in the console", fmt.Sprintf(`(() => {
  const el = Array.from(document.querySelectorAll('[data-testid=conv-item]')).find((e) => e.textContent.includes(%q));
  return el ? el.dataset.id : '';
})()`, first))
	item := fmt.Sprintf(`[data-testid=conv-item][data-id=%q]`, convID)
	agentSays := func(text string) {
		ct.do(agent, "answering "+text,
			chromedp.Click(chromedp.CSS(`[data-testid=composer-input]`)),
			chromedp.SendKeys(chromedp.CSS(`[data-testid=composer-input]`), text),
			chromedp.Click(chromedp.CSS(`[data-testid=composer-send]`)),
		)
	}
	ct.do(agent, "opening the conversation", chromedp.Click(chromedp.CSS(item)))
	agentSays(reply1)
	want := []shownMessage{{Role: "visitor", Body: first}, {Role: "agent", Body: reply1}}
	ct.waitHistory(visitor, "parley-message", "parley-message-body", want)

	// The visitor writes; n2 commits the message, but the page never
	// hears the acknowledgement: n2 dies first.
	px.deaf.Store(true)
	ct.do(visitor, "writing just before the node dies",
		chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), second), pressEnter)
	waitFor[bool](ct, agent, "the console on n1 to show the message", fmt.Sprintf(`Array.from(document.querySelectorAll('[data-testid=message]'))
  .some((m) => m.textContent.includes(%q))`, second))
	if !eval[bool](ct, visitor, "reading the message's state", fmt.Sprintf(`Array.from(document.querySelectorAll('[data-testid=parley-message][data-state=pending]'))
  .some((m) => m.textContent.includes(%q))`, second)) {
		ct.fail(visitor, "the message is not pending in the widget: the page heard its acknowledgement")
	}
	n2.Kill9(t)
	px.route("") // the balancer's health check finds n2 gone
	waitFor[bool](ct, visitor, "the widget to notice the lost connection",
		`document.querySelector('[data-testid=parley-status]').checkVisibility()`)
	// Both sides go on while the widget has no node.
	ct.do(visitor, "writing with no node",
		chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), third), pressEnter)
	waitFor[bool](ct, visitor, "the message to be pending", fmt.Sprintf(`Array.from(document.querySelectorAll('[data-testid=parley-message][data-state=pending]'))
  .some((m) => m.textContent.includes(%q))`, third))
	agentSays(reply2)
	waitFor[bool](ct, agent, "the agent's reply to be sent while the visitor's node is down", fmt.Sprintf(`Array.from(document.querySelectorAll('[data-testid=message][data-state=sent]'))
  .some((m) => m.textContent.includes(%q))`, reply2))

	// The balancer sends the widget to n3.
	px.route(n3.Addr)
	// The widget sends the second message again to n3, which knows it
	// already: each message shows once, in the order it was committed.
	want = append(want,
		shownMessage{Role: "visitor", Body: second},
		shownMessage{Role: "agent", Body: reply2},
		shownMessage{Role: "visitor", Body: third})
	inWidget := ct.waitHistory(visitor, "parley-message", "parley-message-body", want)
	inConsole := ct.waitHistory(agent, "message", "message-body", want)
	for i := range inWidget {
		if inWidget[i].ID != inConsole[i].ID {
			ct.fail(agent, "message %d is %q in the widget and %q in the console", i, inWidget[i].ID, inConsole[i].ID)
		}
	}

	// Live again, on n3.
	ct.do(visitor, "writing on n3",
		chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), fourth), pressEnter)
	want = append(inWidget, shownMessage{Role: "visitor", Body: fourth})
	ct.waitHistory(visitor, "parley-message", "parley-message-body", want)
	ct.waitHistory(agent, "message", "message-body", want)
	waitFor[bool](ct, visitor, "the status line to clear",
		`!document.querySelector('[data-testid=parley-status]').checkVisibility()`)

	// n2 comes back: every replica holds the six messages (and the
	// widget's context), the same.
	n2.Restart(t)
	tc.waitAlive(t, n1, 3, 30*time.Second)
	tc.waitConverged(t, "demo", convID, len(want)+widgetContext, 60*time.Second)
	ct.checkPage(visitor, "at the end")
	ct.checkPage(agent, "at the end")
	ct.screenshot(visitor, "after-kill")
	for _, nd := range []*nodeProc{n1, n3} {
		if logs := nd.Logs(); strings.Contains(logs, "panic") {
			t.Fatalf("%s panicked:\n%s", nd.Addr, logs)
		}
	}
}

// widgetContext is what the widget adds to a conversation's digest besides
// the messages a page shows: the visitor's page context, sent once per
// page and conversation as an internal message (docs/protocol.md).
const widgetContext = 1
