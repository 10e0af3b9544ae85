package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"parley/internal/eventually"
)

// TestAgentsListPagesPast200: a node holding 230 conversations of a
// workspace lists every one of them to an agent, newest first and each
// once, through the agents' API (limit 1..200, cursor) and through the
// wire's list (200 a frame, cursor).
func TestAgentsListPagesPast200(t *testing.T) {
	tc := startCluster(t, 1, "-frame-rate", "1000")
	n1 := tc.nodes[0]
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	ctx := testCtx(t, 120*time.Second)
	v, _, first := startVisitor(t, ctx, n1, "acme")
	defer v.close()
	const n = 230
	started := map[string]bool{first: true}
	for i := 1; i < n; i++ {
		ref := fmt.Sprintf("s%d", i)
		v.send(ctx, map[string]any{"type": "start", "ref": ref})
		m, err := v.awaitRef(ctx, ref)
		if err != nil || m["type"] != "started" {
			t.Fatalf("start %d: %v %v", i, m, err)
		}
		started[m["conversation"].(string)] = true
	}
	token := tc.login(t, n1, n1, "acme", "sam")

	type item struct {
		ID      string `json:"id"`
		Updated int64  `json:"updated"`
	}
	check := func(how string, pages [][]item) {
		t.Helper()
		seen := map[string]bool{}
		last := int64(1 << 62)
		for _, p := range pages {
			for _, it := range p {
				if seen[it.ID] || !started[it.ID] || it.Updated > last {
					t.Fatalf("%s: %s listed twice, unknown or out of order", how, it.ID)
				}
				seen[it.ID], last = true, it.Updated
			}
		}
		if len(seen) != n {
			t.Fatalf("%s: %d pages list %d conversations, want %d", how, len(pages), len(seen), n)
		}
	}

	// The agents' API.
	var pages [][]item
	cursor := ""
	for {
		var page struct {
			Items []item `json:"items"`
			Next  string `json:"next"`
		}
		mustAPI(t, n1, "GET", "/v1/workspaces/acme/conversations?limit=200&cursor="+url.QueryEscape(cursor), token, nil, &page)
		pages = append(pages, page.Items)
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	if len(pages) != 2 || len(pages[0]) != 200 {
		t.Fatalf("the API answered %d pages, the first of %d", len(pages), len(pages[0]))
	}
	check("agents' API", pages)
	if code, body := api(n1, "GET", "/v1/workspaces/acme/conversations?limit=201", token, nil, nil); code != 400 {
		t.Fatalf("limit=201 answered %d %s", code, body)
	}

	// The wire.
	ag := tc.agentOn(t, ctx, n1, n1, "acme", "ann")
	pages, cursor = nil, ""
	for i := 0; ; i++ {
		ref := fmt.Sprintf("l%d", i)
		f := map[string]any{"type": "list", "ref": ref}
		if cursor != "" {
			f["cursor"] = cursor
		}
		ag.send(ctx, f)
		m, err := ag.awaitRef(ctx, ref)
		if err != nil || m["type"] != "conversations" {
			t.Fatalf("list: %v %v", m, err)
		}
		var p []item
		for _, x := range m["items"].([]any) {
			c := x.(map[string]any)
			p = append(p, item{ID: c["id"].(string), Updated: int64(c["updated"].(float64))})
		}
		pages = append(pages, p)
		next, _ := m["next"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	check("wire", pages)
}

// TestVisitorErasureReachesEveryReplica: one anonymous visitor has
// conversations started through each of three nodes, a verified visitor
// has one, and another visitor one. With n3 stopped, the workspace's API
// key erases the anonymous visitor through parleyctl on n2: n1 and n2
// confirm, n3 does not; an agent's session may not. n3 comes back and
// erases its copies; erasing again is confirmed by all three. The
// verified visitor is erased by user ID. In the end no file of any node
// holds any text of the erased visitors, while the other visitor's
// conversation is held everywhere.
func TestVisitorErasureReachesEveryReplica(t *testing.T) {
	tc := startCluster(t, 3)
	n1, n2, n3 := tc.nodes[0], tc.nodes[1], tc.nodes[2]
	var created struct {
		IdentitySecret string `json:"identity_secret"`
		Index          uint64 `json:"index"`
	}
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, &created)
	// Every node knows the workspace before visitors say hello to it.
	for _, nd := range tc.nodes {
		mustAPI(t, nd, "GET", fmt.Sprintf("/v1/admin/workspaces/acme?min_index=%d", created.Index), tc.root, nil, nil)
	}
	ctx := testCtx(t, 240*time.Second)

	erasedText, userText, keptText := canary("visitor"), canary("user"), canary("kept")
	// The anonymous visitor: one conversation through each node, the same
	// identity.
	var ident map[string]any
	var convs []string
	for i, nd := range tc.nodes {
		cl, err := dialNode(ctx, nd)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.close()
		welcome, err := cl.hello(ctx, "acme", ident)
		if err != nil {
			t.Fatal(err)
		}
		if ident == nil {
			ident = map[string]any{"visitor_id": welcome["visitor_id"], "visitor_sig": welcome["visitor_sig"]}
		}
		cl.send(ctx, map[string]any{"type": "start", "ref": "s"})
		st, err := cl.await(ctx, "started", nil)
		if err != nil {
			t.Fatal(err)
		}
		conv := st["conversation"].(string)
		convs = append(convs, conv)
		for j := range 2 {
			say(t, ctx, cl, conv, fmt.Sprintf("m-v%d-%06d", i, j), erasedText+" on "+nd.Addr)
		}
	}
	visitorID := ident["visitor_id"].(string)
	// The verified visitor.
	secret, err := hex.DecodeString(created.IdentitySecret)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("user 42"))
	cu, err := dialNode(ctx, n2)
	if err != nil {
		t.Fatal(err)
	}
	defer cu.close()
	if _, err := cu.hello(ctx, "acme", map[string]any{"user_id": "user 42", "user_hash": hex.EncodeToString(mac.Sum(nil))}); err != nil {
		t.Fatal(err)
	}
	cu.send(ctx, map[string]any{"type": "start", "ref": "s"})
	st, err := cu.await(ctx, "started", nil)
	if err != nil {
		t.Fatal(err)
	}
	userConv := st["conversation"].(string)
	say(t, ctx, cu, userConv, "m-u-000001", userText)
	// The user's context (personal data): erased with the conversation.
	contextText := canary("context")
	change(t, ctx, cu, map[string]any{"type": "context", "conversation": userConv, "id": "x-u-000001",
		"context": map[string]any{"url": "https://shop.example/" + contextText, "attrs": map[string]any{"email": contextText}}})
	// Another visitor, not erased.
	vk, _, keptConv := startVisitor(t, ctx, n1, "acme")
	defer vk.close()
	say(t, ctx, vk, keptConv, "m-k-000001", keptText)
	for _, c := range convs {
		tc.waitConverged(t, "acme", c, 2, 30*time.Second)
	}
	tc.waitConverged(t, "acme", userConv, 2, 30*time.Second)
	tc.waitConverged(t, "acme", keptConv, 1, 30*time.Second)
	// Conversations are sealed at rest (store/seal.go): no text is in a file
	// in plaintext even before the erasure; what the erasure must remove is
	// checked through the nodes (tc.holds) and, after it, again in the files.
	if hits := scanFiles(t, tc.nodes, []string{erasedText, userText, keptText, contextText}); len(hits) > 0 {
		t.Fatalf("text in plaintext at rest before the erasure:\n%s", strings.Join(hits, "\n"))
	}

	// An agent may not erase a visitor.
	agent := tc.login(t, n1, n2, "acme", "ann")
	if code, body := api(n2, "POST", "/v1/admin/workspaces/acme/erasures", agent, map[string]any{"visitor_id": visitorID}, nil); code != 403 {
		t.Fatalf("an agent's erasure answered %d %s", code, body)
	}
	var key struct{ Key string }
	mustAPI(t, n1, "POST", "/v1/admin/workspaces/acme/keys", tc.root, map[string]any{"name": "privacy"}, &key)

	// n3 goes down; the workspace's key erases the visitor through n2.
	n3.Stop()
	tc.waitAlive(t, n1, 2, 30*time.Second)
	c := newCtl(t)
	r := c.ok("-node", n2.URL, "-token", key.Key, "-json", "visitor", "erase", "-workspace", "acme", "-visitor-id", visitorID)
	var first erasureAnswer
	if err := json.Unmarshal([]byte(r.stdout), &first); err != nil {
		t.Fatalf("%v: %s", err, r)
	}
	if first.Visitor != "v:"+visitorID || first.Index == 0 || strings.Join(first.Confirmed, ",") != "n1,n2" || strings.Join(first.Unconfirmed, ",") != "n3" {
		t.Fatalf("erasure with n3 down answered %+v", first)
	}
	// The nodes that confirmed hold none of the visitor's conversations.
	for _, nd := range []*nodeProc{n1, n2} {
		for _, conv := range convs {
			if held, n := tc.holds(t, nd, "acme", conv); held {
				t.Errorf("%s confirmed, yet holds %s with %d messages", nd.Addr, conv, n)
			}
		}
	}

	// n3 comes back: it erases its copies.
	n3.Restart(t)
	eventually.Holds(t, 30*time.Second, "n3 erases the visitor's conversations", func() error {
		for _, conv := range convs {
			if held, n := tc.holds(t, n3, "acme", conv); held {
				return fmt.Errorf("n3 holds %s with %d messages", conv, n)
			}
		}
		return nil
	})
	var again erasureAnswer
	eventually.Holds(t, 30*time.Second, "a second erasure confirmed by every node", func() error {
		again = erasureAnswer{}
		mustAPI(t, n3, "POST", "/v1/admin/workspaces/acme/erasures", key.Key, map[string]any{"visitor_id": visitorID}, &again)
		if len(again.Unconfirmed) != 0 {
			return fmt.Errorf("answered %+v", again)
		}
		return nil
	})
	if again.Index <= first.Index || strings.Join(again.Confirmed, ",") != "n1,n2,n3" {
		t.Fatalf("second erasure answered %+v, first %+v", again, first)
	}
	// The visitor's next message to one of them finds it gone.
	v, err := dialNode(ctx, n1)
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()
	if _, err := v.hello(ctx, "acme", ident); err != nil {
		t.Fatal(err)
	}
	v.send(ctx, map[string]any{"type": "send", "ref": "late", "conversation": convs[2], "id": "m-v-late01", "body": "again"})
	if m, err := v.awaitRef(ctx, "late"); err != nil || m["code"] != "not_found" {
		t.Fatalf("a message to an erased conversation: %v %v", m, err)
	}

	// The verified visitor, by user ID, through the root token.
	var byUser erasureAnswer
	mustAPI(t, n1, "POST", "/v1/admin/workspaces/acme/erasures", tc.root, map[string]any{"user_id": "user 42"}, &byUser)
	if byUser.Visitor != "u:user 42" || strings.Join(byUser.Confirmed, ",") != "n1,n2,n3" {
		t.Fatalf("erasure by user ID answered %+v", byUser)
	}
	for _, bad := range []map[string]any{{}, {"visitor_id": visitorID, "user_id": "user 42"}, {"visitor_id": "nope"}} {
		if code, body := api(n1, "POST", "/v1/admin/workspaces/acme/erasures", tc.root, bad, nil); code != 400 {
			t.Errorf("erasure with %v answered %d %s", bad, code, body)
		}
	}

	// Every node still holds the other visitor's conversation; no file of
	// any node holds the erased visitors' texts (freed pages included:
	// the stores scrub them within -scrub-after).
	for i, nd := range tc.nodes {
		if held, n := tc.holds(t, nd, "acme", keptConv); !held || n != 1 {
			t.Errorf("n%d: the other visitor's conversation held %v with %d messages", i+1, held, n)
		}
		for _, conv := range append(convs, userConv) {
			if held, _ := tc.holds(t, nd, "acme", conv); held {
				t.Errorf("n%d holds %s again", i+1, conv)
			}
		}
	}
	var hits []string
	eventually.Poll(60*time.Second, func() error {
		if hits = scanFiles(t, tc.nodes, []string{erasedText, userText, contextText}); len(hits) > 0 {
			return fmt.Errorf("%d hits", len(hits))
		}
		return nil
	})
	if len(hits) > 0 {
		t.Errorf("the erased visitors' text is still in files:\n%s", strings.Join(hits, "\n"))
	}
}

// exportPage is one page of an export.
type exportPage struct {
	Node      string `json:"node"`
	Visitor   string `json:"visitor"`
	Workspace *struct {
		ID string `json:"id"`
	} `json:"workspace"`
	Operators []struct {
		ID, Email, Role string
	} `json:"operators"`
	Replies []struct {
		ID, Title, Body string
	} `json:"replies"`
	Conversations []struct {
		ID      string `json:"id"`
		Owner   string `json:"owner"`
		Context struct {
			URL   string            `json:"url"`
			Attrs map[string]string `json:"attrs"`
		} `json:"context"`
		Messages []struct {
			ID      string `json:"id"`
			Author  string `json:"author"`
			Body    string `json:"body"`
			Edited  int64  `json:"edited"`
			Deleted bool   `json:"deleted"`
		} `json:"messages"`
	} `json:"conversations"`
	Next string `json:"next"`
}

// TestExportIsWhatWasWrittenAndNoSecret: a visitor's export and the
// workspace's, a page at a time, hold exactly the conversations and the
// messages' current texts that were written (edited ones as edited,
// deleted ones empty), through an admin's session, an API key and
// parleyctl; an agent's session is refused; no byte of any export is a
// secret: identity secret, key, key hash, session tokens, password or its
// hash.
func TestExportIsWhatWasWrittenAndNoSecret(t *testing.T) {
	tc := startCluster(t, 1)
	n1 := tc.nodes[0]
	var created struct {
		IdentitySecret string `json:"identity_secret"`
	}
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, &created)
	ctx := testCtx(t, 120*time.Second)

	var inv struct{ Index uint64 }
	mustAPI(t, n1, "POST", "/v1/admin/workspaces/acme/operators", tc.root, map[string]any{"id": "ada", "email": "ada@acme.test", "name": "Ada", "role": "admin", "password": "a good long password"}, &inv)
	var adminLogin struct{ Token string }
	mustAPI(t, n1, "POST", fmt.Sprintf("/v1/login?min_index=%d", inv.Index), "", map[string]any{"workspace": "acme", "email": "ada@acme.test", "password": "a good long password"}, &adminLogin)
	agent := tc.login(t, n1, n1, "acme", "ann")
	var key struct{ Key string }
	mustAPI(t, n1, "POST", "/v1/admin/workspaces/acme/keys", tc.root, map[string]any{"name": "export"}, &key)
	keyHash := sha256.Sum256([]byte(key.Key))
	mustAPI(t, n1, "POST", "/v1/workspaces/acme/replies", agent, map[string]any{"title": "Refunds", "body": "Refunds take five days."}, nil)

	// Visitor A: two conversations, one message edited, one deleted, an
	// agent's answer; visitor B: one.
	va, welcome, a1 := startVisitor(t, ctx, n1, "acme")
	defer va.close()
	say(t, ctx, va, a1, "m-a1-00001", "first draft")
	change(t, ctx, va, map[string]any{"type": "edit", "conversation": a1, "id": "m-a1-00001", "body": "my parcel is late"})
	say(t, ctx, va, a1, "m-a1-00002", "my address is 1 Main St")
	change(t, ctx, va, map[string]any{"type": "delete", "conversation": a1, "id": "m-a1-00002"})
	ag := tc.agentOn(t, ctx, n1, n1, "acme", "bob")
	ag.send(ctx, map[string]any{"type": "resume", "ref": "r", "conversation": a1, "after": 0})
	if _, err := ag.await(ctx, "resumed", nil); err != nil {
		t.Fatal(err)
	}
	say(t, ctx, ag, a1, "m-b-000001", "sorry, we look into it")
	// Agents' internal messages are in no export; the visitor's context is
	// in theirs.
	const noteCanary = "NOTE-CANARY-export"
	change(t, ctx, ag, map[string]any{"type": "send", "conversation": a1, "id": "n-b-000001", "body": noteCanary, "internal": true})
	change(t, ctx, ag, map[string]any{"type": "inbox", "conversation": a1, "id": "i-b-000001", "tag": "canary-tag", "on": true})
	change(t, ctx, ag, map[string]any{"type": "inbox", "conversation": a1, "id": "i-b-000002", "status": "resolved"})
	change(t, ctx, va, map[string]any{"type": "context", "conversation": a1, "id": "x-a1-00001",
		"context": map[string]any{"url": "https://shop.example/orders/77", "language": "en", "attrs": map[string]any{"plan": "pro"}}})
	va.send(ctx, map[string]any{"type": "start", "ref": "s2"})
	st, err := va.awaitRef(ctx, "s2")
	if err != nil {
		t.Fatal(err)
	}
	a2 := st["conversation"].(string)
	say(t, ctx, va, a2, "m-a2-00001", "another question")
	vb, _, b1 := startVisitor(t, ctx, n1, "acme")
	defer vb.close()
	say(t, ctx, vb, b1, "m-b1-00001", "hello from b")
	visitorA := "v:" + welcome["visitor_id"].(string)

	pages := func(token, query string) ([]exportPage, []string) {
		t.Helper()
		var out []exportPage
		var raws []string
		cursor := ""
		for range 10 {
			var p exportPage
			code, body := api(n1, "GET", "/v1/admin/workspaces/acme/export?limit=1"+query+"&cursor="+url.QueryEscape(cursor), token, nil, &p)
			if code != 200 {
				t.Fatalf("export%s: %d %s", query, code, body)
			}
			out, raws = append(out, p), append(raws, body)
			if p.Next == "" {
				return out, raws
			}
			cursor = p.Next
		}
		t.Fatal("export: more than 10 pages")
		return nil, nil
	}
	texts := func(ps []exportPage) map[string]string {
		got := map[string]string{}
		for _, p := range ps {
			for _, c := range p.Conversations {
				for _, m := range c.Messages {
					v := c.ID + " " + c.Owner + " " + m.Author + " " + m.Body
					if m.Deleted {
						v += " (deleted)"
					}
					if m.Edited != 0 {
						v += " (edited)"
					}
					got[m.ID] = v
				}
			}
		}
		return got
	}
	wantA := map[string]string{
		"m-a1-00001": a1 + " " + visitorA + " " + visitorA + " my parcel is late (edited)",
		"m-a1-00002": a1 + " " + visitorA + " " + visitorA + "  (deleted)",
		"m-b-000001": a1 + " " + visitorA + " a:bob sorry, we look into it",
		"m-a2-00001": a2 + " " + visitorA + " " + visitorA + " another question",
	}

	// The visitor's export, through the key: two pages of one.
	vp, vraw := pages(key.Key, "&visitor_id="+strings.TrimPrefix(visitorA, "v:"))
	if got := texts(vp); fmt.Sprint(got) != fmt.Sprint(wantA) {
		t.Fatalf("visitor export:\n got %v\nwant %v", got, wantA)
	}
	if len(vp) != 2 || vp[0].Visitor != visitorA || vp[0].Workspace != nil || vp[0].Operators != nil {
		t.Fatalf("visitor export: %d pages, first %+v", len(vp), vp[0])
	}
	// The workspace's, through the admin's session: three conversations,
	// the workspace, its operators and replies on the first page.
	wp, wraw := pages(adminLogin.Token, "")
	visitorB := ownerOf(t, vb)
	wantAll := map[string]string{"m-b1-00001": b1 + " " + visitorB + " " + visitorB + " hello from b"}
	for k, v := range wantA {
		wantAll[k] = v
	}
	if got := texts(wp); fmt.Sprint(got) != fmt.Sprint(wantAll) {
		t.Fatalf("workspace export:\n got %v\nwant %v", got, wantAll)
	}
	if len(wp) != 3 || wp[0].Workspace == nil || wp[0].Workspace.ID != "acme" || len(wp[0].Operators) != 3 || len(wp[0].Replies) != 1 || wp[0].Replies[0].Body != "Refunds take five days." || wp[1].Workspace != nil {
		t.Fatalf("workspace export: %d pages, first %+v", len(wp), wp[0])
	}
	// parleyctl prints the same conversations, a line a page.
	c := newCtl(t)
	r := c.ok("-node", n1.URL, "-token", key.Key, "export", "-workspace", "acme", "-limit", "2")
	var cp []exportPage
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var p exportPage
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatalf("parleyctl export line %q: %v", line, err)
		}
		cp = append(cp, p)
	}
	if got := texts(cp); len(cp) != 2 || fmt.Sprint(got) != fmt.Sprint(wantAll) {
		t.Fatalf("parleyctl export: %d pages\n got %v\nwant %v", len(cp), got, wantAll)
	}

	for i, raw := range append(append(vraw, wraw...), r.stdout) {
		if strings.Contains(raw, noteCanary) || strings.Contains(raw, "canary-tag") || strings.Contains(raw, `"internal"`) {
			t.Fatalf("export %d holds an internal message: %s", i, raw)
		}
	}
	var ctxShown bool
	for _, p := range vp {
		for _, c := range p.Conversations {
			ctxShown = ctxShown || (c.ID == a1 && c.Context.URL == "https://shop.example/orders/77" && c.Context.Attrs["plan"] == "pro")
		}
	}
	if !ctxShown {
		t.Fatalf("the visitor's export lacks their context: %v", vraw)
	}

	// An agent may not export.
	if code, body := api(n1, "GET", "/v1/admin/workspaces/acme/export", agent, nil, nil); code != 403 {
		t.Fatalf("an agent's export answered %d %s", code, body)
	}
	// No secret in any of it.
	all := strings.Join(append(append(vraw, wraw...), r.stdout), "\n")
	for what, secret := range map[string]string{
		"identity secret": created.IdentitySecret, "API key": key.Key, "API key hash": hex.EncodeToString(keyHash[:]),
		"admin session": adminLogin.Token, "agent session": agent, "password": "a good long password",
		"password hash": "pbkdf2", "hash field": "hash", "secret field": "secret",
	} {
		if strings.Contains(all, secret) {
			t.Errorf("the export holds the %s", what)
		}
	}
}

// ownerOf is the participant of a visitor's connection, the owner of the
// first conversation its list shows.
func ownerOf(t *testing.T, v *wsClient) string {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	v.send(ctx, map[string]any{"type": "list", "ref": "owner"})
	m, err := v.awaitRef(ctx, "owner")
	if err != nil {
		t.Fatal(err)
	}
	return m["items"].([]any)[0].(map[string]any)["owner"].(string)
}

// TestRetentionErasesOnEveryNode: with days of one second (-retention-day
// 1s), a workspace's retention of 3 days erases its conversations 3 s
// after their last message on every node, n3 too, which was stopped
// before and comes back after; no file of any node keeps their text. The
// workspace shows its retention; an agent may not set it.
func TestRetentionErasesOnEveryNode(t *testing.T) {
	tc := startCluster(t, 3, "-retention-day", "1s")
	n1, n2, n3 := tc.nodes[0], tc.nodes[1], tc.nodes[2]
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	ctx := testCtx(t, 180*time.Second)
	text := canary("retained")
	v, _, conv := startVisitor(t, ctx, n1, "acme")
	defer v.close()
	say(t, ctx, v, conv, "m-r-000001", text)
	tc.waitConverged(t, "acme", conv, 1, 30*time.Second)
	if hits := scanFiles(t, tc.nodes, []string{text}); len(hits) > 0 {
		t.Fatalf("text in plaintext at rest before the retention:\n%s", strings.Join(hits, "\n"))
	}

	agent := tc.login(t, n1, n2, "acme", "ann")
	if code, body := api(n2, "PUT", "/v1/admin/workspaces/acme/retention", agent, map[string]any{"days": 3}, nil); code != 403 {
		t.Fatalf("an agent set the retention: %d %s", code, body)
	}
	n3.Stop()
	tc.waitAlive(t, n1, 2, 30*time.Second)
	var set struct {
		RetentionDays int    `json:"retention_days"`
		Index         uint64 `json:"index"`
	}
	mustAPI(t, n2, "PUT", "/v1/admin/workspaces/acme/retention", tc.root, map[string]any{"days": 3}, &set)
	var w struct {
		RetentionDays int `json:"retention_days"`
	}
	mustAPI(t, n1, "GET", fmt.Sprintf("/v1/admin/workspaces/acme?min_index=%d", set.Index), tc.root, nil, &w)
	if set.RetentionDays != 3 || w.RetentionDays != 3 {
		t.Fatalf("retention set as %+v, the workspace shows %+v", set, w)
	}
	eventually.Holds(t, 30*time.Second, "n1 and n2 erase the conversation past its retention", func() error {
		for _, nd := range []*nodeProc{n1, n2} {
			if held, _ := tc.holds(t, nd, "acme", conv); held {
				return fmt.Errorf("%s holds it", nd.Addr)
			}
		}
		return nil
	})
	n3.Restart(t)
	eventually.Holds(t, 30*time.Second, "n3 erases it once back", func() error {
		if held, _ := tc.holds(t, n3, "acme", conv); held {
			return errors.New("n3 holds it")
		}
		return nil
	})
	var hits []string
	eventually.Poll(60*time.Second, func() error {
		if hits = scanFiles(t, tc.nodes, []string{text}); len(hits) > 0 {
			return fmt.Errorf("%d hits", len(hits))
		}
		return nil
	})
	if len(hits) > 0 {
		t.Errorf("the text is still in files:\n%s", strings.Join(hits, "\n"))
	}
}
