package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestVectorRoundTripAndStaleness(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		ws, conv   string
		head       uint64
		vec        []float32
		wantErr    error
		wantStored bool
		wantHead   uint64
	}{
		{"first", "ws1", "c1", 5, []float32{0.5, -0.25, 1}, nil, true, 5},
		{"newer replaces", "ws1", "c1", 7, []float32{1, 2, 3}, nil, true, 7},
		{"older is ignored", "ws1", "c1", 6, []float32{9, 9, 9}, nil, false, 7},
		{"same head replaces", "ws1", "c1", 7, []float32{3, 2, 1}, nil, true, 7},
		{"unknown conversation", "ws1", "nope", 1, []float32{1}, ErrNotFound, false, 0},
		{"other workspace", "ws2", "c1", 1, []float32{1}, ErrNotFound, false, 0},
		{"empty vector", "ws1", "c1", 9, nil, ErrInvalid, false, 0},
		{"too large", "ws1", "c1", 9, make([]float32, MaxVectorDim+1), ErrInvalid, false, 0},
	}
	for _, tc := range tests { // in order: each case builds on the one before
		stored, err := s.PutVector(ctx, tc.ws, tc.conv, tc.head, tc.vec)
		if !errors.Is(err, tc.wantErr) || stored != tc.wantStored {
			t.Fatalf("%s: stored %v err %v, want %v %v", tc.name, stored, err, tc.wantStored, tc.wantErr)
		}
		if tc.wantErr != nil {
			continue
		}
		head, vec, err := s.Vector("ws1", "c1")
		if err != nil || head != tc.wantHead {
			t.Fatalf("%s: head %d err %v, want %d", tc.name, head, err, tc.wantHead)
		}
		if tc.wantStored && fmt.Sprint(vec) != fmt.Sprint(tc.vec) {
			t.Fatalf("%s: read back %v, want %v", tc.name, vec, tc.vec)
		}
	}
	if _, _, err := s.Vector("ws2", "c1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ws2 sees ws1's vector: %v", err)
	}
}

func TestForEachVectorSkipsDamagedRecords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{})
	for _, ws := range []string{"ws1", "ws2"} {
		for _, c := range []string{"c1", "c2"} {
			if err := s.CreateConversation(ctx, Conversation{Workspace: ws, ID: c, Owner: "v:a"}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.PutVector(ctx, ws, c, 1, []float32{1, 2}); err != nil {
				t.Fatal(err)
			}
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bVectors).Put(key("ws2", "c2"), []byte{1, 2, 3})
	})
	if err != nil {
		t.Fatal(err)
	}
	var got, bad []string
	err = s.ForEachVector(func(ws, conv string, head uint64, vec []float32) error {
		got = append(got, ws+"/"+conv)
		return nil
	}, func(ws, conv string, err error) { bad = append(bad, ws+"/"+conv) })
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[ws1/c1 ws1/c2 ws2/c1]" || fmt.Sprint(bad) != "[ws2/c2]" {
		t.Fatalf("got %v, bad %v", got, bad)
	}
}

func TestDecodeVector(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"valid", encodeVector(3, []float32{1, -1}), true},
		{"head only", encodeVector(3, nil), false},
		{"short", []byte{1, 2, 3}, false},
		{"ragged", append(encodeVector(3, []float32{1}), 0), false},
		{"nan", encodeVector(3, []float32{float32(math.NaN())}), false},
		{"inf", encodeVector(3, []float32{float32(math.Inf(1))}), false},
		{"too large", encodeVector(3, make([]float32, MaxVectorDim+1)), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			head, vec, err := decodeVector(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok %v", err, tc.ok)
			}
			if tc.ok && (head != 3 || len(vec) != 2 || vec[0] != 1 || vec[1] != -1) {
				t.Fatalf("decoded %d %v", head, vec)
			}
		})
	}
}

func FuzzDecodeVector(f *testing.F) {
	f.Add(encodeVector(1, []float32{0.1, 0.2, 0.3}))
	f.Add([]byte{})
	f.Add(make([]byte, 13))
	f.Fuzz(func(t *testing.T, b []byte) {
		head, vec, err := decodeVector(b)
		if err != nil {
			return
		}
		// Whatever decodes must encode back to the same bytes.
		if !bytes.Equal(encodeVector(head, vec), b) {
			t.Fatalf("round trip of %x differs", b)
		}
	})
}

func TestReplies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{})
	for i := range 3 {
		r := Reply{ID: fmt.Sprintf("r%d", i), Title: "t", Body: "b", Vector: []float32{float32(i), 1}}
		if err := s.PutReply(ctx, "ws1", r, 3); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutReply(ctx, "ws1", Reply{ID: "r9", Title: "t", Body: "b"}, 3); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a 4th reply over the limit of 3: %v", err)
	}
	if err := s.PutReply(ctx, "ws1", Reply{ID: "r1", Title: "new", Body: "b"}, 3); err != nil {
		t.Fatalf("replacing at the limit: %v", err)
	}
	if err := s.PutReply(ctx, "nope", Reply{ID: "r1", Title: "t", Body: "b"}, 3); !errors.Is(err, ErrNotFound) {
		t.Fatalf("reply of an unknown workspace: %v", err)
	}
	got, err := s.Replies("ws1")
	if err != nil || len(got) != 3 || got[1].Title != "new" || got[2].Vector[0] != 2 {
		t.Fatalf("replies %+v %v", got, err)
	}
	if other, _ := s.Replies("ws2"); len(other) != 0 {
		t.Fatalf("ws2 sees %+v", other)
	}
	if _, err := s.DeleteReply(ctx, "ws2", "r1", 10); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ws2 deleted ws1's reply: %v", err)
	}
	tomb, err := s.DeleteReply(ctx, "ws1", "r1", 10)
	if err != nil || !tomb.Deleted || tomb.Title != "" {
		t.Fatalf("delete: %+v %v", tomb, err)
	}
	if got, _ := s.Replies("ws1"); len(got) != 2 {
		t.Fatalf("after delete: %+v", got)
	}
	if _, err := s.DeleteReply(ctx, "ws1", "r1", 11); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting a deleted reply: %v", err)
	}
	// The tombstone frees its place under the limit.
	if err := s.PutReply(ctx, "ws1", Reply{ID: "r8", Title: "t", Body: "b"}, 3); err != nil {
		t.Fatalf("a 3rd reply after a deletion: %v", err)
	}
}

// TestMergeRepliesConverges: replicas that apply the same versions in any
// order, with repeats, end with the same set and digest; a tombstone beats
// the version it deleted, and an older version does not revive it.
func TestMergeRepliesConverges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v1 := Reply{ID: "r1", Title: "hello", Body: "first", Created: 1, Updated: 1}
	v2 := Reply{ID: "r1", Title: "hello", Body: "second", Created: 1, Updated: 2}
	gone := Reply{ID: "r1", Updated: 3, Deleted: true}
	other := Reply{ID: "r2", Title: "x", Body: "y", Created: 2, Updated: 2}
	orders := [][]Reply{
		{v1, v2, gone, other},
		{gone, v1, other, v2},
		{other, v2, v1, gone, v1},
		{v2, gone, v2, other, other},
	}
	var digests []string
	for i, order := range orders {
		s := openTest(t, Config{})
		for _, r := range order {
			if _, err := s.MergeReplies(ctx, "ws1", []Reply{r}); err != nil {
				t.Fatal(err)
			}
		}
		all, err := s.AllReplies("ws1")
		if err != nil {
			t.Fatal(err)
		}
		live, _ := s.Replies("ws1")
		if len(live) != 1 || live[0].ID != "r2" {
			t.Errorf("order %d: live replies %+v", i, live)
		}
		digests = append(digests, RepliesDigest(all))
	}
	for i, d := range digests {
		if d != digests[0] {
			t.Errorf("order %d: digest %s, order 0: %s", i, d, digests[0])
		}
	}
}

// keysOf lists every key, in every bucket, that mentions conv.
// keysOf lists the keys naming a conversation, but for tombstones of
// erasures, which hold nothing of it but its ID (see TestErasedStaysErased).
func keysOf(t *testing.T, s *Store, conv string) []string {
	t.Helper()
	var out []string
	s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if bytes.Equal(name, bErased) {
				return nil
			}
			return b.ForEach(func(k, _ []byte) error {
				if bytes.Contains(k, []byte(conv)) {
					out = append(out, fmt.Sprintf("%s:%q", name, k))
				}
				return nil
			})
		})
	})
	return out
}

func TestEraseConversation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{})
	for _, c := range []struct{ ws, id string }{{"ws1", "gone"}, {"ws1", "kept"}, {"ws2", "gone"}} {
		if err := s.CreateConversation(ctx, Conversation{Workspace: c.ws, ID: c.id, Owner: "v:a"}); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: c.ws, Conversation: c.id, Participant: "v:a", Message: msg(fmt.Sprintf("m%d", i), "v:a", "hi", 1)}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.MarkRead(ctx, c.ws, c.id, "a:s", 2, time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PutVector(ctx, c.ws, c.id, 3, []float32{1, 2}); err != nil {
			t.Fatal(err)
		}
	}
	before := len(keysOf(t, s, "gone"))
	if err := s.EraseConversation(ctx, "ws1", "gone"); err != nil {
		t.Fatal(err)
	}
	// ws2's conversation of the same ID is untouched: the record, 3 events
	// (each with its stamp, each a chunk of its commit) and the stamp
	// index's entry of the first, its origin's frontier, the owner entry, a
	// read receipt, the vector and its key (the messages are indexed by
	// their events' chunks until the conversation has more than indexTail
	// events: msgindex.go).
	if left := keysOf(t, s, "gone"); len(left) != before/2 || len(left) != 10 {
		t.Fatalf("after erasing ws1/gone, %d of %d keys remain: %v", len(left), before, left)
	}
	for _, k := range keysOf(t, s, "gone") {
		if !bytes.Contains([]byte(k), []byte("ws2")) {
			t.Fatalf("key of the erased conversation remains: %s", k)
		}
	}
	if _, _, err := s.Vector("ws1", "gone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("vector survived erasure: %v", err)
	}
	if _, _, err := s.Vector("ws1", "kept"); err != nil {
		t.Fatalf("neighbour's vector: %v", err)
	}
	if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "gone", Participant: "v:a", Message: msg("m9", "v:a", "back?", 1)}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("send to an erased conversation: %v", err)
	}
	if _, err := s.PutVector(ctx, "ws1", "gone", 9, []float32{1}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a late vector brought the conversation back: %v", err)
	}
	if err := s.EraseConversation(ctx, "ws1", "gone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second erasure: %v", err)
	}
	if convs, _ := s.Conversations("ws1", "v:a"); len(convs) != 1 || convs[0].ID != "kept" {
		t.Fatalf("owner index after erasure: %+v", convs)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("store after erasure: %v", err)
	}
}

// TestEraseWhileSending erases a conversation while its visitor sends as
// fast as it can: every send either succeeds before the erasure or fails
// with ErrNotFound, nothing of it remains, and the store keeps working.
func TestEraseWhileSending(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{})
	for round := range 20 {
		conv := fmt.Sprintf("c%d", round)
		if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: conv, Owner: "v:a"}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for w := range 4 {
			wg.Go(func() {
				for i := range 50 {
					id := fmt.Sprintf("m%d-%d", w, i)
					_, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: conv, Participant: "v:a", Message: msg(id, "v:a", "x", 1)})
					if err != nil && !errors.Is(err, ErrNotFound) {
						errs <- err
					}
					if _, err := s.MarkRead(ctx, "ws1", conv, "a:s", 1, time.Now()); err != nil && !errors.Is(err, ErrNotFound) {
						errs <- err
					}
				}
			})
		}
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		if err := s.EraseConversation(ctx, "ws1", conv); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
		if left := keysOf(t, s, conv); len(left) != 0 {
			t.Fatalf("round %d: keys of the erased conversation remain: %v", round, left)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("store broken by erasures: %v", err)
	}
}

// TestMigrationFromV2 builds a schema-2 file with data and opens it with
// this build: the new buckets exist, and nothing was lost.
func TestMigrationFromV2(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "v2.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(db, migrations[:2], migrationEnv{origin: "n1"}); err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		w, _ := marshal(Workspace{ID: "ws1"})
		if err := tx.Bucket(bWorkspaces).Put([]byte("ws1"), w); err != nil {
			return err
		}
		c, _ := marshal(Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"})
		if err := tx.Bucket(bConvs).Put(key("ws1", "c1"), c); err != nil {
			return err
		}
		if err := tx.Bucket(bOwners).Put(key("ws1", "v:a", "c1"), nil); err != nil {
			return err
		}
		return tx.Bucket(bEvents).Put(seqKey("ws1", "c1", 1), []byte(`{"id":"m1","body":"kept"}`))
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
	if v, _ := s.SchemaVersion(); v != SchemaLatest() || SchemaLatest() != 9 {
		t.Fatalf("schema %d (latest %d), want 9", v, SchemaLatest())
	}
	if got, err := s.Conversations("ws1", "v:a"); err != nil || len(got) != 1 {
		t.Fatalf("conversations after migration: %+v %v", got, err)
	}
	evs, _, _ := s.Events("ws1", "c1", 0, 10)
	if len(evs) != 1 || evs[0].Message.Body != "kept" {
		t.Fatalf("events lost in migration: %+v", evs)
	}
	if _, err := s.PutVector(context.Background(), "ws1", "c1", 1, []float32{1}); err != nil {
		t.Fatalf("vectors bucket: %v", err)
	}
	if err := s.PutReply(context.Background(), "ws1", Reply{ID: "r1", Title: "t", Body: "b"}, 0); err != nil {
		t.Fatalf("replies bucket: %v", err)
	}
}

// TestPutVectorsBatch: one transaction, a result per item; an item that
// cannot be stored does not stop the others.
func TestPutVectorsBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var commits int
	var mu sync.Mutex
	s := openTest(t, Config{Observer: observerFunc(func(_ time.Duration, ops int, _ error) { mu.Lock(); commits++; mu.Unlock() })})
	for _, c := range []string{"a", "b", "c"} {
		if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: c, Owner: "v:a"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PutVector(ctx, "ws1", "c", 10, []float32{1}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	before := commits
	mu.Unlock()
	res, err := s.PutVectors(ctx, []VectorPut{
		{"ws1", "a", 1, []float32{1, 2}},
		{"ws1", "gone", 1, []float32{1, 2}},
		{"ws1", "b", 1, nil},
		{"ws1", "c", 9, []float32{3}},
		{"ws2", "a", 1, []float32{1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if commits-before != 1 {
		t.Errorf("%d commits for one batch", commits-before)
	}
	mu.Unlock()
	if res[0] != nil || !errors.Is(res[1], ErrNotFound) || !errors.Is(res[2], ErrInvalid) ||
		res[3] == nil || errors.Is(res[3], ErrNotFound) || errors.Is(res[3], ErrInvalid) || !errors.Is(res[4], ErrNotFound) {
		t.Fatalf("results %v", res)
	}
	if _, v, _ := s.Vector("ws1", "a"); len(v) != 2 {
		t.Fatalf("a: %v", v)
	}
	if h, _, _ := s.Vector("ws1", "c"); h != 10 {
		t.Fatalf("an older vector replaced c's: head %d", h)
	}
}

// TestErasedStaysErased: an erased conversation does not come back, neither
// created again nor through another replica's late event.
func TestErasedStaysErased(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{})
	conv := Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a", Created: 1}
	if err := s.CreateConversation(ctx, conv); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg("m1", "v:a", "secret", 1)}); err != nil {
		t.Fatal(err)
	}
	if err := s.EraseConversation(ctx, "ws1", "c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateConversation(ctx, conv); !errors.Is(err, ErrExists) {
		t.Fatalf("create an erased conversation again: %v", err)
	}
	_, err := s.ApplyRemote(ctx, Remote{Conversation: conv, Stamp: Stamp{Origin: "n2", OSeq: 1}, Message: msg("m1", "v:a", "secret", 1)})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("a late event of an erased conversation: %v", err)
	}
	if left := keysOf(t, s, "c1"); len(left) != 0 {
		t.Fatalf("keys of the erased conversation: %v", left)
	}
}
