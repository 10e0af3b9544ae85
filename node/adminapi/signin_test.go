package adminapi

import (
	"fmt"
	"testing"
	"time"
)

// An account is refused after accountFree failures in a row, for a
// back-off that doubles up to backoffMax; a success clears it; a full
// table forgets quiet accounts first and never one in a back-off.
func TestAccountBackoff(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	b := accountBackoff{now: func() time.Time { return now }}
	for i := 1; i < accountFree; i++ {
		b.failed("acme", "Ada@acme.test")
		if d := b.wait("acme", "ada@acme.test"); d != 0 {
			t.Fatalf("after %d failures: wait %v, want none", i, d)
		}
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300}
	for i, w := range want {
		b.failed("acme", "ada@acme.test")
		if d := b.wait("acme", "ADA@acme.test"); d != w*time.Second {
			t.Fatalf("after %d failures: wait %v, want %v", accountFree+i, d, w*time.Second)
		}
	}
	if d := b.wait("globex", "ada@acme.test"); d != 0 {
		t.Fatalf("the same email in another workspace waits %v", d)
	}
	now = now.Add(backoffMax)
	if d := b.wait("acme", "ada@acme.test"); d != 0 {
		t.Fatalf("after the back-off: wait %v", d)
	}
	b.failed("acme", "ada@acme.test") // still in a row: the longest back-off
	if d := b.wait("acme", "ada@acme.test"); d != backoffMax {
		t.Fatalf("a failure after the back-off: wait %v, want %v", d, backoffMax)
	}
	b.succeeded("acme", "ada@acme.test")
	if d := b.wait("acme", "ada@acme.test"); d != 0 {
		t.Fatalf("after a success: wait %v", d)
	}

	// Filling the table with made-up emails does not free a guessed
	// account from its back-off.
	for range accountFree {
		b.failed("acme", "victim@acme.test")
	}
	for i := range maxTracked + 10 {
		b.failed("acme", fmt.Sprintf("made-up-%d@acme.test", i))
	}
	if d := b.wait("acme", "victim@acme.test"); d != backoffBase {
		t.Fatalf("after the table filled up: the victim waits %v, want %v", d, backoffBase)
	}
	if n := len(b.m); n > maxTracked {
		t.Fatalf("%d accounts tracked, bound %d", n, maxTracked)
	}
}
