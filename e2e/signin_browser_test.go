package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"parley/node"
)

// TestBrowserConsoleSignInAndOut: an agent signs in to the console with
// their email and password (a wrong password is refused with a clear
// message), works under their own name, and Sign out ends the session on
// the node, not only in the tab: the same token is refused afterwards, by
// the admin API and by the wire.
func TestBrowserConsoleSignInAndOut(t *testing.T) {
	needBrowser(t)
	nd := startNode(t, t.TempDir(), "-h3", "off")
	root, err := node.AdminToken(filepath.Join(nd.DataDir, "cluster.key"))
	if err != nil {
		t.Fatal(err)
	}
	const password = "correct horse battery staple"
	mustAPI(t, nd, "POST", "/v1/admin/workspaces/demo/operators", root,
		map[string]string{"id": "ann", "email": "ann@acme.example", "name": "Ann Lee", "role": "agent", "password": password}, nil)

	ctx := testCtx(t, 2*time.Minute)
	ct := &chatTest{t: t, node: nd, dir: t.TempDir()}
	agent := newBrowser(t, ctx, "agent", 1280, 820)
	ct.all = []*browser{agent}
	ct.do(agent, "opening the console", navigate(nd.URL+"/agent"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=login-form]`)))

	signIn := func(pw string) {
		ct.do(agent, "signing in",
			chromedp.SetValue(chromedp.CSS(`#login-workspace`), "demo"),
			chromedp.SetValue(chromedp.CSS(`[data-testid=login-email]`), "ann@acme.example"),
			chromedp.SetValue(chromedp.CSS(`[data-testid=login-password]`), pw),
			chromedp.Click(chromedp.CSS(`[data-testid=login-submit]`)))
	}
	signIn("not her password")
	msg := waitFor[string](ct, agent, "the refusal", `(() => {
  const e = document.querySelector('[data-testid=login-error]');
  return e.checkVisibility() ? e.textContent : '';
})()`)
	if msg != "The workspace, email or password is wrong." {
		ct.fail(agent, "a wrong password says %q", msg)
	}

	signIn(password)
	waitFor[bool](ct, agent, "the console to connect under Ann's name", `
  document.querySelector('[data-testid=status]').dataset.state === 'ok' &&
  document.getElementById('me-name').textContent === 'Signed in as Ann Lee'`)
	token := eval[string](ct, agent, "reading the session token", `sessionStorage.getItem('parley:agent:token') || ''`)
	if st, body := api(nd, "GET", "/v1/admin/workspaces/demo", token, nil, nil); st != 200 {
		t.Fatalf("the console's session on the admin API: %d %s", st, body)
	}

	ct.do(agent, "signing out", chromedp.Click(chromedp.CSS(`[data-testid=signout]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=login-form]`)))
	if left := eval[string](ct, agent, "reading the storage", `sessionStorage.getItem('parley:agent:token') || ''`); left != "" {
		ct.fail(agent, "the token is still in the tab's storage after signing out")
	}
	if got := waitFor[string](ct, agent, "the node to end the session", `(() => {
  const r = document.getElementById('login').dataset.revoked;
  return r === 'pending' ? '' : r;
})()`); got != "yes" {
		ct.fail(agent, "signing out: the node's answer %q, message %q", got,
			eval[string](ct, agent, "reading the message", `document.querySelector('[data-testid=login-error]').textContent`))
	}
	if st, body := api(nd, "GET", "/v1/admin/workspaces/demo", token, nil, nil); st != 401 {
		t.Fatalf("the signed-out session on the admin API: %d %s, want 401", st, body)
	}
	cl, err := dialNode(ctx, nd)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.close()
	cl.send(ctx, map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "agent", "token": token})
	if f, err := cl.await(ctx, "error", nil); err != nil || f["code"] != "auth_failed" {
		t.Fatalf("hello with the signed-out session: %v %v", f, err)
	}
	ct.checkPage(agent, fmt.Sprintf("after signing out (%d)", 1))
}
