package store

import (
	"context"
	"testing"

	"parley/crdt"
)

// Logged tells each durable event's change: the send, an edit, and the
// delete, each with the message's current state (no text deleted).
func TestLoggedChanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []Change{
		{Kind: Send, Participant: "v:a", Message: msg("m1", "v:a", "hello", 10)},
		{Kind: Send, Participant: "v:a", Message: msg("m2", "v:a", "secret", 11)},
		{Kind: Edit, Participant: "v:a", Message: crdt.Message{ID: "m1"}, Body: "hello!", TS: crdt.Timestamp{Wall: 12}},
		{Kind: Edit, Participant: "v:a", Message: crdt.Message{ID: "m2"}, Body: "secret2", TS: crdt.Timestamp{Wall: 13}},
		{Kind: Delete, Participant: "v:a", Message: crdt.Message{ID: "m2"}, TS: crdt.Timestamp{Wall: 14}},
	} {
		ch.Workspace, ch.Conversation = "ws1", "c1"
		if _, err := s.Apply(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	evs, more, err := s.Logged("ws1", "c1", 0, 10)
	if err != nil || more || len(evs) != 5 {
		t.Fatalf("logged: %d events, more %v, %v", len(evs), more, err)
	}
	want := []struct {
		id     string
		change ChangeKind
	}{{"m1", Send}, {"m2", Send}, {"m1", Edit}, {"m2", Edit}, {"m2", Delete}}
	for i, w := range want {
		e := evs[i]
		if e.Message.ID != w.id || e.Change != w.change || e.Seq != uint64(i+1) || e.Stamp.OSeq == 0 {
			t.Errorf("event %d: %s change %d seq %d stamp %+v, want %s change %d", i, e.Message.ID, e.Change, e.Seq, e.Stamp, w.id, w.change)
		}
		if e.Message.ID == "m2" && e.Message.Body != "" {
			t.Errorf("event %d holds deleted text %q", i, e.Message.Body)
		}
	}
	if evs, more, _ := s.Logged("ws1", "c1", 3, 1); len(evs) != 1 || evs[0].Seq != 4 || !more {
		t.Fatalf("paged: %+v, more %v", evs, more)
	}
	if _, _, err := s.Logged("ws1", "nope", 0, 10); err == nil {
		t.Fatal("logged events of a conversation not held")
	}
}
