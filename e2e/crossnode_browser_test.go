package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"parley/internal/eventually"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// switchProxy stands for a load balancer in front of the nodes: it forwards
// TCP connections to one node at a time; route cuts every open connection
// and sends the next ones elsewhere (or, with "", refuses them), so that
// the pages behind it reconnect and land on another node with the same
// origin.
type switchProxy struct {
	URL string
	l   net.Listener

	deaf atomic.Bool // drop what the node sends to the page

	mu     sync.Mutex
	target string
	conns  map[net.Conn]struct{}
}

// deafWriter passes bytes on to the page unless the proxy is deaf.
type deafWriter struct {
	p *switchProxy
	c net.Conn
}

func (w deafWriter) Write(b []byte) (int, error) {
	if w.p.deaf.Load() {
		return len(b), nil
	}
	return w.c.Write(b)
}

func newSwitchProxy(t *testing.T, target string) *switchProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{URL: "http://" + l.Addr().String(), l: l, target: target, conns: map[net.Conn]struct{}{}}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		p.route("")
	})
	return p
}

func (p *switchProxy) pipe(c net.Conn) {
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	if target == "" {
		c.Close()
		return
	}
	up, err := net.DialTimeout("tcp", target, 2*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.target != target {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(deafWriter{p, c}, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// route cuts every connection and sends new ones to target ("": none),
// hearing again.
func (p *switchProxy) route(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
	p.deaf.Store(false)
	for c := range p.conns {
		c.Close()
	}
}

// shownJS lists every message element of a page, in page order.
func shownJS(testid, bodyTestid string) string {
	return fmt.Sprintf(`Array.from(document.querySelectorAll('[data-testid=%q]')).map((el) => ({
  id: el.dataset.id, state: el.dataset.state, role: el.dataset.authorRole,
  body: (el.querySelector('[data-testid=%q]') || el).textContent,
}))`, testid, bodyTestid)
}

// historyDiff says how got differs from want (each id once, in order, with
// want's role, body and id when given, all sent), "" when it does not.
func historyDiff(got, want []shownMessage) string {
	seen := map[string]int{}
	for _, m := range got {
		seen[m.ID]++
	}
	for id, n := range seen {
		if n != 1 {
			return fmt.Sprintf("message %q is shown %d times", id, n)
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("%d messages shown, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Role != w.Role || g.Body != w.Body || g.State != "sent" || g.ID == "" || (w.ID != "" && g.ID != w.ID) {
			return fmt.Sprintf("message %d is %+v, want %+v (sent)", i, g, w)
		}
	}
	return ""
}

// waitHistory waits until the page shows exactly want, then checks that it
// still does a moment later (no late duplicate).
func (ct *chatTest) waitHistory(b *browser, testid, bodyTestid string, want []shownMessage) []shownMessage {
	ct.t.Helper()
	expr := shownJS(testid, bodyTestid)
	var got []shownMessage
	if err := eventually.Poll(25*time.Second, func() error {
		got = eval[[]shownMessage](ct, b, "reading the messages", expr)
		if diff := historyDiff(got, want); diff != "" {
			return fmt.Errorf("%s: %+v", diff, got)
		}
		return nil
	}); err != nil {
		ct.fail(b, "%v", err)
	}
	time.Sleep(700 * time.Millisecond) // a moment for a late duplicate
	got = eval[[]shownMessage](ct, b, "reading the messages again", expr)
	if diff := historyDiff(got, want); diff != "" {
		ct.fail(b, "the history changed after it was right: %s: %+v", diff, got)
	}
	return got
}

// resumesSent records the resume frames a page sends over WebSocket.
func resumesSent(t *testing.T, b *browser) func() []map[string]any {
	t.Helper()
	var mu sync.Mutex
	var got []map[string]any
	err := chromedp.Listen(b.ctx, func(ev any) {
		e, ok := ev.(*network.EventWebSocketFrameSent)
		if !ok || e.Response == nil || !strings.Contains(string(e.Response.PayloadData), `"resume"`) {
			return
		}
		var f map[string]any
		if json.Unmarshal(e.Response.PayloadData, &f) == nil && f["type"] == "resume" {
			mu.Lock()
			got = append(got, f)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("%s: listening to its frames: %v", b.name, err)
	}
	return func() []map[string]any {
		mu.Lock()
		defer mu.Unlock()
		return append([]map[string]any(nil), got...)
	}
}

// startChat opens the console (with an operator token of the demo
// workspace) and the widget at base, writes first in the widget, and
// returns the conversation's ID once the console lists it.
func (ct *chatTest) startChat(agent, visitor *browser, base, token, first string) string {
	ct.t.Helper()
	ct.do(agent, "opening the console", navigate(base+"/agent#token="+url.QueryEscape(token)+"&workspace=demo"))
	waitFor[bool](ct, agent, "the console to connect",
		`document.querySelector('[data-testid=status]').dataset.state === 'ok'`)
	ct.do(visitor, "opening the widget and writing",
		navigate(base+"/demo"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-panel]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), first),
		pressEnter,
	)
	waitFor[[]shownMessage](ct, visitor, "the first message to be sent", messagesJS("parley-message", "parley-message-body", 1))
	return waitFor[string](ct, agent, "the conversation in the console", fmt.Sprintf(`(() => {
  const el = Array.from(document.querySelectorAll('[data-testid=conv-item]')).find((e) => e.textContent.includes(%q));
  return el ? el.dataset.id : '';
})()`, first))
}

// TestBrowserCrossNode: the widget and the console sit behind a balancer
// of two nodes. The console warns its agent that another agent, on the
// other node, views the open conversation and types in it, and marks it in
// the list. Then the balancer moves both pages to the other node while
// messages are written, edited and deleted there and the visitor writes
// offline: after the move each page shows every message exactly once, in
// its final state. The second node was killed and restarted first, so its
// seqs (2^32+1, ...) are nothing like the first's (1, 2, ...): a page that
// resumed by seq on the other node would miss what it did not see.
func TestBrowserCrossNode(t *testing.T) {
	needBrowser(t)
	tc := startCluster(t, 2)
	n1, n2 := tc.nodes[0], tc.nodes[1]
	n2.Kill9(t)
	n2.Restart(t)
	tc.waitAlive(t, n1, 2, 30*time.Second)
	tc.waitAlive(t, n2, 2, 30*time.Second)
	ctx := testCtx(t, 4*time.Minute)
	px := newSwitchProxy(t, n2.Addr)
	ct := &chatTest{t: t, node: n2, dir: t.TempDir()}
	agent := newBrowser(t, ctx, "agent", 1280, 820)
	visitor := newBrowser(t, ctx, "visitor", 1100, 820)
	ct.all = []*browser{agent, visitor}
	ben := tc.agentOn(t, ctx, n1, n1, "demo", "ben")
	visitorResumes, agentResumes := resumesSent(t, visitor), resumesSent(t, agent)

	// Both pages reach n2 through the balancer.
	const first = "Hello, is the parcel on its way?"
	convID := ct.startChat(agent, visitor, px.URL, n2.Token, first)
	item := fmt.Sprintf(`[data-testid=conv-item][data-id=%q]`, convID)

	// The agent opens it: the console tells n2, and Ben on n1 is told.
	ct.do(agent, "opening the conversation", chromedp.Click(chromedp.CSS(item)))
	if _, err := ben.await(ctx, "viewing", func(m map[string]any) bool {
		return m["conversation"] == convID && m["participant"] == "a:sam" && m["viewing"] == true
	}); err != nil {
		ct.fail(agent, "Ben on n1 was never told that the console's agent views the conversation: %v", err)
	}
	// No warning while nobody else is there.
	if eval[bool](ct, agent, "reading the warning", `document.querySelector('[data-testid=collision]').checkVisibility()`) {
		ct.fail(agent, "a collision warning with nobody else viewing")
	}
	// Ben opens it too, on n1: the console warns, in the thread and the list.
	ben.send(ctx, map[string]any{"type": "view", "ref": "bv", "conversation": convID, "viewing": true})
	waitFor[bool](ct, agent, `"Ben is also viewing"`, fmt.Sprintf(`(() => {
  const w = document.querySelector('[data-testid=collision]');
  const mark = document.querySelector('%s [data-testid=conv-viewers]');
  return w.checkVisibility() && w.textContent === 'Ben is also viewing' &&
    Boolean(mark && mark.checkVisibility() && mark.closest('[data-testid=conv-item]').dataset.collision === 'true');
})()`, item))
	ben.send(ctx, map[string]any{"type": "typing", "conversation": convID, "typing": true})
	waitFor[bool](ct, agent, `"Ben is typing…"`, `(() => {
  const w = document.querySelector('[data-testid=collision]');
  return w.checkVisibility() && w.textContent === 'Ben is typing\u2026' && w.dataset.typing === 'true';
})()`)
	// An agent's typing is not the visitor's.
	if eval[bool](ct, agent, "reading the typing line", `document.querySelector('[data-testid=typing]').checkVisibility()`) {
		ct.fail(agent, "the visitor's typing line shows an agent typing")
	}
	ct.screenshot(agent, "collision")
	ct.checkPage(agent, "with the warning")

	const (
		replyB  = "Let me look it up."
		editedB = "Let me look it up for you."
		textC   = "It left the warehouse this morning."
		textD   = "Wrong conversation, sorry"
		textE   = "Thanks! And the invoice?"
		textF   = "The invoice is in your account."
		deleted = "This message was deleted"
	)
	say(t, ctx, ben, convID, "m-ben-000001", replyB)
	waitFor[[]shownMessage](ct, visitor, "Ben's reply in the widget", messagesJS("parley-message", "parley-message-body", 2))

	// The balancer loses n2. Meanwhile, on n1: a new message, an edit, a
	// message deleted; the visitor writes offline.
	px.route("")
	waitFor[bool](ct, visitor, "the widget to notice the lost connection",
		`document.querySelector('[data-testid=parley-status]').checkVisibility()`)
	say(t, ctx, ben, convID, "m-ben-000002", textC)
	for _, f := range []map[string]any{
		{"type": "edit", "ref": "e1", "conversation": convID, "id": "m-ben-000001", "body": editedB},
		{"type": "send", "ref": "d1", "conversation": convID, "id": "m-ben-000003", "body": textD},
		{"type": "delete", "ref": "d2", "conversation": convID, "id": "m-ben-000003"},
	} {
		ben.send(ctx, f)
		if m, err := ben.awaitRef(ctx, f["ref"].(string)); err != nil || m["type"] != "ack" {
			t.Fatalf("%v: %v %v", f, m, err)
		}
	}
	ct.do(visitor, "writing while disconnected",
		chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), textE), pressEnter)
	waitFor[string](ct, visitor, "the message to be pending", fmt.Sprintf(`(() => {
  const el = Array.from(document.querySelectorAll('[data-testid=parley-message][data-state=pending]'))
    .find((m) => m.textContent.includes(%q));
  return el ? el.dataset.id : '';
})()`, textE))

	// The balancer sends the pages to n1 now.
	vMark, aMark := len(visitorResumes()), len(agentResumes())
	px.route(n1.Addr)
	want := []shownMessage{
		{Role: "visitor", Body: first},
		{ID: "m-ben-000001", Role: "agent", Body: editedB},
		{ID: "m-ben-000002", Role: "agent", Body: textC},
		{ID: "m-ben-000003", Role: "agent", Body: deleted},
		{Role: "visitor", Body: textE},
	}
	inWidget := ct.waitHistory(visitor, "parley-message", "parley-message-body", want)
	inConsole := ct.waitHistory(agent, "message", "message-body", want)
	for i := range inWidget {
		if inWidget[i].ID != inConsole[i].ID {
			ct.fail(agent, "message %d is %q in the widget and %q in the console", i, inWidget[i].ID, inConsole[i].ID)
		}
	}
	// Each page resumed on n1 by the vector of what it had from n2, not
	// by n2's seq (nor from the start).
	for _, side := range []struct {
		b       *browser
		resumes []map[string]any
	}{{visitor, visitorResumes()[vMark:]}, {agent, agentResumes()[aMark:]}} {
		n := 0
		for _, f := range side.resumes {
			if f["conversation"] != convID {
				continue
			}
			n++
			if since, _ := f["since"].(string); since == "" || f["after"] != nil || !strings.Contains(since, "n2") {
				ct.fail(side.b, "resumed on n1 with %v, want since with n2's stamps and no after", f)
			}
		}
		if n == 0 {
			ct.fail(side.b, "no resume of the conversation after the move: %v", side.resumes)
		}
	}
	// Live again, on n1: Ben's next message shows once on both pages.
	say(t, ctx, ben, convID, "m-ben-000004", textF)
	want = append(want, shownMessage{ID: "m-ben-000004", Role: "agent", Body: textF})
	ct.waitHistory(visitor, "parley-message", "parley-message-body", want)
	ct.waitHistory(agent, "message", "message-body", want)
	waitFor[bool](ct, visitor, "the status line to clear",
		`!document.querySelector('[data-testid=parley-status]').checkVisibility()`)

	// Ben leaves: the warning and the mark go.
	ben.close()
	waitFor[bool](ct, agent, "the warning to go", fmt.Sprintf(`(() => {
  const mark = document.querySelector('%s [data-testid=conv-viewers]');
  return !document.querySelector('[data-testid=collision]').checkVisibility() && !(mark && mark.checkVisibility());
})()`, item))
	ct.checkPage(agent, "at the end")
	ct.checkPage(visitor, "at the end")
	ct.screenshot(agent, "moved")
	ct.screenshot(visitor, "moved")
	if logs := n1.Logs(); strings.Contains(logs, "panic") {
		t.Fatalf("n1 panicked:\n%s", logs)
	}
}
