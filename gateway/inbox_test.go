package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const noteCanary = "CANARY-7f3e-internal-note"

// leaked fails the test when any frame cl read carries the note's text or
// an internal message.
func leaked(t *testing.T, who string, cl *client) {
	t.Helper()
	for _, m := range cl.seen {
		b, _ := json.Marshal(m)
		if strings.Contains(string(b), noteCanary) || strings.Contains(string(b), `"internal"`) || strings.Contains(string(b), `"kind"`) {
			t.Fatalf("%s got an internal message: %s", who, b)
		}
	}
}

func (cl *client) ack(frame map[string]any) map[string]any {
	cl.t.Helper()
	r := cl.ref()
	frame["ref"] = r
	cl.send(frame)
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := cl.next(time.Until(deadline))
		if err != nil {
			cl.t.Fatalf("waiting for the answer to %v: %v", frame, err)
		}
		if m["ref"] == r {
			return m
		}
	}
}

func (cl *client) list(filter map[string]any) []map[string]any {
	cl.t.Helper()
	frame := map[string]any{"type": "list"}
	for k, v := range filter {
		frame[k] = v
	}
	m := cl.ack(frame)
	if m["type"] != "conversations" {
		cl.t.Fatalf("list %v: %v", filter, m)
	}
	var out []map[string]any
	for _, it := range m["items"].([]any) {
		out = append(out, it.(map[string]any))
	}
	return out
}

func ids(items []map[string]any) []string {
	var out []string
	for _, it := range items {
		out = append(out, it["id"].(string))
	}
	slices.Sort(out)
	return out
}

// An agent writes a note and sets a conversation's status and tags over
// the wire; the agents see them (deliver frames, the list's state and
// filters); the visitor never gets any of it, live, in a replay from the
// start, or in its list; a visitor can neither write a note nor set a
// status; a visitor's message reopens a resolved conversation.
func TestInboxFramesAndNotesNeverReachTheVisitor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		c.Assignee = func(ws, conv string) string {
			if strings.HasSuffix(conv, "0") {
				return "sam"
			}
			return ""
		}
	})
	ag := e.agent(t, "ws1")
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	other := v.start()
	v.say(conv, "m-00000001", "my invoice is wrong")

	if m := ag.ack(map[string]any{"type": "send", "conversation": conv, "id": "n-00000001", "body": noteCanary, "internal": true}); m["type"] != "ack" {
		t.Fatalf("note: %v", m)
	}
	d := ag.seenOrExpect("deliver", msgIs("n-00000001"))
	if msg := d["message"].(map[string]any); msg["internal"] != true || msg["body"] != noteCanary {
		t.Fatalf("the agents' deliver of the note: %v", d)
	}
	for i, f := range []map[string]any{
		{"status": "resolved"},
		{"tag": "billing", "on": true},
		{"tag": "vip", "on": true},
		{"tag": "billing", "on": false},
	} {
		f["type"], f["conversation"], f["id"] = "inbox", conv, fmt.Sprintf("i-%08d", i)
		if m := ag.ack(f); m["type"] != "ack" {
			t.Fatalf("inbox %v: %v", f, m)
		}
	}
	ag.seenOrExpect("deliver", msgIs("i-00000003"))

	// The visitor may do none of it.
	for _, f := range []map[string]any{
		{"type": "send", "conversation": conv, "id": "v-00000009", "body": "sneaky", "internal": true},
		{"type": "inbox", "conversation": conv, "id": "v-00000010", "status": "resolved"},
		{"type": "list", "status": "open"},
	} {
		if m := v.ack(f); m["type"] != "error" || (m["code"] != "bad_request" && m["code"] != "forbidden") {
			t.Fatalf("visitor's %v: %v", f, m)
		}
	}
	// Bad inbox frames.
	for _, f := range []map[string]any{
		{"status": "closed"},
		{"status": "snoozed"},
		{"status": "resolved", "until": 5},
		{"tag": "Not A Tag"},
		{"status": "open", "tag": "vip"},
		{},
	} {
		f["type"], f["conversation"], f["id"] = "inbox", conv, "i-bad00001"
		if m := ag.ack(f); m["type"] != "error" || m["code"] != "bad_request" {
			t.Fatalf("inbox %v: %v", f, m)
		}
	}

	// The agents' list: state and filters.
	all := ag.list(nil)
	var item map[string]any
	for _, it := range all {
		if it["id"] == conv {
			item = it
		}
	}
	if item == nil || item["status"] != "resolved" || fmt.Sprint(item["tags"]) != "[vip]" {
		t.Fatalf("list item %v", item)
	}
	if got := ids(ag.list(map[string]any{"status": "resolved"})); !slices.Equal(got, []string{conv}) {
		t.Fatalf("resolved: %v", got)
	}
	if got := ids(ag.list(map[string]any{"status": "open"})); !slices.Equal(got, []string{other}) {
		t.Fatalf("open: %v", got)
	}
	if got := ids(ag.list(map[string]any{"tag": "vip"})); !slices.Equal(got, []string{conv}) {
		t.Fatalf("vip: %v", got)
	}
	if got := ids(ag.list(map[string]any{"tag": "billing"})); len(got) != 0 {
		t.Fatalf("billing (off): %v", got)
	}
	want := map[string][]string{"me": nil, "-": nil}
	for _, c := range []string{conv, other} {
		if strings.HasSuffix(c, "0") {
			want["me"] = append(want["me"], c)
		} else {
			want["-"] = append(want["-"], c)
		}
	}
	for a, w := range want {
		slices.Sort(w)
		if got := ids(ag.list(map[string]any{"assignee": a})); !slices.Equal(got, w) {
			t.Fatalf("assignee %s: %v, want %v", a, got, w)
		}
	}

	// The visitor writes again: open again.
	v.say(conv, "m-00000002", "still wrong")
	if got := ids(ag.list(map[string]any{"status": "open"})); !slices.Equal(got, ids([]map[string]any{{"id": conv}, {"id": other}})) {
		t.Fatalf("open after the visitor wrote: %v", got)
	}
	// Snoozed until later.
	ag.ack(map[string]any{"type": "inbox", "conversation": other, "id": "i-00000020", "status": "snoozed", "until": time.Now().Add(time.Hour).UnixMilli()})
	if got := ids(ag.list(map[string]any{"status": "snoozed"})); !slices.Equal(got, []string{other}) {
		t.Fatalf("snoozed: %v", got)
	}

	// Nothing of it reached the visitor: live, in its list, in a replay.
	v.list(nil)
	v.none("deliver", 300*time.Millisecond)
	leaked(t, "the visitor", v)
	r := v.ref()
	v.send(map[string]any{"type": "resume", "ref": r, "conversation": conv, "after": 0})
	v.expect("resumed", refIs(r))
	leaked(t, "the visitor's replay", v)
	if n := len(seenAll(v, "deliver", conv)); n < 2 {
		t.Fatalf("the visitor's replay brought %d deliver frames, want its own messages", n)
	}
}

// seenOrExpect is the frame of type typ matching pred that cl read
// already, or the next one.
func (cl *client) seenOrExpect(typ string, pred func(map[string]any) bool) map[string]any {
	cl.t.Helper()
	for _, m := range cl.seen {
		if m["type"] == typ && pred(m) {
			return m
		}
	}
	return cl.expect(typ, pred)
}

func seenAll(cl *client, typ, conv string) []map[string]any {
	var out []map[string]any
	for _, m := range cl.seen {
		if m["type"] == typ && m["conversation"] == conv {
			out = append(out, m)
		}
	}
	return out
}

// A visitor's context (page, referrer, language, a site's attributes) is
// validated, stored with the conversation and listed for agents; a bad
// one is bad_request and changes nothing.
func TestVisitorContext(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ag := e.agent(t, "ws1")
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	good := map[string]any{"url": "https://shop.example/cart?x=1", "referrer": "https://search.example/", "language": "de-CH",
		"attrs": map[string]any{"plan": "pro", "user.id": "42"}}
	if m := v.ack(map[string]any{"type": "context", "conversation": conv, "id": "x-00000001", "context": good}); m["type"] != "ack" {
		t.Fatalf("context: %v", m)
	}
	many := map[string]any{}
	for i := range 21 {
		many[fmt.Sprint("k", i)] = "v"
	}
	for i, bad := range []map[string]any{
		{"url": "javascript:alert(1)"},
		{"url": "https://user:pw@shop.example/"},
		{"url": "https://shop.example/" + strings.Repeat("a", 2048)},
		{"referrer": "ftp://files.example/"},
		{"language": "english please"},
		{"attrs": many},
		{"attrs": map[string]any{"bad key": "v"}},
		{"attrs": map[string]any{"k": strings.Repeat("v", 257)}},
		{"attrs": map[string]any{"k": "a\u0000b"}},
	} {
		m := v.ack(map[string]any{"type": "context", "conversation": conv, "id": fmt.Sprintf("x-bad%05d", i), "context": bad})
		if m["type"] != "error" || m["code"] != "bad_request" {
			t.Fatalf("context %v: %v", bad, m)
		}
	}
	if m := ag.ack(map[string]any{"type": "context", "conversation": conv, "id": "x-00000002", "context": good}); m["type"] != "error" || m["code"] != "forbidden" {
		t.Fatalf("an agent's context: %v", m)
	}
	items := ag.list(nil)
	if len(items) != 1 {
		t.Fatalf("list %v", items)
	}
	got, _ := json.Marshal(items[0]["context"])
	want, _ := json.Marshal(good)
	if string(got) != string(want) {
		t.Fatalf("listed context %s, want %s", got, want)
	}
	for _, it := range v.list(nil) {
		if it["context"] != nil || it["status"] != nil {
			t.Fatalf("the visitor's list shows the inbox state: %v", it)
		}
	}
}

// TestInternalMessagesWaitForTheUpgrade: while a node of the cluster may
// run a release that would hand internal messages to visitors
// (Config.InternalMessages says so), a note, an inbox change and a
// visitor's context are refused with cluster_upgrading and nothing is
// stored; chat goes on. Once every node runs the new release they pass.
func TestInternalMessagesWaitForTheUpgrade(t *testing.T) {
	t.Parallel()
	var upgrading atomic.Bool
	upgrading.Store(true)
	e := newEnv(t, func(c *Config) {
		c.InternalMessages = func() error {
			if upgrading.Load() {
				return errors.New("cluster upgrading: n3 runs 1")
			}
			return nil
		}
	})
	ag := e.agent(t, "ws1")
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	frames := []struct {
		who *client
		f   map[string]any
	}{
		{ag, map[string]any{"type": "send", "conversation": conv, "id": "n-00000001", "body": "a note", "internal": true}},
		{ag, map[string]any{"type": "inbox", "conversation": conv, "id": "i-00000001", "status": "resolved"}},
		{v, map[string]any{"type": "context", "conversation": conv, "id": "x-00000001", "context": map[string]any{"language": "de"}}},
	}
	for _, fr := range frames {
		if m := fr.who.ack(fr.f); m["type"] != "error" || m["code"] != "cluster_upgrading" || !strings.Contains(m["message"].(string), "n3 runs 1") {
			t.Fatalf("%v while upgrading: %v", fr.f["type"], m)
		}
	}
	if m := v.ack(map[string]any{"type": "send", "conversation": conv, "id": "m-00000001", "body": "hello"}); m["type"] != "ack" {
		t.Fatalf("a visitor's message while upgrading: %v", m)
	}
	if items := ag.list(nil); len(items) != 1 || items[0]["status"] == "resolved" || items[0]["context"] != nil {
		t.Fatalf("something of a refused frame was stored: %v", items)
	}
	upgrading.Store(false)
	for _, fr := range frames {
		if m := fr.who.ack(fr.f); m["type"] != "ack" {
			t.Fatalf("%v once upgraded: %v", fr.f["type"], m)
		}
	}
}
