package agentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"parley/cluster"
	"parley/crdt"
	"parley/gateway"
	"parley/gateway/wire"
	"parley/ident"
	"parley/node/httpapi"
	"parley/store"
)

// Fakes of what the API is made of: workspace "acme", an operator session
// "session-token" (sam), an API key "pk_good" (k_1, "Order bot").

type fakeAuth struct{}

func (fakeAuth) Agent(_ context.Context, ws, token string) (gateway.Agent, error) {
	if ws == "acme" && token == "session-token" {
		return gateway.Agent{ID: "sam", Name: "Sam", Credential: "s_1"}, nil
	}
	return gateway.Agent{}, gateway.ErrAuth
}

type fakeKeys struct{}

func (fakeKeys) Key(_ context.Context, ws, raw string) (Key, error) {
	if ws == "acme" && raw == "pk_good" {
		return Key{ID: "k_1", Name: "Order bot"}, nil
	}
	if raw == "pk_busy" {
		return Key{}, context.DeadlineExceeded
	}
	return Key{}, gateway.ErrAuth
}

type noRelay struct{}

func (noRelay) ProxyAPI(http.ResponseWriter, *http.Request, string) bool { return false }

// fakeStore holds conversations and events; it pages the conversations in
// the order it holds them.
type fakeStore struct {
	convs  []store.Conversation
	events []store.Event
}

func (s *fakeStore) Conversation(ws, id string) (store.Conversation, error) {
	for _, c := range s.convs {
		if c.ID == id && ws == "acme" {
			return c, nil
		}
	}
	return store.Conversation{}, store.ErrNotFound
}

func (s *fakeStore) ConversationsPageFunc(ws, owner string, after store.Cursor, limit int, keep func(store.Conversation) bool) ([]store.Conversation, store.Cursor, error) {
	var out []store.Conversation
	for _, c := range s.convs {
		if (owner == "" || c.Owner == owner) && (keep == nil || keep(c)) {
			out = append(out, c)
		}
	}
	return out, store.Cursor{}, nil
}

func (s *fakeStore) Events(ws, conv string, after uint64, limit int) ([]store.Event, bool, error) {
	var out []store.Event
	for _, e := range s.events {
		if e.Seq > after {
			if len(out) == limit {
				return out, true, nil
			}
			out = append(out, e)
		}
	}
	return out, false, nil
}

func (s *fakeStore) Replies(string) ([]store.Reply, error) { return nil, nil }
func (s *fakeStore) PutReply(context.Context, string, store.Reply, int) error {
	return nil
}
func (s *fakeStore) DeleteReply(context.Context, string, string, int64) (store.Reply, error) {
	return store.Reply{}, store.ErrNotFound
}

type fakeCluster struct{ assigned map[string]string }

func (fakeCluster) Erased(string, string) (uint64, bool, error) { return 0, false, nil }
func (fakeCluster) DeletionRequests(string) ([]cluster.DeletionRequest, error) {
	return nil, nil
}
func (fakeCluster) Apply(context.Context, cluster.Command) (cluster.Result, error) {
	return cluster.Result{}, nil
}
func (c fakeCluster) Assignment(ws, conv string) (cluster.Assignment, error) {
	return cluster.Assignment{Workspace: ws, Conversation: conv, Operator: c.assigned[conv]}, nil
}

// fakePoster records the posts and answers with err, else a stored message.
type fakePoster struct {
	posts []gateway.Post
	err   error
}

func (p *fakePoster) Post(_ context.Context, in gateway.Post) (gateway.Posted, error) {
	p.posts = append(p.posts, in)
	if p.err != nil {
		return gateway.Posted{}, p.err
	}
	return gateway.Posted{Seq: 7, Message: wire.Message{ID: in.ID, Author: in.Participant, Role: in.Role, Name: in.Name, Body: in.Body}}, nil
}

const (
	convA = "c_aaaaaaaaaaaaaaaaaaaaaaaa"
	convB = "c_bbbbbbbbbbbbbbbbbbbbbbbb"
	visA  = "v:0123456789abcdef0123456789abcdef"
)

type testAPI struct {
	srv    *httptest.Server
	poster *fakePoster
}

func newTestAPI(t *testing.T, rate float64, burst int) *testAPI {
	t.Helper()
	msg := func(id, body string, ms int64) crdt.Message {
		return crdt.NewMessage(id, visA, ident.Visitor, "Ada", body, crdt.Timestamp{Wall: ms, Node: "n1"})
	}
	edited := msg("m-visitor-1", "hello!", 1)
	edited.BodyTS = crdt.Timestamp{Wall: 5, Node: "n1"}
	// convA is resolved and tagged vip.
	var inboxA crdt.Inbox
	for _, op := range []struct{ kind, body string }{{crdt.KindStatus, `{"status":"resolved"}`}, {crdt.KindTag, `{"tag":"vip","on":true}`}} {
		m := crdt.NewMessage("i-"+op.kind, "a:sam", ident.Agent, "", op.body, crdt.Timestamp{Wall: 10, Node: "n1"})
		m.Internal, m.Kind = true, op.kind
		inboxA.Fold(m)
	}
	st := &fakeStore{
		convs: []store.Conversation{
			{Workspace: "acme", ID: convB, Owner: "v:ffffffffffffffffffffffffffffffff", Created: 1, Updated: 2_000_000},
			{Workspace: "acme", ID: convA, Owner: visA, Created: 1, Updated: 1_000_000, Inbox: &inboxA},
		},
		events: []store.Event{
			{Kind: store.EventMessage, Seq: 1, Stamp: store.Stamp{Origin: "n1", OSeq: 1}, Message: edited},
			{Kind: store.EventMessage, Seq: 2, Stamp: store.Stamp{Origin: "n1", OSeq: 2}, Message: msg("m-visitor-2", "there?", 2)},
			{Kind: store.EventMessage, Seq: 3, Stamp: store.Stamp{Origin: "n1", OSeq: 3}, Message: edited},
			{Kind: store.EventMessage, Seq: 4, Stamp: store.Stamp{Origin: "n2", OSeq: 1}, Message: msg("m-visitor-3", "hm", 3)},
		},
	}
	p := &fakePoster{}
	api := New(Config{Auth: fakeAuth{}, Keys: fakeKeys{}, Relay: noRelay{}, Store: st, Poster: p,
		Cluster: fakeCluster{assigned: map[string]string{convA: "sam"}}, Rate: rate, Burst: burst,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	mux := httpapi.NewRoutes()
	api.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &testAPI{srv: srv, poster: p}
}

type answer struct {
	status     int
	retryAfter string
	body       map[string]any
}

func (a *testAPI) do(t *testing.T, method, path, token string, body any) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.srv.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return answer{resp.StatusCode, resp.Header.Get("Retry-After"), m}
}

func TestConversationsAPICredentials(t *testing.T) {
	a := newTestAPI(t, 1000, 1000)
	for _, c := range []struct {
		what, method, path, token string
		status                    int
		code                      string
	}{
		{"an API key lists", "GET", "/v1/workspaces/acme/conversations", "pk_good", 200, ""},
		{"a session lists", "GET", "/v1/workspaces/acme/conversations", "session-token", 200, ""},
		{"a key of another workspace", "GET", "/v1/workspaces/other/conversations", "pk_good", 401, "auth_failed"},
		{"an unknown key", "GET", "/v1/workspaces/acme/conversations", "pk_bad", 401, "auth_failed"},
		{"no token", "GET", "/v1/workspaces/acme/conversations", "", 401, "unauthenticated"},
		{"keys cannot tell now", "GET", "/v1/workspaces/acme/conversations", "pk_busy", 503, "unavailable"},
		// The agents' other routes stay the operators'.
		{"an API key on saved replies", "GET", "/v1/workspaces/acme/replies", "pk_good", 401, "auth_failed"},
		{"an API key erasing", "DELETE", "/v1/workspaces/acme/conversations/" + convA, "pk_good", 401, "auth_failed"},
	} {
		ans := a.do(t, c.method, c.path, c.token, nil)
		if ans.status != c.status || (c.code != "" && ans.body["code"] != c.code) {
			t.Errorf("%s: %d %v, want %d %s", c.what, ans.status, ans.body, c.status, c.code)
		}
	}
}

func TestConversationsAPIListFilters(t *testing.T) {
	a := newTestAPI(t, 1000, 1000)
	ids := func(path string) []string {
		t.Helper()
		ans := a.do(t, "GET", path, "pk_good", nil)
		if ans.status != 200 {
			t.Fatalf("%s: %d %v", path, ans.status, ans.body)
		}
		var out []string
		for _, it := range ans.body["items"].([]any) {
			out = append(out, it.(map[string]any)["id"].(string))
		}
		return out
	}
	base := "/v1/workspaces/acme/conversations"
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"", []string{convB, convA}},
		{"?visitor=" + visA, []string{convA}},
		{"?assignee=sam", []string{convA}},
		{"?assignee=-", []string{convB}},
		{"?assignee=kim", nil},
		{"?updated_since=" + time.UnixMilli(1_500_000).UTC().Format(time.RFC3339), []string{convB}},
		{"?updated_since=" + time.UnixMilli(1_000_000).UTC().Format(time.RFC3339) + "&assignee=sam", []string{convA}},
		{"?status=resolved", []string{convA}},
		{"?status=open", []string{convB}},
		{"?status=snoozed", nil},
		{"?tag=vip", []string{convA}},
		{"?tag=vip&status=open", nil},
	} {
		got := ids(base + c.query)
		if len(got) != len(c.want) || (len(got) > 0 && got[0] != c.want[0]) {
			t.Errorf("%q: %v, want %v", c.query, got, c.want)
		}
	}
	if ans := a.do(t, "GET", base+"/"+convA, "pk_good", nil); ans.status != 200 || ans.body["assignee"] != "sam" ||
		ans.body["status"] != "resolved" || fmt.Sprint(ans.body["tags"]) != "[vip]" {
		t.Errorf("a conversation: %d %v", ans.status, ans.body)
	}
	for _, q := range []string{"?status=closed", "?tag=Not%20a%20tag", "?visitor=nobody", "?assignee=Sam", "?updated_since=yesterday", "?limit=0", "?limit=201", "?cursor=x", "?assignee=sam&assignee=kim"} {
		if ans := a.do(t, "GET", base+q, "pk_good", nil); ans.status != 400 || ans.body["code"] != "bad_request" {
			t.Errorf("%q: %d %v, want 400 bad_request", q, ans.status, ans.body)
		}
	}
}

func TestConversationsAPIMessagesPage(t *testing.T) {
	a := newTestAPI(t, 1000, 1000)
	path := "/v1/workspaces/acme/conversations/" + convA + "/messages"
	page := func(q string) ([]string, string) {
		t.Helper()
		ans := a.do(t, "GET", path+q, "pk_good", nil)
		if ans.status != 200 {
			t.Fatalf("%s: %d %v", q, ans.status, ans.body)
		}
		var ids []string
		for _, it := range ans.body["items"].([]any) {
			ids = append(ids, it.(map[string]any)["message"].(map[string]any)["id"].(string))
		}
		next, _ := ans.body["next"].(string)
		return ids, next
	}
	// m-visitor-1 has two events (seqs 1 and 3): once a page, at its last.
	if ids, next := page(""); len(ids) != 3 || ids[0] != "m-visitor-2" || ids[1] != "m-visitor-1" || ids[2] != "m-visitor-3" || next != "" {
		t.Fatalf("one page: %v next %q", ids, next)
	}
	ids, next := page("?limit=2")
	if len(ids) != 2 || next != "2" {
		t.Fatalf("first page of 2: %v next %q", ids, next)
	}
	if ids, next = page("?limit=2&cursor=" + next); len(ids) != 2 || ids[0] != "m-visitor-1" || next != "" {
		t.Fatalf("second page: %v next %q", ids, next)
	}
	for _, q := range []string{"?cursor=-1", "?limit=500", "?after=3"} {
		if ans := a.do(t, "GET", path+q, "pk_good", nil); ans.status != 400 {
			t.Errorf("%q: %d, want 400", q, ans.status)
		}
	}
	if ans := a.do(t, "GET", "/v1/workspaces/acme/conversations/c_cccccccccccccccccccccccc/messages", "pk_good", nil); ans.status != 404 || ans.body["code"] != "not_found" {
		t.Errorf("an unknown conversation: %d %v", ans.status, ans.body)
	}
}

func TestConversationsAPIPostsAsAgentOrBot(t *testing.T) {
	a := newTestAPI(t, 1000, 1000)
	path := "/v1/workspaces/acme/conversations/" + convA + "/messages"
	post := func(token string, body map[string]any) answer {
		t.Helper()
		return a.do(t, "POST", path, token, body)
	}
	if ans := post("pk_good", map[string]any{"id": "m-bot-0001", "body": "hi"}); ans.status != 200 || ans.body["seq"] != 7.0 {
		t.Fatalf("a key's post: %d %v", ans.status, ans.body)
	}
	if ans := post("pk_good", map[string]any{"id": "m-bot-0002", "body": "hi", "bot": "Parcel bot"}); ans.status != 200 {
		t.Fatalf("a named bot's post: %d %v", ans.status, ans.body)
	}
	if ans := post("session-token", map[string]any{"id": "m-agent-001", "body": "hi"}); ans.status != 200 {
		t.Fatalf("a session's post: %d %v", ans.status, ans.body)
	}
	want := []gateway.Post{
		{Kind: wire.TypeSend, Workspace: "acme", Conversation: convA, ID: "m-bot-0001", Body: "hi", Participant: "b:k_1", Role: ident.Bot, Name: "Order bot"},
		{Kind: wire.TypeSend, Workspace: "acme", Conversation: convA, ID: "m-bot-0002", Body: "hi", Participant: "b:k_1", Role: ident.Bot, Name: "Parcel bot"},
		{Kind: wire.TypeSend, Workspace: "acme", Conversation: convA, ID: "m-agent-001", Body: "hi", Participant: "a:sam", Role: ident.Agent, Name: "Sam"},
	}
	if len(a.poster.posts) != len(want) {
		t.Fatalf("posts %+v", a.poster.posts)
	}
	for i := range want {
		if a.poster.posts[i] != want[i] {
			t.Errorf("post %d: %+v, want %+v", i, a.poster.posts[i], want[i])
		}
	}
	a.poster.posts = nil
	for _, c := range []struct {
		what, token string
		body        map[string]any
		status      int
		code        string
	}{
		{"a session naming a bot", "session-token", map[string]any{"id": "m-agent-002", "body": "hi", "bot": "Me"}, 403, "forbidden"},
		{"a bot name with a newline", "pk_good", map[string]any{"id": "m-bot-0003", "body": "hi", "bot": "a\nb"}, 400, "bad_request"},
		{"a bot name with a leading space", "pk_good", map[string]any{"id": "m-bot-0003", "body": "hi", "bot": " Bot"}, 400, "bad_request"},
		{"an empty bot name", "pk_good", map[string]any{"id": "m-bot-0003", "body": "hi", "bot": ""}, 400, "bad_request"},
		{"no body", "pk_good", map[string]any{"id": "m-bot-0003"}, 400, "bad_request"},
		{"an unknown field", "pk_good", map[string]any{"id": "m-bot-0003", "body": "hi", "author": "a:sam"}, 400, "bad_request"},
	} {
		if ans := post(c.token, c.body); ans.status != c.status || ans.body["code"] != c.code {
			t.Errorf("%s: %d %v, want %d %s", c.what, ans.status, ans.body, c.status, c.code)
		}
	}
	if len(a.poster.posts) != 0 {
		t.Fatalf("refused posts reached the gateway: %+v", a.poster.posts)
	}
	// Edits and deletes are the caller's, by the path's message.
	a.do(t, "PATCH", path+"/m-bot-0001", "pk_good", map[string]any{"body": "hello"})
	a.do(t, "DELETE", path+"/m-bot-0001", "pk_good", nil)
	if len(a.poster.posts) != 2 || a.poster.posts[0].Kind != wire.TypeEdit || a.poster.posts[0].Body != "hello" || a.poster.posts[0].Participant != "b:k_1" ||
		a.poster.posts[1].Kind != wire.TypeDelete || a.poster.posts[1].ID != "m-bot-0001" {
		t.Fatalf("edit and delete: %+v", a.poster.posts)
	}
}

func TestConversationsAPIPostErrors(t *testing.T) {
	a := newTestAPI(t, 1000, 1000)
	path := "/v1/workspaces/acme/conversations/" + convA + "/messages"
	for _, c := range []struct {
		err        *gateway.PostError
		status     int
		retryAfter string
	}{
		{&gateway.PostError{Code: wire.CodeBadRequest, Message: "id"}, 400, ""},
		{&gateway.PostError{Code: wire.CodeForbidden, Message: "not yours"}, 403, ""},
		{&gateway.PostError{Code: wire.CodeNotFound, Message: "no such message"}, 404, ""},
		{&gateway.PostError{Code: wire.CodeOverLimit, Message: "plan"}, 403, ""},
		{&gateway.PostError{Code: wire.CodeRateLimited, Message: "workspace", Retry: 1500 * time.Millisecond}, 429, "2"},
		{&gateway.PostError{Code: wire.CodeOverloaded, Message: "behind", Retry: 120 * time.Millisecond}, 503, "1"},
		{&gateway.PostError{Code: wire.CodeUnavailable, Message: "not confirmed"}, 503, ""},
	} {
		a.poster.err = c.err
		ans := a.do(t, "POST", path, "pk_good", map[string]any{"id": "m-bot-0001", "body": "hi"})
		if ans.status != c.status || ans.body["code"] != c.err.Code || ans.retryAfter != c.retryAfter {
			t.Errorf("%s: %d %v Retry-After %q, want %d %q", c.err.Code, ans.status, ans.body, ans.retryAfter, c.status, c.retryAfter)
		}
	}
}

func TestConversationsAPIRateLimitsEachCredential(t *testing.T) {
	a := newTestAPI(t, 0.5, 2)
	path := "/v1/workspaces/acme/conversations"
	for i := range 2 {
		if ans := a.do(t, "GET", path, "pk_good", nil); ans.status != 200 {
			t.Fatalf("request %d: %d", i, ans.status)
		}
	}
	ans := a.do(t, "GET", path, "pk_good", nil)
	if ans.status != 429 || ans.body["code"] != "rate_limited" || ans.retryAfter != "2" {
		t.Fatalf("past the burst: %d %v Retry-After %q", ans.status, ans.body, ans.retryAfter)
	}
	// Another credential has its own bucket.
	if ans := a.do(t, "GET", path, "session-token", nil); ans.status != 200 {
		t.Fatalf("a session after the key was limited: %d %v", ans.status, ans.body)
	}
}
