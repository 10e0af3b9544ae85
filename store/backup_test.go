package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestBackupIsAConsistentCopyWhileWritesGoOn copies a store while
// messages are being written to it: the copy opens (with the same KEK
// only), each conversation's log in it is a gap-free prefix of the
// original's, and no message text is in its bytes (sealed).
func TestBackupIsAConsistentCopyWhileWritesGoOn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	kek := make([]byte, KEKSize)
	rand.Read(kek)
	s := openTest(t, Config{Path: filepath.Join(dir, "parley.db"), KEK: kek})
	const convs, per = 4, 60
	for c := range convs {
		if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: fmt.Sprintf("c%d", c), Owner: "v:a"}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for c := range convs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				body := fmt.Sprintf("canary-text-%d-%d", c, i)
				if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: fmt.Sprintf("c%d", c), Participant: "v:a", Message: msg(fmt.Sprintf("m%d-%d", c, i), "v:a", body, int64(i+1))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	// Copies taken while the writers run.
	var copies []string
	for i := range 3 {
		var buf bytes.Buffer
		n, err := s.Backup(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(buf.Len()) {
			t.Fatalf("Backup says %d bytes, wrote %d", n, buf.Len())
		}
		p := filepath.Join(dir, fmt.Sprintf("copy%d.db", i))
		if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		copies = append(copies, p)
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	for _, p := range copies {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte("canary-text")) {
			t.Fatalf("%s holds a message's text in clear", p)
		}
		other := make([]byte, KEKSize)
		rand.Read(other)
		if c, err := Open(Config{Path: p, KEK: other}); err == nil {
			c.Close()
			t.Fatalf("%s opened under another KEK", p)
		}
		c, err := Open(Config{Path: p, KEK: kek})
		if err != nil {
			t.Fatal(err)
		}
		for conv := range convs {
			evs, _, err := c.Events("ws1", fmt.Sprintf("c%d", conv), 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			for i, ev := range evs {
				if ev.Seq != uint64(i+1) || ev.Message.Body != fmt.Sprintf("canary-text-%d-%d", conv, i) {
					t.Fatalf("%s: conversation c%d event %d: seq %d body %q: not a prefix of the log", p, conv, i, ev.Seq, ev.Message.Body)
				}
			}
		}
		c.Close()
	}
}

// TestMarkRestoredMovesTheEpoch: a store restored from a backup starts a
// seq epoch past the one asked for, so that neither its seqs nor its
// origin name repeat those the node gave out after the backup.
func TestMarkRestoredMovesTheEpoch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	kek := make([]byte, KEKSize)
	rand.Read(kek)
	s := openTest(t, Config{Path: filepath.Join(dir, "parley.db"), KEK: kek, Origin: "n1"})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "copy.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := MarkRestored(filepath.Join(dir, "absent.db"), 5); err == nil {
		t.Fatal("MarkRestored of no file succeeded")
	}
	want := RestoredEpoch(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	if want < 50000 {
		t.Fatalf("RestoredEpoch in 2026 is %d", want)
	}
	if err := MarkRestored(filepath.Join(dir, "copy.db"), want); err != nil {
		t.Fatal(err)
	}
	c, err := Open(Config{Path: filepath.Join(dir, "copy.db"), KEK: kek, Origin: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Epoch() != want+1 {
		t.Fatalf("epoch %d after a restore, want %d", c.Epoch(), want+1)
	}
	if got := c.Origin(); got != fmt.Sprintf("n1~%d", want+1) {
		t.Fatalf("origin %q after a restore", got)
	}
	res, err := c.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg("m1", "v:a", "x", 1)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Seq != (want+1)<<32|1 {
		t.Fatalf("first seq after a restore %d", res.Seq)
	}
	if _, err := os.Stat(filepath.Join(dir, "absent.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("MarkRestored created a file: %v", err)
	}
}
