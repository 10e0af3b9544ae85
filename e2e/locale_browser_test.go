package e2e

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserWidgetSpeaksTheVisitorsLanguage: the widget follows the
// browser's language (German, French, Spanish, Arabic; English for one it
// does not have), lays itself out right to left for Arabic whatever the
// page's direction, and shows an Arabic message right to left.
func TestBrowserWidgetSpeaksTheVisitorsLanguage(t *testing.T) {
	needBrowser(t)
	node := startNode(t, t.TempDir(), "-h3", "off")
	ctx := testCtx(t, 3*time.Minute)
	for _, c := range []struct {
		lang, title, placeholder, dir string
	}{
		{"de-DE", "Schreiben Sie uns", "Nachricht schreiben…", "ltr"},
		{"fr-FR", "Discutons", "Écrivez un message…", "ltr"},
		{"es-ES", "Chatea con nosotros", "Escribe un mensaje…", "ltr"},
		{"ar", "تحدّث معنا", "اكتب رسالة…", "rtl"},
		{"ja-JP", "Chat with us", "Write a message…", "ltr"},
	} {
		t.Run(c.lang, func(t *testing.T) {
			ct := &chatTest{t: t, node: node, dir: t.TempDir()}
			visitor := newBrowser(t, ctx, "visitor-"+c.lang, 420, 760, chromedp.Flag("lang", c.lang), chromedp.Flag("accept-lang", c.lang))
			ct.all = []*browser{visitor}
			ct.do(visitor, "opening the widget", navigate(node.URL+"/demo"),
				chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-launcher]`)),
				chromedp.Click(chromedp.CSS(`[data-testid=parley-launcher]`)),
				chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-panel]`)))
			type shown struct{ Title, Placeholder, Dir, Lang string }
			got := eval[shown](ct, visitor, "reading the panel", `(() => {
  const p = document.querySelector('[data-testid=parley-panel]');
  return {title: p.querySelector('.parley-title').textContent,
    placeholder: document.querySelector('[data-testid=parley-input]').placeholder,
    dir: getComputedStyle(p).direction, lang: p.closest('[lang]').lang};
})()`)
			if got.Title != c.title || got.Placeholder != c.placeholder || got.Dir != c.dir {
				ct.fail(visitor, "the widget in %s shows %+v, want title %q, placeholder %q, direction %s", c.lang, got, c.title, c.placeholder, c.dir)
			}
			if c.dir != "rtl" {
				return
			}
			const arabic = "مرحبا، أين طلبي؟"
			ct.do(visitor, "writing in Arabic",
				chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), arabic), pressEnter)
			msgs := waitFor[[]shownMessage](ct, visitor, "the message sent", messagesJS("parley-message", "parley-message-body", 1))
			if msgs[0].Body != arabic {
				ct.fail(visitor, "the message shows %q", msgs[0].Body)
			}
			type side struct {
				Dir         string
				Left, Right float64
			}
			s := eval[side](ct, visitor, "reading the bubble", `(() => {
  const b = document.querySelector('[data-testid=parley-message-body]');
  const r = b.getBoundingClientRect(), p = document.querySelector('.parley-messages').getBoundingClientRect();
  return {dir: getComputedStyle(b).direction, left: r.left - p.left, right: p.right - r.right};
})()`)
			// Right to left, the visitor's own message sits at the panel's
			// left (its end), as the English one sits at its right.
			if s.Dir != "rtl" || s.Left > s.Right {
				ct.fail(visitor, "the Arabic message: %+v, want rtl and on the left", s)
			}
			ct.checkPage(visitor, "in Arabic")
			ct.screenshot(visitor, "arabic")
		})
	}
}
