package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"parley/internal/eventually"

	"github.com/chromedp/chromedp"
)

// TestBrowserEmailWhenNobodyIsOnline: with no agent online the widget asks
// for the visitor's e-mail; a bad address is refused in the page, a good
// one is kept (and shown as where replies go); the visitor leaves, an agent
// replies, and the reply arrives in mailpit with the link back to the
// conversation, which the link opens; the transcript button sends the
// transcript; a mail refused for good (550) shows in the agent's console.
func TestBrowserEmailWhenNobodyIsOnline(t *testing.T) {
	needBrowser(t)
	mp := startMailpit(t, emailPassword)
	tc := startCluster(t, 2, "-email-allow-plaintext", "-email-batch", "1s", "-email-backoff-max", "500ms")
	n1, n2 := tc.nodes[0], tc.nodes[1]
	host, port, _ := strings.Cut(mp.smtp, ":")
	mustAPI(t, n1, "PUT", "/v1/admin/workspaces/demo/email", tc.root, map[string]any{
		"host": host, "port": atoi(port), "tls": "none", "user": "parley", "password": emailPassword,
		"from": "support@demo.test", "site_url": n1.URL + "/demo"}, nil)
	ctx := testCtx(t, 2*time.Minute)
	ct := &chatTest{t: t, node: n1, dir: t.TempDir()}
	visitor := newBrowser(t, ctx, "visitor", 420, 760)
	ct.all = []*browser{visitor}
	ct.do(visitor, "opening the widget on n1", navigate(n1.URL+"/demo"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-email-form]`)))
	ct.do(visitor, "leaving a bad address", chromedp.SetValue(chromedp.CSS(`[data-testid=parley-email-input]`), "not-an-address"),
		chromedp.Click(chromedp.CSS(`[data-testid=parley-email-save]`)))
	waitFor[bool](ct, visitor, "the bad address refused", `document.querySelector('[data-testid=parley-status]').textContent.startsWith('Please enter a valid e-mail address') &&
  document.querySelector('[data-testid=parley-email-input]').getAttribute('aria-invalid') === 'true'`)
	ct.do(visitor, "leaving a good address", chromedp.SetValue(chromedp.CSS(`[data-testid=parley-email-input]`), "browser@example.com"),
		chromedp.Click(chromedp.CSS(`[data-testid=parley-email-save]`)))
	waitFor[bool](ct, visitor, "the address kept", `(() => {
  const bodies = Array.from(document.querySelectorAll('[data-testid=parley-message]')).filter((m) => m.dataset.state !== 'sending' && m.dataset.state !== 'pending');
  return bodies.some((m) => m.textContent.includes('Replies will also be e-mailed to browser@example.com')) &&
    document.querySelector('[data-testid=parley-email-form]').hidden &&
    !document.querySelector('[data-testid=parley-transcript]').hidden;
})()`)
	conv := waitFor[string](ct, visitor, "the conversation", `localStorage.getItem('parley:demo:conversation:anon') || ''`)

	// The transcript, asked for from the widget.
	ct.do(visitor, "asking for the transcript", chromedp.Click(chromedp.CSS(`[data-testid=parley-transcript]`)))
	eventually.Holds(t, 30*time.Second, "the transcript in mailpit", func() error {
		msgs, err := mp.messages()
		if err != nil {
			return err
		}
		if n := len(matching(msgs, "transcript of your conversation")); n != 1 {
			return fmt.Errorf("%d transcripts", n)
		}
		return nil
	})
	ct.checkPage(visitor, "after the address and the transcript")

	// The visitor leaves; an agent replies; the mail arrives with the link.
	// (The tab forgets the chat was open: only the link may open it.)
	eval[bool](ct, visitor, "forgetting the open chat", `(sessionStorage.clear(), true)`)
	ct.do(visitor, "leaving the page", navigate("about:blank"))
	agent, err := dialNode(ctx, n2)
	if err != nil {
		t.Fatal(err)
	}
	defer agent.close()
	agent.send(ctx, map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "agent", "token": n2.Token})
	if _, err := agent.await(ctx, "welcome", nil); err != nil {
		t.Fatal(err)
	}
	// It waits on mailpit and the browser below, up to a minute at a time
	// on a loaded machine: longer than the node keeps a silent connection.
	agent.keepAlive(ctx, 5*time.Second)
	say(t, ctx, agent, conv, "agent-reply-01", "We found your parcel")
	eventually.Holds(t, 60*time.Second, "the reply in mailpit", func() error {
		msgs, err := mp.messages()
		if err != nil {
			return err
		}
		got := matching(msgs, "We found your parcel")
		if len(got) != 1 {
			return fmt.Errorf("%d mails with the reply", len(got))
		}
		if link := n1.URL + "/demo#parley-open=" + conv; !strings.Contains(got[0].Text, link) || got[0].To[0].Address != "browser@example.com" {
			t.Fatalf("the reply mail:\n%s", got[0].Text)
		}
		return nil
	})
	// The link (to the page the widget stores the visitor under) opens the
	// widget on the conversation, the reply in it.
	ct.do(visitor, "following the mail's link", navigate(n1.URL+"/demo#parley-open="+conv))
	waitFor[bool](ct, visitor, "the widget open with the reply", `!document.querySelector('[data-testid=parley-panel]').hidden &&
  Array.from(document.querySelectorAll('[data-testid=parley-message-body]')).some((b) => b.textContent === 'We found your parcel')`)
	ct.checkPage(visitor, "after following the link")

	// A permanent SMTP error is shown to the agent in the console, above
	// the conversation.
	ct.do(visitor, "leaving again", navigate("about:blank"))
	mp.chaos(t, 550)
	say(t, ctx, agent, conv, "agent-reply-02", "Your refund is on its way")
	session := tc.login(t, n1, n1, "demo", "ann")
	console := newBrowser(t, ctx, "agent", 1280, 820)
	ct.all = append(ct.all, console)
	ct.do(console, "opening the console", navigate(n1.URL+"/agent#token="+session+"&workspace=demo"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=conv-item][data-id="`+conv+`"]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=conv-item][data-id="`+conv+`"]`)))
	got := waitFor[string](ct, console, "the failed mail shown", `(() => {
  const s = document.querySelector('[data-testid=mail-status]');
  return !s.hidden && s.dataset.status === 'failed' ? s.textContent : '';
})()`)
	if !strings.HasPrefix(got, "The e-mail to the visitor failed: ") || !strings.Contains(got, "550") || strings.Contains(got, "browser@example.com") {
		ct.fail(console, "the console says %q", got)
	}
	ct.checkPage(console, "with the failed mail")
}
