package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"parley/cluster/clusterkey"
	"parley/crdt"
	"parley/store"

	"github.com/chromedp/chromedp"
)

// TestBrowserNeutralisesBidi: text that would reorder or hide itself never
// reaches a person as such (issue 15, item 7). A visitor pastes a
// right-to-left override into the widget: the text goes out without it,
// instead of being refused. A message stored before the nodes refused such
// characters (an agent's name and a body with U+202E, written into the
// node's store while it is down, as an older version kept them) shows in
// the console and in the widget in logical order, without the override.
func TestBrowserNeutralisesBidi(t *testing.T) {
	needBrowser(t)
	node := startNode(t, t.TempDir())
	ctx := testCtx(t, 4*time.Minute)
	ct := &chatTest{t: t, node: node, dir: t.TempDir()}
	agent := newBrowser(t, ctx, "agent", 1280, 820)
	visitor := newBrowser(t, ctx, "visitor", 1100, 820)
	ct.all = []*browser{agent, visitor}
	convID := ct.startChat(agent, visitor, node.URL, node.Token, "Hello, a question about my invoice")
	ct.do(agent, "opening the conversation",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-testid=conv-item][data-id=%q]`, convID))))

	// Pasted text with an override: sent without it.
	eval[bool](ct, visitor, "pasting a file name with a right-to-left override", `(() => {
  const i = document.querySelector('[data-testid=parley-input]');
  i.focus();
  i.value = 'my file is invoice_\u202efdp.exe';
  i.dispatchEvent(new Event('input', {bubbles: true}));
  return true;
})()`)
	ct.do(visitor, "sending it", pressEnter)
	for _, b := range []struct {
		br          *browser
		msg, bodyID string
	}{{visitor, "parley-message", "parley-message-body"}, {agent, "message", "message-body"}} {
		got := waitFor[[]shownMessage](ct, b.br, "the pasted message, sent", messagesJS(b.msg, b.bodyID, 2))
		if got[1].Body != "my file is invoice_fdp.exe" || got[1].State != "sent" {
			ct.fail(b.br, "the pasted message shows as %+v, want the text without the override, sent", got[1])
		}
	}

	// A message stored by an older version, with overrides in the author's
	// name and in the body.
	node.Kill9(t)
	key, err := clusterkey.Load(filepath.Join(node.DataDir, "cluster.key"), false)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(store.Config{Path: filepath.Join(node.DataDir, "parley.db"), Origin: "legacy", KEK: key.StoreKEK()})
	if err != nil {
		t.Fatal(err)
	}
	m := crdt.NewMessage("legacy-0001", "a:ann", "agent", "Ann \u202enimda", "please open \u202etxt.exe the file",
		crdt.Timestamp{Wall: time.Now().UnixMilli(), Node: "legacy"})
	if _, err := st.Apply(context.Background(), store.Change{Kind: store.Send, Workspace: "demo", Conversation: convID, Participant: "a:ann", Message: m}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	node.Restart(t)

	const shown = `(() => {
  const el = document.querySelector('[data-testid=%s][data-id="legacy-0001"]');
  if (!el) return null;
  const author = el.querySelector('%s');
  return {author: author ? author.textContent : '', body: el.querySelector('[data-testid=%s]').textContent,
    dir: el.querySelector('[data-testid=%s]').getAttribute('dir')};
})()`
	for _, b := range []struct {
		br                  *browser
		msg, author, bodyID string
		reload              bool
	}{
		{agent, "message", ".msg-author", "message-body", false},
		{visitor, "parley-message", ".parley-msg-author", "parley-message-body", false},
	} {
		got := waitFor[map[string]any](ct, b.br, "the stored message with overrides",
			fmt.Sprintf(shown, b.msg, b.author, b.bodyID, b.bodyID))
		author, _ := got["author"].(string)
		body, _ := got["body"].(string)
		if strings.ContainsAny(author+body, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069") ||
			body != "please open txt.exe the file" || (b.br == agent && author != "Ann nimda") || got["dir"] != "auto" {
			ct.fail(b.br, "the stored message shows as author %q, body %q, dir %v: want the text without the overrides, isolated", author, body, got["dir"])
		}
	}
	ct.checkPage(agent, "after the legacy message")
	ct.checkPage(visitor, "after the legacy message")
}
