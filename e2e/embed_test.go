package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"parley/internal/eventually"

	"github.com/chromedp/chromedp"
)

// The browser tests of issue 6: the agent console shows, for the
// conversation it has open, the most similar past conversations and the
// saved replies that fit what the visitor wrote, computed by the node
// process from its own model; and a node without the model still chats and
// says why suggestions are off.

// needEmbedderAssets fails when the model or ONNX Runtime is missing, unless
// PARLEY_SKIP_EMBEDDER=1 skips (`make test` fetches them first).
func needEmbedderAssets(t *testing.T) {
	t.Helper()
	if os.Getenv("PARLEY_SKIP_EMBEDDER") == "1" {
		t.Skip("PARLEY_SKIP_EMBEDDER=1")
	}
	home, _ := os.UserHomeDir()
	cache := filepath.Join(home, ".cache", "parley", "embedder")
	lib := os.Getenv("PARLEY_ORT_LIB")
	if lib == "" {
		matches, _ := filepath.Glob(filepath.Join(cache, "onnxruntime-*", "libonnxruntime.so.1"))
		if len(matches) > 0 {
			lib = matches[0]
		}
	}
	dir := os.Getenv("PARLEY_MODEL_DIR")
	if dir == "" {
		matches, _ := filepath.Glob(filepath.Join(cache, "all-MiniLM-L6-v2*"))
		if len(matches) > 0 {
			dir = matches[0]
		}
	}
	if _, err := os.Stat(lib); lib == "" || err != nil {
		t.Fatalf("ONNX Runtime missing (%q): run `make embedder-assets`, or set PARLEY_SKIP_EMBEDDER=1", lib)
	}
	if _, err := os.Stat(filepath.Join(dir, "model.onnx")); dir == "" || err != nil {
		t.Fatalf("all-MiniLM-L6-v2 missing (%q): run `make embedder-assets`, or set PARLEY_SKIP_EMBEDDER=1", dir)
	}
}

// visitorConversation starts a conversation as a new visitor and sends
// bodies in it; it returns the client (still connected) and the
// conversation.
func visitorConversation(t *testing.T, ctx context.Context, n *nodeProc, bodies ...string) (*wsClient, string) {
	t.Helper()
	cl, err := dialNode(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.close)
	if _, err := cl.visitorHello(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := cl.send(ctx, map[string]any{"type": "start", "ref": "s"}); err != nil {
		t.Fatal(err)
	}
	started, err := cl.await(ctx, "started", nil)
	if err != nil {
		t.Fatal(err)
	}
	conv := started["conversation"].(string)
	for i, b := range bodies {
		ref := fmt.Sprintf("m%d", i)
		if err := cl.send(ctx, map[string]any{"type": "send", "ref": ref, "conversation": conv, "id": fmt.Sprintf("msg-%s-%02d", conv[2:10], i), "body": b}); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.await(ctx, "ack", func(m map[string]any) bool { return m["ref"] == ref }); err != nil {
			t.Fatal(err)
		}
	}
	return cl, conv
}

// apiJSON calls the node's agent API with the demo operator token.
func apiJSON(t *testing.T, n *nodeProc, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, n.URL+"/v1/workspaces/demo"+path, rd)
	req.Header.Set("Authorization", "Bearer "+n.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func TestBrowserSuggestionsAndSimilarConversations(t *testing.T) {
	needBrowser(t)
	needEmbedderAssets(t)
	node := startNode(t, t.TempDir(), "-embed-debounce", "100ms", "-h3", "off")
	ctx := testCtx(t, 4*time.Minute)

	// Past conversations of the workspace, written by visitors over the wire.
	_, parcel := visitorConversation(t, ctx, node, "My parcel still has not been delivered", "The tracking page shows nothing for ten days")
	_, password := visitorConversation(t, ctx, node, "I forgot my password and I cannot sign in to my account")
	_, refund := visitorConversation(t, ctx, node, "How can I get a refund for a broken kettle?")
	for _, r := range []map[string]string{
		{"title": "Shipping delay", "body": "Sorry for the wait! Deliveries can take up to 10 days; I am checking your tracking now."},
		{"title": "Refunds", "body": "We refund within 5 days of receiving the item back."},
	} {
		if code, m := apiJSON(t, node, "POST", "/replies", r); code != 200 {
			t.Fatalf("saving a reply: %d %v", code, m)
		}
	}
	// The worker embeds them in the background: wait until search finds
	// all three.
	if err := eventually.Poll(60*time.Second, func() error {
		_, m := apiJSON(t, node, "GET", "/search?k=50&q="+url.QueryEscape("help"), nil)
		if items, _ := m["items"].([]any); len(items) != 3 {
			return fmt.Errorf("search finds %d of 3", len(items))
		}
		return nil
	}); err != nil {
		t.Fatalf("the past conversations were not embedded: %v\n%s", err, node.Logs())
	}

	ct := &chatTest{t: t, node: node, dir: t.TempDir()}
	agent := newBrowser(t, ctx, "agent", 1400, 900)
	ct.all = []*browser{agent}
	ct.do(agent, "opening the console", navigate(
		node.URL+"/agent#token="+url.QueryEscape(node.Token)+"&workspace=demo"))
	waitFor[bool](ct, agent, "the console to connect and suggestions to be on", `
  document.querySelector('[data-testid=status]').dataset.state === 'ok' &&
  document.querySelector('[data-testid=assist]').dataset.state === 'on'`)

	// The agent saves a reply from the console itself.
	ct.do(agent, "saving a reply in the console",
		chromedp.Click(chromedp.CSS(`#reply-save summary`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=reply-title]`), "Password reset"),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=reply-body]`), "You can reset your password from the sign-in page with \"Forgot password\"."),
		chromedp.Click(chromedp.CSS(`[data-testid=reply-submit]`)))
	waitFor[bool](ct, agent, "the reply to be saved", `document.getElementById('reply-note').textContent.startsWith('Saved')`)

	// A new visitor writes about a late order.
	live, conv := visitorConversation(t, ctx, node, "Hello, my order #1234 has not arrived yet. Where is my package?")
	item := fmt.Sprintf(`[data-testid=conv-item][data-id=%q]`, conv)
	ct.do(agent, "opening the new conversation", chromedp.WaitVisible(chromedp.CSS(item)), chromedp.Click(chromedp.CSS(item)))

	// Similar conversations: the undelivered parcel first, never itself.
	similar := waitFor[[]string](ct, agent, "similar conversations", fmt.Sprintf(`(() => {
  if (document.querySelector('[data-testid=assist]').dataset.loaded !== %q) return null;
  const ids = Array.from(document.querySelectorAll('[data-testid=similar] [data-testid=similar-item]')).map((b) => b.dataset.id);
  return ids.length ? ids : null;
})()`, conv))
	if similar[0] != parcel {
		ct.fail(agent, "similar conversations %v: want the undelivered parcel %s first (password %s, refund %s)", similar, parcel, password, refund)
	}
	for _, id := range similar {
		if id == conv {
			ct.fail(agent, "the open conversation is listed as similar to itself: %v", similar)
		}
	}
	// Suggested replies: the shipping delay first.
	titles := waitFor[[]string](ct, agent, "suggested replies", `(() => {
  const t = Array.from(document.querySelectorAll('[data-testid=suggestion-item] [data-testid=suggestion-title]')).map((e) => e.textContent);
  return t.length ? t : null;
})()`)
	if titles[0] != "Shipping delay" {
		ct.fail(agent, "suggested replies %v: want \"Shipping delay\" first", titles)
	}
	ct.checkPage(agent, "with suggestions")
	ct.screenshot(agent, "suggestions")

	// Clicking the suggestion puts it in the composer; sending it reaches the
	// visitor.
	ct.do(agent, "using the suggestion",
		chromedp.Click(chromedp.CSS(`[data-testid=suggestion-item]`)))
	text := eval[string](ct, agent, "reading the composer", `document.querySelector('[data-testid=composer-input]').value`)
	if !strings.HasPrefix(text, "Sorry for the wait!") {
		ct.fail(agent, "the composer holds %q after clicking the suggestion", text)
	}
	ct.do(agent, "sending it", chromedp.Click(chromedp.CSS(`[data-testid=composer-send]`)))
	if _, err := live.await(ctx, "deliver", func(m map[string]any) bool {
		msg, _ := m["message"].(map[string]any)
		return msg != nil && msg["role"] == "agent" && msg["body"] == text
	}); err != nil {
		ct.fail(agent, "the visitor did not get the suggested reply: %v", err)
	}

	// The visitor changes the subject: the suggestions follow.
	if err := live.send(ctx, map[string]any{"type": "send", "ref": "x", "conversation": conv, "id": "msg-pass-0001", "body": "Also, I forgot my password and cannot sign in"}); err != nil {
		t.Fatal(err)
	}
	waitFor[bool](ct, agent, "the password reply to rise", `(() => {
  const first = document.querySelector('[data-testid=suggestion-item] [data-testid=suggestion-title]');
  return first && first.textContent === 'Password reset';
})()`)

	// Semantic search in the console.
	ct.do(agent, "searching",
		chromedp.SendKeys(chromedp.CSS(`[data-testid=search-input]`), "refund for a damaged item"),
		chromedp.Click(chromedp.CSS(`[data-testid=search-submit]`)))
	first := waitFor[string](ct, agent, "search results", `(() => {
  const b = document.querySelector('[data-testid=search-results] [data-testid=similar-item]');
  return b && !document.querySelector('[data-testid=search-results]').hidden ? b.dataset.id : '';
})()`)
	if first != refund {
		ct.fail(agent, "search for a refund found %s first, want %s", first, refund)
	}
	// A result opens its conversation.
	ct.do(agent, "opening a search result", chromedp.Click(chromedp.CSS(`[data-testid=search-results] [data-testid=similar-item]`)))
	waitFor[bool](ct, agent, "the refund conversation to open", fmt.Sprintf(
		`document.querySelector('[data-testid=conv-item][data-id=%q]').classList.contains('is-selected')`, refund))
	ct.checkPage(agent, "after the search")
	ct.screenshot(agent, "search")
}

// TestBrowserSuggestionsOff: a node started with -embedder off is ready and
// chats; the console says suggestions are off and why, and turns them on
// when the node comes back with the model.
func TestBrowserSuggestionsOff(t *testing.T) {
	needBrowser(t)
	dataDir := t.TempDir()
	node := startNode(t, dataDir, "-embedder", "off", "-h3", "off")
	ctx := testCtx(t, 2*time.Minute)
	resp, err := http.Get(node.URL + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz with the embedder off: %v %v", err, resp)
	}
	resp.Body.Close()

	ct := &chatTest{t: t, node: node, dir: t.TempDir()}
	agent := newBrowser(t, ctx, "agent-off", 1400, 900)
	ct.all = []*browser{agent}
	ct.do(agent, "opening the console", navigate(
		node.URL+"/agent#token="+url.QueryEscape(node.Token)+"&workspace=demo"))
	off := waitFor[string](ct, agent, "the console to say suggestions are off", `(() => {
  const el = document.querySelector('[data-testid=assist-off]');
  return document.querySelector('[data-testid=status]').dataset.state === 'ok' &&
    document.querySelector('[data-testid=assist]').dataset.state === 'off' && el.checkVisibility() ? el.textContent : '';
})()`)
	if !strings.HasPrefix(off, "Suggestions off: ") || !strings.Contains(off, "-embedder off") {
		ct.fail(agent, "the console says %q", off)
	}
	live, conv := visitorConversation(t, ctx, node, "Hello, is anyone there?")
	item := fmt.Sprintf(`[data-testid=conv-item][data-id=%q]`, conv)
	ct.do(agent, "opening the conversation", chromedp.WaitVisible(chromedp.CSS(item)), chromedp.Click(chromedp.CSS(item)))
	waitFor[[]shownMessage](ct, agent, "the visitor's message", messagesJS("message", "message-body", 1))
	ct.do(agent, "answering",
		chromedp.SendKeys(chromedp.CSS(`[data-testid=composer-input]`), "Yes, how can I help?"),
		chromedp.Click(chromedp.CSS(`[data-testid=composer-send]`)))
	if _, err := live.await(ctx, "deliver", func(m map[string]any) bool {
		msg, _ := m["message"].(map[string]any)
		return msg != nil && msg["body"] == "Yes, how can I help?"
	}); err != nil {
		ct.fail(agent, "the visitor did not get the answer: %v", err)
	}
	// Search still works, by keywords.
	ct.do(agent, "searching by keywords",
		chromedp.SendKeys(chromedp.CSS(`[data-testid=search-input]`), "ANYONE there"),
		chromedp.Click(chromedp.CSS(`[data-testid=search-submit]`)))
	found := waitFor[string](ct, agent, "a keyword result", `(() => {
  const r = document.querySelector('[data-testid=search-results]');
  const b = r.querySelector('[data-testid=similar-item]');
  return b && !r.hidden && r.dataset.mode === 'keyword' ? b.dataset.id : '';
})()`)
	if found != conv {
		ct.fail(agent, "keyword search found %s, want %s", found, conv)
	}
	ct.checkPage(agent, "with suggestions off")
	ct.screenshot(agent, "suggestions-off")

	// The node restarts with the model: the console, reconnected, turns
	// suggestions on without a reload.
	if os.Getenv("PARLEY_SKIP_EMBEDDER") == "1" {
		return
	}
	needEmbedderAssets(t)
	node.Stop()
	startNodeAt(t, parleyBin, nil, node.Addr, dataDir, "-h3", "off")
	waitFor[bool](ct, agent, "the console to turn suggestions on after the node's restart", `
  document.querySelector('[data-testid=status]').dataset.state === 'ok' &&
  document.querySelector('[data-testid=assist]').dataset.state === 'on' &&
  document.querySelector('[data-testid=assist-off]').hidden`)
}
