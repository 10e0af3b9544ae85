package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// setSelect sets a select (or input) of the page and tells the page, as a
// person's choice does.
func setSelect(testid, value string) string {
	return fmt.Sprintf(`(() => {
  const s = document.querySelector('[data-testid=%s]');
  s.value = %q;
  s.dispatchEvent(new Event('change', { bubbles: true }));
  s.dispatchEvent(new Event('input', { bubbles: true }));
  return true;
})()`, testid, value)
}

// TestBrowserInbox: in the console an agent sees the visitor's page, language
// and the site's attributes beside the conversation, writes a note, tags the
// conversation, assigns it to themselves, resolves it and filters the list
// by status, assignee and tag; a change of the assignment made elsewhere
// meanwhile is shown as a conflict. The visitor's widget, on another node,
// never shows the note, live or after a reload; the visitor's next message
// reopens the conversation in the console.
func TestBrowserInbox(t *testing.T) {
	needBrowser(t)
	tc := startCluster(t, 2)
	n1, n2 := tc.nodes[0], tc.nodes[1]
	ctx := testCtx(t, 3*time.Minute)
	ct := &chatTest{t: t, node: n1, dir: t.TempDir()}
	agent := newBrowser(t, ctx, "agent", 1280, 820)
	visitor := newBrowser(t, ctx, "visitor", 420, 760)
	ct.all = []*browser{agent, visitor}
	ct.do(agent, "opening the console on n1", navigate(n1.URL+"/agent#token="+n1.Token+"&workspace=demo"))
	waitFor[bool](ct, agent, "the console to connect", `document.querySelector('[data-testid=status]').dataset.state === 'ok'`)
	ct.do(visitor, "opening the widget on n2", navigate(n2.URL+"/demo?from=test"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-launcher]`)))
	eval[bool](ct, visitor, "the site's attributes", `(window.Parley.setAttributes({plan: 'pro', 'user.id': '42'}), true)`)
	ct.do(visitor, "writing", chromedp.Click(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-agent-online][data-online=true]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), "My invoice is wrong"),
		chromedp.Click(chromedp.CSS(`[data-testid=parley-send]`)))
	waitFor[bool](ct, visitor, "the message sent", `document.querySelector('[data-testid=parley-message][data-state=sent]') !== null`)

	ct.do(agent, "opening the conversation", chromedp.Click(chromedp.CSS(`[data-testid=conv-item]`)))
	lang := eval[string](ct, visitor, "the browser's language", `navigator.language`)
	got := waitFor[string](ct, agent, "the visitor's context", `(() => {
  const q = (id) => Array.from(document.querySelectorAll('[data-testid=' + id + ']')).map((e) => e.textContent).join(', ');
  const url = q('context-url');
  return url && q('context-attr').includes('pro') ? url + ' | ' + q('context-language') + ' | ' + q('context-attr') : '';
})()`)
	if want := n2.URL + "/demo?from=test | " + lang + " | pro, 42"; got != want {
		ct.fail(agent, "the context shown: %q, want %q", got, want)
	}

	const note = "NOTE-CANARY refund approved by finance"
	ct.do(agent, "writing a note", chromedp.Click(chromedp.CSS(`[data-testid=note-toggle]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=composer-input]`), note),
		chromedp.Click(chromedp.CSS(`[data-testid=composer-send]`)))
	waitFor[bool](ct, agent, "the note sent", `(() => {
  const m = document.querySelector('[data-testid=message][data-internal=true]');
  return Boolean(m && m.dataset.state === 'sent' && m.textContent.includes('NOTE-CANARY'));
})()`)
	ct.do(agent, "tagging", chromedp.SendKeys(chromedp.CSS(`[data-testid=tag-input]`), "vip"), pressEnter)
	ct.do(agent, "assigning to me", chromedp.Click(chromedp.CSS(`[data-testid=conv-assign]`)))
	waitFor[bool](ct, agent, "the assignee shown", `document.querySelector('[data-testid=conv-assignee]').textContent === 'Assigned to you'`)
	eval[bool](ct, agent, "choosing resolved", setSelect("conv-status", "resolved"))
	ct.do(agent, "resolving", chromedp.Click(chromedp.CSS(`[data-testid=conv-status-set]`)))
	// The state the nodes agree on, from the next list.
	waitFor[bool](ct, agent, "the conversation resolved and tagged in the list", `(() => {
  const b = document.querySelector('[data-testid=conv-item]');
  return b && b.dataset.status === 'resolved' && b.dataset.tags === 'vip';
})()`)

	shown := func(what, filters string, want bool) {
		t.Helper()
		waitFor[bool](ct, agent, what, `(() => {`+filters+`
  return (document.querySelectorAll('[data-testid=conv-item]').length === 1) === `+fmt.Sprint(want)+`;
})()`)
	}
	reset := setSelect("filter-status", "") + ";" + setSelect("filter-assignee", "") + ";" + setSelect("filter-tag", "") + ";"
	shown("open hides it", reset+setSelect("filter-status", "open")+";", false)
	shown("resolved shows it", reset+setSelect("filter-status", "resolved")+";", true)
	shown("snoozed hides it", reset+setSelect("filter-status", "snoozed")+";", false)
	shown("mine shows it", reset+setSelect("filter-assignee", "me")+";", true)
	shown("unassigned hides it", reset+setSelect("filter-assignee", "-")+";", false)
	shown("the tag shows it", reset+setSelect("filter-tag", "vip")+";", true)
	shown("another tag hides it", reset+setSelect("filter-tag", "billing")+";", false)
	shown("no filter shows it", reset, true)

	// Someone else assigns it meanwhile: unassigning here is a conflict.
	var conv string
	conv = eval[string](ct, agent, "the conversation's id", `document.querySelector('[data-testid=conv-item]').dataset.id`)
	mustAPI(t, n1, "POST", "/v1/admin/workspaces/demo/operators", tc.root,
		map[string]any{"id": "kim", "email": "kim@demo.test", "name": "Kim", "password": "a good long password"}, nil)
	var cur struct{ Version uint64 }
	mustAPI(t, n1, "GET", "/v1/admin/workspaces/demo/assignments/"+conv, tc.root, nil, &cur)
	mustAPI(t, n1, "PUT", "/v1/admin/workspaces/demo/assignments/"+conv, tc.root, map[string]any{"operator": "kim", "expect_version": cur.Version}, nil)
	ct.do(agent, "unassigning", chromedp.Click(chromedp.CSS(`[data-testid=conv-unassign]`)))
	conflict := waitFor[string](ct, agent, "the conflict shown", `(() => {
  const c = document.querySelector('[data-testid=assign-conflict]');
  const st = document.querySelector('[data-testid=status]');
  if (st.dataset.state === 'error') return 'error: ' + st.textContent;
  return c && !c.hidden ? c.textContent + ' / ' + document.querySelector('[data-testid=conv-assignee]').textContent : '';
})()`)
	if !strings.Contains(conflict, "now assigned to kim") || !strings.HasSuffix(conflict, "Assigned to kim") {
		ct.fail(agent, "the conflict says %q", conflict)
	}

	// The visitor never sees the note: live, nor after a reload (a replay).
	noNote := `!document.documentElement.outerHTML.includes('NOTE-CANARY') && document.querySelectorAll('[data-testid=parley-message]').length === 1`
	if !eval[bool](ct, visitor, "looking for the note", noNote) {
		ct.fail(visitor, "the widget shows the note or more than the visitor's message")
	}
	ct.do(visitor, "reloading", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-launcher]`)))
	if !eval[bool](ct, visitor, "checking the panel", `document.querySelector('[data-testid=parley-panel]').checkVisibility()`) {
		ct.do(visitor, "reopening the widget", chromedp.Click(chromedp.CSS(`[data-testid=parley-launcher]`)))
	}
	waitFor[bool](ct, visitor, "the history back", `document.querySelector('[data-testid=parley-message][data-state=sent]') !== null`)
	ct.do(visitor, "writing again", chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), "Still wrong"),
		chromedp.Click(chromedp.CSS(`[data-testid=parley-send]`)))
	waitFor[bool](ct, visitor, "both messages sent", `document.querySelectorAll('[data-testid=parley-message][data-state=sent]').length === 2`)
	if !eval[bool](ct, visitor, "looking for the note again", `!document.documentElement.outerHTML.includes('NOTE-CANARY')`) {
		ct.fail(visitor, "the widget shows the note after a reload")
	}
	// Reopened by the visitor's message.
	waitFor[bool](ct, agent, "the conversation open again", `document.querySelector('[data-testid=conv-item]').dataset.status === 'open'`)
	ct.checkPage(agent, "at the end")
	ct.checkPage(visitor, "at the end")
}
