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
	testMigrationFrom(t, 7, func(tx *bolt.Tx) error {
		if tx.Bucket(bStamps) == nil || tx.Bucket(bStamps).Stats().KeyN == 0 {
			return fmt.Errorf("the schema 7 file has no stamps index: the test proves nothing")
		}
		return nil
	})
}

// TestMigrationFromSchema8 opens a file written by the schema 8 code (the
// last with one record per event; testdata/schema8) and checks the same:
// every event reads back from the chunks migration 9 made of them.
func TestMigrationFromSchema8(t *testing.T) {
	testMigrationFrom(t, 8, func(tx *bolt.Tx) error {
		n := 0
		err := tx.Bucket(bEvents).ForEach(func(_, v []byte) error {
			if len(v) == 0 || v[0] != stampedV1 {
				return fmt.Errorf("the schema 8 file has an event not stamped in its value (%x): not schema 8", v[:min(len(v), 8)])
			}
			n++
			return nil
		})
		if err == nil && n < 20 {
			err = fmt.Errorf("the schema 8 file has %d events: the test proves nothing", n)
		}
		return err
	})
}

// testMigrationFrom opens testdata/schema<version> with this build and
// checks it reads back what the code of that schema read (want.json), that
// every event is in a chunk, and that the file takes new changes (an edit
// of a migrated message, a resent message) and erasures. fixture checks
// the file before the migration.
func testMigrationFrom(t *testing.T, version int, fixture func(*bolt.Tx) error) {
	t.Helper()
	dir := fmt.Sprintf("testdata/schema%d", version)
	path := filepath.Join(t.TempDir(), "parley.db")
	gz, err := os.Open(dir + "/parley.db.gz")
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
	wantJSON, err := os.ReadFile(dir + "/want.json")
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var before int
	if err := db.View(func(tx *bolt.Tx) error {
		before = schemaVersion(tx)
		return fixture(tx)
	}); err != nil {
		t.Error(err)
	}
	db.Close()
	if before != version {
		t.Fatalf("fixture at schema %d, want %d", before, version)
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
		return tx.Bucket(bEvents).ForEach(func(k, v []byte) error {
			if _, _, err := parseChunk(v, nil); err != nil {
				t.Errorf("event record %q after the migration: %v", k, err)
			}
			return nil
		})
	})
	got := map[string]any{}
	for c := range 3 {
		conv := fmt.Sprintf("c%d", c)
		got[conv] = readBack(t, s, conv)
	}
	gotJSON, err := json.MarshalIndent(got, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.TrimSpace(gotJSON), bytes.TrimSpace(wantJSON)) {
		t.Fatalf("read back after the migration:\n%s\nwant (as schema %d read it):\n%s", gotJSON, version, wantJSON)
	}

	// The durable log tells each migrated event's change: 7 sends (m0 to
	// m4, r0, r1), the edit of m1 and the deletion of m2.
	logged, _, err := s.Logged("ws1", "c0", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	changes := map[ChangeKind]int{}
	for _, e := range logged {
		changes[e.Change]++
	}
	if len(logged) != 9 || changes[Send] != 7 || changes[Edit] != 1 || changes[Delete] != 1 {
		t.Fatalf("logged after the migration: %d events, changes %v; want 7 sends, 1 edit, 1 deletion", len(logged), changes)
	}
	if n, err := s.Unread("ws1", "c0", "a:s", 1, 100); err != nil || n != 3 {
		t.Fatalf("unread after seq 1 after the migration: %d, %v; want 3 (m1, m3, m4: not m2, deleted)", n, err)
	}

	// The migrated file takes new changes, an edit of a migrated message
	// included, and erasures.
	ctx := context.Background()
	if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c0", Participant: "v:a", Message: msg("m9", "v:a", "after", 30)}); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c0", Participant: "v:a", Message: msg("m0", "v:a", "dup", 31)}); err != nil || !res.Dup || res.Seq != 1 {
		t.Fatalf("m0 sent again after the migration: %+v %v, want a duplicate of seq 1", res, err)
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
	for _, e := range evs {
		if e.Message.ID == "m3" && e.Message.Body != "edited after" {
			t.Fatalf("event %d of m3 reads %q after its edit", e.Seq, e.Message.Body)
		}
	}
	if err := s.EraseConversation(ctx, "ws1", "c1"); err != nil {
		t.Fatal(err)
	}
	if l := keysOf(t, s, "c1"); len(l) != 0 {
		t.Fatalf("keys of the erased conversation remain: %v", l)
	}
}
