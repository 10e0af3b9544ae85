package store

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"parley/crdt"
)

// TestWriteSchemaFixture writes the store file of testdata/schema<N> (see
// its README) with this build, into $FIXTURE_DIR, and what this build
// reads back from it (want.json). It runs only when FIXTURE_DIR is set:
// the fixtures of the migration tests are made with it at the schema they
// keep, then left alone.
func TestWriteSchemaFixture(t *testing.T) {
	dir := os.Getenv("FIXTURE_DIR")
	if dir == "" {
		t.Skip("FIXTURE_DIR not set")
	}
	ctx := context.Background()
	kek := make([]byte, KEKSize)
	for i := range kek {
		kek[i] = 7
	}
	path := filepath.Join(dir, "parley.db")
	s, err := Open(Config{Path: path, KEK: kek, Origin: "n1", ScrubAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutWorkspace(ctx, Workspace{ID: "ws1"}); err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	for c := range 3 {
		conv := fmt.Sprintf("c%d", c)
		if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: conv, Owner: "v:a", OwnerName: "Ann"}); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			m := crdt.NewMessage(fmt.Sprintf("m%d", i), "v:a", "visitor", "Ann", fmt.Sprintf("body %d of %s", i, conv), crdt.Timestamp{Wall: int64(i + 1), Node: "n1"})
			if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: conv, Participant: "v:a", Message: m}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Apply(ctx, Change{Kind: Edit, Workspace: "ws1", Conversation: conv, Participant: "v:a", Message: crdt.Message{ID: "m1"}, Body: "edited", TS: crdt.Timestamp{Wall: 10, Node: "n1"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(ctx, Change{Kind: Delete, Workspace: "ws1", Conversation: conv, Participant: "v:a", Message: crdt.Message{ID: "m2"}, TS: crdt.Timestamp{Wall: 11, Node: "n1"}}); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			m := crdt.NewMessage(fmt.Sprintf("r%d", i), "a:s", "agent", "Sam", fmt.Sprintf("remote %d", i), crdt.Timestamp{Wall: int64(20 + i), Node: "n2"})
			r := Remote{Conversation: Conversation{Workspace: "ws1", ID: conv, Owner: "v:a", OwnerName: "Ann"}, Stamp: Stamp{Origin: "n2", OSeq: uint64(i + 1)}, Message: m}
			if _, err := s.ApplyRemote(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.MarkRead(ctx, "ws1", conv, "a:s", 3, time.Time{}); err != nil {
			t.Fatal(err)
		}
		got[conv] = readBack(t, s, conv)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(got, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "want.json"), append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// readBack is what the migration tests compare of a conversation of a
// fixture: its events, the events since a vector, a vector at a seq, the
// seq a vector covers, one origin's events, its digest and its frontier.
func readBack(t *testing.T, s *Store, conv string) map[string]any {
	t.Helper()
	evs, _, err := s.Events("ws1", conv, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	since, _, err := s.EventsSince("ws1", conv, map[string]uint64{"n1": 3}, 100)
	if err != nil {
		t.Fatal(err)
	}
	vec, err := s.VectorAt("ws1", conv, 6)
	if err != nil {
		t.Fatal(err)
	}
	covered, err := s.SeqCovered("ws1", conv, map[string]uint64{"n1": 7, "n2": 1})
	if err != nil {
		t.Fatal(err)
	}
	origin, err := s.OriginEvents("ws1", conv, "n2", 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	digest, n, err := s.StateDigest("ws1", conv)
	if err != nil {
		t.Fatal(err)
	}
	front, err := s.Frontier("ws1", conv)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"events": evs, "since": since, "vector": vec, "covered": covered, "origin": origin, "digest": digest, "messages": n, "frontier": front}
}
