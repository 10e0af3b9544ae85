package e2e

import (
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserIdentityToken: a site passes the widget a signed identity
// token (data-identity-token): the visitor is the verified user, whose
// conversation a hello with the user's hash finds. A page with an expired
// token says the identity could not be verified, and a fresh token handed
// to Parley.init connects it again, to the same conversation.
func TestBrowserIdentityToken(t *testing.T) {
	if os.Getenv("PARLEY_SKIP_BROWSER") == "1" {
		t.Skip("PARLEY_SKIP_BROWSER=1")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("headless Chromium is missing (%v): run `make test`, which installs it, "+
			"or set PARLEY_SKIP_BROWSER=1 to skip the browser test", err)
	}
	tc := startCluster(t, 1)
	node := tc.nodes[0]
	ctx := testCtx(t, 3*time.Minute)
	var created struct {
		IdentitySecret string `json:"identity_secret"`
	}
	mustAPI(t, node, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, &created)
	secret := created.IdentitySecret

	tokens := map[string]string{
		"/fresh":   identityToken(t, secret, "42", time.Now().Add(time.Hour)),
		"/expired": identityToken(t, secret, "42", time.Now().Add(-time.Hour)),
	}
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := tokens[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Acme</title></head>
<body><h1>Acme</h1><script src="%s/widget.js" data-workspace="acme" data-identity-token="%s" async></script></body></html>`,
			node.URL, html.EscapeString(tok))
	}))
	defer site.Close()

	ct := &chatTest{t: t, node: node, dir: t.TempDir()}
	visitor := newBrowser(t, ctx, "verified", 1100, 820)
	ct.all = []*browser{visitor}

	const text = "Hello as a verified user"
	ct.do(visitor, "opening the site with a fresh token",
		navigate(site.URL+"/fresh"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-panel]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), text),
		pressEnter,
	)
	waitFor[bool](ct, visitor, "the message to be sent",
		`document.querySelector('[data-testid=parley-message][data-state=sent]') !== null`)
	ct.checkPage(visitor, "with a fresh token")

	// The same user, verified by a hash of the same secret, finds it.
	cl, w, e := verifiedHello(t, ctx, node, "acme", map[string]any{"user_id": "42", "user_hash": userHash(t, secret, "42")})
	if w == nil {
		t.Fatalf("hello with the user's hash: %v", e)
	}
	cl.send(ctx, map[string]any{"type": "list", "ref": "l"})
	l, err := cl.await(ctx, "conversations", nil)
	if err != nil {
		t.Fatal(err)
	}
	items, _ := l["items"].([]any)
	if len(items) != 1 || !strings.Contains(fmt.Sprint(items[0]), text) {
		t.Fatalf("the verified user's conversations: %v", l)
	}

	// An expired token is refused, and the widget says so; a fresh one
	// handed to Parley.init connects, to the same conversation.
	ct.do(visitor, "opening the site with an expired token",
		navigate(site.URL+"/expired"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-panel]`)))
	waitFor[bool](ct, visitor, "the widget to say the identity could not be verified",
		`(document.querySelector('[data-testid=parley-status]') || {}).textContent === 'We could not verify your identity.'`)
	eval[any](ct, visitor, "handing a fresh token", fmt.Sprintf(`window.Parley.init({identityToken: %q}), null`, tokens["/fresh"]))
	waitFor[bool](ct, visitor, "the conversation again with the fresh token", fmt.Sprintf(`(() => {
  const m = document.querySelector('[data-testid=parley-message][data-state=sent] [data-testid=parley-message-body]');
  const s = document.querySelector('[data-testid=parley-status]');
  return Boolean(m && m.textContent === %q && !(s && s.checkVisibility()));
})()`, text))
	ct.checkPage(visitor, "after a fresh token")
}
