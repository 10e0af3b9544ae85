package store

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"parley/crdt"

	bolt "go.etcd.io/bbolt"
)

// valuesContaining lists the keys of every bucket whose value holds text.
func valuesContaining(t *testing.T, s *Store, text string) []string {
	t.Helper()
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				if bytes.Contains(v, []byte(text)) || bytes.Contains(k, []byte(text)) {
					out = append(out, fmt.Sprintf("%s/%q", name, k))
				}
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEditAndDeleteLeaveNoOldText: a message edited twice and one deleted
// keep none of their earlier texts in any record of the store, and every
// event of each, replayed from the start, carries its final state.
func TestEditAndDeleteLeaveNoOldText(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	apply := func(ch Change) {
		t.Helper()
		ch.Workspace, ch.Conversation = "ws1", "c1"
		if _, err := s.Apply(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	apply(Change{Kind: Send, Participant: "v:a", Message: msg("m1", "v:a", "canary-first-draft", 10)})
	apply(Change{Kind: Send, Participant: "v:a", Message: msg("m2", "v:a", "canary-deleted-text", 11)})
	apply(Change{Kind: Send, Participant: "v:a", Message: msg("m3", "v:a", "kept as sent", 12)})
	apply(Change{Kind: Edit, Participant: "v:a", Message: crdt.Message{ID: "m1"}, Body: "canary-second-draft", TS: crdt.Timestamp{Wall: 13}})
	apply(Change{Kind: Edit, Participant: "v:a", Message: crdt.Message{ID: "m2"}, Body: "canary-deleted-edit", TS: crdt.Timestamp{Wall: 14}})
	apply(Change{Kind: Edit, Participant: "v:a", Message: crdt.Message{ID: "m1"}, Body: "final text", TS: crdt.Timestamp{Wall: 15}})
	apply(Change{Kind: Delete, Participant: "v:a", Message: crdt.Message{ID: "m2"}, TS: crdt.Timestamp{Wall: 16}})
	apply(Change{Kind: Edit, Participant: "v:a", Message: crdt.Message{ID: "m1"}, Body: "final text, really", TS: crdt.Timestamp{Wall: 17}})

	for _, canary := range []string{"canary-first-draft", "canary-second-draft", "canary-deleted-text", "canary-deleted-edit"} {
		if at := valuesContaining(t, s, canary); len(at) > 0 {
			t.Errorf("%q still stored at %v", canary, at)
		}
	}
	evs, _, err := s.Events("ws1", "c1", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		switch e.Message.ID {
		case "m1":
			if e.Message.Body != "final text, really" {
				t.Errorf("event %d of m1 replays %q", e.Seq, e.Message.Body)
			}
		case "m2":
			if !e.Message.IsDeleted() || e.Message.Body != "" {
				t.Errorf("event %d of m2 replays %+v", e.Seq, e.Message)
			}
		case "m3":
			if e.Message.Body != "kept as sent" {
				t.Errorf("event %d of m3 replays %q", e.Seq, e.Message.Body)
			}
		}
	}
	// A resume from nothing on the vector path says the same.
	since, _, err := s.EventsSince("ws1", "c1", nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range since {
		if e.Message.ID == "m2" && e.Message.Body != "" {
			t.Errorf("resume replays deleted text at %d: %q", e.Seq, e.Message.Body)
		}
	}
	// What anti-entropy sends of the origin: the final states only.
	oevs, err := s.OriginEvents("ws1", "c1", s.Origin(), 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range oevs {
		if bytes.Contains([]byte(e.Message.Body), []byte("canary")) {
			t.Errorf("origin event %d carries %q", e.Stamp.OSeq, e.Message.Body)
		}
	}
}

// TestRemoteDeleteBeforeItsMessage: a replica that gets a message's
// tombstone before the message itself, or an edit before the original,
// never stores the text the later event carries.
func TestRemoteDeleteBeforeItsMessage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{})
	conv := Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a", Created: 1}
	orig := msg("m1", "v:a", "canary-remote-original", 10)
	edited := msg("m2", "v:a", "canary-remote-before-edit", 11)
	steps := []Remote{
		{Stamp: Stamp{Origin: "n2", OSeq: 1}, Message: orig.Delete(crdt.Timestamp{Wall: 20, Node: "n2"})},
		{Stamp: Stamp{Origin: "n2", OSeq: 2}, Message: edited.Edit("after the edit", crdt.Timestamp{Wall: 21, Node: "n2"})},
		{Stamp: Stamp{Origin: "n1", OSeq: 1}, Message: orig},
		{Stamp: Stamp{Origin: "n1", OSeq: 2}, Message: edited},
	}
	for _, r := range steps {
		r.Conversation = conv
		if _, err := s.ApplyRemote(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, canary := range []string{"canary-remote-original", "canary-remote-before-edit"} {
		if at := valuesContaining(t, s, canary); len(at) > 0 {
			t.Errorf("%q stored at %v", canary, at)
		}
	}
	// A remote edit after the original rewrites the original's event.
	late := msg("m3", "v:a", "canary-remote-replaced", 12)
	for i, m := range []crdt.Message{late, late.Edit("replaced", crdt.Timestamp{Wall: 30, Node: "n2"})} {
		if _, err := s.ApplyRemote(ctx, Remote{Conversation: conv, Stamp: Stamp{Origin: "n3", OSeq: uint64(i + 1)}, Message: m}); err != nil {
			t.Fatal(err)
		}
	}
	if at := valuesContaining(t, s, "canary-remote-replaced"); len(at) > 0 {
		t.Errorf("an edited remote message's first text stored at %v", at)
	}
}

// TestMigrationRefersSupersededEvents: a schema-5 file whose earlier
// events of an edited and a deleted message hold their old texts keeps none
// of them once opened by this build, and replays the final states.
func TestMigrationRefersSupersededEvents(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "v5.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(db, migrations[:5], migrationEnv{origin: "n1"}); err != nil {
		t.Fatal(err)
	}
	send := msg("m1", "v:a", "canary-v5-first", 1)
	edited := send.Edit("canary-v5-second", crdt.Timestamp{Wall: 2, Node: "n1"})
	final := edited.Edit("final", crdt.Timestamp{Wall: 3, Node: "n1"})
	gone := msg("m2", "v:a", "canary-v5-deleted", 4)
	states := []crdt.Message{send, edited, gone, final, gone.Delete(crdt.Timestamp{Wall: 5, Node: "n1"})}
	err = db.Update(func(tx *bolt.Tx) error {
		w, _ := marshal(Workspace{ID: "ws1"})
		if err := tx.Bucket(bWorkspaces).Put([]byte("ws1"), w); err != nil {
			return err
		}
		c, _ := marshal(Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a", Head: 5})
		if err := tx.Bucket(bConvs).Put(key("ws1", "c1"), c); err != nil {
			return err
		}
		for i, m := range states {
			v, _ := marshal(m)
			if err := tx.Bucket(bEvents).Put(seqKey("ws1", "c1", uint64(i+1)), v); err != nil {
				return err
			}
			if err := putStamp(tx, "ws1", "c1", uint64(i+1), Stamp{Origin: "n1", OSeq: uint64(i + 1)}); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bMsgs).Put(key("ws1", "c1", "m1"), msgRecord{Seq: 1, Last: 4}.appendTo(nil)); err != nil {
			return err
		}
		return tx.Bucket(bMsgs).Put(key("ws1", "c1", "m2"), msgRecord{Seq: 3, Last: 5}.appendTo(nil))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range []string{"canary-v5-first", "canary-v5-second", "canary-v5-deleted"} {
		if at := valuesContaining(t, s, c); len(at) > 0 {
			t.Errorf("%q still stored at %v", c, at)
		}
	}
	evs, _, err := s.Events("ws1", "c1", 0, 10)
	if err != nil || len(evs) != 5 {
		t.Fatalf("events after migration: %+v %v", evs, err)
	}
	for _, e := range evs {
		if want := map[string]string{"m1": "final", "m2": ""}[e.Message.ID]; e.Message.Body != want {
			t.Errorf("event %d replays %q, want %q", e.Seq, e.Message.Body, want)
		}
	}
}
