package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"parley/crdt"

	bolt "go.etcd.io/bbolt"
)

// TestMessageIndexInBulk: with the message index merged every few events
// (Config.indexTail), messages whose records are in the index, in the
// events after its watermark, or both (edited across it) are found the
// same: a resend is a duplicate of the original's seq (the filters
// cached or not, before and after a reopen), an edit and a deletion find
// the message, a new ID is new, and the log reads back every message's
// current state with its sends, edits and deletion told apart.
func TestMessageIndexInBulk(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	s := openTest(t, Config{Path: path, indexTail: 8})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	seqs := map[string]uint64{}
	send := func(s *Store, id string, wall int64) Result {
		t.Helper()
		res, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg(id, "v:a", "body of "+id, wall)})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// 40 messages, some of them sent at once (one commit, one chunk).
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range 40 {
		id := fmt.Sprintf("m%02d", i)
		if i%10 < 5 {
			res := send(s, id, int64(i+1))
			seqs[id] = res.Seq
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := send(s, id, int64(i+1))
			mu.Lock()
			seqs[id] = res.Seq
			mu.Unlock()
		}()
		if i%10 == 9 {
			wg.Wait()
		}
	}
	edit := func(s *Store, kind ChangeKind, id, body string, wall int64) {
		t.Helper()
		if _, err := s.Apply(ctx, Change{Kind: kind, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: crdt.Message{ID: id}, Body: body, TS: crdt.Timestamp{Wall: wall, Node: "n1"}}); err != nil {
			t.Fatalf("%d of %s: %v", kind, id, err)
		}
	}
	edit(s, Edit, "m02", "m02 edited", 100) // created in the index
	edit(s, Edit, "m38", "m38 edited", 101) // created after the watermark
	edit(s, Delete, "m20", "", 102)
	edit(s, Edit, "m02", "m02 edited again", 103)

	var watermark uint64
	var records int
	s.db.View(func(tx *bolt.Tx) error {
		watermark = indexedThrough(tx, "ws1", "c1")
		p := prefix("ws1", "c1")
		c := tx.Bucket(bMsgs).Cursor()
		for k, _ := c.Seek(p); k != nil && len(k) > len(p) && string(k[:len(p)]) == string(p); k, _ = c.Next() {
			records++
		}
		return nil
	})
	if watermark == 0 || watermark >= 44 || records == 0 {
		t.Fatalf("watermark %d of 44 events, %d message records: the index was not merged in part", watermark, records)
	}

	check := func(s *Store, when string) {
		t.Helper()
		for id, seq := range seqs {
			res := send(s, id, 999)
			if !res.Dup || res.Seq != seq {
				t.Fatalf("%s: %s sent again: %+v, want a duplicate of seq %d", when, id, res, seq)
			}
		}
		evs, _, err := s.Logged("ws1", "c1", 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"m02": "m02 edited again", "m38": "m38 edited", "m20": ""}
		sends, changes := 0, map[ChangeKind]int{}
		for _, e := range evs {
			body, ok := want[e.Message.ID]
			if !ok {
				body = "body of " + e.Message.ID
			}
			if e.Message.Body != body {
				t.Fatalf("%s: event %d of %s reads %q, want %q", when, e.Seq, e.Message.ID, e.Message.Body, body)
			}
			if e.Change == Send {
				sends++
				if seqs[e.Message.ID] != e.Seq {
					t.Fatalf("%s: the send of %s at %d, want %d", when, e.Message.ID, e.Seq, seqs[e.Message.ID])
				}
			}
			changes[e.Change]++
		}
		if len(evs) != 44 || sends != 40 || changes[Edit] != 3 || changes[Delete] != 1 {
			t.Fatalf("%s: %d events, changes %v, want 44: 40 sends, 3 edits, 1 deletion", when, len(evs), changes)
		}
	}
	check(s, "filters cached")
	s.seq.dropFilters()
	check(s, "filters dropped")
	edit(s, Edit, "m38", "m38 edited", 101) // made already: changes nothing

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(Config{Path: path, indexTail: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	check(s2, "reopened")
	// New messages after the reopen go on merging; a new ID is new.
	for i := range 20 {
		id := fmt.Sprintf("n%02d", i)
		res := send(s2, id, int64(200+i))
		if res.Dup {
			t.Fatalf("new message %s taken as a duplicate", id)
		}
		seqs[id] = res.Seq
	}
	for id, seq := range seqs {
		if res := send(s2, id, 999); !res.Dup || res.Seq != seq {
			t.Fatalf("after the reopen: %s sent again: %+v, want a duplicate of seq %d", id, res, seq)
		}
	}
	if n, err := s2.Unread("ws1", "c1", "a:s", 40, 1000); err != nil || n != 20 {
		t.Fatalf("unread after the first 40 sends: %d, %v; want 20 (n00 to n19, not the edits and the deletion of earlier messages)", n, err)
	}
}
