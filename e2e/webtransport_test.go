package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser tests of WebTransport: a conversation over WebTransport end to
// end, the same with UDP to the node blocked from the start (the widget and
// the console fall back to WebSocket), and with UDP blocked in the middle of
// the conversation (they fall back and resume, losing and repeating nothing).
// Blocking UDP takes iptables, as root: `make test-deps` installs Debian's
// iptables package.

// wtPort returns the node's WebTransport UDP port from /v1/transport.
func wtPort(t *testing.T, n *nodeProc) int {
	t.Helper()
	resp, err := http.Get(n.URL + "/v1/transport")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct {
		WebTransport *struct {
			URL        string   `json:"url"`
			CertHashes []string `json:"cert_hashes"`
		} `json:"webtransport"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || info.WebTransport == nil {
		t.Fatalf("/v1/transport offers no WebTransport: %v %+v", err, info)
	}
	if len(info.WebTransport.CertHashes) == 0 {
		t.Fatalf("/v1/transport has no certificate hash: %+v", info.WebTransport)
	}
	u, err := url.Parse(info.WebTransport.URL)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(u.Port())
	if u.Scheme != "https" || u.Hostname() != "127.0.0.1" || p == 0 {
		t.Fatalf("WebTransport URL %s", info.WebTransport.URL)
	}
	return p
}

// blockUDP drops UDP to the node's port on this machine (IPv4 and IPv6),
// and with both set, from it too, until the test ends. It skips the test
// when iptables cannot be used.
func blockUDP(t *testing.T, port int, both bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("blocking UDP needs root (iptables)")
	}
	rules := [][]string{{"--dport", strconv.Itoa(port)}}
	if both {
		rules = append(rules, []string{"--sport", strconv.Itoa(port)})
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (make test-deps installs Debian's iptables): %v", tool, err)
		}
		for _, r := range rules {
			spec := append([]string{"INPUT", "-p", "udp"}, append(r, "-j", "DROP")...)
			out, err := exec.Command(tool, append([]string{"-w", "-I"}, spec...)...).CombinedOutput()
			if err != nil {
				t.Skipf("%s cannot add a rule here: %v: %s", tool, err, out)
			}
			t.Cleanup(func() {
				if out, err := exec.Command(tool, append([]string{"-w", "-D"}, spec...)...).CombinedOutput(); err != nil {
					t.Errorf("removing the %s rule %v: %v: %s", tool, spec, err, out)
				}
			})
		}
	}
}

// metric returns the value of one sample on the node's /metrics, or 0.
func metric(t *testing.T, n *nodeProc, sample string) float64 {
	t.Helper()
	resp, err := http.Get(n.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

const (
	widgetTransport  = `(document.querySelector('[data-testid=parley-panel]').dataset.transport || '')`
	consoleTransport = `(document.querySelector('[data-testid=status]').dataset.transport || '')`
)

// openBoth opens the agent console and the widget (the visitor waits for the
// agent to be online) and checks the transport each connected with.
func openBoth(ct *chatTest, agent, visitor *browser, want string) {
	ct.t.Helper()
	node := ct.node
	ct.do(agent, "opening the console", navigate(
		node.URL+"/agent#token="+url.QueryEscape(node.Token)+"&workspace=demo"))
	waitFor[bool](ct, agent, "the console to connect",
		`document.querySelector('[data-testid=status]').dataset.state === 'ok'`)
	if got := eval[string](ct, agent, "the console's transport", consoleTransport); got != want {
		ct.fail(agent, "the console connected over %q, want %q", got, want)
	}
	ct.do(visitor, "opening the demo page",
		navigate(node.URL+"/demo"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-panel]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-agent-online][data-online=true]`)),
	)
	if got := eval[string](ct, visitor, "the widget's transport", widgetTransport); got != want {
		ct.fail(visitor, "the widget connected over %q, want %q", got, want)
	}
}

// firstExchange: the visitor writes, the agent opens the conversation and
// answers; both show the two messages once each. It returns the
// conversation's id.
func firstExchange(ct *chatTest, agent, visitor *browser) string {
	ct.t.Helper()
	ct.do(visitor, "writing", chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), visitorText), pressEnter)
	waitFor[[]shownMessage](ct, visitor, "the visitor's message to be sent",
		messagesJS("parley-message", "parley-message-body", 1))
	convID := waitFor[string](ct, agent, "the conversation in the console",
		`(document.querySelector('[data-testid=conv-item]') || {dataset: {}}).dataset.id || ''`)
	ct.do(agent, "opening the conversation",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-testid=conv-item][data-id=%q]`, convID))))
	waitFor[[]shownMessage](ct, agent, "the visitor's message in the console", messagesJS("message", "message-body", 1))
	ct.do(agent, "replying", chromedp.SendKeys(chromedp.CSS(`[data-testid=composer-input]`), agentText),
		chromedp.Click(chromedp.CSS(`[data-testid=composer-send]`)))
	ct.checkHistory(visitor, waitFor[[]shownMessage](ct, visitor, "the reply in the widget",
		messagesJS("parley-message", "parley-message-body", 2)))
	ct.checkHistory(agent, waitFor[[]shownMessage](ct, agent, "the reply in the console",
		messagesJS("message", "message-body", 2)))
	return convID
}

func TestBrowserChatOverWebTransport(t *testing.T) {
	needBrowser(t)
	node := startNode(t, t.TempDir())
	wtPort(t, node)
	ctx := testCtx(t, 3*time.Minute)
	ct := &chatTest{t: t, node: node, dir: t.TempDir()}
	agent := newBrowser(t, ctx, "agent", 1280, 820)
	visitor := newBrowser(t, ctx, "visitor", 1100, 820)
	ct.all = []*browser{agent, visitor}

	openBoth(ct, agent, visitor, "wt")
	if got := metric(t, node, `parley_connections{transport="wt"}`); got < 2 {
		ct.fail(agent, `parley_connections{transport="wt"} = %v during the chat, want >= 2`, got)
	}
	if got := metric(t, node, `parley_connections{transport="ws"}`); got != 0 {
		ct.fail(agent, `parley_connections{transport="ws"} = %v, want 0`, got)
	}
	firstExchange(ct, agent, visitor)
	// Typing travels too.
	ct.do(visitor, "typing", chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), "Thanks"))
	waitFor[bool](ct, agent, "the typing indicator in the console", `(() => {
  const el = document.querySelector('[data-testid=typing]');
  return el.checkVisibility() && el.textContent.includes('is typing');
})()`)
	for _, s := range []string{`parley_messages_in_total{transport="wt"}`, `parley_delivery_seconds_count{transport="wt"}`} {
		if got := metric(t, node, s); got < 2 {
			ct.fail(agent, "%s = %v, want >= 2", s, got)
		}
	}
	ct.checkPage(agent, "over WebTransport") // no CSP violation, no uncaught error
	ct.checkPage(visitor, "over WebTransport")
	ct.screenshot(visitor, "wt")
}

func TestBrowserFallsBackToWebSocketWhenUDPIsBlocked(t *testing.T) {
	needBrowser(t)
	node := startNode(t, t.TempDir())
	blockUDP(t, wtPort(t, node), false)
	ctx := testCtx(t, 3*time.Minute)
	ct := &chatTest{t: t, node: node, dir: t.TempDir()}
	agent := newBrowser(t, ctx, "agent", 1280, 820)
	visitor := newBrowser(t, ctx, "visitor", 1100, 820)
	ct.all = []*browser{agent, visitor}

	openBoth(ct, agent, visitor, "ws")
	// The browser can do WebTransport: it tried, failed and remembers.
	if !eval[bool](ct, visitor, "the remembered failure", `typeof WebTransport === 'function' &&
  Boolean(sessionStorage.getItem('parley:wt-failed:' + location.origin))`) {
		ct.fail(visitor, "the widget did not try WebTransport first, or does not remember that it failed")
	}
	firstExchange(ct, agent, visitor)
	if got := metric(t, node, `parley_connections{transport="ws"}`); got < 2 {
		ct.fail(agent, `parley_connections{transport="ws"} = %v, want >= 2`, got)
	}
	if got := metric(t, node, `parley_connections_total{transport="wt"}`); got != 0 {
		ct.fail(agent, `%v WebTransport connections got through the blocked port`, got)
	}
	// A reload reconnects at once over WebSocket: no second wait for
	// WebTransport within the remembered window.
	start := time.Now()
	ct.do(visitor, "reloading", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-launcher]`)))
	ct.checkHistory(visitor, waitFor[[]shownMessage](ct, visitor, "the history after the reload",
		messagesJS("parley-message", "parley-message-body", 2)))
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("the reload took %v to show the history: WebTransport was tried again", d)
	}
	if got := eval[string](ct, visitor, "the widget's transport", widgetTransport); got != "ws" {
		ct.fail(visitor, "after the reload the widget is on %q", got)
	}
	ct.checkPage(agent, "with UDP blocked")
	ct.checkPage(visitor, "with UDP blocked")
}

func TestBrowserFallsBackWhenWebTransportBreaksMidSession(t *testing.T) {
	needBrowser(t)
	node := startNode(t, t.TempDir())
	port := wtPort(t, node)
	ctx := testCtx(t, 3*time.Minute)
	ct := &chatTest{t: t, node: node, dir: t.TempDir()}
	agent := newBrowser(t, ctx, "agent", 1280, 820)
	visitor := newBrowser(t, ctx, "visitor", 1100, 820)
	ct.all = []*browser{agent, visitor}

	openBoth(ct, agent, visitor, "wt")
	firstExchange(ct, agent, visitor)

	// The path breaks: UDP is dropped both ways, silently. A message written
	// now goes into the dead session and stays pending; once the widget
	// notices (no answer within 5 s), it reconnects over WebSocket, resumes,
	// and sends it again. The console notices at its next ping.
	blockUDP(t, port, true)
	blocked := time.Now()
	const during = "Still there? The line went quiet"
	ct.do(visitor, "writing while the path is broken",
		chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), during), pressEnter)
	waitLong[bool](ct, visitor, "the widget to fall back to WebSocket", widgetTransport+` === 'ws'`)
	t.Logf("the widget was on WebSocket %v after UDP was blocked", time.Since(blocked).Round(100*time.Millisecond))
	waitLong[bool](ct, agent, "the console to fall back to WebSocket", consoleTransport+` === 'ws'`)
	t.Logf("the console was on WebSocket %v after UDP was blocked", time.Since(blocked).Round(100*time.Millisecond))
	const after = "Yes, I am here."
	waitFor[[]shownMessage](ct, agent, "the message written during the break, in the console",
		messagesJS("message", "message-body", 3))
	ct.do(agent, "replying after the fallback", chromedp.SendKeys(chromedp.CSS(`[data-testid=composer-input]`), after),
		chromedp.Click(chromedp.CSS(`[data-testid=composer-send]`)))
	want := []shownMessage{{Role: "visitor", Body: visitorText}, {Role: "agent", Body: agentText},
		{Role: "visitor", Body: during}, {Role: "agent", Body: after}}
	for _, side := range []struct {
		b              *browser
		testid, bodyID string
	}{{visitor, "parley-message", "parley-message-body"}, {agent, "message", "message-body"}} {
		got := waitFor[[]shownMessage](ct, side.b, "all four messages", messagesJS(side.testid, side.bodyID, 4))
		seen := map[string]bool{}
		for i, m := range got {
			if seen[m.ID] {
				ct.fail(side.b, "message %s shown twice: %+v", m.ID, got)
			}
			seen[m.ID] = true
			if i >= len(want) || m.Role != want[i].Role || m.Body != want[i].Body || m.State != "sent" {
				ct.fail(side.b, "messages %+v, want %+v", got, want)
			}
		}
		if len(got) != len(want) {
			ct.fail(side.b, "%d messages, want %d: %+v", len(got), len(want), got)
		}
	}
	if got := metric(t, node, `parley_connections{transport="ws"}`); got < 2 {
		ct.fail(agent, `parley_connections{transport="ws"} = %v after the fallback, want >= 2`, got)
	}
	ct.checkPage(agent, "after the fallback")
	ct.checkPage(visitor, "after the fallback")
	ct.screenshot(visitor, "fallback")
	ct.screenshot(agent, "fallback")
}

// waitLong is waitFor for what takes a timeout to happen.
func waitLong[T any](ct *chatTest, b *browser, what, expr string) T {
	ct.t.Helper()
	tctx, cancel := context.WithTimeout(b.ctx, 50*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Poll[T](expr,
		chromedp.WithPollingInterval(100*time.Millisecond),
		chromedp.WithPollingTimeout(45*time.Second)))
	if err != nil {
		ct.fail(b, "waiting for %s: %v", what, err)
	}
	return v
}
