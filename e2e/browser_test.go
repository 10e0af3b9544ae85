package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's Chromium, which `make test` installs.
const chromiumPath = "/usr/bin/chromium"

// needBrowser is every browser test's first line: it skips the test with
// PARLEY_SKIP_BROWSER=1 and fails it when headless Chromium is missing.
func needBrowser(t *testing.T) {
	t.Helper()
	if os.Getenv("PARLEY_SKIP_BROWSER") == "1" {
		t.Skip("PARLEY_SKIP_BROWSER=1")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("headless Chromium is missing (%v): run `make test`, which installs it, "+
			"or set PARLEY_SKIP_BROWSER=1 to skip the browser tests", err)
	}
}

const (
	visitorText = "Hello, my order #1234 has not arrived"
	agentText   = "Sorry to hear that! Let me check."
)

// pageProbe runs in every document before the page's own scripts. It records
// CSP violations and uncaught errors in window variables that the test reads,
// because the console of a page that navigates away is gone.
const pageProbe = `(() => {
  window.__parleyProblems = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__parleyProblems.push('CSP violation: ' + e.violatedDirective + ' blocked ' +
      (e.blockedURI || '(inline)') + ' at ' + (e.sourceFile || '?') + ':' + e.lineNumber);
  });
  window.addEventListener('error', (e) => {
    window.__parleyProblems.push('uncaught error: ' + e.message + ' at ' + e.filename + ':' + e.lineno);
  });
  window.addEventListener('unhandledrejection', (e) => {
    window.__parleyProblems.push('unhandled rejection: ' + String(e.reason));
  });
  // A script, style sheet or image of the page that failed to load
  // (navigate loads such a page again).
  window.__parleyLoadFailures = 0;
  window.addEventListener('error', (e) => {
    if (e.target !== window) window.__parleyLoadFailures++;
  }, true);
})();`

// navigate is chromedp.Navigate that loads the page again, up to three
// times, when one of its scripts, style sheets or images failed to load.
// Chromium cancels the requests in flight with net::ERR_NETWORK_CHANGED
// when the host's network changes, and the e2e shards run side by side:
// one shard's namespaces and veth pairs, made and removed, are such a
// change for the other's browsers (seen once in CI: the console's
// agent.js cancelled, the console never connected). A page whose
// resources fail for any other reason fails as before, three loads later.
func navigate(url string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		for try := 1; ; try++ {
			if _, err := chromedp.Navigate(url)(ctx, tg); err != nil || try == 3 {
				return chromedp.Void{}, err
			}
			failed, err := chromedp.Evaluate[int](`window.__parleyLoadFailures || 0`)(ctx, tg)
			if err != nil || failed == 0 {
				return chromedp.Void{}, err
			}
		}
	}
}

// browser is one headless Chromium process with one tab.
type browser struct {
	name string
	ctx  context.Context

	mu       sync.Mutex
	console  []string // everything the console showed, for the failure report
	problems []string // uncaught exceptions and CSP violations
}

func newBrowser(t *testing.T, parent context.Context, name string, width, height int, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	profile, err := os.MkdirTemp("", "parley-chromium-"+name)
	if err != nil {
		t.Fatal(err)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(parent, append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(width, height),
	}, extra...)...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	b := &browser{name: name, ctx: ctx}
	done := make(chan struct{})
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc() // waits for the browser process to exit
		<-done
		_ = os.RemoveAll(profile)
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser and its tab
		close(done)
		t.Fatalf("%s: starting %s: %v", name, chromiumPath, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			line := fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line+1)
			b.mu.Lock()
			b.console = append(b.console, line)
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") ||
				strings.Contains(m.Text, "Content-Security-Policy") {
				b.problems = append(b.problems, line)
			}
			b.mu.Unlock()
		}
	}()
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: pageProbe}); err != nil {
		t.Fatalf("%s: adding the page probe: %v", name, err)
	}
	return b
}

// chatTest holds what a failure report needs.
type chatTest struct {
	t    *testing.T
	node *nodeProc // nil: no node (its log is not reported)
	dir  string    // where screenshots go
	all  []*browser
}

// fail reports the failure with the consoles, the node log and screenshots.
func (ct *chatTest) fail(b *browser, format string, args ...any) {
	t := ct.t
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	for _, x := range ct.all {
		ct.screenshot(x, "failure")
		x.mu.Lock()
		t.Logf("%s console:\n  %s", x.name, strings.Join(x.console, "\n  "))
		x.mu.Unlock()
	}
	if ct.node != nil {
		logs := ct.node.Logs()
		if len(logs) > 8000 {
			logs = "…" + logs[len(logs)-8000:]
		}
		t.Logf("node log (tail):\n%s", logs)
	}
	t.Fatalf("%s: %s", b.name, msg)
}

// do runs actions in the browser, failing the test on error.
func (ct *chatTest) do(b *browser, what string, actions ...chromedp.Action[chromedp.Void]) {
	ct.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		ct.fail(b, "%s: %v", what, err)
	}
}

// waitFor polls a JavaScript expression until it is truthy and returns its
// value; a bounded wait, never a fixed sleep.
func waitFor[T any](ct *chatTest, b *browser, what, expr string) T {
	ct.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 25*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Poll[T](expr,
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		ct.fail(b, "waiting for %s: %v", what, err)
	}
	return v
}

func eval[T any](ct *chatTest, b *browser, what, expr string) T {
	ct.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		ct.fail(b, "%s: %v", what, err)
	}
	return v
}

// checkPage fails the test on anything the page probe or the console recorded.
func (ct *chatTest) checkPage(b *browser, when string) {
	ct.t.Helper()
	recorded := eval[[]string](ct, b, "reading the page probe", `window.__parleyProblems || []`)
	b.mu.Lock()
	problems := append(recorded, b.problems...)
	b.problems = nil
	b.mu.Unlock()
	if len(problems) > 0 {
		ct.fail(b, "%s: the page had problems:\n  %s", when, strings.Join(problems, "\n  "))
	}
}

func (ct *chatTest) screenshot(b *browser, label string) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		ct.t.Logf("%s: screenshot: %v", b.name, err)
		return
	}
	name := fmt.Sprintf("%s-%s.png", b.name, label)
	dirs := []string{ct.dir}
	if d := os.Getenv("PARLEY_SCREENSHOT_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err == nil {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			ct.t.Logf("%s: saving screenshot: %v", b.name, err)
			continue
		}
		ct.t.Logf("screenshot: %s", p)
	}
}

// pressEnter presses Enter in the focused element as a keyboard does: a
// keydown whose default the page may prevent, then a keyup. SendKeys("\n")
// would add a char event that types a newline even after the page handled the
// keydown.
var pressEnter = chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
	for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
		if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, input.DispatchKeyEventParams{
			Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
		}); err != nil {
			return err
		}
	}
	return nil
})

// shownMessage is one message element as a page shows it.
type shownMessage struct {
	ID    string `json:"id"`
	State string `json:"state"`
	Role  string `json:"role"`
	Body  string `json:"body"`
}

// messagesJS returns a JS expression listing the message elements in page
// order, or null while fewer than want messages are shown as sent.
func messagesJS(testid, bodyTestid string, want int) string {
	return fmt.Sprintf(`(() => {
  const list = Array.from(document.querySelectorAll('[data-testid=%q]')).map((el) => ({
    id: el.dataset.id, state: el.dataset.state, role: el.dataset.authorRole,
    body: (el.querySelector('[data-testid=%q]') || el).textContent,
  }));
  return list.filter((m) => m.state === 'sent').length >= %d ? list : null;
})()`, testid, bodyTestid, want)
}

// checkHistory verifies the two messages, in order, each shown exactly once.
func (ct *chatTest) checkHistory(b *browser, got []shownMessage) {
	ct.t.Helper()
	want := []shownMessage{{Role: "visitor", Body: visitorText}, {Role: "agent", Body: agentText}}
	seen := map[string]int{}
	for _, m := range got {
		seen[m.ID]++
	}
	for id, n := range seen {
		if n != 1 {
			ct.fail(b, "message %q is shown %d times: %+v", id, n, got)
		}
	}
	if len(got) != len(want) {
		ct.fail(b, "got %d messages, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Role != w.Role || got[i].Body != w.Body || got[i].State != "sent" || got[i].ID == "" {
			ct.fail(b, "message %d = %+v, want role %q body %q state sent", i, got[i], w.Role, w.Body)
		}
	}
}

func TestBrowserChat(t *testing.T) {
	needBrowser(t)
	node := startNode(t, t.TempDir())
	ctx := testCtx(t, 4*time.Minute)
	ct := &chatTest{t: t, node: node, dir: t.TempDir()}
	agent := newBrowser(t, ctx, "agent", 1280, 820)
	visitor := newBrowser(t, ctx, "visitor", 1100, 820)
	ct.all = []*browser{agent, visitor}

	// The agent opens the console; the token leaves the address bar.
	ct.do(agent, "opening the console", navigate(
		node.URL+"/agent#token="+url.QueryEscape(node.Token)+"&workspace=demo"))
	waitFor[bool](ct, agent, "the console to connect",
		`document.querySelector('[data-testid=status]').dataset.state === 'ok'`)
	if loc := eval[string](ct, agent, "reading the location", `location.href`); strings.Contains(loc, "token") {
		ct.fail(agent, "the token is still in the address bar: %s", loc)
	}

	// The visitor opens the demo page and the widget, and starts to type.
	ct.do(visitor, "opening the demo page",
		navigate(node.URL+"/demo"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-panel]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-agent-online][data-online=true]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), visitorText),
	)
	convID := waitFor[string](ct, agent, "the console to show the visitor typing", `(() => {
  const typing = document.querySelector('[data-testid=conv-item] [data-testid=conv-typing]');
  return typing && typing.checkVisibility() ? typing.closest('[data-testid=conv-item]').dataset.id : '';
})()`)

	// The visitor sends; the message is pending at once, then sent.
	ct.do(visitor, "sending", chromedp.Click(chromedp.CSS(`[data-testid=parley-send]`)))
	waitFor[[]shownMessage](ct, visitor, "the visitor's message to be sent",
		messagesJS("parley-message", "parley-message-body", 1))

	// The console shows the conversation live: unread badge, visitor online.
	waitFor[bool](ct, agent, "an unread badge and the visitor online", fmt.Sprintf(`(() => {
  const item = document.querySelector('[data-testid=conv-item][data-id=%q]');
  const badge = item && item.querySelector('[data-testid=conv-unread]');
  const visitorOnline = document.querySelector('[data-testid=online-item][data-role=visitor]');
  return Boolean(badge && badge.checkVisibility() && badge.textContent.trim() === '1' &&
    item.dataset.online === 'true' && visitorOnline);
})()`, convID))

	// The agent opens it and reads the message; the badge goes.
	ct.do(agent, "opening the conversation",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-testid=conv-item][data-id=%q]`, convID))))
	got := waitFor[[]shownMessage](ct, agent, "the visitor's message in the console",
		messagesJS("message", "message-body", 1))
	if got[0].Body != visitorText || got[0].Role != "visitor" {
		ct.fail(agent, "the console shows %+v", got)
	}
	waitFor[bool](ct, agent, "the unread badge to go", fmt.Sprintf(
		`!document.querySelector('[data-testid=conv-item][data-id=%q] [data-testid=conv-unread]').checkVisibility()`, convID))

	// The visitor sees that the agent has read it.
	waitFor[bool](ct, visitor, `"Seen" under the visitor's message`, `(() => {
  const seen = document.querySelector('[data-testid=parley-seen]');
  return Boolean(seen && seen.checkVisibility() && seen.closest('[data-testid=parley-message]'));
})()`)

	// The agent types (the visitor sees it) and replies.
	ct.do(agent, "typing the reply", chromedp.SendKeys(chromedp.CSS(`[data-testid=composer-input]`), agentText))
	waitFor[bool](ct, visitor, "the typing indicator in the widget", `(() => {
  const el = document.querySelector('[data-testid=parley-typing]');
  return el.checkVisibility() && el.textContent.includes('is typing');
})()`)
	ct.do(agent, "sending the reply", chromedp.Click(chromedp.CSS(`[data-testid=composer-send]`)))
	waitFor[[]shownMessage](ct, agent, "the reply to be sent", messagesJS("message", "message-body", 2))

	// The visitor sees the reply, and the typing indicator goes.
	got = waitFor[[]shownMessage](ct, visitor, "the reply in the widget",
		messagesJS("parley-message", "parley-message-body", 2))
	ct.checkHistory(visitor, got)
	waitFor[bool](ct, visitor, "the typing indicator to go",
		`!document.querySelector('[data-testid=parley-typing]').checkVisibility()`)

	// The agent sees the visitor's read receipt under the reply.
	waitFor[bool](ct, agent, `"Seen" under the reply`, `(() => {
  const seen = document.querySelector('[data-testid=seen]');
  const msg = seen && seen.closest('[data-testid=message]');
  return Boolean(seen && seen.checkVisibility() && msg && msg.dataset.authorRole === 'agent');
})()`)

	// The visitor types again: the open conversation shows it in the console.
	ct.do(visitor, "typing again", chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), "Thanks"))
	waitFor[bool](ct, agent, "the typing indicator in the console", `(() => {
  const el = document.querySelector('[data-testid=typing]');
  return el.checkVisibility() && el.textContent.includes('is typing');
})()`)

	ct.checkPage(agent, "before the reload")
	ct.checkPage(visitor, "before the reload")
	ct.screenshot(agent, "live")
	ct.screenshot(visitor, "live")

	// Both pages reload: the full history is intact, in order, once each.
	ct.do(visitor, "reloading the demo page", chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-launcher]`)))
	if !eval[bool](ct, visitor, "checking the panel", `document.querySelector('[data-testid=parley-panel]').checkVisibility()`) {
		ct.do(visitor, "reopening the widget", chromedp.Click(chromedp.CSS(`[data-testid=parley-launcher]`)))
	}
	afterVisitor := waitFor[[]shownMessage](ct, visitor, "the history in the widget after the reload",
		messagesJS("parley-message", "parley-message-body", 2))
	ct.checkHistory(visitor, afterVisitor)

	ct.do(agent, "reloading the console", chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`[data-testid=conv-item][data-id=%q]`, convID))))
	if !eval[bool](ct, agent, "checking the selection", fmt.Sprintf(
		`document.querySelector('[data-testid=conv-item][data-id=%q]').classList.contains('is-selected')`, convID)) {
		ct.do(agent, "reopening the conversation",
			chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-testid=conv-item][data-id=%q]`, convID))))
	}
	afterAgent := waitFor[[]shownMessage](ct, agent, "the history in the console after the reload",
		messagesJS("message", "message-body", 2))
	ct.checkHistory(agent, afterAgent)
	for i := range afterAgent {
		if afterAgent[i].ID != afterVisitor[i].ID {
			ct.fail(agent, "message %d has id %q in the console and %q in the widget", i, afterAgent[i].ID, afterVisitor[i].ID)
		}
	}
	// Still exactly two after everything settled (no late duplicate).
	if n := eval[int](ct, visitor, "counting", `document.querySelectorAll('[data-testid=parley-message]').length`); n != 2 {
		ct.fail(visitor, "%d messages shown after the reload, want 2", n)
	}

	ct.checkPage(agent, "after the reload")
	ct.checkPage(visitor, "after the reload")
	ct.screenshot(agent, "reloaded")
	ct.screenshot(visitor, "reloaded")

	// The node dies while both pages are open. A message written meanwhile
	// stays pending, is sent after the reconnect, and shows once on each side.
	node.Kill9(t)
	waitFor[bool](ct, visitor, "the widget to notice the lost connection",
		`document.querySelector('[data-testid=parley-status]').checkVisibility()`)
	const offlineText = "Are you still there?"
	ct.do(visitor, "writing while the node is down",
		chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), offlineText), pressEnter)
	pendingID := waitFor[string](ct, visitor, "the message to be pending", fmt.Sprintf(`(() => {
  const el = Array.from(document.querySelectorAll('[data-testid=parley-message][data-state=pending]'))
    .find((m) => m.textContent.includes(%q));
  return el ? el.dataset.id : '';
})()`, offlineText))
	node.Restart(t)
	for _, side := range []struct {
		b              *browser
		testid, bodyID string
	}{{visitor, "parley-message", "parley-message-body"}, {agent, "message", "message-body"}} {
		got := waitFor[[]shownMessage](ct, side.b, "the resent message after the restart",
			messagesJS(side.testid, side.bodyID, 3))
		if len(got) != 3 || got[2].ID != pendingID || got[2].Body != offlineText || got[2].Role != "visitor" {
			ct.fail(side.b, "after the restart: %+v, want the 3rd message %q (%s)", got, offlineText, pendingID)
		}
		ct.checkHistory(side.b, got[:2])
	}
	waitFor[bool](ct, visitor, "the status line to clear",
		`!document.querySelector('[data-testid=parley-status]').checkVisibility()`)
	waitFor[bool](ct, agent, "the console to reconnect",
		`document.querySelector('[data-testid=status]').dataset.state === 'ok'`)

	// How the widget looks on a phone: the panel fills the screen.
	ct.do(visitor, "emulating a phone", chromedp.EmulateViewport(390, 780, chromedp.EmulateMobile))
	waitFor[bool](ct, visitor, "the full-screen panel", `(() => {
  const r = document.querySelector('[data-testid=parley-panel]').getBoundingClientRect();
  return r.width >= window.innerWidth - 1 && r.height >= window.innerHeight - 1;
})()`)
	ct.screenshot(visitor, "phone")
	ct.checkPage(visitor, "on a phone")

	// The widget on another site (another origin) loads its stylesheet and
	// socket from the node and reaches the agent: the one-tag embed works.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Another shop</title></head>
<body><h1>Another shop</h1><script src="%s/widget.js" data-workspace="demo" async></script></body></html>`, node.URL)
	}))
	defer other.Close()
	const otherText = "Hi from another site"
	ct.do(visitor, "opening a page of another site",
		chromedp.EmulateViewport(1100, 820),
		navigate(other.URL),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-agent-online][data-online=true]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), otherText),
		pressEnter,
	)
	waitFor[bool](ct, visitor, "the message from another site to be sent",
		`document.querySelector('[data-testid=parley-message][data-state=sent]') !== null`)
	waitFor[bool](ct, agent, "a second conversation in the console", fmt.Sprintf(`(() => {
  const items = Array.from(document.querySelectorAll('[data-testid=conv-item]'));
  return items.length === 2 && items.some((el) => el.dataset.id !== %q && el.textContent.includes(%q));
})()`, convID, otherText))
	ct.checkPage(visitor, "on another site")
	ct.checkPage(agent, "at the end")
	ct.screenshot(visitor, "other-site")
	ct.screenshot(agent, "end")

	if raw, err := json.Marshal(afterVisitor); err == nil {
		t.Logf("history: %s", raw)
	}
}
