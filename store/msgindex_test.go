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

func TestTailLimit(t *testing.T) {
	const epoch = 3 << 32
	for _, c := range []struct {
		tail      int
		watermark uint64
		want      int
	}{
		{4096, 0, 4096},
		{4096, epoch | 8192, 4096},   // up to twice indexTail: indexTail
		{4096, epoch | 12000, 6000},  // then half of what is indexed
		{4096, epoch | 40000, 16384}, // up to 4 × indexTail
		{8, epoch | 1000, 32},
	} {
		if got := tailLimit(c.tail, c.watermark); got != c.want {
			t.Errorf("tailLimit(%d, %d) = %d, want %d", c.tail, c.watermark&(1<<32-1), got, c.want)
		}
	}
}

// TestLongConversationMergesLess: as a conversation grows past twice
// indexTail, its events wait outside the message index for up to half of
// what the index covers (at most 4 × indexTail), not indexTail each time,
// and every message is still found.
func TestLongConversationMergesLess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{indexTail: 8})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	merges, longest := 0, 0
	var last uint64
	for i := range 200 {
		if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg(fmt.Sprintf("m%03d", i), "v:a", "x", int64(i+1))}); err != nil {
			t.Fatal(err)
		}
		s.db.View(func(tx *bolt.Tx) error {
			w := indexedThrough(tx, "ws1", "c1")
			if w != last {
				merges++
				last = w
			}
			n := 0
			it := newEvIter(tx, nil, "ws1", "c1")
			for ok := it.seek(w + 1); ok; ok = it.next() {
				n++
			}
			longest = max(longest, n)
			return it.err
		})
	}
	t.Logf("200 messages, indexTail 8: %d merges, at most %d events outside the index", merges, longest)
	if longest > 4*8+1 {
		t.Errorf("%d events outside the index, want at most %d", longest, 4*8+1)
	}
	if merges > 12 {
		t.Errorf("%d merges of 200 events, want the tail to grow with the index (about 9; 22 at indexTail each time)", merges)
	}
	for i := range 200 {
		res, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg(fmt.Sprintf("m%03d", i), "v:a", "x", 999)})
		if err != nil || !res.Dup {
			t.Fatalf("m%03d sent again: %+v, %v; want a duplicate", i, res, err)
		}
	}
}
