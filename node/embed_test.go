package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"parley/node/agentapi"

	"parley/cluster"
	"parley/crdt"
	"parley/embedder"
	"parley/ident"
	"parley/store"
)

const testToken = "0123456789abcdef-token"

// needEmbedder fails a test that needs the model when its assets are
// missing, unless PARLEY_SKIP_EMBEDDER=1, which skips it.
func needEmbedder(t testing.TB) {
	t.Helper()
	if os.Getenv("PARLEY_SKIP_EMBEDDER") == "1" {
		t.Skip("PARLEY_SKIP_EMBEDDER=1: skipping a test that needs the embedder assets")
	}
	lib, dir := os.Getenv(embedder.EnvLibrary), os.Getenv(embedder.EnvModelDir)
	if lib == "" {
		lib = embedder.DefaultLibraryPath()
	}
	if dir == "" {
		dir = embedder.DefaultModelDir()
	}
	for _, p := range []string{lib, filepath.Join(dir, "model.onnx")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("embedder asset missing: %v; run `make embedder-assets` or set PARLEY_SKIP_EMBEDDER=1", err)
		}
	}
}

// apiDo sends an API request with an operator token and decodes the JSON
// answer into a map.
func apiDo(t *testing.T, method, u, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		default:
			raw, _ := json.Marshal(b)
			rd = bytes.NewReader(raw)
		}
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %q", method, u, resp.StatusCode, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q", method, u, ct)
	}
	return resp.StatusCode, m
}

func items(m map[string]any) []map[string]any {
	var out []map[string]any
	list, _ := m["items"].([]any)
	for _, x := range list {
		out = append(out, x.(map[string]any))
	}
	return out
}

func convIDs(m map[string]any) []string {
	var out []string
	for _, it := range items(m) {
		out = append(out, it["conversation"].(string))
	}
	return out
}

// seedConv stores a conversation with messages as a visitor and an agent
// would write them, through the store's commit path (which feeds the
// worker).
func seedConv(t testing.TB, st *store.Store, ws, id string, msgs ...string) {
	t.Helper()
	ctx := context.Background()
	if err := st.CreateConversation(ctx, store.Conversation{Workspace: ws, ID: id, Owner: "v:" + id, OwnerName: "Visitor " + id[len(id)-4:]}); err != nil {
		t.Fatal(err)
	}
	for i, body := range msgs {
		author, role := "v:"+id, ident.Visitor
		if strings.HasPrefix(body, "A:") {
			author, role, body = "a:sam", ident.Agent, strings.TrimPrefix(body, "A:")
		}
		m := crdt.NewMessage(fmt.Sprintf("m%02d", i), author, role, "", body, crdt.Timestamp{Wall: int64(i + 1), Node: "n1"})
		if _, err := st.Apply(ctx, store.Change{Kind: store.Send, Workspace: ws, Conversation: id, Participant: author, Message: m}); err != nil {
			t.Fatal(err)
		}
	}
}

func cid(n int) string { return fmt.Sprintf("c_%024x", n) }

// waitEmbedded waits until the index holds the conversations at their
// current heads.
func waitEmbedded(t *testing.T, r *running, ws string, ids ...string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		done := 0
		for _, id := range ids {
			c, err := r.n.store.Conversation(ws, id)
			if err != nil {
				t.Fatal(err)
			}
			if h, ok := r.n.emb.indexedHead(embedder.Key{Workspace: ws, ID: id}); ok && h == c.Head {
				done++
			}
		}
		if done == len(ids) {
			return
		}
	}
	t.Fatalf("conversations %v of %s were not embedded in 60s: %+v", ids, ws, r.n.emb.worker.Stats())
}

// TestSimilarSearchSuggestAndErase runs the feature on a real node: the
// worker embeds conversations written through the store, the API finds the
// similar ones within the workspace only, ranks saved replies, and erasure
// takes the vector with the conversation.
func TestSimilarSearchSuggestAndErase(t *testing.T) {
	t.Parallel()
	needEmbedder(t)
	r := runNode(t, Config{DataDir: t.TempDir(), AgentToken: testToken, Embedder: "auto", EmbedDebounce: 20 * time.Millisecond, H3Addr: h3Off})
	st := r.n.store
	otherToken := "other-workspace-token-0123456789"
	addWorkspace(t, r, "other", otherToken)
	if err := st.PutWorkspace(context.Background(), store.Workspace{ID: "other"}); err != nil {
		t.Fatal(err)
	}
	late, parcel, password, refund := cid(1), cid(2), cid(3), cid(4)
	seedConv(t, st, "demo", late, "Hi, my order #1234 has not arrived yet, where is my package?", "A:Let me check the tracking for you.")
	seedConv(t, st, "demo", parcel, "The parcel I ordered two weeks ago is still not delivered", "Tracking shows nothing")
	seedConv(t, st, "demo", password, "I forgot my password and cannot log in to my account")
	seedConv(t, st, "demo", refund, "I would like a refund for the broken blender")
	theirs := cid(9)
	seedConv(t, st, "other", theirs, "My order has not arrived, where is my package? It is late")
	waitEmbedded(t, r, "demo", late, parcel, password, refund)
	waitEmbedded(t, r, "other", theirs)
	// The worker's running totals are counters.
	if _, body := get(t, r.base+"/metrics"); !strings.Contains(body, "# TYPE parley_embeddings_embedded_total counter") ||
		!strings.Contains(body, "# TYPE parley_embeddings_failed_total counter") {
		t.Fatal("the embedding totals are not counters named _total")
	}

	ws := r.base + "/v1/workspaces/demo"
	code, m := apiDo(t, "GET", ws+"/conversations/"+late+"/similar?k=3", testToken, nil)
	if code != 200 || m["indexed"] != true {
		t.Fatalf("similar: %d %v", code, m)
	}
	got := convIDs(m)
	if len(got) != 3 || got[0] != parcel {
		t.Fatalf("similar to the late order: %v, want the undelivered parcel first", got)
	}
	for _, id := range got {
		if id == late || id == theirs {
			t.Fatalf("similar lists %s: itself or another workspace's conversation: %v", id, got)
		}
	}
	scores := items(m)
	if s0, s2 := scores[0]["score"].(float64), scores[2]["score"].(float64); s0 <= s2 || s0 > 1.0001 {
		t.Fatalf("scores not ranked: %v", scores)
	}
	if scores[0]["preview"] != "Tracking shows nothing" {
		t.Fatalf("preview: %v", scores[0])
	}

	_, m = apiDo(t, "GET", ws+"/search?q="+url.QueryEscape("reset my login credentials")+"&k=2", testToken, nil)
	if got := convIDs(m); len(got) != 2 || got[0] != password {
		t.Fatalf("search: %v, want the password conversation first", got)
	}
	// The other workspace's agent finds only their own conversation, with
	// the very words of ours.
	_, m = apiDo(t, "GET", r.base+"/v1/workspaces/other/search?q="+url.QueryEscape("parcel not delivered")+"&k=50", otherToken, nil)
	if got := convIDs(m); len(got) != 1 || got[0] != theirs {
		t.Fatalf("other workspace's search: %v, want only %s", got, theirs)
	}
	// Neither token opens the other workspace, nor its conversations.
	if code, m := apiDo(t, "GET", r.base+"/v1/workspaces/other/search?q=order", testToken, nil); code != 401 || m["code"] != "auth_failed" {
		t.Fatalf("demo's token on other: %d %v", code, m)
	}
	if code, _ := apiDo(t, "GET", r.base+"/v1/workspaces/other/conversations/"+late+"/similar", otherToken, nil); code != 404 {
		t.Fatalf("other's agent asked about demo's conversation: %d", code)
	}

	for _, rep := range []map[string]string{
		{"title": "Password reset", "body": "You can reset your password from the login page: click \"Forgot password\"."},
		{"title": "Shipping delay", "body": "Sorry for the wait! Parcels can take up to 10 days; here is your tracking link."},
		{"title": "Refunds", "body": "We refund within 5 days of receiving the item back."},
	} {
		if code, m := apiDo(t, "POST", ws+"/replies", testToken, rep); code != 200 || !strings.HasPrefix(m["id"].(string), "r_") {
			t.Fatalf("create reply: %d %v", code, m)
		}
	}
	// The replies on other subjects score below MinSuggestionScore and are
	// left out, unless the agent asks for every score.
	_, m = apiDo(t, "GET", ws+"/conversations/"+parcel+"/suggestions?k=3", testToken, nil)
	if s := items(m); len(s) != 1 || s[0]["title"] != "Shipping delay" || m["min_score"] != agentapi.MinSuggestionScore {
		t.Fatalf("suggestions for the parcel: %v", m)
	}
	_, m = apiDo(t, "GET", ws+"/conversations/"+parcel+"/suggestions?k=3&min_score=0", testToken, nil)
	if s := items(m); len(s) != 3 || s[0]["title"] != "Shipping delay" || s[2]["score"].(float64) >= agentapi.MinSuggestionScore {
		t.Fatalf("every suggestion for the parcel: %v", s)
	}
	_, m = apiDo(t, "GET", ws+"/conversations/"+password+"/suggestions?k=1", testToken, nil)
	if s := items(m); len(s) != 1 || s[0]["title"] != "Password reset" {
		t.Fatalf("suggestions for the password: %v", s)
	}
	if _, m := apiDo(t, "GET", r.base+"/v1/workspaces/other/replies", otherToken, nil); len(items(m)) != 0 {
		t.Fatalf("other workspace sees demo's replies: %v", m)
	}

	// Erasure: the conversation and its vector go, and it is never found
	// again.
	code, erased := apiDo(t, "DELETE", ws+"/conversations/"+parcel, testToken, nil)
	if code != 200 || erased["erased"] != parcel || fmt.Sprint(erased["confirmed"]) != "["+r.n.cfg.NodeID+"]" {
		t.Fatalf("erase: %d %v", code, erased)
	}
	if _, _, err := st.Vector("demo", parcel); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("vector after erasure: %v", err)
	}
	_, m = apiDo(t, "GET", ws+"/conversations/"+late+"/similar?k=50", testToken, nil)
	for _, id := range convIDs(m) {
		if id == parcel {
			t.Fatalf("the erased conversation is still similar: %v", m)
		}
	}
	if code, _ := apiDo(t, "GET", ws+"/conversations/"+parcel+"/similar", testToken, nil); code != 404 {
		t.Fatalf("similar of an erased conversation: %d", code)
	}
	// Erasing again says the same: erased, as of the first erasure.
	if code, m := apiDo(t, "DELETE", ws+"/conversations/"+parcel, testToken, nil); code != 200 || m["index"] != erased["index"] || fmt.Sprint(m["confirmed"]) != fmt.Sprint(erased["confirmed"]) {
		t.Fatalf("second erasure: %d %v, first %v", code, m, erased)
	}
	if code, _ := apiDo(t, "DELETE", ws+"/conversations/c_0123456789abcdef01234567", testToken, nil); code != 404 {
		t.Fatalf("erasure of a conversation never held: %d", code)
	}

	// A restart loads the vectors back without embedding again.
	r.stop()
	r2 := runNode(t, Config{DataDir: r.n.cfg.DataDir, AgentToken: testToken, Embedder: "auto", H3Addr: h3Off})
	if h, ok := r2.n.emb.indexedHead(embedder.Key{Workspace: "demo", ID: late}); !ok || h == 0 {
		t.Fatal("vectors not loaded at start")
	}
	if s := r2.n.emb.worker.Stats(); s.Pending != 0 {
		t.Fatalf("a restart queued %d conversations that had up-to-date vectors", s.Pending)
	}
	_, m = apiDo(t, "GET", r2.base+"/v1/workspaces/demo/conversations/"+password+"/suggestions?k=1", testToken, nil)
	if s := items(m); len(s) != 1 || s[0]["title"] != "Password reset" {
		t.Fatalf("suggestions after restart: %v", s)
	}
}

// addWorkspace creates a workspace in the node's control plane with an
// operator whose session token is token.
func addWorkspace(t *testing.T, r *running, ws, token string) {
	t.Helper()
	c := r.n.ctl.c
	ctx := context.Background()
	now := time.Now().UTC()
	hash, err := cluster.HashPassword("a long enough password", cluster.MinPasswordIterations)
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []cluster.Command{
		cluster.CreateWorkspace{ID: ws, Name: ws, Plan: "business", Created: now},
		cluster.CreateOperator{Workspace: ws, ID: "o1", Email: "o1@" + ws + ".test", Name: "O", Role: cluster.RoleAgent, PasswordHash: hash, Created: now},
		cluster.CreateSession{Hash: cluster.HashToken(token), Workspace: ws, Operator: "o1", Created: now, Expires: now.Add(time.Hour)},
	} {
		if _, err := c.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.SetIdentitySecret(ctx, ws, []byte("identity-secret-of-"+ws)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetVisitorKey(ctx, ws, []byte("visitor-key-of-"+ws)); err != nil {
		t.Fatal(err)
	}
}

// TestEmbedAPIValidation: every input is checked before any work, with a
// JSON error naming the problem.
func TestEmbedAPIValidation(t *testing.T) {
	t.Parallel()
	needEmbedder(t)
	r := runNode(t, Config{DataDir: t.TempDir(), AgentToken: testToken, Embedder: "auto", H3Addr: h3Off})
	conv := cid(7)
	seedConv(t, r.n.store, "demo", conv, "hello there")
	ws := r.base + "/v1/workspaces/demo"
	long := strings.Repeat("x", agentapi.MaxQueryRunes+1)
	cases := []struct {
		name, method, url, token string
		body                     any
		code                     int
		want                     string
	}{
		{"no token", "GET", ws + "/search?q=a", "", nil, 401, "unauthenticated"},
		{"wrong token", "GET", ws + "/search?q=a", "wrong-token", nil, 401, "auth_failed"},
		{"unknown workspace", "GET", r.base + "/v1/workspaces/nope/search?q=a", testToken, nil, 401, "auth_failed"},
		{"bad workspace", "GET", r.base + "/v1/workspaces/No%20pe/search?q=a", testToken, nil, 400, "bad_request"},
		{"token too long", "GET", ws + "/search?q=a", strings.Repeat("t", agentapi.MaxTokenBytes+1), nil, 401, "unauthenticated"},
		{"empty query", "GET", ws + "/search?q=%20", testToken, nil, 400, "bad_request"},
		{"query too long", "GET", ws + "/search?q=" + long, testToken, nil, 400, "bad_request"},
		{"query not UTF-8", "GET", ws + "/search?q=%ff%fe", testToken, nil, 400, "bad_request"},
		{"k zero", "GET", ws + "/search?q=a&k=0", testToken, nil, 400, "bad_request"},
		{"k too large", "GET", ws + "/search?q=a&k=51", testToken, nil, 400, "bad_request"},
		{"k not a number", "GET", ws + "/search?q=a&k=ten", testToken, nil, 400, "bad_request"},
		{"bad conversation id", "GET", ws + "/conversations/c_123/similar", testToken, nil, 400, "bad_request"},
		{"unknown conversation", "GET", ws + "/conversations/" + cid(8) + "/similar", testToken, nil, 404, "not_found"},
		{"mode unknown", "GET", ws + "/search?q=a&mode=fuzzy", testToken, nil, 400, "bad_request"},
		{"keyword search without a word", "GET", ws + "/search?q=%21%21&mode=keyword", testToken, nil, 400, "bad_request"},
		{"min_score out of range", "GET", ws + "/conversations/" + conv + "/suggestions?min_score=1.5", testToken, nil, 400, "bad_request"},
		{"min_score not a number", "GET", ws + "/conversations/" + conv + "/suggestions?min_score=high", testToken, nil, 400, "bad_request"},
		{"unknown conversation suggestions", "GET", ws + "/conversations/" + cid(8) + "/suggestions", testToken, nil, 404, "not_found"},
		{"erase unknown", "DELETE", ws + "/conversations/" + cid(8), testToken, nil, 404, "not_found"},
		{"reply not JSON", "POST", ws + "/replies", testToken, "title=x", 400, "bad_request"},
		{"reply unknown field", "POST", ws + "/replies", testToken, map[string]string{"title": "t", "body": "b", "x": "y"}, 400, "bad_request"},
		{"reply without title", "POST", ws + "/replies", testToken, map[string]string{"body": "b"}, 400, "bad_request"},
		{"reply title too long", "POST", ws + "/replies", testToken, map[string]string{"title": strings.Repeat("t", agentapi.MaxTitleRunes+1), "body": "b"}, 400, "bad_request"},
		{"reply body too long", "POST", ws + "/replies", testToken, map[string]string{"title": "t", "body": strings.Repeat("b", agentapi.MaxReplyRunes+1)}, 400, "bad_request"},
		{"reply control character", "POST", ws + "/replies", testToken, map[string]string{"title": "t", "body": "a\x00b"}, 400, "bad_request"},
		{"reply title reversed", "POST", ws + "/replies", testToken, map[string]string{"title": "\u202eevil", "body": "b"}, 400, "bad_request"},
		{"reply two objects", "POST", ws + "/replies", testToken, `{"title":"t","body":"b"}{}`, 400, "bad_request"},
		{"reply over the size limit", "POST", ws + "/replies", testToken, `{"title":"t","body":"` + strings.Repeat("b", agentapi.MaxReplyBody) + `"}`, 400, "bad_request"},
		{"delete bad reply id", "DELETE", ws + "/replies/r_1", testToken, nil, 400, "bad_request"},
		{"delete unknown reply", "DELETE", ws + "/replies/r_0123456789abcdef", testToken, nil, 404, "not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			code, m := apiDo(t, c.method, c.url, c.token, c.body)
			if code != c.code || m["code"] != c.want || m["message"] == "" {
				t.Fatalf("%d %v, want %d %s with a message", code, m, c.code, c.want)
			}
		})
	}
	// And the valid forms of the same requests pass.
	for _, u := range []string{ws + "/search?q=hello&k=50", ws + "/conversations/" + conv + "/similar?k=1", ws + "/conversations/" + conv + "/suggestions", ws + "/replies"} {
		if code, m := apiDo(t, "GET", u, testToken, nil); code != 200 {
			t.Fatalf("%s: %d %v", u, code, m)
		}
	}
}

// TestEmbedderOffStillServesChat: without the model a node is ready, chats,
// stores saved replies and erases, and says why suggestions are off.
func TestEmbedderOffStillServesChat(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		cfg        Config
		wantReason string
	}{
		{"off by flag", Config{Embedder: "off"}, "-embedder off"},
		{"assets missing", Config{Embedder: "auto", ORTLib: "/nonexistent/libonnxruntime.so.1", ModelDir: "/nonexistent/model"}, "make embedder-assets"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := c.cfg
			cfg.DataDir, cfg.AgentToken, cfg.H3Addr = t.TempDir(), testToken, h3Off
			r := runNode(t, cfg)
			if resp, body := get(t, r.base+"/readyz"); resp.StatusCode != 200 {
				t.Fatalf("readyz: %d %s", resp.StatusCode, body)
			}
			resp, body := get(t, r.base+"/v1/embeddings")
			var st struct {
				Enabled bool   `json:"enabled"`
				Reason  string `json:"reason"`
			}
			if err := json.Unmarshal([]byte(body), &st); err != nil || resp.StatusCode != 200 || st.Enabled || !strings.Contains(st.Reason, c.wantReason) {
				t.Fatalf("status: %d %s", resp.StatusCode, body)
			}
			if strings.Contains(body, "/nonexistent") {
				t.Fatalf("the public status names a file: %s", body)
			}
			if !strings.Contains(r.logs.String(), "embeddings off") {
				t.Fatalf("no warning in the log: %s", r.logs.String())
			}
			conv := chatOnce(t, r)
			ws := r.base + "/v1/workspaces/demo"
			for _, u := range []string{ws + "/search?q=hello&mode=semantic", ws + "/conversations/" + conv + "/similar", ws + "/conversations/" + conv + "/suggestions"} {
				code, m := apiDo(t, "GET", u, testToken, nil)
				if code != 503 || m["code"] != "embedder_off" || !strings.Contains(m["message"].(string), c.wantReason) {
					t.Fatalf("%s: %d %v", u, code, m)
				}
			}
			// Search works without the model: by keywords, every word
			// in the conversation whatever the case.
			for q, want := range map[string]int{"ANYONE%20there": 1, "anyone%20elsewhere": 0} {
				code, m := apiDo(t, "GET", ws+"/search?q="+q, testToken, nil)
				if code != 200 || m["mode"] != "keyword" || m["complete"] != true || len(convIDs(m)) != want || (want == 1 && convIDs(m)[0] != conv) {
					t.Fatalf("keyword search %q without the model: %d %v", q, code, m)
				}
			}
			if code, m := apiDo(t, "POST", ws+"/replies", testToken, map[string]string{"title": "Hi", "body": "Hello!"}); code != 200 {
				t.Fatalf("saving a reply with the feature off: %d %v", code, m)
			}
			if code, m := apiDo(t, "DELETE", ws+"/conversations/"+conv, testToken, nil); code != 200 {
				t.Fatalf("erasure with the feature off: %d %v", code, m)
			}
			if _, body := get(t, r.base+"/metrics"); !strings.Contains(body, "parley_embeddings_enabled 0") {
				t.Fatal("metrics do not say the feature is off")
			}
		})
	}
}

// chatOnce has a visitor start a conversation and send a message that an
// agent connection receives, over real WebSockets; it returns the
// conversation.
func chatOnce(t *testing.T, r *running) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// noError fails on an error frame and matches frames of type typ.
	noError := func(typ string) func(map[string]any) bool {
		return func(m map[string]any) bool {
			if m["type"] == "error" {
				t.Fatalf("error frame: %v", m)
			}
			return m["type"] == typ
		}
	}
	agent := helloTest(t, ctx, r.base, map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "agent", "token": testToken}, noError("welcome"))
	visitor := helloTest(t, ctx, r.base, map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "visitor"}, noError("welcome"))
	visitor.send(map[string]any{"type": "start", "ref": "s"})
	conv := visitor.await(noError("started"))["conversation"].(string)
	visitor.send(map[string]any{"type": "send", "ref": "m", "conversation": conv, "id": "m_0000000001", "body": "is anyone there?"})
	visitor.await(noError("ack"))
	if d := agent.await(noError("deliver")); d["conversation"] != conv {
		t.Fatalf("agent got %v", d)
	}
	return conv
}

func TestEmbedConfigValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		ok   bool
	}{
		{[]string{"-embedder", "off"}, true},
		{[]string{"-embedder", "auto", "-embed-threads", "2", "-model-dir", "/m", "-ort-lib", "/l.so"}, true},
		{[]string{"-embedder", "maybe"}, false},
		{[]string{"-embed-threads", "-1"}, false},
		{[]string{"-embed-threads", "65"}, false},
		{[]string{"-embed-debounce", "-1s"}, false},
	}
	for _, c := range cases {
		_, err := ParseFlags(c.args)
		if (err == nil) != c.ok {
			t.Errorf("%v: err %v", c.args, err)
		}
	}
}

func TestConversationText(t *testing.T) {
	t.Parallel()
	m := func(role ident.Role, body string, deleted bool) crdt.Message {
		x := crdt.Message{Role: role, Body: body}
		if deleted {
			x.Deleted = crdt.Timestamp{Wall: 1}
		}
		return x
	}
	msgs := []crdt.Message{m(ident.Visitor, "first", false), m(ident.Agent, "reply", false), m(ident.Visitor, "second", false), m(ident.Visitor, "third", false)}
	if got := conversationText(msgs); got != "first\nsecond\nthird\nreply" {
		t.Fatalf("conversationText = %q", got)
	}
	if got := visitorTail(msgs, 2); got != "second\nthird" {
		t.Fatalf("visitorTail = %q", got)
	}
	long := []crdt.Message{m(ident.Visitor, strings.Repeat("é", maxEmbedChars), false)}
	if got := conversationText(long); len(got) > maxEmbedChars || !strings.HasPrefix(got, "é") || strings.ContainsRune(got, '\uFFFD') {
		t.Fatalf("long text cut to %d bytes, valid UTF-8: %v", len(got), !strings.ContainsRune(got, '\uFFFD'))
	}
}
