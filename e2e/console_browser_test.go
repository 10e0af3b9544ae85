package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserConsoleAt1024: what an agent's eye meets first, on a 1024-pixel
// screen. Web addresses in messages are links on both sides (http and https
// only, no opener, no referrer; the text unchanged); the thread's header
// names the visitor without an internal ID; a visitor has the same initials
// in the list, the header and "Who is online"; the search box shows its
// whole placeholder; the online panel keeps room for a name.
func TestBrowserConsoleAt1024(t *testing.T) {
	needBrowser(t)
	node := startNode(t, t.TempDir(), "-h3", "off")
	ctx := testCtx(t, 3*time.Minute)
	ct := &chatTest{t: t, node: node, dir: t.TempDir()}
	agent := newBrowser(t, ctx, "agent", 1024, 768)
	visitor := newBrowser(t, ctx, "visitor", 420, 760)
	ct.all = []*browser{agent, visitor}

	const first = "Your guide https://example.com/help?q=1&x=(a). is wrong, see javascript:alert(1) and ftp://example.com/f"
	convID := ct.startChat(agent, visitor, node.URL, node.Token, first)
	ct.do(agent, "opening the conversation", chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-testid=conv-item][data-id=%q]`, convID))))
	waitFor[[]shownMessage](ct, agent, "the visitor's message in the console", messagesJS("message", "message-body", 1))

	type link struct{ Href, Text, Rel, Target string }
	linksJS := func(sel string) string {
		return fmt.Sprintf(`Array.from(document.querySelectorAll(%q)).map((b) => ({
  body: b.textContent,
  links: Array.from(b.querySelectorAll('a')).map((a) => ({href: a.href, text: a.textContent, rel: a.rel, target: a.target})),
}))`, sel)
	}
	type shown struct {
		Body  string
		Links []link
	}
	got := eval[[]shown](ct, agent, "reading the links", linksJS(`[data-testid=message-body]`))
	want := link{Href: "https://example.com/help?q=1&x=(a)", Text: "https://example.com/help?q=1&x=(a)", Rel: "noopener noreferrer nofollow ugc", Target: "_blank"}
	if len(got) != 1 || got[0].Body != first || len(got[0].Links) != 1 || got[0].Links[0] != want {
		ct.fail(agent, "the console shows %+v, want the text unchanged and one link %+v", got, want)
	}

	// The header: the visitor's name and state, no internal ID.
	sub := eval[string](ct, agent, "reading the header", `document.getElementById('thread-sub').textContent + ' ' + document.getElementById('thread-title').textContent`)
	if strings.Contains(sub, "v:") {
		ct.fail(agent, "the thread's header shows an internal ID: %q", sub)
	}
	// One visitor, one set of initials.
	initials := waitFor[[]string](ct, agent, "the visitor's avatars", `(() => {
  const o = document.querySelector('[data-testid=online-item][data-role=visitor] .avatar');
  if (!o) return null;
  return [document.querySelector('[data-testid=conv-item].is-selected .avatar').textContent,
    document.getElementById('thread-avatar').textContent, o.textContent];
})()`)
	if initials[0] != initials[1] || initials[1] != initials[2] {
		ct.fail(agent, "one visitor's initials differ: list %q, header %q, online %q", initials[0], initials[1], initials[2])
	}
	// The layout at 1024 pixels.
	type box struct {
		OnlineW, OnlineH, PlaceholderPx, SearchPx float64
	}
	b := eval[box](ct, agent, "measuring", `(() => {
  const input = document.querySelector('[data-testid=search-input]');
  const cs = getComputedStyle(input);
  const c = document.createElement('canvas').getContext('2d');
  c.font = cs.font;
  return {
    onlineW: document.querySelector('.panel.online').getBoundingClientRect().width,
    onlineH: document.querySelector('.panel.online').getBoundingClientRect().height,
    placeholderPx: c.measureText(input.placeholder).width,
    searchPx: input.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight),
  };
})()`)
	if b.OnlineW < 200 || b.OnlineH < 180 {
		ct.fail(agent, "\"Who is online\" is %.0f×%.0f px at 1024×768, want at least 200×180", b.OnlineW, b.OnlineH)
	}
	// Both people online are in view, not behind a scroll bar.
	if !eval[bool](ct, agent, "checking who is online", `(() => {
  const list = document.getElementById('online-list').getBoundingClientRect();
  const items = Array.from(document.querySelectorAll('[data-testid=online-item]'));
  return items.length === 2 && items.every((i) => i.getBoundingClientRect().bottom <= list.bottom + 0.5);
})()`) {
		ct.fail(agent, "\"Who is online\" hides someone behind its scroll bar at 1024×768")
	}
	// A margin for the font the canvas measures with (the box's font stack).
	if b.PlaceholderPx+16 > b.SearchPx {
		ct.fail(agent, "the search placeholder needs %.0f px, the box has %.0f", b.PlaceholderPx, b.SearchPx)
	}

	// The agent's reply with an address ending a sentence: a link in the
	// widget without the full stop.
	const reply = "Here it is: https://parley.example/docs/guide."
	ct.do(agent, "replying with a link",
		chromedp.SendKeys(chromedp.CSS(`[data-testid=composer-input]`), reply),
		chromedp.Click(chromedp.CSS(`[data-testid=composer-send]`)))
	waitFor[[]shownMessage](ct, visitor, "the reply in the widget", messagesJS("parley-message", "parley-message-body", 2))
	wgot := eval[[]shown](ct, visitor, "reading the widget's links", linksJS(`[data-testid=parley-message-body]`))
	wwant := link{Href: "https://parley.example/docs/guide", Text: "https://parley.example/docs/guide", Rel: "noopener noreferrer nofollow ugc", Target: "_blank"}
	if len(wgot) != 2 || wgot[0].Body != first || len(wgot[0].Links) != 1 || wgot[0].Links[0] != want ||
		wgot[1].Body != reply || len(wgot[1].Links) != 1 || wgot[1].Links[0] != wwant {
		ct.fail(visitor, "the widget shows %+v", wgot)
	}
	ct.checkPage(agent, "at 1024 px")
	ct.checkPage(visitor, "with links")
	ct.screenshot(agent, "1024")
	ct.screenshot(visitor, "links")
}

// TestBrowserVisitorLeavesGoesOffline: a visitor who navigates away goes
// offline for the agent at once, over either transport, though Chromium's
// back/forward cache may keep the page alive; coming back connects again.
// The issue asks for 2 s; the test allows 5 so that a loaded machine does
// not fail it (the old widget stayed online about 27 s over WebSocket).
func TestBrowserVisitorLeavesGoesOffline(t *testing.T) {
	needBrowser(t)
	for _, tr := range []struct {
		name string
		args []string
	}{{"ws", []string{"-h3", "off"}}, {"wt", nil}} {
		t.Run(tr.name, func(t *testing.T) {
			node := startNode(t, t.TempDir(), tr.args...)
			ctx := testCtx(t, 2*time.Minute)
			ct := &chatTest{t: t, node: node, dir: t.TempDir()}
			agent := newBrowser(t, ctx, "agent-"+tr.name, 1280, 820)
			visitor := newBrowser(t, ctx, "visitor-"+tr.name, 420, 760)
			ct.all = []*browser{agent, visitor}
			ct.startChat(agent, visitor, node.URL, node.Token, "Just looking around")
			if got := eval[string](ct, visitor, "the widget's transport", widgetTransport); got != tr.name {
				ct.fail(visitor, "the widget connected over %q, want %q", got, tr.name)
			}
			const visitorOnline = `Boolean(document.querySelector('[data-testid=online-item][data-role=visitor]'))`
			waitFor[bool](ct, agent, "the visitor online", visitorOnline)

			left := time.Now()
			ct.do(visitor, "leaving for another page", navigate(node.URL+"/healthz"))
			wctx, cancel := context.WithTimeout(agent.ctx, 5*time.Second)
			_, err := chromedp.Run(wctx, chromedp.Poll[bool]("!"+visitorOnline, chromedp.WithPollingInterval(50*time.Millisecond)))
			cancel()
			if err != nil {
				ct.fail(agent, "the visitor still online %s after leaving the page: %v", time.Since(left).Round(time.Millisecond), err)
			}
			t.Logf("%s: offline for the agent %s after the visitor left", tr.name, time.Since(left).Round(time.Millisecond))

			// Back (from the cache or loaded again): online again.
			eval[any](ct, visitor, "coming back", `history.back(), null`)
			waitFor[bool](ct, agent, "the visitor online again", visitorOnline)
			ct.checkPage(agent, "after the visitor came back")
		})
	}
}
