package e2e

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserAgentAway: an agent sets themselves away in the console; the
// visitor's widget, open on another node of the cluster, says nobody is
// available for now, and says the agent is online again once they are back;
// a reload of the console keeps them away.
func TestBrowserAgentAway(t *testing.T) {
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
	ct.do(visitor, "opening the widget on n2", navigate(n2.URL+"/demo"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-agent-online][data-online=true]`)))

	const widgetState = `(() => {
  const p = document.querySelector('[data-testid=parley-agent-online]');
  return p.dataset.online + '/' + p.dataset.away + ': ' + p.textContent;
})()`
	ct.do(agent, "setting away", chromedp.Click(chromedp.CSS(`[data-testid=away-toggle]`)))
	got := waitFor[string](ct, visitor, "the widget to say nobody is available", `(() => {
  const s = `+widgetState+`;
  return s.startsWith('false/true') ? s : '';
})()`)
	if got != "false/true: We are away for a moment: write, and we will reply when we are back" {
		ct.fail(visitor, "the widget says %q", got)
	}
	ct.do(agent, "reloading the console", chromedp.Reload())
	waitFor[bool](ct, agent, "the console to come back away", `
  document.querySelector('[data-testid=status]').dataset.state === 'ok' &&
  document.querySelector('[data-testid=away-toggle]').getAttribute('aria-pressed') === 'true'`)
	// Still away for the visitor after the reload's new connection.
	waitFor[bool](ct, visitor, "the widget to still say away", `(`+widgetState+`).startsWith('false/true')`)
	ct.do(agent, "coming back", chromedp.Click(chromedp.CSS(`[data-testid=away-toggle]`)))
	waitFor[bool](ct, visitor, "the widget to say the agent is online", `(`+widgetState+`).startsWith('true/false')`)
	ct.checkPage(agent, "after coming back")
	ct.checkPage(visitor, "after the agent came back")
}
