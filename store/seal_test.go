package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// sealedMarks returns bytes that only the sealed records of a conversation
// and its sealed key spell in the file: the GCM tag (the last 16 bytes) of
// each. Text is never in the file in plaintext; the scrub tests follow its
// ciphertext with these.
func sealedMarks(t fataler, s *Store, ws, conv string) []string {
	t.Helper()
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		add := func(v []byte) {
			if len(v) > 1+nonceLen+16 && v[0] == sealedV1 {
				out = append(out, string(v[len(v)-16:]))
			}
		}
		add(tx.Bucket(bKeys).Get(key(ws, conv)))
		add(tx.Bucket(bConvs).Get(key(ws, conv)))
		add(tx.Bucket(bVectors).Get(key(ws, conv)))
		p := prefix(ws, conv)
		c := tx.Bucket(bEvents).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if _, sealed, err := parseChunk(v, nil); err == nil {
				add(sealed)
			}
		}
		return nil
	})
	if err != nil || len(out) < 2 {
		t.Fatalf("sealed marks of %s/%s: %d, %v", ws, conv, len(out), err)
	}
	return out
}

// fataler is what sealedMarks needs of a testing.TB.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// marksInFile counts the marks found in the raw file.
func marksInFile(t testing.TB, path string, marks []string) int {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range marks {
		if bytes.Contains(raw, []byte(m)) {
			n++
		}
	}
	return n
}

// marksNotInFile holds once none of the marks is in the file.
func marksNotInFile(t testing.TB, path string, marks []string) func() error {
	return func() error {
		if n := marksInFile(t, path, marks); n > 0 {
			return fmt.Errorf("%d of %d sealed records left", n, len(marks))
		}
		return nil
	}
}

// TestSealedAtRest: the text of a conversation (bodies, the visitor's name,
// edits, the embedding) is never in the file in plaintext, and reads
// return it whole; reopened with the same KEK it reads the same, with
// another KEK the store refuses to open.
func TestSealedAtRest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "parley.db")
	kek := bytes.Repeat([]byte{7}, KEKSize)
	s, err := Open(Config{Path: path, KEK: kek, ScrubAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	const body, name, edit = "CANARY-BODY-0a0a", "CANARY-NAME-1b1b", "CANARY-EDIT-2c2c"
	if err := s.PutWorkspace(ctx, Workspace{ID: "ws1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a", OwnerName: name}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		m := msg(fmt.Sprintf("m%02d", i), "v:a", fmt.Sprintf("%s %d", body, i), int64(i+1))
		m.Name = name
		if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: m}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Apply(ctx, Change{Kind: Edit, Workspace: "ws1", Conversation: "c1", Participant: "v:a",
		Message: msg("m19", "v:a", "", 0), Body: edit, TS: msg("", "", "", 50).Created}); err != nil {
		t.Fatal(err)
	}
	// A remote event of a conversation first heard of through it.
	rm := msg("r1", "v:b", body+" remote", 3)
	if _, err := s.ApplyRemote(ctx, Remote{Conversation: Conversation{Workspace: "ws1", ID: "c2", Owner: "v:b", OwnerName: name, Created: 1},
		Stamp: Stamp{Origin: "n9", OSeq: 1}, Message: rm}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutVector(ctx, "ws1", "c1", 21, []float32{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store) {
		t.Helper()
		for _, c := range []string{body, name, edit} {
			if n := canaryCount(t, path, c); n != 0 {
				t.Fatalf("%s in the file %d times in plaintext", c, n)
			}
		}
		c, err := s.Conversation("ws1", "c1")
		if err != nil || c.OwnerName != name || c.Last == nil || c.Last.Body != edit {
			t.Fatalf("conversation read back: %+v %v", c, err)
		}
		evs, _, err := s.Events("ws1", "c1", 0, 100)
		if err != nil || len(evs) != 21 || evs[0].Message.Body != body+" 0" || evs[0].Message.Name != name || evs[20].Message.Body != edit {
			t.Fatalf("events read back: %d %v", len(evs), err)
		}
		evs, _, err = s.Events("ws1", "c2", 0, 100)
		if err != nil || len(evs) != 1 || evs[0].Message.Body != body+" remote" {
			t.Fatalf("remote event read back: %+v %v", evs, err)
		}
		if h, v, err := s.Vector("ws1", "c1"); err != nil || h != 21 || len(v) != 3 {
			t.Fatalf("vector read back: %d %v %v", h, v, err)
		}
		all, err := s.Conversations("ws1", "")
		if err != nil || len(all) != 2 || all[1].OwnerName != name {
			t.Fatalf("conversations listed: %+v %v", all, err)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(Config{Path: path, KEK: kek, ScrubAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	kek2 := bytes.Repeat([]byte{8}, KEKSize)
	if _, err := Open(Config{Path: path, KEK: kek2}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("open under another KEK: %v, want ErrInvalid", err)
	}
	// A rotated KEK: the keys are sealed again under the new one, and the
	// old one alone no longer opens the file.
	s, err = Open(Config{Path: path, KEK: kek2, PreviousKEKs: [][]byte{bytes.Repeat([]byte{9}, KEKSize), kek}, ScrubAfter: -1})
	if err != nil {
		t.Fatalf("open under a rotated KEK: %v", err)
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(Config{Path: path, KEK: kek2, ScrubAfter: -1})
	if err != nil {
		t.Fatalf("reopen under the new KEK alone: %v", err)
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Path: path, KEK: kek}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("open under the KEK before the rotation: %v, want ErrInvalid", err)
	}
	if _, err := os.Stat(path + ".kek"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a KEK file was written beside a store given its KEK: %v", err)
	}
}

// TestErasedIsUnreadable: once a conversation is erased, its records as
// they were in the file (a copy taken before the erasure: freed pages, a
// backup) open under no key the store has; before, they did.
func TestErasedIsUnreadable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{ScrubAfter: -1})
	fillConversation(t, s, "ws1", "gone", "CANARY-SHRED", 5)
	fillConversation(t, s, "ws1", "kept", "KEPT", 5)
	// The raw records, as a backup taken now would hold them.
	type rec struct{ bucket, k, v []byte }
	var recs []rec
	s.db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bConvs, bEvents} {
			p := prefix("ws1", "gone")
			if bytes.Equal(name, bConvs) {
				p = key("ws1", "gone")
			}
			c := tx.Bucket(name).Cursor()
			for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
				recs = append(recs, rec{name, bytes.Clone(k), bytes.Clone(v)})
			}
		}
		return nil
	})
	if len(recs) != 6 {
		t.Fatalf("%d records of the conversation, want its record and 5 events", len(recs))
	}
	opens := func() (int, error) {
		n := 0
		err := s.db.View(func(tx *bolt.Tx) error {
			a, err := s.keys.key(tx, "ws1", "gone", false)
			if err != nil {
				return err
			}
			for _, r := range recs {
				v := r.v
				var ents []chunkEntry
				if bytes.Equal(r.bucket, bEvents) {
					if ents, v, err = parseChunk(v, nil); err != nil {
						return err
					}
				}
				p, err := unseal(a, r.bucket, r.k, v)
				if err != nil {
					return err
				}
				if bytes.Equal(r.bucket, bEvents) {
					if m, err := decodeState(p, &ents[0]); err != nil || !strings.HasPrefix(m.Body, "CANARY-SHRED") {
						return fmt.Errorf("event opens to %q", p)
					}
				}
				n++
			}
			return nil
		})
		return n, err
	}
	if n, err := opens(); err != nil || n != 6 {
		t.Fatalf("before the erasure: %d records open, %v", n, err)
	}
	if err := s.EraseConversation(ctx, "ws1", "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := opens(); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("after the erasure: %v, want ErrKeyDestroyed", err)
	}
	// Nor does any other conversation's key open them.
	s.db.View(func(tx *bolt.Tx) error {
		a, err := s.keys.key(tx, "ws1", "kept", false)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if _, err := unseal(a, r.bucket, r.k, r.v); err == nil {
				t.Fatalf("a record of the erased conversation opens under another's key")
			}
		}
		return nil
	})
	// Its sealed key leaves the file with the scrub, like its records.
	marks := sealedMarksOfRecords(recs[0].v, recs[1].v)
	if err := s.Scrub(ctx); err != nil {
		t.Fatal(err)
	}
	if n := marksInFile(t, s.cfg.Path, marks); n != 0 {
		t.Fatalf("%d sealed records of the erased conversation in the file after the scrub", n)
	}
}

func sealedMarksOfRecords(vs ...[]byte) []string {
	var out []string
	for _, v := range vs {
		out = append(out, string(v[len(v)-16:]))
	}
	return out
}

// TestMigrationSealsPlaintext: a file written before sealing (schema 6)
// with a conversation in plaintext is sealed at Open, keeps every record
// readable, and holds no plaintext afterwards, freed pages included.
func TestMigrationSealsPlaintext(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "v6.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(db, migrations[:6], migrationEnv{origin: "n1"}); err != nil {
		t.Fatal(err)
	}
	const body, name = "CANARY-OLD-BODY-3d3d", "CANARY-OLD-NAME-4e4e"
	err = db.Update(func(tx *bolt.Tx) error {
		w, _ := marshal(Workspace{ID: "ws1"})
		if err := tx.Bucket(bWorkspaces).Put([]byte("ws1"), w); err != nil {
			return err
		}
		for i := range 50 {
			id := fmt.Sprintf("c%02d", i)
			m := msg("m1", "v:a", fmt.Sprintf("%s %d %s", body, i, strings.Repeat("x", 100)), 1)
			m.Name = name
			c, _ := marshal(Conversation{Workspace: "ws1", ID: id, Owner: "v:a", OwnerName: name, Head: 2, Last: &m})
			if err := tx.Bucket(bConvs).Put(key("ws1", id), c); err != nil {
				return err
			}
			if err := tx.Bucket(bOwners).Put(key("ws1", "v:a", id), nil); err != nil {
				return err
			}
			ev, _ := marshal(m)
			if err := tx.Bucket(bEvents).Put(seqKey("ws1", id, 1), refValue("m1")); err != nil {
				return err
			}
			if err := tx.Bucket(bEvents).Put(seqKey("ws1", id, 2), ev); err != nil {
				return err
			}
			if err := tx.Bucket(bMsgs).Put(key("ws1", id, "m1"), msgRecord{Seq: 1, Last: 2}.appendTo(nil)); err != nil {
				return err
			}
			if err := putStamp(tx, "ws1", id, 1, Stamp{Origin: "n1", OSeq: 1}); err != nil {
				return err
			}
			if err := putStamp(tx, "ws1", id, 2, Stamp{Origin: "n1", OSeq: 2}); err != nil {
				return err
			}
			if err := tx.Bucket(bVectors).Put(key("ws1", id), encodeVector(2, []float32{1, 2})); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if canaryCount(t, path, body+" 7 ") == 0 || canaryCount(t, path, name) == 0 {
		t.Fatal("the schema 6 file holds no plaintext: the test proves nothing")
	}

	s, err := Open(Config{Path: path, ScrubAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.SchemaVersion(); v != SchemaLatest() {
		t.Fatalf("schema %d, want 7", v)
	}
	for _, c := range []string{body, name} {
		if n := canaryCount(t, path, c); n != 0 {
			t.Fatalf("%s in the file %d times after the migration", c, n)
		}
	}
	for i := range 50 {
		id := fmt.Sprintf("c%02d", i)
		c, err := s.Conversation("ws1", id)
		if err != nil || c.OwnerName != name || c.Last == nil || !strings.HasPrefix(c.Last.Body, fmt.Sprintf("%s %d ", body, i)) {
			t.Fatalf("conversation %s after the migration: %+v %v", id, c, err)
		}
		evs, _, err := s.Events("ws1", id, 0, 10)
		if err != nil || len(evs) != 2 || evs[0].Message.Body != c.Last.Body {
			t.Fatalf("events of %s after the migration: %+v %v", id, evs, err)
		}
		if h, v, err := s.Vector("ws1", id); err != nil || h != 2 || len(v) != 2 {
			t.Fatalf("vector of %s: %d %v %v", id, h, v, err)
		}
	}
	// Erasing a migrated conversation shreds it like any other.
	if err := s.EraseConversation(context.Background(), "ws1", "c07"); err != nil {
		t.Fatal(err)
	}
	checkFile(t, s.db.DB)
}
