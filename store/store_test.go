package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"parley/crdt"

	bolt "go.etcd.io/bbolt"
)

func openTest(t testing.TB, cfg Config) *Store {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "parley.db")
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.PutWorkspace(context.Background(), Workspace{ID: "ws1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutWorkspace(context.Background(), Workspace{ID: "ws2"}); err != nil {
		t.Fatal(err)
	}
	return s
}

func msg(id, author, body string, wall int64) crdt.Message {
	return crdt.NewMessage(id, author, "visitor", "", body, crdt.Timestamp{Wall: wall, Node: "n1"})
}

func TestApplyMessageLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var mu sync.Mutex
	var published []Event
	s := openTest(t, Config{OnCommit: func(evs []Event) {
		mu.Lock()
		published = append(published, evs...)
		mu.Unlock()
	}})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: got %v, want ErrExists", err)
	}
	if err := s.CreateConversation(ctx, Conversation{Workspace: "nope", ID: "c9", Owner: "v:a"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("create in unknown workspace: got %v, want ErrNotFound", err)
	}

	steps := []struct {
		name    string
		ch      Change
		wantErr error
		wantSeq uint64
		wantDup bool
	}{
		{"send", Change{Kind: Send, Participant: "v:a", Message: msg("m1", "v:a", "hello", 10)}, nil, 1, false},
		{"retry is a duplicate", Change{Kind: Send, Participant: "v:a", Message: msg("m1", "v:a", "hello", 11)}, nil, 1, true},
		{"second send", Change{Kind: Send, Participant: "a:s", Message: msg("m2", "a:s", "hi", 12)}, nil, 2, false},
		{"edit by another", Change{Kind: Edit, Participant: "a:s", Message: crdt.Message{ID: "m1"}, Body: "x", TS: crdt.Timestamp{Wall: 13}}, ErrForbidden, 0, false},
		{"edit unknown", Change{Kind: Edit, Participant: "v:a", Message: crdt.Message{ID: "m9"}, Body: "x", TS: crdt.Timestamp{Wall: 13}}, ErrNotFound, 0, false},
		{"edit", Change{Kind: Edit, Participant: "v:a", Message: crdt.Message{ID: "m1"}, Body: "hello!", TS: crdt.Timestamp{Wall: 14}}, nil, 3, false},
		{"delete", Change{Kind: Delete, Participant: "a:s", Message: crdt.Message{ID: "m2"}, TS: crdt.Timestamp{Wall: 15}}, nil, 4, false},
		{"edit deleted", Change{Kind: Edit, Participant: "a:s", Message: crdt.Message{ID: "m2"}, Body: "again", TS: crdt.Timestamp{Wall: 16}}, ErrInvalid, 0, false},
		// Made already: answered with the message's latest event, nothing stored.
		{"delete again", Change{Kind: Delete, Participant: "a:s", Message: crdt.Message{ID: "m2"}, TS: crdt.Timestamp{Wall: 17}}, nil, 4, true},
		{"same edit again", Change{Kind: Edit, Participant: "v:a", Message: crdt.Message{ID: "m1"}, Body: "hello!", TS: crdt.Timestamp{Wall: 18}}, nil, 3, true},
		{"delete again by another", Change{Kind: Delete, Participant: "v:a", Message: crdt.Message{ID: "m2"}, TS: crdt.Timestamp{Wall: 19}}, ErrForbidden, 0, false},
	}
	for _, st := range steps {
		st.ch.Workspace, st.ch.Conversation = "ws1", "c1"
		res, err := s.Apply(ctx, st.ch)
		if !errors.Is(err, st.wantErr) {
			t.Fatalf("%s: err %v, want %v", st.name, err, st.wantErr)
		}
		if err != nil {
			continue
		}
		if res.Seq != st.wantSeq || res.Dup != st.wantDup {
			t.Fatalf("%s: seq %d dup %v, want %d %v", st.name, res.Seq, res.Dup, st.wantSeq, st.wantDup)
		}
	}
	evs, more, err := s.Events("ws1", "c1", 0, 100)
	if err != nil || more {
		t.Fatalf("events: %v more=%v", err, more)
	}
	if len(evs) != 4 {
		t.Fatalf("got %d events, want 4", len(evs))
	}
	if evs[2].Message.Body != "hello!" || !evs[3].Message.IsDeleted() || evs[3].Message.Body != "" {
		t.Fatalf("unexpected events: %+v", evs)
	}
	tail, more, _ := s.Events("ws1", "c1", 2, 1)
	if len(tail) != 1 || tail[0].Seq != 3 || !more {
		t.Fatalf("paged events: %+v more=%v", tail, more)
	}
	// Nothing leaks across workspaces sharing a conversation ID.
	if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws2", Conversation: "c1", Participant: "v:a", Message: msg("m5", "v:a", "x", 20)}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("send into other workspace: %v", err)
	}
	c, err := s.Conversation("ws1", "c1")
	if err != nil || c.Head != 4 || c.Last == nil {
		t.Fatalf("conversation: %+v %v", c, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(published) != 4 {
		t.Fatalf("published %d events, want 4", len(published))
	}
	for i, e := range published {
		if e.Seq != uint64(i+1) {
			t.Fatalf("published out of order: %+v", published)
		}
	}
}

func TestReadReceiptsAndUnread(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg(fmt.Sprintf("m%d", i), "v:a", "x", int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		seq         uint64
		wantChanged bool
		wantErr     error
		wantRead    uint64
	}{
		{3, true, nil, 3},
		{2, false, nil, 3},
		{3, false, nil, 3},
		{9, false, ErrInvalid, 3},
		{5, true, nil, 5},
	}
	for _, c := range cases {
		changed, err := s.MarkRead(ctx, "ws1", "c1", "a:s", c.seq, time.Now())
		if !errors.Is(err, c.wantErr) || changed != c.wantChanged {
			t.Fatalf("read %d: changed=%v err=%v", c.seq, changed, err)
		}
		reads, _ := s.Reads("ws1", "c1")
		if reads["a:s"] != c.wantRead {
			t.Fatalf("after read %d: stored %d want %d", c.seq, reads["a:s"], c.wantRead)
		}
	}
	n, err := s.Unread("ws1", "c1", "a:s", 2, 100)
	if err != nil || n != 3 {
		t.Fatalf("unread after 2: %d %v", n, err)
	}
	if n, _ := s.Unread("ws1", "c1", "v:a", 0, 100); n != 0 {
		t.Fatalf("own messages counted unread: %d", n)
	}
	if n, _ := s.Unread("ws1", "c1", "a:s", 0, 2); n != 2 {
		t.Fatalf("unread cap: %d", n)
	}
}

func TestConcurrentSendsGetDistinctSeqs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var commits sync.Map
	s := openTest(t, Config{Observer: observerFunc(func(d time.Duration, ops int, err error) { commits.Store(d, ops) })})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	const n = 500
	seqs := make([]uint64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Every message is sent twice: retries must not store it twice.
			for range 2 {
				res, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg(fmt.Sprintf("m%04d", i), "v:a", "x", int64(i))})
				if err != nil {
					t.Error(err)
					return
				}
				if seqs[i] != 0 && seqs[i] != res.Seq {
					t.Errorf("message %d got seq %d then %d", i, seqs[i], res.Seq)
				}
				seqs[i] = res.Seq
			}
		}()
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for _, q := range seqs {
		if q < 1 || q > n || seen[q] {
			t.Fatalf("seq %d out of range or repeated", q)
		}
		seen[q] = true
	}
	evs, _, _ := s.Events("ws1", "c1", 0, 10*n)
	if len(evs) != n {
		t.Fatalf("stored %d events, want %d", len(evs), n)
	}
}

type observerFunc func(time.Duration, int, error)

func (f observerFunc) ObserveCommit(d time.Duration, ops int, err error) { f(d, ops, err) }

func TestClosedStoreRefuses(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	s.Close()
	err := s.PutWorkspace(context.Background(), Workspace{ID: "x"})
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	s := openTest(t, Config{Path: path})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg("m1", "v:a", "hi", 1)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	evs, _, err := s2.Events("ws1", "c1", 0, 10)
	if err != nil || len(evs) != 1 || evs[0].Message.Body != "hi" {
		t.Fatalf("after reopen: %+v %v", evs, err)
	}
	convs, err := s2.Conversations("ws1", "v:a")
	if err != nil || len(convs) != 1 {
		t.Fatalf("by owner after reopen: %+v %v", convs, err)
	}
}

// TestMigrationFromV1 builds a schema-1 file with data, opens it with this
// build and checks that the owner index was backfilled and nothing was lost.
func TestMigrationFromV1(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "v1.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(db, migrations[:1], migrationEnv{origin: "n1"}); err != nil {
		t.Fatal(err)
	}
	convs := []Conversation{
		{Workspace: "ws1", ID: "c1", Owner: "v:a"},
		{Workspace: "ws1", ID: "c2", Owner: "v:b"},
		{Workspace: "ws2", ID: "c3", Owner: "v:a"},
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, c := range convs {
			v, _ := marshal(c)
			if err := tx.Bucket(bConvs).Put(key(c.Workspace, c.ID), v); err != nil {
				return err
			}
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
	if v, _ := s.SchemaVersion(); v != SchemaLatest() {
		t.Fatalf("schema %d, want %d", v, SchemaLatest())
	}
	got, err := s.Conversations("ws1", "v:a")
	if err != nil || len(got) != 1 || got[0].ID != "c1" {
		t.Fatalf("owner index: %+v %v", got, err)
	}
	all, _ := s.Conversations("ws1", "")
	if len(all) != 2 {
		t.Fatalf("conversations of ws1: %d", len(all))
	}
	evs, _, _ := s.Events("ws1", "c1", 0, 10)
	if len(evs) != 1 || evs[0].Message.Body != "kept" {
		t.Fatalf("events lost in migration: %+v", evs)
	}
	// Events from before stamps are stamped as this node's, in seq order.
	if evs[0].Stamp != (Stamp{Origin: "local", OSeq: 1}) {
		t.Fatalf("migrated event stamped %+v", evs[0].Stamp)
	}
	if f, err := s.Frontier("ws1", "c1"); err != nil || f["local"] != 1 || len(f) != 1 {
		t.Fatalf("frontier after migration: %v %v", f, err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "future.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		m, _ := tx.CreateBucketIfNotExists(bMeta)
		return m.Put(schemaKey, putU64(uint64(SchemaLatest()+1)))
	})
	db.Close()
	s, err := Open(Config{Path: path})
	if err == nil {
		s.Close()
		t.Fatal("opened a file with a newer schema")
	}
	if !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), fmt.Sprintf("schema version %d, this build knows %d at most", SchemaLatest()+1, SchemaLatest())) ||
		!strings.Contains(err.Error(), path) {
		t.Fatalf("a newer schema refused with %v", err)
	}
}

func TestBadOpDoesNotSinkItsBatch(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	var wg sync.WaitGroup
	errs := make([]error, 50)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.submit(context.Background(), func(b *batch) error {
				if i == 7 {
					// A failure after writing: the whole transaction must roll
					// back and the others commit without it.
					b.tx.Bucket(bWorkspaces).Put([]byte("poison"), []byte("{}"))
					return errors.New("disk on fire")
				}
				return b.tx.Bucket(bWorkspaces).Put(fmt.Appendf(nil, "w%d", i), []byte(`{"id":"w"}`))
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i == 7) != (err != nil) {
			t.Fatalf("op %d: %v", i, err)
		}
	}
	if _, err := s.Workspace("poison"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the failed op's write was committed: %v", err)
	}
	if _, err := s.Workspace("w8"); err != nil {
		t.Fatalf("neighbour lost: %v", err)
	}
}

// TestEveryKeyStartsWithItsWorkspace walks every bucket after a realistic
// mix of writes and checks the tenancy rule the region pinning relies on.
func TestEveryKeyStartsWithItsWorkspace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{})
	for _, ws := range []string{"ws1", "ws2"} {
		if err := s.CreateConversation(ctx, Conversation{Workspace: ws, ID: "c1", Owner: "v:a"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: ws, Conversation: "c1", Participant: "v:a", Message: msg("m1", "v:a", "hi", 1)}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(ctx, Change{Kind: Edit, Workspace: ws, Conversation: "c1", Participant: "v:a", Message: crdt.Message{ID: "m1"}, Body: "hey", TS: crdt.Timestamp{Wall: 2}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.MarkRead(ctx, ws, "c1", "a:s", 1, time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PutVector(ctx, ws, "c1", 2, []float32{1, 0, 0}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutReply(ctx, ws, Reply{ID: "r1", Title: "t", Body: "b", Vector: []float32{0, 1, 0}}, 0); err != nil {
			t.Fatal(err)
		}
	}
	keys := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if string(name) == string(bMeta) {
				return nil
			}
			return b.ForEach(func(k, _ []byte) error {
				keys++
				ws := string(k)
				if i := bytes.IndexByte(k, sep); i >= 0 {
					ws = string(k[:i])
				} else if string(name) != string(bWorkspaces) {
					return fmt.Errorf("bucket %s: key %q has no workspace prefix", name, k)
				}
				if ws != "ws1" && ws != "ws2" {
					return fmt.Errorf("bucket %s: key %q does not start with a workspace", name, k)
				}
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys < 18 {
		t.Fatalf("only %d keys walked", keys)
	}
}

// TestUncleanStopStartsANewEpoch: events are published before their fsync,
// so after a kill a client may hold seqs that never became durable. The next
// start must hand out only seqs above them, and a resume from such a phantom
// seq must still find every later event.
func TestUncleanStopStartsANewEpoch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	s := openTest(t, Config{Path: path})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg(fmt.Sprintf("m%d", i), "v:a", "x", int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	// Stop the writer and drop the file without the clean mark, as a kill would.
	close(s.stop)
	<-s.done
	s.db.Close()
	s.closeOne.Do(func() {}) // the test's cleanup must not close it again

	s2, err := Open(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Epoch() != 1 {
		t.Fatalf("epoch %d after an unclean stop, want 1", s2.Epoch())
	}
	res, err := s2.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg("m9", "v:a", "x", 9)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Seq != 1<<32|1 {
		t.Fatalf("first seq of epoch 1 is %d", res.Seq)
	}
	// A client that was shown seqs 4 and 5 before the kill (never durable)
	// resumes after 5 and still gets the new event.
	evs, _, _ := s2.Events("ws1", "c1", 5, 10)
	if len(evs) != 1 || evs[0].Message.ID != "m9" {
		t.Fatalf("resume from a phantom seq: %+v", evs)
	}
	// A clean stop keeps the epoch.
	s2.Close()
	s3, err := Open(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if s3.Epoch() != 1 {
		t.Fatalf("epoch %d after a clean stop, want 1", s3.Epoch())
	}
	res, _ = s3.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg("m10", "v:a", "x", 10)})
	if res.Seq != 1<<32|2 {
		t.Fatalf("seq after a clean restart: %d", res.Seq)
	}
}

func TestNextSeq(t *testing.T) {
	t.Parallel()
	cases := []struct{ head, epoch, want uint64 }{
		{0, 0, 1}, {41, 0, 42}, {41, 1, 1<<32 | 1}, {1<<32 | 7, 1, 1<<32 | 8}, {1<<32 | 7, 3, 3<<32 | 1},
	}
	for _, c := range cases {
		if got := nextSeq(c.head, c.epoch); got != c.want {
			t.Errorf("nextSeq(%d, %d) = %d, want %d", c.head, c.epoch, got, c.want)
		}
	}
}

// TestPublishedEventsAreReadableBeforeTheirCommit: between the publish and
// the commit, Events must already return the event, or a resume racing with
// it could miss it for good.
func TestPublishedEventsAreReadableBeforeTheirCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var s *Store
	var checked, missing int
	s = openTest(t, Config{OnCommit: func(evs []Event) {
		for _, e := range evs {
			if e.Kind != EventMessage {
				continue
			}
			got, _, err := s.Events(e.Workspace, e.Conversation, e.Seq-1, 10)
			checked++
			if err != nil || len(got) == 0 || got[0].Seq != e.Seq || got[0].Message.ID != e.Message.ID {
				missing++
			}
		}
	}})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg(fmt.Sprintf("m%d", i), "v:a", "x", int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if checked != 5 || missing != 0 {
		t.Fatalf("checked %d published events, %d not readable before their commit", checked, missing)
	}
	// And once committed they are read from the file, exactly once each.
	evs, more, _ := s.Events("ws1", "c1", 0, 3)
	if len(evs) != 3 || !more || evs[2].Seq != 3 {
		t.Fatalf("paged read after commit: %+v more=%v", evs, more)
	}
}

func TestMergeEvents(t *testing.T) {
	t.Parallel()
	ev := func(seqs ...uint64) []Event {
		var out []Event
		for _, s := range seqs {
			out = append(out, Event{Seq: s})
		}
		return out
	}
	seqs := func(evs []Event) []uint64 {
		var out []uint64
		for _, e := range evs {
			out = append(out, e.Seq)
		}
		return out
	}
	cases := []struct {
		committed, pending []Event
		limit              int
		want               []uint64
		more               bool
	}{
		{ev(1, 2), ev(3, 4), 10, []uint64{1, 2, 3, 4}, false},
		{ev(1, 2, 3), ev(3, 4), 10, []uint64{1, 2, 3, 4}, false},
		{ev(1, 2), ev(3, 4), 3, []uint64{1, 2, 3}, true},
		{nil, ev(5), 10, []uint64{5}, false},
	}
	for _, c := range cases {
		got, more := mergeEvents(c.committed, c.pending, c.limit)
		if fmt.Sprint(seqs(got)) != fmt.Sprint(c.want) || more != c.more {
			t.Errorf("merge(%v, %v, %d) = %v %v", seqs(c.committed), seqs(c.pending), c.limit, seqs(got), more)
		}
	}
}

// TestSameMessageSentTwiceAtOnce: two connections retrying the same message
// at the same moment store it once, and both are told the same seq.
func TestSameMessageSentTwiceAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		id := fmt.Sprintf("m%03d", i)
		var wg sync.WaitGroup
		res := make([]Result, 2)
		for j := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg(id, "v:a", "x", int64(i))})
				if err != nil {
					t.Error(err)
				}
				res[j] = r
			}()
		}
		wg.Wait()
		if res[0].Seq != res[1].Seq || res[0].Dup == res[1].Dup {
			t.Fatalf("%s: results %+v and %+v", id, res[0], res[1])
		}
	}
	evs, _, _ := s.Events("ws1", "c1", 0, 1000)
	if len(evs) != 100 {
		t.Fatalf("%d events stored for 100 messages", len(evs))
	}
}

// TestReadOfAnEventStillOnItsWayToDisk: a recipient may mark as read an
// event it was delivered before that event is durable.
func TestReadOfAnEventStillOnItsWayToDisk(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reads := make(chan error, 100)
	var s *Store
	s = openTest(t, Config{OnCommit: func(evs []Event) {
		for _, e := range evs {
			if e.Kind == EventMessage {
				go func() {
					_, err := s.MarkRead(ctx, e.Workspace, e.Conversation, "a:s", e.Seq, time.Now())
					reads <- err
				}()
			}
		}
	}})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg(fmt.Sprintf("m%d", i), "v:a", "x", int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	for range 50 {
		if err := <-reads; err != nil {
			t.Fatalf("reading a delivered event: %v", err)
		}
	}
	r, _ := s.Reads("ws1", "c1")
	if r["a:s"] != 50 {
		t.Fatalf("read receipt %d, want 50", r["a:s"])
	}
}

func TestErrReportsClosed(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	if err := s.Err(); err != nil {
		t.Fatalf("open store: %v", err)
	}
	s.Close()
	if err := s.Err(); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed store: %v", err)
	}
}
