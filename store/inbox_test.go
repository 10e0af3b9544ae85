package store

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"parley/crdt"
)

func inboxMsg(id, author, kind string, op any, wall int64) crdt.Message {
	body, _ := json.Marshal(op)
	m := crdt.NewMessage(id, author, "agent", "", string(body), crdt.Timestamp{Wall: wall, Node: "n1"})
	m.Internal, m.Kind = true, kind
	return m
}

// The store folds a conversation's inbox changes into its record as they
// are written: a status, tags, a visitor's message that reopens; notes
// and changes never become the record's last message; a change is never
// edited. Another replica that gets the same events in another order
// holds the same state.
func TestInboxFoldedIntoRecord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{})
	conv := Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}
	if err := s.CreateConversation(ctx, conv); err != nil {
		t.Fatal(err)
	}
	note := crdt.NewMessage("n1", "a:sam", "agent", "", "she is on the pro plan", crdt.Timestamp{Wall: 12, Node: "n1"})
	note.Internal = true
	msgs := []crdt.Message{
		msg("m1", "v:a", "hello", 10),
		inboxMsg("s1", "a:sam", crdt.KindStatus, crdt.InboxOp{Status: crdt.StatusResolved}, 11),
		note,
		inboxMsg("t1", "a:sam", crdt.KindTag, crdt.InboxOp{Tag: "billing", On: true}, 13),
		inboxMsg("t2", "a:sam", crdt.KindTag, crdt.InboxOp{Tag: "vip", On: true}, 14),
		inboxMsg("t3", "a:sam", crdt.KindTag, crdt.InboxOp{Tag: "billing"}, 15),
	}
	for _, m := range msgs {
		if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: m.Author, Message: m}); err != nil {
			t.Fatal(err)
		}
	}
	rec, err := s.Conversation("ws1", "c1")
	if err != nil {
		t.Fatal(err)
	}
	x := rec.InboxState()
	if got := x.Status(100); got != crdt.StatusResolved {
		t.Fatalf("status %s, want resolved", got)
	}
	if got := x.Tags(); !slices.Equal(got, []string{"vip"}) {
		t.Fatalf("tags %v, want [vip]", got)
	}
	if rec.Last == nil || rec.Last.ID != "m1" {
		t.Fatalf("last message %+v, want m1 (notes and changes are never last)", rec.Last)
	}
	_, err = s.Apply(ctx, Change{Kind: Edit, Workspace: "ws1", Conversation: "c1", Participant: "a:sam", Message: crdt.Message{ID: "s1"}, Body: `{"status":"open"}`, TS: crdt.Timestamp{Wall: 16, Node: "n1"}})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("edit of an inbox change: %v, want ErrInvalid", err)
	}

	// Another replica, the events in reverse order (a note and a change
	// arriving before the message they follow), twice.
	r := openTest(t, Config{})
	oseq := uint64(0)
	for range 2 {
		for _, m := range slices.Backward(msgs) {
			oseq++
			if _, err := r.ApplyRemote(ctx, Remote{Conversation: conv, Stamp: Stamp{Origin: "n9", OSeq: oseq}, Message: m}); err != nil {
				t.Fatal(err)
			}
		}
	}
	rrec, err := r.Conversation("ws1", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if !rrec.InboxState().Equal(x) {
		t.Fatalf("replica's inbox %+v, want %+v", rrec.InboxState(), x)
	}

	// The visitor writes again: reopened, on both.
	again := msg("m2", "v:a", "still broken", 20)
	if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: again}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ApplyRemote(ctx, Remote{Conversation: conv, Stamp: Stamp{Origin: "n9", OSeq: oseq + 1}, Message: again}); err != nil {
		t.Fatal(err)
	}
	for _, st := range []*Store{s, r} {
		rec, err := st.Conversation("ws1", "c1")
		if err != nil {
			t.Fatal(err)
		}
		if got := rec.InboxState().Status(100); got != crdt.StatusOpen {
			t.Fatalf("after the visitor wrote again: %s, want open", got)
		}
	}
}
