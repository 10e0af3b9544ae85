package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"parley/crdt"
	"parley/internal/eventually"

	bolt "go.etcd.io/bbolt"
)

// canaryCount counts the occurrences of canary in the raw bytes of the file.
func canaryCount(t testing.TB, path, canary string) int {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(raw, []byte(canary))
}

// notInFile holds once no byte of the file at path spells text.
func notInFile(t *testing.T, path, text string) func() error {
	return func() error {
		if n := canaryCount(t, path, text); n > 0 {
			return fmt.Errorf("%d copies left", n)
		}
		return nil
	}
}

// scrubsAbove holds once obs has seen more than n scrubs.
func scrubsAbove(obs *scrubRecorder, n int) func() error {
	return func() error {
		if got := obs.scrubs(); got <= n {
			return fmt.Errorf("%d scrubs, want more than %d", got, n)
		}
		return nil
	}
}

// fillConversation creates conv and sends n messages whose bodies carry text.
func fillConversation(t testing.TB, s *Store, ws, conv, text string, n int) {
	t.Helper()
	if err := fill(s, ws, conv, text, n); err != nil {
		t.Fatal(err)
	}
}

func fill(s *Store, ws, conv, text string, n int) error {
	ctx := context.Background()
	if err := s.CreateConversation(ctx, Conversation{Workspace: ws, ID: conv, Owner: "v:a"}); err != nil {
		return err
	}
	for i := range n {
		body := fmt.Sprintf("%s %d %s", text, i, strings.Repeat("x", 200))
		if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: ws, Conversation: conv, Participant: "v:a",
			Message: msg(fmt.Sprintf("m%04d", i), "v:a", body, int64(i+1))}); err != nil {
			return err
		}
	}
	return nil
}

// TestRemovedTextLeavesTheFile: text removed through the store's removal
// APIs (an erased conversation, a deleted saved reply, an edited message) is
// in the raw file right after the removal (bbolt does not clear the pages it
// frees), and gone after a scrub and after a reopen, while the text kept is
// still there and readable.
func TestRemovedTextLeavesTheFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	s := openTest(t, Config{Path: path, ScrubAfter: -1})
	const (
		erased  = "CANARY-ERASED-7d1f"
		reply   = "CANARY-REPLY-9a2c"
		edited  = "CANARY-EDITED-4b7e"
		kept    = "KEPT-TEXT-55aa"
		keptRep = "KEPT-REPLY-66bb"
	)
	fillConversation(t, s, "ws1", "gone", erased, 300)
	fillConversation(t, s, "ws1", "kept", kept, 300)
	if err := s.PutReply(ctx, "ws1", Reply{ID: "r1", Title: "t", Body: reply, Created: 1}, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.PutReply(ctx, "ws1", Reply{ID: "r2", Title: "t", Body: keptRep, Created: 1}, 0); err != nil {
		t.Fatal(err)
	}
	// An edited message: the conversation record's last message carries
	// the text, and the edit replaces it. (The event log keeps the versions
	// of a message; scrubbing them is the event log's business.)
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws2", ID: "ed", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws2", Conversation: "ed", Participant: "v:a", Message: msg("m1", "v:a", "plain", 1)}); err != nil {
		t.Fatal(err)
	}

	// A conversation's text is sealed (seal.go): the scrub is followed by
	// its ciphertext and its sealed key.
	if n := canaryCount(t, path, erased); n != 0 {
		t.Fatalf("%s in the file %d times in plaintext", erased, n)
	}
	erasedMarks, keptMarks := sealedMarks(t, s, "ws1", "gone"), sealedMarks(t, s, "ws1", "kept")
	if err := s.EraseConversation(ctx, "ws1", "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteReply(ctx, "ws1", "r1", 2); err != nil {
		t.Fatal(err)
	}
	if n := canaryCount(t, path, reply); n == 0 {
		t.Fatalf("%s not in the file right after its removal: the test cannot tell a scrub from none", reply)
	}
	if n := marksInFile(t, path, erasedMarks); n == 0 {
		t.Fatal("no sealed record of the erased conversation in the file right after its removal: the test cannot tell a scrub from none")
	}
	if err := s.Scrub(ctx); err != nil {
		t.Fatal(err)
	}
	if n := canaryCount(t, path, reply); n != 0 {
		t.Fatalf("%s is in the file %d times after the scrub", reply, n)
	}
	if n := marksInFile(t, path, erasedMarks); n != 0 {
		t.Fatalf("%d sealed records of the erased conversation in the file after the scrub", n)
	}
	if marksInFile(t, path, keptMarks) != len(keptMarks) || canaryCount(t, path, keptRep) == 0 {
		t.Fatal("the scrub removed kept text")
	}
	evs, _, err := s.Events("ws1", "kept", 0, 1000)
	if err != nil || len(evs) != 300 || !strings.HasPrefix(evs[299].Message.Body, kept+" 299 ") {
		t.Fatalf("kept conversation after the scrub: %d events, %v", len(evs), err)
	}
	if rs, err := s.Replies("ws1"); err != nil || len(rs) != 1 || rs[0].Body != keptRep {
		t.Fatalf("replies after the scrub: %+v, %v", rs, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(Config{Path: path, ScrubAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n := canaryCount(t, path, reply); n != 0 {
		t.Fatalf("%s is in the file %d times after a reopen", reply, n)
	}
	if n := marksInFile(t, path, erasedMarks); n != 0 {
		t.Fatalf("%d sealed records of the erased conversation in the file after a reopen", n)
	}
	if evs, _, err := s2.Events("ws1", "kept", 0, 1000); err != nil || len(evs) != 300 {
		t.Fatalf("kept conversation after the reopen: %d events, %v", len(evs), err)
	}
	checkFile(t, s2.db.DB)
}

// TestScrubRunsByItself: with no call of Scrub, the bytes of an erased
// conversation leave the file within ScrubAfter (and the scrub's wait), and
// the observer hears of it.
func TestScrubRunsByItself(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	obs := &scrubRecorder{}
	s := openTest(t, Config{Path: path, ScrubAfter: 100 * time.Millisecond, Observer: obs})
	const canary = "CANARY-AUTO-3c3c"
	fillConversation(t, s, "ws1", "gone", canary, 200)
	marks := sealedMarks(t, s, "ws1", "gone")
	opened := obs.scrubs()
	if err := s.EraseConversation(ctx, "ws1", "gone"); err != nil {
		t.Fatal(err)
	}
	eventually.Holds(t, 10*time.Second, "sealed records gone from the file", marksNotInFile(t, path, marks))
	eventually.Holds(t, 10*time.Second, "scrub observed", func() error {
		if err := scrubsAbove(obs, opened)(); err != nil {
			return err
		}
		if obs.zeroed() == 0 {
			return errors.New("no page zeroed")
		}
		return nil
	})

	// A saved reply deleted here, and one deleted on another node (its
	// tombstone merged), each start a scrub by themselves.
	for i, remove := range []func(id string) error{
		func(id string) error { _, err := s.DeleteReply(ctx, "ws1", id, 5); return err },
		func(id string) error {
			_, err := s.MergeReplies(ctx, "ws1", []Reply{{ID: id, Updated: 5, Deleted: true}})
			return err
		},
	} {
		id, text := fmt.Sprintf("r%d", i), fmt.Sprintf("CANARY-REPLY-%d-5d5d", i)
		if err := s.PutReply(ctx, "ws1", Reply{ID: id, Title: "t", Body: text, Created: 1}, 0); err != nil {
			t.Fatal(err)
		}
		if err := remove(id); err != nil {
			t.Fatal(err)
		}
		eventually.Holds(t, 10*time.Second, text+" gone from the file", notInFile(t, path, text))
	}

	// A message deleted or edited starts one too (its earlier versions in
	// the event log are the event log's business).
	fillConversation(t, s, "ws1", "del", "text", 1)
	for _, kind := range []ChangeKind{Edit, Delete} {
		before := obs.scrubs()
		if _, err := s.Apply(ctx, Change{Kind: kind, Workspace: "ws1", Conversation: "del", Participant: "v:a",
			Message: msg("m0000", "v:a", "", 0), Body: "changed", TS: crdt.Timestamp{Wall: int64(kind) + 10, Node: "n1"}}); err != nil {
			t.Fatal(err)
		}
		eventually.Holds(t, 10*time.Second, fmt.Sprintf("a scrub after a change of kind %d", kind), scrubsAbove(obs, before))
	}
}

// TestScrubWaitsForOldReaders: a read transaction begun before a removal
// still reads the removed pages; the scrub waits for it to end, and the
// reader reads intact data all along.
func TestScrubWaitsForOldReaders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	s := openTest(t, Config{Path: path, ScrubAfter: -1})
	const canary = "CANARY-READER-1e1e"
	fillConversation(t, s, "ws1", "gone", canary, 100)
	marks := sealedMarks(t, s, "ws1", "gone")
	tx, err := s.db.read()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EraseConversation(ctx, "ws1", "gone"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = s.Scrub(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("scrub with a reader older than the erasure open: %v, want it to wait", err)
	}
	// The old reader still reads every event, its key included.
	n := 0
	if _, err := s.keys.key(tx, "ws1", "gone", false); err != nil {
		t.Fatalf("the old reader cannot read the conversation's key: %v", err)
	}
	it := newEvIter(tx, s.keys, "ws1", "gone")
	for ok := it.seek(0); ok; ok = it.next() {
		if m, err := it.message(); err != nil || !strings.HasPrefix(m.Body, canary) {
			t.Fatalf("event %d as the old reader sees it: %+v %v", it.seq(), m, err)
		}
		n++
	}
	if it.err != nil {
		t.Fatal(it.err)
	}
	if n != 100 {
		t.Fatalf("old reader sees %d events, want 100", n)
	}
	done := make(chan error, 1)
	go func() { done <- s.Scrub(ctx) }()
	s.db.done(tx)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c := marksInFile(t, path, marks); c != 0 {
		t.Fatalf("%d sealed records in the file after the scrub", c)
	}
}

// TestScrubUnderLoad scrubs again and again while conversations are
// written, read and erased: every read sees intact data (a scrub zeroing a
// page a reader can reach would show as a wrong body or a bbolt panic), and
// the file checks out at the end.
func TestScrubUnderLoad(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openTest(t, Config{ScrubAfter: time.Millisecond})
	fillConversation(t, s, "ws1", "kept", "KEPT", 50)
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	wg.Add(3)
	go func() { // readers
		defer wg.Done()
		for ctx.Err() == nil {
			evs, _, err := s.Events("ws1", "kept", 0, 1000)
			if err != nil {
				errc <- err
				return
			}
			for i, ev := range evs {
				if want := fmt.Sprintf("KEPT %d %s", i, strings.Repeat("x", 200)); i < 50 && ev.Message.Body != want {
					errc <- fmt.Errorf("event %d reads %q", i, ev.Message.Body)
					return
				}
			}
		}
	}()
	go func() { // a writer of the kept conversation
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "kept", Participant: "v:a",
				Message: msg(fmt.Sprintf("n%06d", i), "v:a", "more", int64(i+100))}); err != nil && ctx.Err() == nil {
				errc <- err
				return
			}
		}
	}()
	go func() { // forced scrubs beside the background ones
		defer wg.Done()
		for ctx.Err() == nil {
			if err := s.Scrub(ctx); err != nil && ctx.Err() == nil {
				errc <- err
				return
			}
		}
	}()
	var marks []string
	for round := range 8 {
		conv := fmt.Sprintf("gone%d", round)
		fillConversation(t, s, "ws2", conv, "CANARY-LOAD", 30)
		marks = append(marks, sealedMarks(t, s, "ws2", conv)...)
		if err := s.EraseConversation(ctx, "ws2", conv); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if err := s.Scrub(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := marksInFile(t, s.cfg.Path, marks); n != 0 {
		t.Fatalf("%d sealed records of erased conversations in the file after the last scrub", n)
	}
	checkFile(t, s.db.DB)
}

// checkFile runs bbolt's consistency check over the whole file.
func checkFile(t testing.TB, db *bolt.DB) {
	t.Helper()
	err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("bbolt check: %v", err)
	}
}

// TestScrubKilled kills a process that erases and scrubs in a loop, at
// random moments, and checks that the file opens, passes bbolt's check and
// keeps every committed message of the conversation it does not erase; the
// scrub at Open then leaves no canary.
func TestScrubKilled(t *testing.T) {
	if os.Getenv("PARLEY_SCRUB_CHILD") != "" {
		scrubChild(os.Getenv("PARLEY_SCRUB_CHILD"))
		return
	}
	t.Parallel()
	path := filepath.Join(t.TempDir(), "parley.db")
	marks := map[string][]string{} // conversation -> its sealed marks
	for round := range 8 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestScrubKilled$", "-test.count=1")
		cmd.Env = append(os.Environ(), "PARLEY_SCRUB_CHILD="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The child prints a line as it starts a scrub: kill it then, most
		// often while it writes and syncs the zeroed pages. Before each
		// erasure it prints the sealed marks of the conversation.
		lines := bufio.NewReader(out)
		seen := 0
		for seen < 1+round%3 {
			line, err := lines.ReadString('\n')
			if err != nil {
				t.Fatalf("child: %v", err)
			}
			if line == "scrub\n" {
				seen++
			} else {
				readMarks(t, line, marks)
			}
		}
		// Kill at a different point of the scrub each round (a scrub of
		// these pages takes a few milliseconds): not a wait for a condition.
		time.Sleep(time.Duration(round) * 500 * time.Microsecond)
		cmd.Process.Kill()
		for line, err := lines.ReadString('\n'); err == nil; line, err = lines.ReadString('\n') {
			if line != "scrub\n" {
				readMarks(t, line, marks)
			}
		}
		cmd.Wait()

		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
		if err != nil {
			t.Fatalf("round %d: open after kill: %v", round, err)
		}
		checkFile(t, db)
		db.Close()
		rec := &scrubRecorder{}
		s, err := Open(Config{Path: path, ScrubAfter: -1, Observer: rec})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		// Pages left for Open to zero: the kill came before the child's
		// scrub was done.
		t.Logf("round %d: Open zeroed %d pages", round, rec.zeroed())
		evs, _, err := s.Events("ws1", "kept", 0, 1000)
		if err != nil || len(evs) != 100 {
			t.Fatalf("round %d: kept conversation: %d events, %v", round, len(evs), err)
		}
		for i, ev := range evs {
			if !strings.HasPrefix(ev.Message.Body, fmt.Sprintf("KEPT %d ", i)) {
				t.Fatalf("round %d: event %d reads %q", round, i, ev.Message.Body)
			}
		}
		// Text is sealed: no canary in plaintext, ever. The child may have
		// been killed after it printed a conversation's marks and before
		// it erased it: only a conversation still stored may have its
		// sealed records in the file.
		if n := canaryCount(t, path, "CANARY-KILL-"); n != 0 {
			t.Fatalf("round %d: canary in plaintext %d times", round, n)
		}
		for conv, ms := range marks {
			if _, err := s.Conversation("ws2", conv); err == nil {
				continue
			}
			if n := marksInFile(t, path, ms); n != 0 {
				t.Fatalf("round %d: %d sealed records of erased conversation %s in the file after Open's scrub", round, n, conv)
			}
		}
		s.Close()
	}
}

// readMarks reads a line "marks CONV HEX,HEX,..." of the child.
func readMarks(t *testing.T, line string, into map[string][]string) {
	t.Helper()
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "marks" {
		t.Fatalf("child printed %q", line)
	}
	for _, h := range strings.Split(f[2], ",") {
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatalf("child printed %q: %v", line, err)
		}
		into[f[1]] = append(into[f[1]], string(b))
	}
}

// scrubChild fills and erases conversations and scrubs after each, until
// killed. It prints a line as each scrub starts.
func scrubChild(path string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s, err := Open(Config{Path: path, ScrubAfter: -1})
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	if _, err := s.Conversation("ws1", "kept"); errors.Is(err, ErrNotFound) {
		for _, ws := range []string{"ws1", "ws2"} {
			if err := s.PutWorkspace(ctx, Workspace{ID: ws}); err != nil {
				fail(err)
			}
		}
		if err := fill(s, "ws1", "kept", "KEPT", 100); err != nil {
			fail(err)
		}
	}
	start := time.Now().UnixNano() // conversation IDs of every run differ
	for i := start; ; i++ {
		conv := fmt.Sprintf("gone%d", i)
		if err := fill(s, "ws2", conv, fmt.Sprintf("CANARY-KILL-%d-", i), 200); err != nil {
			fail(err)
		}
		var hexes []string
		for _, m := range sealedMarks(failer{fail}, s, "ws2", conv) {
			hexes = append(hexes, hex.EncodeToString([]byte(m)))
		}
		fmt.Printf("marks %s %s\n", conv, strings.Join(hexes, ","))
		if err := s.EraseConversation(ctx, "ws2", conv); err != nil {
			fail(err)
		}
		fmt.Println("scrub")
		if err := s.Scrub(ctx); err != nil {
			fail(err)
		}
	}
}

type scrubRecorder struct {
	mu     sync.Mutex
	n, pgs int
	pause  time.Duration
}

func (r *scrubRecorder) ObserveCommit(time.Duration, int, error) {}
func (r *scrubRecorder) ObserveScrub(pause, _ time.Duration, pages int, _ error) {
	r.mu.Lock()
	r.n++
	r.pgs += pages
	r.pause += pause
	r.mu.Unlock()
}
func (r *scrubRecorder) reset() { r.mu.Lock(); r.n, r.pgs, r.pause = 0, 0, 0; r.mu.Unlock() }
func (r *scrubRecorder) pauseMillis() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return float64(r.pause) / 1e6
}
func (r *scrubRecorder) scrubs() int { r.mu.Lock(); defer r.mu.Unlock(); return r.n }
func (r *scrubRecorder) zeroed() int { r.mu.Lock(); defer r.mu.Unlock(); return r.pgs }

// failer is the testing.TB of the scrub child: a failure ends the process.
type failer struct{ fail func(error) }

func (failer) Helper()                             {}
func (f failer) Fatalf(format string, args ...any) { f.fail(fmt.Errorf(format, args...)) }
