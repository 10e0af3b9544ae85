package gateway

import (
	"strings"
	"sync"
	"testing"
	"time"

	"parley/crdt"
	"parley/gateway/wire"
)

func TestViewFrameValidation(t *testing.T) {
	t.Parallel()
	conv := "c_0123456789abcdef01234567"
	cases := []struct {
		frame string
		code  string
	}{
		{`{"type":"view","conversation":"` + conv + `","viewing":true}`, ""},
		{`{"type":"view","ref":"r1","conversation":"` + conv + `","viewing":false}`, ""},
		{`{"type":"view","conversation":"` + conv + `"}`, wire.CodeBadRequest},
		{`{"type":"view","conversation":"` + conv + `","viewing":null}`, wire.CodeBadRequest},
		{`{"type":"view","conversation":"` + conv + `","viewing":"yes"}`, wire.CodeBadFrame},
		{`{"type":"view","conversation":"` + conv + `","viewing":1}`, wire.CodeBadFrame},
		{`{"type":"view","viewing":true}`, wire.CodeBadRequest},
		{`{"type":"view","conversation":"c_0123","viewing":true}`, wire.CodeBadRequest},
		{`{"type":"view","conversation":"C_0123456789ABCDEF01234567","viewing":true}`, wire.CodeBadRequest},
		{`{"type":"viewing","conversation":"` + conv + `","viewing":true}`, wire.CodeUnknownType},
	}
	for _, c := range cases {
		_, werr := decodeFrame([]byte(c.frame))
		got := ""
		if werr != nil {
			got = werr.Code
		}
		if got != c.code {
			t.Errorf("%s: code %q, want %q (%v)", c.frame, got, c.code, werr)
		}
	}
}

// TestViewRefusals: a visitor may not say what it views, nor may an agent
// view a conversation that is not in its workspace; neither changes what
// anybody sees.
func TestViewRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ana := e.agentAs(t, "ws1", "agent-token-ws1-ana")
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	r := v.ref()
	v.send(map[string]any{"type": "view", "ref": r, "conversation": conv, "viewing": true})
	if got := v.expect("error", refIs(r)); got["code"] != wire.CodeForbidden {
		t.Fatalf("visitor view: %v", got)
	}
	other := e.agent(t, "ws2")
	r = other.ref()
	other.send(map[string]any{"type": "view", "ref": r, "conversation": conv, "viewing": true})
	if got := other.expect("error", refIs(r)); got["code"] != wire.CodeNotFound {
		t.Fatalf("view of another workspace's conversation: %v", got)
	}
	r = other.ref()
	other.send(map[string]any{"type": "view", "ref": r, "conversation": "c_0123456789abcdef01234567", "viewing": true})
	if got := other.expect("error", refIs(r)); got["code"] != wire.CodeNotFound {
		t.Fatalf("view of an unknown conversation: %v", got)
	}
	ana.none("viewing", 200*time.Millisecond)
}

// TestViewersAreSeenByAgentsOnly: an agent opening a conversation is
// announced to the workspace's other agents (and to one that connects
// later), moves when it opens another, and leaves when it closes; visitors
// and other workspaces never hear of it.
func TestViewersAreSeenByAgentsOnly(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var emitted []Signal
	e := newEnv(t, func(c *Config) {
		c.OnSignal = func(s Signal) {
			if s.Kind == SignalView {
				mu.Lock()
				emitted = append(emitted, s)
				mu.Unlock()
			}
		}
	})
	sam := e.agent(t, "ws1")
	ana := e.agentAs(t, "ws1", "agent-token-ws1-ana")
	far := e.agent(t, "ws2")
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	conv2 := v.start()

	sam.send(map[string]any{"type": "view", "conversation": conv, "viewing": true})
	got := ana.expect("viewing", nil)
	if got["conversation"] != conv || got["participant"] != "a:sam" || got["name"] != "Sam" || got["viewing"] != true || got["role"] != "agent" {
		t.Fatalf("viewing: %v", got)
	}
	// A second connection of the same agent viewing the same conversation
	// changes nothing anyone is told.
	sam2 := e.agent(t, "ws1")
	sam2.send(map[string]any{"type": "view", "conversation": conv, "viewing": true})
	ana.none("viewing", 200*time.Millisecond)
	sam2.c.Close()
	ana.none("viewing", 200*time.Millisecond)

	// An agent that connects later is told at its welcome.
	late := e.agentAs(t, "ws1", "agent-token-ws1-ana")
	if got := late.expect("viewing", nil); got["conversation"] != conv || got["participant"] != "a:sam" || got["viewing"] != true {
		t.Fatalf("viewing after welcome: %v", got)
	}

	// Opening another conversation leaves the first.
	sam.send(map[string]any{"type": "view", "conversation": conv2, "viewing": true})
	left := ana.expect("viewing", func(m map[string]any) bool { return m["conversation"] == conv })
	entered := ana.expect("viewing", func(m map[string]any) bool { return m["conversation"] == conv2 })
	if left["viewing"] != false || entered["viewing"] != true {
		t.Fatalf("moving: %v then %v", left, entered)
	}
	// Leaving a conversation that is not the open one changes nothing; a
	// frame with a ref is acknowledged.
	sam.send(map[string]any{"type": "view", "ref": "lv", "conversation": conv, "viewing": false})
	if got := sam.expect("ack", refIs("lv")); got["conversation"] != conv {
		t.Fatalf("view ack: %v", got)
	}
	ana.none("viewing", 200*time.Millisecond)
	sam.send(map[string]any{"type": "view", "conversation": conv2, "viewing": false})
	if got := ana.expect("viewing", nil); got["conversation"] != conv2 || got["viewing"] != false {
		t.Fatalf("leaving: %v", got)
	}
	// Closing the connection leaves too.
	sam.send(map[string]any{"type": "view", "conversation": conv, "viewing": true})
	ana.expect("viewing", func(m map[string]any) bool { return m["conversation"] == conv && m["viewing"] == true })
	sam.c.Close()
	ana.expect("viewing", func(m map[string]any) bool { return m["conversation"] == conv && m["viewing"] == false })

	mu.Lock()
	n := len(emitted)
	for _, s := range emitted {
		if !strings.HasPrefix(s.LeaseID, "t1/") || s.Role != "agent" {
			t.Errorf("view signal %+v", s)
		}
	}
	mu.Unlock()
	if n < 5 {
		t.Errorf("%d view signals emitted, want each change", n)
	}

	// Another node's agent: seen, then gone with its node.
	ts := crdt.Timestamp{Wall: time.Now().UnixMilli(), Node: "n9"}
	exp := time.Now().Add(time.Minute).UnixMilli()
	e.gw.ApplySignal(Signal{Kind: SignalView, Workspace: "ws1", Conversation: conv, Participant: "a:kim", Role: "agent", Name: "Kim", LeaseID: "n9/1", TS: ts, Expires: exp})
	if got := ana.expect("viewing", nil); got["participant"] != "a:kim" || got["viewing"] != true || got["name"] != "Kim" {
		t.Fatalf("remote viewer: %v", got)
	}
	// Repeated, own-node, visitor and malformed signals change nothing.
	e.gw.ApplySignal(Signal{Kind: SignalView, Workspace: "ws1", Conversation: conv, Participant: "a:kim", Role: "agent", Name: "Kim", LeaseID: "n9/1", TS: ts, Expires: exp})
	e.gw.ApplySignal(Signal{Kind: SignalView, Workspace: "ws1", Conversation: conv, Participant: "a:own", Role: "agent", LeaseID: "t1/99", TS: ts, Expires: exp})
	e.gw.ApplySignal(Signal{Kind: SignalView, Workspace: "ws1", Conversation: conv, Participant: "v:x", Role: "visitor", LeaseID: "n9/2", TS: ts, Expires: exp})
	e.gw.ApplySignal(Signal{Kind: SignalView, Workspace: "ws1", Conversation: "nonsense", Participant: "a:y", Role: "agent", LeaseID: "n9/3", TS: ts, Expires: exp})
	ana.none("viewing", 200*time.Millisecond)
	e.gw.DropNode("n9")
	if got := ana.expect("viewing", nil); got["participant"] != "a:kim" || got["viewing"] != false {
		t.Fatalf("remote viewer after its node died: %v", got)
	}
	// A remote view that runs out without an end is ended by the sweeper.
	e.gw.ApplySignal(Signal{Kind: SignalView, Workspace: "ws1", Conversation: conv, Participant: "a:lee", Role: "agent", LeaseID: "n8/1", TS: ts, Expires: time.Now().Add(200 * time.Millisecond).UnixMilli()})
	ana.expect("viewing", func(m map[string]any) bool { return m["participant"] == "a:lee" && m["viewing"] == true })
	ana.expect("viewing", func(m map[string]any) bool { return m["participant"] == "a:lee" && m["viewing"] == false })

	// Through all of it, neither the visitor nor the other workspace's
	// agent got a single viewing frame.
	for name, cl := range map[string]*client{"visitor": v, "ws2 agent": far} {
		cl.none("viewing", 100*time.Millisecond)
		if seenFrame(cl, "viewing", func(map[string]any) bool { return true }) {
			t.Errorf("the %s saw who views: %v", name, cl.seen)
		}
	}
}

func (e *env) agentAs(t testing.TB, ws, token string) *client {
	t.Helper()
	cl := e.dial(t)
	cl.send(map[string]any{"type": "hello", "v": 1, "workspace": ws, "role": "agent", "token": token})
	cl.expect("welcome", nil)
	return cl
}
