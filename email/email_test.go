package email

import (
	"errors"
	"fmt"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"parley/cluster/membership"
	"parley/cluster/schema"
	"parley/crdt"
	"parley/ident"
	"parley/store"
)

// fakeStore is one conversation's log.
type fakeStore struct {
	conv  store.Conversation
	evs   []store.LoggedEvent
	reads map[string]uint64
}

func (f *fakeStore) Conversation(ws, id string) (store.Conversation, error) { return f.conv, nil }
func (f *fakeStore) Conversations(ws, owner string) ([]store.Conversation, error) {
	return []store.Conversation{f.conv}, nil
}
func (f *fakeStore) Reads(ws, conv string) (map[string]uint64, error) { return f.reads, nil }
func (f *fakeStore) Logged(ws, conv string, after uint64, limit int) ([]store.LoggedEvent, bool, error) {
	var out []store.LoggedEvent
	for _, e := range f.evs {
		if e.Seq > after {
			if len(out) == limit {
				return out, true, nil
			}
			out = append(out, e)
		}
	}
	return out, false, nil
}

// add appends a message's send to the log, stamped by origin n1.
func (f *fakeStore) add(m crdt.Message) {
	seq := uint64(len(f.evs) + 1)
	m.Created = crdt.Timestamp{Wall: 1_800_000_000_000 + int64(seq)*1000, Node: "n1"}
	m.BodyTS = m.Created
	f.evs = append(f.evs, store.LoggedEvent{Event: store.Event{Kind: store.EventMessage, Workspace: "acme", Conversation: "c1", Seq: seq,
		Stamp: store.Stamp{Origin: "n1", OSeq: seq}, Message: m}, Change: store.Send})
}

func msg(id, author string, role ident.Role, body string) crdt.Message {
	return crdt.Message{ID: id, Author: author, Role: role, Name: strings.ToUpper(author[2:3]) + author[3:], Body: body}
}

// TestPlanLeavesOutWhatIsNotAReply: the mail of a conversation's replies
// holds the agents' replies the visitor has neither read nor been mailed,
// never an internal note, a deleted reply, the visitor's own messages or
// an address; the latest address of the visitor counts; a transcript
// request not answered yet is seen, and the transcript holds the visible
// messages only.
func TestPlanLeavesOutWhatIsNotAReply(t *testing.T) {
	v := "v:0123456789abcdef0123456789abcdef"
	f := &fakeStore{conv: store.Conversation{Workspace: "acme", ID: "c1", Owner: v}, reads: map[string]uint64{}}
	f.add(msg("m-visitor-1", v, ident.Visitor, "hello"))
	f.add(msg("email-000001", v, ident.Visitor, "old@example.com"))
	f.add(msg("m-agent-01", "a:ann", ident.Agent, "read before leaving"))
	f.reads[v] = 3
	f.add(msg("email-000002", v, ident.Visitor, "new@example.com"))
	f.add(msg("m-agent-02", "a:ann", ident.Agent, "mailed already"))
	f.add(msg("m-agent-03", "a:ann", ident.Agent, "first unseen reply"))
	note := msg("m-note-01", "a:bob", ident.Agent, "internal note: refund?")
	note.Internal = true
	f.add(note)
	f.add(msg("m-agent-04", "a:bob", ident.Agent, "deleted reply"))
	f.evs[len(f.evs)-1].Message.Deleted = crdt.Timestamp{Wall: 1_900_000_000_000}
	f.evs[len(f.evs)-1].Message.Body = ""
	f.add(msg("m-agent-05", "a:bob", ident.Agent, "second unseen reply"))
	f.add(msg("transcript-01", v, ident.Visitor, "send me the transcript"))
	s := New(Config{Self: "n1", Store: f, Control: nil2{}, Members: nil2{}, Presence: nil2{}})
	ms := schema.MailState{Mailed: map[string]uint64{"n1": 5}}
	p, err := s.read(convKey{"acme", "c1"}, schema.EmailSettings{Created: time.UnixMilli(0)}, ms)
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, m := range p.replies {
		bodies = append(bodies, m.Body)
	}
	if got := strings.Join(bodies, "|"); got != "first unseen reply|second unseen reply" {
		t.Fatalf("replies %q", got)
	}
	if p.address != "new@example.com" {
		t.Fatalf("address %q", p.address)
	}
	if p.through["n1"] != 9 {
		t.Fatalf("through %v", p.through)
	}
	if !p.transcript || p.requests["n1"] != 10 {
		t.Fatalf("transcript %v %v", p.transcript, p.requests)
	}
	for _, m := range p.visible {
		if m.Internal || strings.Contains(m.Body, "@") || strings.HasPrefix(m.ID, "transcript-") || m.IsDeleted() {
			t.Fatalf("the transcript holds %+v", m)
		}
	}
	if len(p.visible) != 5 {
		t.Fatalf("%d visible messages, want 5", len(p.visible))
	}
	// Answered, the request is not seen again.
	ms.Transcripts = map[string]uint64{"n1": 10}
	if p, _ := s.read(convKey{"acme", "c1"}, schema.EmailSettings{}, ms); p.transcript {
		t.Fatal("an answered transcript request is seen again")
	}
	// Replies from before the settings existed are not mailed.
	if p, _ := s.read(convKey{"acme", "c1"}, schema.EmailSettings{Created: time.UnixMilli(1_900_000_000_000)}, ms); len(p.replies) != 0 {
		t.Fatalf("replies before the settings: %v", p.replies)
	}
}

// nil2 stands in for what read does not use.
type nil2 struct {
	Control
	Presence
}

func (nil2) Region(string) string { return "" }

func (nil2) Members() []membership.Member { return nil }

// TestPermanent: 5xx answers and refusals are permanent, 4xx answers and
// connection failures temporary.
func TestPermanent(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("RCPT: %w", &textproto.Error{Code: 550, Msg: "no such user"}), true},
		{fmt.Errorf("AUTH: %w", &textproto.Error{Code: 535, Msg: "bad credentials"}), true},
		{fmt.Errorf("RCPT: %w", &textproto.Error{Code: 451, Msg: "try later"}), false},
		{errors.New("dial tcp 127.0.0.1:1: connection refused"), false},
		{fmt.Errorf("%w: no STARTTLS", ErrPermanent), true},
	} {
		if got := Permanent(c.err); got != c.want {
			t.Errorf("Permanent(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if got := redactError(errors.New("550 <bob@example.com>: unknown; root@localhost")); strings.Contains(got, "@") || strings.Contains(got, "bob") {
		t.Fatalf("redacted: %q", got)
	}
}

// TestCompose: the same batch composed twice (another node after a
// takeover) has the same Message-ID; the text carries the replies and the
// link, quoted-printable, CRLF.
func TestCompose(t *testing.T) {
	m := mail{from: "help@acme.test", to: "v@example.com", subject: "Réponse", id: idOf(convKey{"acme", "c1"}, schema.MailReplies, map[string]uint64{"n1": 4, "n2": 2}),
		intro: "You have a reply", lines: []crdt.Message{msg("m-1", "a:ann", ident.Agent, "Grüße")}, link: Link("https://shop.test/help?x=1", "c1"), date: time.Unix(1_800_000_000, 0)}
	a, b := string(compose(m)), string(compose(m))
	if a != b {
		t.Fatal("composed twice, two messages")
	}
	m.id = idOf(convKey{"acme", "c1"}, schema.MailReplies, map[string]uint64{"n2": 2, "n1": 4})
	if string(compose(m)) != a {
		t.Fatal("the Message-ID depends on the vector's order")
	}
	for _, want := range []string{"Subject: =?utf-8?q?R=C3=A9ponse?=\r\n", "Gr=C3=BC=C3=9Fe", "https://shop.test/help?x=3D1#parley-open=3Dc1", "Message-ID: <"} {
		if !strings.Contains(a, want) {
			t.Errorf("no %q in\n%s", want, a)
		}
	}
	if strings.Contains(strings.ReplaceAll(a, "\r\n", ""), "\n") {
		t.Error("a bare LF")
	}
}
