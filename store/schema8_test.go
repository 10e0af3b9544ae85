package store

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"parley/crdt"

	bolt "go.etcd.io/bbolt"
)

// TestMigrationFromSchema7 opens a file written by the schema 7 code (the
// last before stamps moved into the events' values; testdata/schema7 has
// the file, gzipped, and what that code read back from it: events, stamps,
// vectors, frontiers, digests) and checks that this build migrates it and
// reads back the same, that the stamps index is gone, and that the file
// takes new changes and erasures.
func TestMigrationFromSchema7(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	gz, err := os.Open("testdata/schema7/parley.db.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer gz.Close()
	zr, err := gzip.NewReader(gz)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, zr); err != nil {
		t.Fatal(err)
	}
	f.Close()
	wantJSON, err := os.ReadFile("testdata/schema7/want.json")
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var before int
	db.View(func(tx *bolt.Tx) error {
		before = schemaVersion(tx)
		if tx.Bucket(bStamps) == nil || tx.Bucket(bStamps).Stats().KeyN == 0 {
			t.Error("the schema 7 file has no stamps index: the test proves nothing")
		}
		return nil
	})
	db.Close()
	if before != 7 {
		t.Fatalf("fixture at schema %d, want 7", before)
	}

	kek := bytes.Repeat([]byte{7}, KEKSize)
	s, err := Open(Config{Path: path, KEK: kek, Origin: "n1", ScrubAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.SchemaVersion(); v != SchemaLatest() {
		t.Fatalf("schema %d after Open, want %d", v, SchemaLatest())
	}
	s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bStamps) != nil {
			t.Error("the stamps index is still in the file")
		}
		return nil
	})
	got := map[string]any{}
	for c := range 3 {
		conv := fmt.Sprintf("c%d", c)
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
		got[conv] = map[string]any{"events": evs, "since": since, "vector": vec, "covered": covered, "origin": origin, "digest": digest, "messages": n, "frontier": front}
	}
	gotJSON, err := json.MarshalIndent(got, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.TrimSpace(gotJSON), bytes.TrimSpace(wantJSON)) {
		t.Fatalf("read back after the migration:\n%s\nwant (as schema 7 read it):\n%s", gotJSON, wantJSON)
	}

	// The migrated file takes new changes, an edit of a migrated message
	// included, and erasures.
	ctx := context.Background()
	if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c0", Participant: "v:a", Message: msg("m9", "v:a", "after", 30)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c0", Participant: "v:a", Message: msg("m0", "v:a", "dup", 31)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, Change{Kind: Edit, Workspace: "ws1", Conversation: "c0", Participant: "v:a", Message: crdt.Message{ID: "m3"}, Body: "edited after", TS: crdt.Timestamp{Wall: 40, Node: "n1"}}); err != nil {
		t.Fatal(err)
	}
	evs, _, err := s.Events("ws1", "c0", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	last := evs[len(evs)-1]
	if last.Message.ID != "m3" || last.Message.Body != "edited after" || last.Stamp.Origin != "n1" || last.Stamp.OSeq != 9 {
		t.Fatalf("last event after the migration %+v, want the edit of m3 stamped n1.9", last)
	}
	if err := s.EraseConversation(ctx, "ws1", "c1"); err != nil {
		t.Fatal(err)
	}
	if l := keysOf(t, s, "c1"); len(l) != 0 {
		t.Fatalf("keys of the erased conversation remain: %v", l)
	}
}
