package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	protoclient "parley/gateway/client"

	"parley/crdt"
	"parley/gateway/wire"
	"parley/internal/eventually"
	"parley/store"

	"github.com/coder/websocket"
	"golang.org/x/sync/errgroup"
)

// testAuth is an Authenticator with fixed workspaces "ws1" and "ws2".
type testAuth struct{}

var (
	testIdentitySecret = []byte("identity-secret")
	testVisitorKey     = []byte("visitor-key")
)

func (testAuth) Agent(_ context.Context, ws, token string) (Agent, error) {
	if (ws == "ws1" || ws == "ws2") && token == "agent-token-"+ws {
		return Agent{ID: "sam", Name: "Sam", Credential: "session-" + ws}, nil
	}
	if ws == "ws1" && token == "agent-token-ws1-ana" {
		return Agent{ID: "ana", Name: "Ana", Credential: "session-ana"}, nil
	}
	return Agent{}, ErrAuth
}

func (testAuth) Secrets(_ context.Context, ws string) (Secrets, error) {
	if ws != "ws1" && ws != "ws2" {
		return Secrets{}, ErrAuth
	}
	return Secrets{Identity: testIdentitySecret, Visitor: testVisitorKey}, nil
}

type env struct {
	st  *store.Store
	gw  *Server
	url string
}

func newEnv(t testing.TB, mod func(*Config)) *env {
	return newEnvWith(t, nil, mod)
}

func newEnvWith(t testing.TB, obs store.Observer, mod func(*Config)) *env {
	t.Helper()
	e := &env{}
	st, err := store.Open(store.Config{Path: filepath.Join(t.TempDir(), "p.db"), Observer: obs, OnCommit: func(evs []store.Event) { e.gw.Publish(evs) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, ws := range []string{"ws1", "ws2"} {
		if err := st.PutWorkspace(context.Background(), store.Workspace{ID: ws}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{Store: st, Auth: testAuth{}, Clock: crdt.NewClock("t1", nil), Node: "t1"}
	if mod != nil {
		mod(&cfg)
	}
	e.st, e.gw = st, New(cfg)
	srv := httptest.NewServer(e.gw)
	ctx, cancel := context.WithCancel(context.Background())
	go e.gw.Run(ctx)
	t.Cleanup(func() {
		cancel()
		sctx, c2 := context.WithTimeout(context.Background(), 5*time.Second)
		defer c2()
		e.gw.Shutdown(sctx)
		srv.Close()
		st.Close()
	})
	e.url = "ws" + strings.TrimPrefix(srv.URL, "http")
	return e
}

// client is a test's connection of parley/gateway/client, over WebSocket
// (env.dial) or WebTransport (wtEnv.dialWT): frames as maps, failures
// fatal.
type client struct {
	t    testing.TB
	c    *protoclient.Conn
	seen []map[string]any
	n    int
}

// testQueue is how many frames a test's connection holds unread.
const testQueue = 4096

func (e *env) dial(t testing.TB) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := protoclient.DialWS(ctx, e.url, protoclient.Options{Queue: testQueue})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseNow)
	return &client{t: t, c: c}
}

// sendRaw writes b as it is: over WebSocket one message of type typ, over
// WebTransport bytes on the stream.
func (cl *client) sendRaw(typ websocket.MessageType, b []byte) {
	cl.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	write := cl.c.WriteRaw
	if typ == websocket.MessageBinary {
		write = cl.c.WriteBinary
	}
	if err := write(ctx, b); err != nil {
		cl.t.Fatalf("write: %v", err)
	}
}

func (cl *client) send(v map[string]any) {
	cl.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.c.Send(ctx, v); err != nil {
		cl.t.Fatalf("write: %v", err)
	}
}

// next reads the next frame, or returns nil and the error.
func (cl *client) next(d time.Duration) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	f, err := cl.c.Next(ctx)
	if err != nil {
		return nil, err
	}
	m, err := f.Map()
	if err != nil {
		cl.t.Fatalf("server sent invalid JSON %q", f.Raw)
	}
	cl.seen = append(cl.seen, m)
	return m, nil
}

// expect reads frames until one of type typ (and matching pred) arrives.
func (cl *client) expect(typ string, pred func(map[string]any) bool) map[string]any {
	cl.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		m, err := cl.next(time.Until(deadline))
		if err != nil {
			cl.t.Fatalf("waiting for %s: %v (seen %v)", typ, err, cl.seen)
		}
		if m["type"] == typ && (pred == nil || pred(m)) {
			return m
		}
	}
	cl.t.Fatalf("no %s frame within 5s; seen %v", typ, cl.seen)
	return nil
}

// none asserts that no frame of type typ arrives within d.
func (cl *client) none(typ string, d time.Duration) {
	cl.t.Helper()
	deadline := time.Now().Add(d)
	for {
		m, err := cl.next(time.Until(deadline))
		if err != nil {
			return
		}
		if m["type"] == typ {
			cl.t.Fatalf("unexpected %s frame: %v", typ, m)
		}
	}
}

func (cl *client) ref() string { cl.n++; return fmt.Sprintf("r%d", cl.n) }

func (e *env) visitor(t testing.TB, ws string, extra map[string]any) (*client, map[string]any) {
	t.Helper()
	cl := e.dial(t)
	h := map[string]any{"type": "hello", "v": 1, "workspace": ws, "role": "visitor", "name": "Ada"}
	for k, v := range extra {
		h[k] = v
	}
	cl.send(h)
	return cl, cl.expect("welcome", nil)
}

func (e *env) agent(t testing.TB, ws string) *client {
	t.Helper()
	cl := e.dial(t)
	cl.send(map[string]any{"type": "hello", "v": 1, "workspace": ws, "role": "agent", "token": "agent-token-" + ws})
	cl.expect("welcome", nil)
	return cl
}

func (cl *client) start() string {
	cl.t.Helper()
	r := cl.ref()
	cl.send(map[string]any{"type": "start", "ref": r})
	return cl.expect("started", refIs(r))["conversation"].(string)
}

func (cl *client) say(conv, id, body string) map[string]any {
	cl.t.Helper()
	r := cl.ref()
	cl.send(map[string]any{"type": "send", "ref": r, "conversation": conv, "id": id, "body": body})
	return cl.expect("ack", refIs(r))
}

func refIs(r string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["ref"] == r }
}

func msgIs(id string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["message"].(map[string]any)["id"] == id }
}

// closeCode reads to the end of the connection and returns the code the
// server closed it with.
func closeCode(t testing.TB, cl *client) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code, err := cl.c.CloseCode(ctx)
	if err != nil {
		t.Fatalf("close code: %v", err)
	}
	return code
}

func TestChatRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ag := e.agent(t, "ws1")
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()

	ack := v.say(conv, "m-00000001", "Hello, my order has not arrived")
	if ack["seq"].(float64) != 1 || ack["dup"] != false {
		t.Fatalf("ack: %v", ack)
	}
	d := ag.expect("deliver", msgIs("m-00000001"))
	if d["conversation"] != conv || d["message"].(map[string]any)["body"] != "Hello, my order has not arrived" {
		t.Fatalf("agent got %v", d)
	}
	// A retry is acknowledged with the original seq and stored once.
	again := v.say(conv, "m-00000001", "Hello, my order has not arrived")
	if again["seq"].(float64) != 1 || again["dup"] != true {
		t.Fatalf("retry ack: %v", again)
	}
	ag.say(conv, "m-00000002", "Sorry! Checking.")
	v.expect("deliver", msgIs("m-00000002"))
	ag.none("deliver", 200*time.Millisecond) // no second deliver of m-00000001

	// Edit and delete one's own message; not someone else's.
	r := v.ref()
	v.send(map[string]any{"type": "edit", "ref": r, "conversation": conv, "id": "m-00000002", "body": "hijack"})
	if got := v.expect("error", refIs(r)); got["code"] != wire.CodeForbidden {
		t.Fatalf("editing another's message: %v", got)
	}
	r = v.ref()
	v.send(map[string]any{"type": "edit", "ref": r, "conversation": conv, "id": "m-00000001", "body": "Hello, order #12 has not arrived"})
	v.expect("ack", refIs(r))
	ed := ag.expect("deliver", msgIs("m-00000001"))
	if ed["message"].(map[string]any)["edited"] == nil || ed["seq"].(float64) != 3 {
		t.Fatalf("edit delivered as %v", ed)
	}
	r = v.ref()
	v.send(map[string]any{"type": "delete", "ref": r, "conversation": conv, "id": "m-00000001"})
	v.expect("ack", refIs(r))
	del := ag.expect("deliver", msgIs("m-00000001"))
	if del["message"].(map[string]any)["deleted"] != true || del["message"].(map[string]any)["body"] != "" {
		t.Fatalf("delete delivered as %v", del)
	}

	// Read receipts reach the other side, and list shows unread counts.
	r = v.ref()
	v.send(map[string]any{"type": "read", "ref": r, "conversation": conv, "seq": 2})
	v.expect("ack", refIs(r))
	rd := ag.expect("read", nil)
	if rd["seq"].(float64) != 2 || rd["role"] != "visitor" {
		t.Fatalf("read: %v", rd)
	}
	r = ag.ref()
	ag.send(map[string]any{"type": "list", "ref": r})
	list := ag.expect("conversations", refIs(r))
	items := list["items"].([]any)
	if len(items) != 1 || items[0].(map[string]any)["head"].(float64) != 4 {
		t.Fatalf("list: %v", list)
	}
}

func TestResumeReplaysExactlyWhatWasMissed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	v, w := e.visitor(t, "ws1", nil)
	conv := v.start()
	for i := 1; i <= 5; i++ {
		v.say(conv, fmt.Sprintf("m-v%07d", i), fmt.Sprintf("v%d", i))
	}
	v.c.Close()

	ag := e.agent(t, "ws1")
	for i := 1; i <= 3; i++ {
		ag.say(conv, fmt.Sprintf("m-a%07d", i), fmt.Sprintf("a%d", i))
	}

	// The same visitor comes back on a new connection.
	v2, _ := e.visitor(t, "ws1", map[string]any{"visitor_id": w["visitor_id"], "visitor_sig": w["visitor_sig"]})
	r := v2.ref()
	v2.send(map[string]any{"type": "resume", "ref": r, "conversation": conv, "after": 5})
	res := v2.expect("resumed", refIs(r))
	if res["head"].(float64) != 8 {
		t.Fatalf("resumed: %v", res)
	}
	var seqs []float64
	for _, m := range v2.seen {
		if m["type"] == "deliver" {
			seqs = append(seqs, m["seq"].(float64))
		}
	}
	if fmt.Sprint(seqs) != "[6 7 8]" {
		t.Fatalf("replayed seqs %v, want [6 7 8]", seqs)
	}
	// Live events follow without a gap or a repeat.
	ag.say(conv, "m-a0000004", "a4")
	if d := v2.expect("deliver", nil); d["seq"].(float64) != 9 {
		t.Fatalf("live after resume: %v", d)
	}
}

// TestResumeUnderConcurrentWrites resumes while another participant writes
// as fast as it can: every seq must arrive exactly once, in order.
func TestResumeUnderConcurrentWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.FrameRate, c.FrameBurst = 10000, 10000 })
	v, w := e.visitor(t, "ws1", nil)
	conv := v.start()
	ag := e.agent(t, "ws1")
	const total = 300
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= total; i++ {
			b, _ := json.Marshal(map[string]any{"type": "send", "conversation": conv, "id": fmt.Sprintf("m-%07d", i), "body": "x"})
			if ag.c.Write(context.Background(), b) != nil {
				return
			}
		}
	}()
	time.Sleep(5 * time.Millisecond)
	// The visitor resumes on a second connection: it is sent nothing of the
	// conversation before its resume, then every event exactly once.
	v2, _ := e.visitor(t, "ws1", map[string]any{"visitor_id": w["visitor_id"], "visitor_sig": w["visitor_sig"]})
	v2.send(map[string]any{"type": "resume", "ref": "x", "conversation": conv, "after": 0})
	got := map[float64]int{}
	var order []float64
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < total && time.Now().Before(deadline) {
		m, err := v2.next(time.Until(deadline))
		if err != nil {
			break
		}
		if m["type"] == "deliver" {
			s := m["seq"].(float64)
			got[s]++
			order = append(order, s)
		}
	}
	<-done
	for s := 1; s <= total; s++ {
		if got[float64(s)] != 1 {
			t.Fatalf("seq %d delivered %d times", s, got[float64(s)])
		}
	}
	for i := 1; i < len(order); i++ {
		if order[i] <= order[i-1] {
			t.Fatalf("out of order at %d: %v", i, order[i-1:i+1])
		}
	}
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	_, w := e.visitor(t, "ws1", nil)
	if len(w["visitor_id"].(string)) != 32 || !strings.HasPrefix(w["participant"].(string), "v:") {
		t.Fatalf("welcome: %v", w)
	}
	// The same anonymous visitor is recognised on a later connection.
	_, w2 := e.visitor(t, "ws1", map[string]any{"visitor_id": w["visitor_id"], "visitor_sig": w["visitor_sig"]})
	if w2["participant"] != w["participant"] {
		t.Fatalf("visitor not recognised: %v vs %v", w2, w)
	}
	// Verified identity.
	_, wu := e.visitor(t, "ws1", map[string]any{"user_id": "42", "user_hash": UserHash(testIdentitySecret, "42")})
	if wu["participant"] != "u:42" {
		t.Fatalf("verified visitor: %v", wu)
	}
	bad := []struct {
		name  string
		hello map[string]any
	}{
		{"forged visitor sig", map[string]any{"visitor_id": w["visitor_id"], "visitor_sig": strings.Repeat("0", 64)}},
		{"other workspace's sig", map[string]any{"workspace": "ws2", "visitor_id": w["visitor_id"], "visitor_sig": w["visitor_sig"]}},
		{"wrong user hash", map[string]any{"user_id": "43", "user_hash": UserHash(testIdentitySecret, "42")}},
		{"hash with other secret", map[string]any{"user_id": "42", "user_hash": UserHash([]byte("nope"), "42")}},
		{"unknown workspace", map[string]any{"workspace": "nope"}},
		{"bad agent token", map[string]any{"role": "agent", "token": "agent-token-ws2"}},
	}
	for _, b := range bad {
		cl := e.dial(t)
		h := map[string]any{"type": "hello", "v": 1, "workspace": "ws1", "role": "visitor"}
		for k, v := range b.hello {
			h[k] = v
		}
		cl.send(h)
		got := cl.expect("error", nil)
		if got["code"] != wire.CodeAuthFailed {
			t.Fatalf("%s: %v", b.name, got)
		}
		if code := closeCode(t, cl); code != wire.CloseAuthFailed {
			t.Fatalf("%s: close code %d", b.name, code)
		}
	}
}

func TestBadInputIsRefusedAndNothingStored(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.FrameRate, c.FrameBurst = 5, 5 })
	other, _ := e.visitor(t, "ws2", nil)
	otherConv := other.start()
	mine, _ := e.visitor(t, "ws1", nil)
	myConv := mine.start()
	agent2 := e.agent(t, "ws1")
	_ = agent2

	cases := []struct {
		name  string
		typ   websocket.MessageType
		frame string
		code  string
		close int
	}{
		{"invalid JSON", websocket.MessageText, `{"type":"send",`, wire.CodeBadFrame, 0},
		{"invalid UTF-8", websocket.MessageText, "{\"type\":\"send\",\"body\":\"\xff\xfe\"}", wire.CodeBadFrame, 0},
		{"not an object", websocket.MessageText, `[1,2]`, wire.CodeBadFrame, 0},
		{"binary", websocket.MessageBinary, `{"type":"ping"}`, wire.CodeBadFrame, 0},
		{"unknown type", websocket.MessageText, `{"type":"launch"}`, wire.CodeUnknownType, 0},
		{"missing type", websocket.MessageText, `{}`, wire.CodeUnknownType, 0},
		{"empty body", websocket.MessageText, fmt.Sprintf(`{"type":"send","conversation":%q,"id":"m-00000009","body":""}`, myConv), wire.CodeBadRequest, 0},
		{"body too long", websocket.MessageText, fmt.Sprintf(`{"type":"send","conversation":%q,"id":"m-00000009","body":%q}`, myConv, strings.Repeat("é", 4001)), wire.CodeBadRequest, 0},
		{"control characters", websocket.MessageText, fmt.Sprintf(`{"type":"send","conversation":%q,"id":"m-00000009","body":"a\u0000b"}`, myConv), wire.CodeBadRequest, 0},
		{"right-to-left override", websocket.MessageText, fmt.Sprintf(`{"type":"send","conversation":%q,"id":"m-00000009","body":"invoice_\u202Efdp.exe"}`, myConv), wire.CodeBadRequest, 0},
		{"bidi isolate", websocket.MessageText, fmt.Sprintf(`{"type":"send","conversation":%q,"id":"m-00000009","body":"a\u2067b\u2069"}`, myConv), wire.CodeBadRequest, 0},
		{"bad message id", websocket.MessageText, fmt.Sprintf(`{"type":"send","conversation":%q,"id":"x","body":"hi"}`, myConv), wire.CodeBadRequest, 0},
		{"bad conversation id", websocket.MessageText, `{"type":"send","conversation":"../../etc","id":"m-00000009","body":"hi"}`, wire.CodeBadRequest, 0},
		{"other workspace's conversation", websocket.MessageText, fmt.Sprintf(`{"type":"send","conversation":%q,"id":"m-00000009","body":"hi"}`, otherConv), wire.CodeNotFound, 0},
		{"resume other workspace's conversation", websocket.MessageText, fmt.Sprintf(`{"type":"resume","conversation":%q}`, otherConv), wire.CodeNotFound, 0},
		{"second hello", websocket.MessageText, `{"type":"hello","v":1,"workspace":"ws1","role":"visitor"}`, wire.CodeBadRequest, 0},
		{"too large", websocket.MessageText, `{"type":"ping","pad":"` + strings.Repeat("a", wire.MaxFrameBytes) + `"}`, wire.CodeTooLarge, wire.CloseTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, _ := e.visitor(t, "ws1", nil)
			v.sendRaw(c.typ, []byte(c.frame))
			got := v.expect("error", nil)
			if got["code"] != c.code {
				t.Fatalf("code %v, want %s (%v)", got["code"], c.code, got)
			}
			if c.close != 0 {
				if code := closeCode(t, v); code != c.close {
					t.Fatalf("close code %d, want %d", code, c.close)
				}
				return
			}
			// The connection still serves.
			v.send(map[string]any{"type": "ping", "ref": "alive"})
			v.expect("pong", refIs("alive"))
		})
	}
	for _, conv := range []struct{ ws, id string }{{"ws1", myConv}, {"ws2", otherConv}} {
		evs, _, err := e.st.Events(conv.ws, conv.id, 0, 100)
		if err != nil || len(evs) != 0 {
			t.Fatalf("bad input was stored in %s: %v %v", conv.ws, evs, err)
		}
	}

	t.Run("frame before hello", func(t *testing.T) {
		cl := e.dial(t)
		cl.send(map[string]any{"type": "list"})
		if got := cl.expect("error", nil); got["code"] != wire.CodeUnauthenticated {
			t.Fatalf("got %v", got)
		}
		if code := closeCode(t, cl); code != wire.CloseUnauthentic {
			t.Fatalf("close %d", code)
		}
	})
	t.Run("unsupported version", func(t *testing.T) {
		cl := e.dial(t)
		cl.send(map[string]any{"type": "hello", "v": 2, "workspace": "ws1", "role": "visitor"})
		if got := cl.expect("error", nil); got["code"] != wire.CodeVersionUnsupported {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("flood", func(t *testing.T) {
		v, _ := e.visitor(t, "ws1", nil)
		for range 20 {
			// The node may cut the flood off before it ends.
			v.c.Write(context.Background(), []byte(`{"type":"ping"}`))
		}
		if got := v.expect("error", nil); got["code"] != wire.CodeRateLimited {
			t.Fatalf("got %v", got)
		}
		if code := closeCode(t, v); code != wire.CloseRateLimited {
			t.Fatalf("flood not cut off: close %d", code)
		}
	})
	// After all that, the node still serves a fresh client.
	v, _ := e.visitor(t, "ws1", nil)
	v.say(v.start(), "m-00000100", "still here")
}

func TestTypingAndPresence(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ag := e.agent(t, "ws1")
	v, w := e.visitor(t, "ws1", nil)
	on := ag.expect("presence", func(m map[string]any) bool { return m["participant"] == w["participant"] })
	if on["online"] != true || on["role"] != "visitor" {
		t.Fatalf("presence: %v", on)
	}
	conv := v.start()
	v.send(map[string]any{"type": "typing", "conversation": conv, "typing": true})
	ty := ag.expect("typing", nil)
	if ty["participant"] != w["participant"] || ty["typing"] != true {
		t.Fatalf("typing: %v", ty)
	}
	// A visitor sees agents come and go; the agent was online at its welcome.
	if w["type"] != "welcome" || !seenFrame(v, "presence", func(m map[string]any) bool { return m["role"] == "agent" && m["online"] == true }) {
		t.Fatalf("visitor did not get the agent's presence: %v", v.seen)
	}
	// Two connections of the same agent: one leaving keeps them online.
	ag2 := e.agent(t, "ws1")
	ag2.c.Close()
	v.none("presence", 300*time.Millisecond)
	ag.c.Close()
	v.expect("presence", func(m map[string]any) bool { return m["role"] == "agent" && m["online"] == false })
	// Another workspace's agent sees none of it.
	ag3 := e.agent(t, "ws2")
	v.send(map[string]any{"type": "typing", "conversation": conv, "typing": true})
	ag3.none("typing", 300*time.Millisecond)
}

func seenFrame(cl *client, typ string, pred func(map[string]any) bool) bool {
	for _, m := range cl.seen {
		if m["type"] == typ && pred(m) {
			return true
		}
	}
	return false
}

func TestSilentConnectionIsClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.Heartbeat = 200 * time.Millisecond })
	ag := e.agent(t, "ws1")
	v, w := e.visitor(t, "ws1", nil)
	_ = v
	// The visitor never pings: after three heartbeats its lease ends.
	// The agent keeps pinging.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				b, _ := json.Marshal(map[string]any{"type": "ping"})
				ag.c.Write(context.Background(), b)
			}
		}
	}()
	ag.expect("presence", func(m map[string]any) bool { return m["participant"] == w["participant"] && m["online"] == false })
}

func TestProtocolDocListsEveryCode(t *testing.T) {
	t.Parallel()
	doc := readDoc(t)
	for _, c := range wire.Codes {
		if !strings.Contains(doc, "`"+c+"`") {
			t.Errorf("docs/protocol.md does not document %s", c)
		}
	}
}

func TestClosedStoreMeansUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	e.st.Close()
	v.send(map[string]any{"type": "send", "ref": "x", "conversation": conv, "id": "m-00000001", "body": "hi"})
	got := v.expect("error", nil)
	if got["code"] != wire.CodeUnavailable {
		t.Fatalf("got %v", got)
	}
	if code := closeCode(t, v); code != wire.CloseRestart {
		t.Fatalf("close code %d, want %d", code, wire.CloseRestart)
	}
}

func TestConnectionsPerIPAreLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.MaxConnsPerIP = 2 })
	a := e.dial(t)
	e.dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var he *protoclient.HandshakeError
	if _, err := protoclient.DialWS(ctx, e.url, protoclient.Options{}); !errors.As(err, &he) || he.Status != 429 {
		t.Fatalf("third connection: err %v", err)
	}
	// A slot frees when a connection ends.
	a.c.Close()
	eventually.Holds(t, 5*time.Second, "a slot frees", func() error {
		c, err := protoclient.DialWS(ctx, e.url, protoclient.Options{})
		if err == nil {
			c.CloseNow()
		}
		return err
	})
}

// TestPagedResumeWithLiveEventsBetween: a replay cut short by MaxReplay must
// not let live events jump over the part the client has yet to read; resuming
// page by page from the highest seq seen gets every event once, in order.
func TestPagedResumeWithLiveEventsBetween(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.MaxReplay = 4 })
	v, w := e.visitor(t, "ws1", nil)
	conv := v.start()
	for i := 1; i <= 10; i++ {
		v.say(conv, fmt.Sprintf("m-%07d", i), "x")
	}
	ag := e.agent(t, "ws1")
	v2, _ := e.visitor(t, "ws1", map[string]any{"visitor_id": w["visitor_id"], "visitor_sig": w["visitor_sig"]})
	var seqs []float64
	last := 0.0
	for page := 0; page < 10; page++ {
		r := v2.ref()
		v2.send(map[string]any{"type": "resume", "ref": r, "conversation": conv, "after": last})
		if page == 0 {
			// Live events arrive while the client is still paging.
			ag.say(conv, "m-a0000001", "live 1")
			ag.say(conv, "m-a0000002", "live 2")
		}
		var res map[string]any
		for res == nil {
			m, err := v2.next(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case m["type"] == "deliver":
				s := m["seq"].(float64)
				seqs = append(seqs, s)
				last = max(last, s)
			case m["type"] == "resumed" && m["ref"] == r:
				res = m
			}
		}
		if res["more"] != true {
			break
		}
	}
	// Anything still in flight arrives live now.
	for len(seqs) < 12 {
		m, err := v2.next(5 * time.Second)
		if err != nil {
			t.Fatalf("after paging: %v; got %v", err, seqs)
		}
		if m["type"] == "deliver" {
			seqs = append(seqs, m["seq"].(float64))
		}
	}
	for i, s := range seqs {
		if s != float64(i+1) {
			t.Fatalf("seqs %v: a gap or a repeat at %d", seqs, i)
		}
	}
}

func TestSendClearsTypingOnlyWhenTyping(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ag := e.agent(t, "ws1")
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	v.say(conv, "m-00000001", "no typing before this")
	ag.expect("deliver", nil)
	ag.none("typing", 200*time.Millisecond)
	v.send(map[string]any{"type": "typing", "conversation": conv, "typing": true})
	ag.expect("typing", func(m map[string]any) bool { return m["typing"] == true })
	v.say(conv, "m-00000002", "typed this")
	ag.expect("typing", func(m map[string]any) bool { return m["typing"] == false })
}

// TestWorkspaceMessageRateIsLimited: one workspace flooding messages gets
// rate_limited and nothing of the refused messages is stored, while another
// workspace on the same node goes on unhindered. The start takes from the
// same budget as the messages.
func TestWorkspaceMessageRateIsLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.WorkspaceRate, c.WorkspaceBurst, c.AddressShare = 0.001, 4, 1 })
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	for i := 1; i <= 3; i++ {
		v.say(conv, fmt.Sprintf("m-%07d", i), "within the burst")
	}
	r := v.ref()
	v.send(map[string]any{"type": "send", "ref": r, "conversation": conv, "id": "m-0000004", "body": "over"})
	if got := v.expect("error", refIs(r)); got["code"] != wire.CodeRateLimited {
		t.Fatalf("fourth message: %v", got)
	}
	evs, _, _ := e.st.Events("ws1", conv, 0, 10)
	if len(evs) != 3 {
		t.Fatalf("%d events stored, want 3", len(evs))
	}
	other, _ := e.visitor(t, "ws2", nil)
	oc := other.start()
	for i := 1; i <= 3; i++ {
		other.say(oc, fmt.Sprintf("m-%07d", i), "another workspace")
	}
}

// planLimits is a Limits whose over-limit workspaces a test switches, and
// a Meter.
type planLimits struct {
	over   sync.Map
	mu     sync.Mutex
	counts map[string][2]int64
}

func (p *planLimits) Count(ws string, convs, msgs int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts[ws]
	p.counts[ws] = [2]int64{c[0] + convs, c[1] + msgs}
}

func (p *planLimits) Allow(ws string, _ time.Time) error {
	if reason, ok := p.over.Load(ws); ok {
		return fmt.Errorf("%w: %s", ErrOverLimit, reason)
	}
	return nil
}

func TestWorkspaceOverPlanIsRefusedOnTheWire(t *testing.T) {
	t.Parallel()
	limits := &planLimits{counts: map[string][2]int64{}}
	e := newEnv(t, func(c *Config) { c.Limits, c.Meter = limits, limits })
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	v.say(conv, "m-0000001", "within the plan")
	v.say(conv, "m-0000001", "within the plan") // a retry: billed once

	limits.over.Store("ws1", "messages: 5000 of 5000 in 2026-11 on plan free")
	r := v.ref()
	v.send(map[string]any{"type": "send", "ref": r, "conversation": conv, "id": "m-0000002", "body": "over"})
	got := v.expect("error", refIs(r))
	if got["code"] != wire.CodeOverLimit || !strings.Contains(got["message"].(string), "messages: 5000 of 5000") {
		t.Fatalf("send over the plan: %v", got)
	}
	r = v.ref()
	v.send(map[string]any{"type": "start", "ref": r})
	if got := v.expect("error", refIs(r)); got["code"] != wire.CodeOverLimit {
		t.Fatalf("start over the plan: %v", got)
	}
	// Reading and marking read still work; nothing over the plan was stored.
	r = v.ref()
	v.send(map[string]any{"type": "read", "ref": r, "conversation": conv, "seq": 1})
	v.expect("ack", refIs(r))
	evs, _, _ := e.st.Events("ws1", conv, 0, 10)
	if len(evs) != 1 {
		t.Fatalf("%d events stored, want 1", len(evs))
	}
	// Another workspace is not affected, and the first recovers when the
	// plan allows again.
	other, _ := e.visitor(t, "ws2", nil)
	other.say(other.start(), "m-0000001", "another workspace")
	limits.over.Delete("ws1")
	v.say(conv, "m-0000003", "within the plan again")
	limits.mu.Lock()
	defer limits.mu.Unlock()
	if got := limits.counts; got["ws1"] != [2]int64{1, 2} || got["ws2"] != [2]int64{1, 1} {
		t.Fatalf("metered %v, want ws1 1 conversation 2 messages, ws2 1 and 1", got)
	}
}

func TestExpelClosesConnectionsOfRevokedCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	a1 := e.agent(t, "ws1")
	a2 := e.agent(t, "ws2")
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	var asked []string
	n := e.gw.Expel(func(ws, cred string) bool {
		asked = append(asked, ws+"/"+cred)
		return cred == "session-ws1"
	})
	if n != 1 {
		t.Fatalf("expelled %d connections, want 1 (asked about %v)", n, asked)
	}
	if got := a1.expect("error", nil); got["code"] != wire.CodeAuthFailed {
		t.Fatalf("revoked agent got %v", got)
	}
	if code := closeCode(t, a1); code != wire.CloseAuthFailed {
		t.Fatalf("revoked agent closed with %d", code)
	}
	// The other workspace's agent and the visitor stay connected.
	v.say(conv, "m-0000001", "still here")
	r := a2.ref()
	a2.send(map[string]any{"type": "ping", "ref": r})
	a2.expect("pong", refIs(r))
}

func TestResumeByVector(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	for i := 1; i <= 3; i++ {
		v.say(conv, fmt.Sprintf("m-%07d", i), "hello")
	}
	ag := e.agent(t, "ws1")
	r := ag.ref()
	ag.send(map[string]any{"type": "resume", "ref": r, "conversation": conv, "since": "local.2"})
	d := ag.expect("deliver", nil)
	if msgID := d["message"].(map[string]any)["id"]; msgID != "m-0000003" || d["at"] != "local.3" {
		t.Fatalf("resume since local.2 delivered %v first", d)
	}
	ag.expect("resumed", refIs(r))
	ag.none("deliver", 100*time.Millisecond)
	for _, c := range []struct{ since, after any }{{"local.0", nil}, {"Local.1", nil}, {"local.1", 3}, {strings.Repeat("n.1,", 600), nil}} {
		r := ag.ref()
		f := map[string]any{"type": "resume", "ref": r, "conversation": conv, "since": c.since}
		if c.after != nil {
			f["after"] = c.after
		}
		ag.send(f)
		if got := ag.expect("error", refIs(r)); got["code"] != wire.CodeBadRequest {
			t.Errorf("since %v after %v: %v", c.since, c.after, got)
		}
	}
}

func TestSignalsOfAnotherNode(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var emitted []Signal
	e := newEnv(t, func(c *Config) {
		c.OnSignal = func(s Signal) { mu.Lock(); emitted = append(emitted, s); mu.Unlock() }
	})
	ag := e.agent(t, "ws1")
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	ag.expect("presence", func(m map[string]any) bool { return m["online"] == true && m["role"] == "visitor" })
	// This node's own leases and typing go out as signals.
	v.send(map[string]any{"type": "typing", "conversation": conv, "typing": true})
	ag.expect("typing", nil)
	mu.Lock()
	kinds := map[SignalKind]int{}
	for _, s := range emitted {
		kinds[s.Kind]++
		if s.Kind == SignalLease && !strings.HasPrefix(s.LeaseID, "t1/") {
			t.Errorf("local lease %q without the node's prefix", s.LeaseID)
		}
	}
	mu.Unlock()
	if kinds[SignalLease] < 2 || kinds[SignalTyping] != 1 {
		t.Fatalf("emitted %v", kinds)
	}

	// Another node's visitor comes online, types, and its node dies.
	ts := crdt.Timestamp{Wall: time.Now().UnixMilli(), Node: "n9"}
	exp := time.Now().Add(time.Minute).UnixMilli()
	e.gw.ApplySignal(Signal{Kind: SignalLease, Workspace: "ws1", Participant: "v:far", Role: "visitor", Name: "Far", LeaseID: "n9/1", TS: ts, Expires: exp})
	if p := ag.expect("presence", func(m map[string]any) bool { return m["participant"] == "v:far" }); p["online"] != true {
		t.Fatalf("remote visitor: %v", p)
	}
	e.gw.ApplySignal(Signal{Kind: SignalTyping, Workspace: "ws1", Conversation: conv, Participant: "v:far", Role: "visitor", Typing: true, TS: ts, Expires: exp})
	if ty := ag.expect("typing", func(m map[string]any) bool { return m["participant"] == "v:far" }); ty["typing"] != true {
		t.Fatalf("remote typing: %v", ty)
	}
	// A repeated signal changes nothing and announces nothing.
	e.gw.ApplySignal(Signal{Kind: SignalLease, Workspace: "ws1", Participant: "v:far", Role: "visitor", Name: "Far", LeaseID: "n9/1", TS: ts, Expires: exp})
	ag.none("presence", 100*time.Millisecond)
	// Malformed or own-node signals are dropped.
	e.gw.ApplySignal(Signal{Kind: SignalLease, Workspace: "ws1", Participant: "v:own", Role: "visitor", LeaseID: "t1/99", TS: ts, Expires: exp})
	e.gw.ApplySignal(Signal{Kind: SignalLease, Workspace: "ws1", Participant: "v:bad", Role: "admin", LeaseID: "n9/2", TS: ts, Expires: exp})
	ag.none("presence", 100*time.Millisecond)
	e.gw.DropNode("n9")
	if p := ag.expect("presence", func(m map[string]any) bool { return m["participant"] == "v:far" }); p["online"] != false {
		t.Fatalf("remote visitor after its node died: %v", p)
	}
	// A lease that runs out without an end is ended by the sweeper.
	e.gw.ApplySignal(Signal{Kind: SignalLease, Workspace: "ws1", Participant: "v:short", Role: "visitor", LeaseID: "n8/1", TS: ts, Expires: time.Now().Add(200 * time.Millisecond).UnixMilli()})
	ag.expect("presence", func(m map[string]any) bool { return m["participant"] == "v:short" && m["online"] == true })
	if p := ag.expect("presence", func(m map[string]any) bool { return m["participant"] == "v:short" }); p["online"] != false {
		t.Fatalf("expired remote lease: %v", p)
	}
}

// TestRateLimitedFramesNameTheirRef: a frame refused by the per-connection
// frame limit is answered with its own ref, so the client can tell which
// one to send again.
func TestRateLimitedFramesNameTheirRef(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.FrameRate, c.FrameBurst = 0.001, 3 })
	v, _ := e.visitor(t, "ws1", nil) // the hello takes one of the 3
	v.send(map[string]any{"type": "ping", "ref": "p-1"})
	v.send(map[string]any{"type": "ping", "ref": "p-2"})
	v.send(map[string]any{"type": "ping", "ref": "p-3"})
	v.expect("pong", refIs("p-1"))
	v.expect("pong", refIs("p-2"))
	if got := v.expect("error", nil); got["code"] != wire.CodeRateLimited || got["ref"] != "p-3" {
		t.Fatalf("third ping: %v, want rate_limited with ref p-3", got)
	}
}

// TestAgentResumesFiveHundredConversations: an agent that reconnects
// resumes every conversation it had loaded, 500 frames at once, under the
// default limits: each is answered, none is refused, the connection stays.
func TestAgentResumesFiveHundredConversations(t *testing.T) {
	t.Parallel()
	for _, queue := range []int{0, 8} { // the default, and one the resumes would overflow
		t.Run(fmt.Sprintf("queue %d", queue), func(t *testing.T) {
			t.Parallel()
			resumeMany(t, newEnv(t, func(c *Config) { c.SendQueue = queue }))
		})
	}
}

func resumeMany(t *testing.T, e *env) {
	const n = 500
	var g errgroup.Group
	convs := make([]string, n)
	for i := range n {
		convs[i] = fmt.Sprintf("c_%024x", i+1)
		g.Go(func() error {
			return e.st.CreateConversation(context.Background(), store.Conversation{Workspace: "ws1", ID: convs[i], Owner: "v:resume-test"})
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	ag := e.agent(t, "ws1")
	for i, conv := range convs {
		ag.send(map[string]any{"type": "resume", "ref": fmt.Sprintf("r-%d", i), "conversation": conv, "after": 0})
	}
	got := map[string]bool{}
	for len(got) < n {
		m, err := ag.next(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d of %d resumes answered: %v", len(got), n, err)
		}
		switch m["type"] {
		case "resumed":
			got[m["ref"].(string)] = true
		case "error":
			t.Fatalf("after %d of %d resumes answered: %v", len(got), n, m)
		}
	}
	ag.send(map[string]any{"type": "ping", "ref": "alive"})
	ag.expect("pong", refIs("alive"))
}

// TestReplayBringsEachMessageOnce: a message changed three times has three
// events, each of which reads as its current state; a replay writes it once,
// at its last event, naming the others in also, so that a client's vector
// built from the replay covers all three and a resume elsewhere by that
// vector brings nothing again.
func TestReplayBringsEachMessageOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	v.say(conv, "m-0000001", "helo")
	v.say(conv, "m-0000002", "anyone?")
	for _, body := range []string{"hello", "hello!"} {
		r := v.ref()
		v.send(map[string]any{"type": "edit", "ref": r, "conversation": conv, "id": "m-0000001", "body": body})
		v.expect("ack", refIs(r))
	}
	ag := e.agent(t, "ws1")
	r := ag.ref()
	ag.send(map[string]any{"type": "resume", "ref": r, "conversation": conv, "after": 0})
	res := ag.expect("resumed", refIs(r))
	if res["head"].(float64) != 4 {
		t.Fatalf("resumed: %v", res)
	}
	var got []string
	vec := map[string]bool{}
	for _, f := range ag.seen {
		if f["type"] != "deliver" {
			continue
		}
		m := f["message"].(map[string]any)
		got = append(got, fmt.Sprintf("%v@%v:%v", m["id"], f["seq"], m["body"]))
		vec[f["at"].(string)] = true
		if also, ok := f["also"].([]any); ok {
			for _, a := range also {
				vec[a.(string)] = true
			}
		}
	}
	if want := "[m-0000002@2:anyone? m-0000001@4:hello!]"; fmt.Sprint(got) != want {
		t.Fatalf("replay delivered %v, want %s", got, want)
	}
	if len(vec) != 4 {
		t.Fatalf("the replay's stamps cover %v, want all four events", vec)
	}
	// Live events go on after the replay, and none of the quiet ones.
	v.say(conv, "m-0000003", "still there?")
	if d := ag.expect("deliver", nil); d["seq"].(float64) != 5 {
		t.Fatalf("after the replay: %v", d)
	}
	r = ag.ref()
	ag.send(map[string]any{"type": "resume", "ref": r, "conversation": conv, "since": "local.5"})
	ag.expect("resumed", refIs(r))
	ag.none("deliver", 100*time.Millisecond)
}

// TestAgentAway: an agent who says they are away stays online, marked away,
// for visitors and agents alike, at once (not at the next heartbeat); a
// second connection of the same agent that is not away makes them available
// again; back, they are announced back; a visitor cannot say it.
func TestAgentAway(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ag := e.agent(t, "ws1")
	v, _ := e.visitor(t, "ws1", nil)
	isAgent := func(away bool) func(m map[string]any) bool {
		return func(m map[string]any) bool {
			return m["role"] == "agent" && m["online"] == true && (m["away"] == true) == away
		}
	}
	ag.send(map[string]any{"type": "status", "ref": "s1", "away": true})
	ag.expect("ack", func(m map[string]any) bool { return m["ref"] == "s1" })
	v.expect("presence", isAgent(true))
	// A visitor connecting now learns it from its welcome's presence.
	v2, _ := e.visitor(t, "ws1", nil)
	if !seenFrame(v2, "presence", isAgent(true)) {
		v2.expect("presence", isAgent(true))
	}
	// Another connection of the same agent, not away: available again.
	ag2 := e.agent(t, "ws1")
	v.expect("presence", isAgent(false))
	ag2.c.Close()
	v.expect("presence", isAgent(true))
	ag.send(map[string]any{"type": "status", "ref": "s2", "away": false})
	v.expect("presence", isAgent(false))
	// Another node's agent, away: announced away; a later renewal without
	// it, back.
	ts := crdt.Timestamp{Wall: time.Now().UnixMilli(), Node: "n9"}
	exp := time.Now().Add(time.Minute).UnixMilli()
	far := func(m map[string]any) bool { return m["participant"] == "a:far" }
	e.gw.ApplySignal(Signal{Kind: SignalLease, Workspace: "ws1", Participant: "a:far", Role: "agent", Name: "Far", LeaseID: "n9/1", TS: ts, Expires: exp, Away: true})
	if p := v.expect("presence", far); p["online"] != true || p["away"] != true {
		t.Fatalf("a remote agent away: %v", p)
	}
	ts.Wall++
	e.gw.ApplySignal(Signal{Kind: SignalLease, Workspace: "ws1", Participant: "a:far", Role: "agent", Name: "Far", LeaseID: "n9/1", TS: ts, Expires: exp})
	if p := v.expect("presence", far); p["online"] != true || p["away"] == true {
		t.Fatalf("a remote agent back: %v", p)
	}
	// Only agents; and away is required.
	v.send(map[string]any{"type": "status", "ref": "s3", "away": true})
	if got := v.expect("error", nil); got["code"] != wire.CodeForbidden {
		t.Fatalf("a visitor's status: %v", got)
	}
	ag.send(map[string]any{"type": "status", "ref": "s4"})
	if got := ag.expect("error", nil); got["code"] != wire.CodeBadRequest {
		t.Fatalf("a status without away: %v", got)
	}
}

// TestAgentAwayFromHello: an agent whose hello says away is announced away
// from the first presence frame on, never available on the way; a
// visitor's hello may not say it.
func TestAgentAwayFromHello(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	v, _ := e.visitor(t, "ws1", nil)
	cl := e.dial(t)
	cl.send(map[string]any{"type": "hello", "v": 1, "workspace": "ws1", "role": "agent", "token": "agent-token-ws1", "away": true})
	cl.expect("welcome", nil)
	first := v.expect("presence", func(m map[string]any) bool { return m["role"] == "agent" })
	if first["online"] != true || first["away"] != true {
		t.Fatalf("the agent's first presence: %v, want online and away", first)
	}
	v2 := e.dial(t)
	v2.send(map[string]any{"type": "hello", "v": 1, "workspace": "ws1", "role": "visitor", "away": true})
	if got := v2.expect("error", nil); got["code"] != wire.CodeBadRequest {
		t.Fatalf("a visitor's hello with away: %v", got)
	}
}
