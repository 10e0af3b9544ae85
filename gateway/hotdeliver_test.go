package gateway

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"parley/crdt"
	"parley/gateway/wire"
	"parley/ident"
	"parley/store"
)

// hotEvent is the message event deliverFrame writes and, beside it, the
// frame encoding/json writes for it.
func hotEvent(conv, origin string, seq, oseq uint64, m crdt.Message) (store.Event, wire.Deliver) {
	e := store.Event{Kind: store.EventMessage, Workspace: "ws1", Conversation: conv, Seq: seq, Stamp: store.Stamp{Origin: origin, OSeq: oseq}, Message: m}
	return e, wire.Deliver{Type: wire.TypeDeliver, Conversation: conv, Seq: seq, At: stampString(e.Stamp), Message: toWire(m)}
}

// hotMessage is a message with every field of the wire's set from its
// arguments: edited when bodyTS differs from created, deleted when del.
func hotMessage(id, author, role, name, body, kind string, created, bodyTS crdt.Timestamp, internal, del bool) crdt.Message {
	m := crdt.NewMessage(id, author, ident.Role(role), name, body, created)
	m.BodyTS = bodyTS
	m.Internal, m.Kind = internal, kind
	if del {
		m = m.Delete(bodyTS)
	}
	return m
}

// FuzzEncodeDeliver checks deliverFrame and encodeDeliver against
// encoding/json on the same event and frame.
func FuzzEncodeDeliver(f *testing.F) {
	f.Add("c_0123456789abcdef01234567", "n1", uint64(7), uint64(3), "m_12345678", "v:x", "visitor", "Ada", "hello", "", int64(1733500000000), uint32(0), "n1", int64(1733500000000), uint32(0), false, false, "")
	f.Add("c", "", uint64(0), uint64(0), "", "", "", "", "", "inbox", int64(-1), uint32(9), "", int64(5), uint32(1), true, true, "n1.2")
	f.Add("a<b>&\"\\\n\u2028é", "o\x7f\u2029", uint64(1<<63), uint64(1<<64-1), "i\x00", "a\tb", "agent", "N\xff", "body \"quoted\" </script> \b\f\r\x01 😀 \xed\xa0\x80", "note\u2028", int64(1), uint32(1), "n\x7f", int64(1), uint32(1), false, true, "x<y")
	f.Fuzz(func(t *testing.T, conv, origin string, seq, oseq uint64, id, author, role, name, body, kind string, wall int64, logical uint32, node string, bwall int64, blogical uint32, internal, del bool, also string) {
		m := hotMessage(id, author, role, name, body, kind, crdt.Timestamp{Wall: wall, Logical: logical, Node: node}, crdt.Timestamp{Wall: bwall, Logical: blogical, Node: node}, internal, del)
		e, d := hotEvent(conv, origin, seq, oseq, m)
		if got, want := deliverFrame(e), encode(d); string(got) != string(want) {
			t.Fatalf("deliverFrame %s, encoding/json %s", got, want)
		}
		if also != "" {
			d.Also = strings.Split(also, ",")
		}
		if got, want := encodeDeliver(d), encode(d); string(got) != string(want) {
			t.Fatalf("encodeDeliver %s, encoding/json %s", got, want)
		}
	})
}

// FuzzEncodeRead checks encodeRead against encoding/json.
func FuzzEncodeRead(f *testing.F) {
	f.Add("c_0123456789abcdef01234567", "a:1", uint64(7))
	f.Add("c<&>\u2028", "v\xff\"\\", uint64(1<<64-1))
	f.Fuzz(func(t *testing.T, conv, p string, seq uint64) {
		r := wire.Read{Type: wire.TypeRead, Conversation: conv, Participant: p, Role: roleOf(p), Seq: seq}
		if got, want := encodeRead(r), encode(r); string(got) != string(want) {
			t.Fatalf("encodeRead %s, encoding/json %s", got, want)
		}
	})
}

// TestHotFramesAgreeOnGeneratedEvents: events whose strings are made of
// every kind of byte encoding/json escapes or passes (HTML's, control
// characters, quotes, U+2028, invalid UTF-8, multibyte runes), with every
// optional field set or not, give the bytes encoding/json gives.
func TestHotFramesAgreeOnGeneratedEvents(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 2))
	pieces := []string{"a", "Z9_-.", "é", "😀", "\"", "\\", "/", "\b", "\f", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "<", ">", "&",
		"\u2028", "\u2029", "\ufffd", "\xff", "\xed\xa0\x80", "\xe2\x80", " ", "</script>"}
	str := func() string {
		if rng.IntN(4) == 0 {
			return ""
		}
		var b strings.Builder
		for p := rng.IntN(6); p >= 0; p-- {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	ts := func() crdt.Timestamp {
		return crdt.Timestamp{Wall: rng.Int64() - rng.Int64(), Logical: rng.Uint32(), Node: str()}
	}
	for n := 0; n < 20000; n++ {
		created := ts()
		bodyTS := created
		if rng.IntN(2) == 0 {
			bodyTS = ts()
		}
		m := hotMessage(str(), str(), str(), str(), str(), str(), created, bodyTS, rng.IntN(2) == 0, rng.IntN(4) == 0)
		e, d := hotEvent(str(), str(), rng.Uint64(), rng.Uint64(), m)
		if got, want := deliverFrame(e), encode(d); string(got) != string(want) {
			t.Fatalf("deliverFrame %s, encoding/json %s", got, want)
		}
		for k := rng.IntN(3); k > 0; k-- {
			d.Also = append(d.Also, str())
		}
		if got, want := encodeDeliver(d), encode(d); string(got) != string(want) {
			t.Fatalf("encodeDeliver %s, encoding/json %s", got, want)
		}
		r := wire.Read{Type: wire.TypeRead, Conversation: str(), Participant: str(), Role: ident.Role(str()), Seq: rng.Uint64()}
		if got, want := encodeRead(r), encode(r); string(got) != string(want) {
			t.Fatalf("encodeRead %s, encoding/json %s", got, want)
		}
	}
}

// TestHotFramesKnowEveryField: the hand encoders write the fields listed
// here; a field added to one of these types must be added to them (and
// here), or its frames would silently lack it.
func TestHotFramesKnowEveryField(t *testing.T) {
	for _, c := range []struct {
		v    any
		tags []string
	}{
		{wire.Deliver{}, []string{"type", "conversation", "seq", "at,omitempty", "also,omitempty", "message"}},
		{wire.Message{}, []string{"id", "author", "role", "name,omitempty", "body", "ts", "edited", "deleted", "internal,omitempty", "kind,omitempty"}},
		{wire.Read{}, []string{"type", "conversation", "participant", "role", "seq"}},
		{crdt.Timestamp{}, []string{"w", "l", "n"}},
		{wire.Ack{}, []string{"type", "ref,omitempty", "conversation", "id,omitempty", "seq", "ts,omitempty", "dup"}}, // encodeAck, encodeAckJSON
	} {
		rt := reflect.TypeOf(c.v)
		var tags []string
		for i := 0; i < rt.NumField(); i++ {
			tags = append(tags, rt.Field(i).Tag.Get("json"))
		}
		if !slices.Equal(tags, c.tags) {
			t.Errorf("%s's fields are %q; the hand encoders (hotdeliver.go) write %q", rt, tags, c.tags)
		}
	}
	for _, v := range []any{ident.Role(""), crdt.Timestamp{}} {
		if _, ok := v.(interface{ MarshalJSON() ([]byte, error) }); ok {
			t.Errorf("%T marshals itself; the hand encoders write it as a plain value", v)
		}
	}
}

// TestPublishAllocatesNothingPerRecipient: hub.publish encodes an event
// once, into one buffer, and queues the same item on every recipient:
// two allocations per event (the item and its frame) whether one agent or
// ten receive it.
func TestPublishAllocatesNothingPerRecipient(t *testing.T) {
	clock := crdt.NewClock("b1", nil)
	msg := crdt.NewMessage("m-0000001", "v:x", ident.Visitor, "Ada", "a message of about the size of the load scenarios' one hundred and twenty-eight bytes, typed by a visitor & <you>", clock.Now())
	ev := []store.Event{{Kind: store.EventMessage, Workspace: "ws1", Conversation: "c_000000000000000000000001", Seq: 1, Stamp: store.Stamp{Origin: "b1", OSeq: 1}, Message: msg, Start: time.Now()}}
	for _, n := range []int{1, 10} {
		s := New(Config{Store: nil, Auth: testAuth{}, Clock: crdt.NewClock("b1", nil)})
		conns := make([]*conn, n)
		for i := range conns {
			// writing: a writer is already on it, so send only queues.
			c := &conn{srv: s, t: &discard{}, stop: make(chan struct{}), writing: true,
				id: identity{Workspace: "ws1", Role: ident.Agent, Participant: fmt.Sprintf("a:%d", i)}}
			c.queue = &itemQueue{items: make([]*outItem, 0, 1024)}
			s.hub.join(c)
			conns[i] = c
		}
		allocs := testing.AllocsPerRun(500, func() {
			for _, c := range conns {
				c.queue.items = c.queue.items[:0]
				c.queuedBytes, c.queuedItems = 0, 0
			}
			s.hub.publish(ev)
		})
		for _, c := range conns {
			if c.queue.len() != 1 {
				t.Fatalf("recipients=%d: %d items queued, want 1", n, c.queue.len())
			}
		}
		if allocs > 2 {
			t.Errorf("recipients=%d: %.1f allocations per event published, want at most 2", n, allocs)
		}
	}
}

// BenchmarkDeliverFrame compares a message event's deliver frame written
// by encoding/json (what hub.publish did) and by deliverFrame.
func BenchmarkDeliverFrame(b *testing.B) {
	clock := crdt.NewClock("b1", nil)
	msg := crdt.NewMessage("m-0000001", "v:x", ident.Visitor, "Ada", "a message of about the size of the load scenarios' one hundred and twenty-eight bytes, typed by a visitor", clock.Now())
	e := store.Event{Kind: store.EventMessage, Workspace: "ws1", Conversation: "c_000000000000000000000001", Seq: 12345, Stamp: store.Stamp{Origin: "b1", OSeq: 12345}, Message: msg}
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := processCPU()
		for i := 0; i < b.N; i++ {
			_ = encode(wire.Deliver{Type: wire.TypeDeliver, Conversation: e.Conversation, Seq: e.Seq, At: stampString(e.Stamp), Message: toWire(e.Message)})
		}
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	})
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := processCPU()
		for i := 0; i < b.N; i++ {
			_ = deliverFrame(e)
		}
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	})
}

// processCPU is the CPU time the process has used, user and system, in
// ns: a measure that the machine's other load changes less than it
// changes the wall clock (GC's included, as the node pays it).
func processCPU() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
