package e2e

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Budgets of what the widget costs a visitor's browser: what one page view
// downloads for it, gzipped (widget.js and widget.css), and widget.js once
// decompressed. docs/benchmarks.md has the figures and the first paint.
const (
	widgetBudgetTransfer = 32 << 10
	widgetBudgetScript   = 96 << 10
)

// TestBrowserWidgetWeight: a first visit downloads the widget gzipped and
// within its budget; a returning visitor downloads neither file again (the
// browser's copy is revalidated: headers only). It logs the first
// contentful paint and when the launcher shows, for docs/benchmarks.md.
func TestBrowserWidgetWeight(t *testing.T) {
	needBrowser(t)
	node := startNode(t, t.TempDir(), "-h3", "off")
	ctx := testCtx(t, 2*time.Minute)
	ct := &chatTest{t: t, node: node, dir: t.TempDir()}
	visitor := newBrowser(t, ctx, "visitor", 420, 760)
	ct.all = []*browser{visitor}

	type res struct {
		Name                                      string
		Transfer, Encoded, Decoded, FCP, Launcher float64
	}
	const read = `(() => {
  const out = [];
  for (const e of performance.getEntriesByType('resource')) {
    if (/\/(widget\.js|static\/widget\.css)/.test(e.name)) {
      out.push({name: e.name.replace(location.origin, ''), transfer: e.transferSize, encoded: e.encodedBodySize, decoded: e.decodedBodySize});
    }
  }
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  const shown = performance.getEntriesByName('parley:launcher-shown')[0];
  out.push({name: 'page', fcp: fcp ? fcp.startTime : -1, launcher: shown ? shown.startTime : -1});
  return out;
})()`
	visit := func(what string) map[string]res {
		ct.do(visitor, what, navigate(node.URL+"/demo"),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-launcher]`)))
		got := map[string]res{}
		for _, r := range waitFor[[]res](ct, visitor, "the performance entries", `(() => {
  const r = `+read+`;
  return r.length === 3 && r[2].launcher >= 0 && r[2].fcp >= 0 ? r : null;
})()`) {
			got[r.Name] = r
		}
		return got
	}
	first := visit("a first visit")
	js, css, page := first["/widget.js"], first["/static/widget.css"], first["page"]
	if js.Encoded == 0 || js.Encoded >= js.Decoded {
		ct.fail(visitor, "widget.js was not compressed: %+v", js)
	}
	if js.Transfer+css.Transfer > widgetBudgetTransfer || js.Decoded > widgetBudgetScript {
		ct.fail(visitor, "the widget costs %.0f bytes on the wire (budget %d) and widget.js %.0f decoded (budget %d): %+v %+v",
			js.Transfer+css.Transfer, widgetBudgetTransfer, js.Decoded, widgetBudgetScript, js, css)
	}
	t.Logf("first visit: widget.js %.0f B on the wire (%.0f gzipped, %.0f decoded), widget.css %.0f B; first contentful paint %.0f ms, launcher shown %.0f ms",
		js.Transfer, js.Encoded, js.Decoded, css.Transfer, page.FCP, page.Launcher)

	again := visit("coming back")
	for _, name := range []string{"/widget.js", "/static/widget.css"} {
		if r := again[name]; r.Encoded != 0 || r.Transfer > 1024 {
			ct.fail(visitor, "a returning visitor downloaded %s again: %+v", name, r)
		}
	}
	t.Logf("returning: widget.js %.0f B, widget.css %.0f B on the wire; first contentful paint %.0f ms, launcher shown %.0f ms",
		again["/widget.js"].Transfer, again["/static/widget.css"].Transfer, again["page"].FCP, again["page"].Launcher)
	ct.checkPage(visitor, "after coming back")
}
