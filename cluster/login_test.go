package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"parley/internal/eventually"
)

// A sign-in costs the same PBKDF2 work whatever it finds: an unknown
// email, a wrong password, an account hashed at an older lower cost (which
// used to answer several times faster and so told which accounts exist).
// A right password with an old hash is rehashed at the current cost,
// keeping the operator's sessions.
func TestLoginSpendsTheSameWork(t *testing.T) {
	t.Parallel()
	const cost = 2 * MinPasswordIterations
	tc := newTestCluster(t, 1, func(c *Config) { c.PasswordIterations = cost })
	c := tc.node("n1")
	// A dozen PBKDF2 runs of 100,000 to 200,000 iterations, one at a time
	// (one hashing slot on two CPUs): minutes under -race on a busy
	// machine, more than testContext allows.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	mustApply(t, c, CreateWorkspace{ID: "acme", Name: "Acme", Region: "eu", Plan: "team", Created: t0})
	// "old" was hashed at MinPasswordIterations, before the cost was raised.
	oldHash := testPasswordHash()
	mustApply(t, c, CreateOperator{Workspace: "acme", ID: "old", Email: "old@acme.test", Name: "Old", Role: RoleAgent, PasswordHash: oldHash, Created: t0})
	if _, _, err := c.AddOperator(ctx, NewOperator{Workspace: "acme", ID: "cur", Email: "cur@acme.test", Name: "Cur", Role: RoleAgent, Password: testPassword}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, email, password string
		ok                    bool
	}{
		{"unknown email", "nobody@acme.test", testPassword, false},
		{"wrong password, hash at the current cost", "cur@acme.test", "wrong password", false},
		{"wrong password, hash at an older cost", "old@acme.test", "wrong password", false},
		{"huge password", "old@acme.test", string(make([]byte, 5000)), false},
		{"right password, hash at the current cost", "cur@acme.test", testPassword, true},
	}
	for _, tt := range tests {
		_, work, err := c.checkLogin(ctx, "acme", tt.email, tt.password)
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrUnauthorized)) {
			t.Errorf("%s: err %v", tt.name, err)
		}
		if work != cost {
			t.Errorf("%s: %d PBKDF2 iterations spent, want %d like every other sign-in", tt.name, work, cost)
		}
	}

	// An old hash is rehashed at the current cost on a right password, and
	// the session opened before stays valid.
	raw, _, err := c.Login(ctx, "acme", "old@acme.test", testPassword)
	if err != nil {
		t.Fatal(err)
	}
	if _, work, err := c.checkLogin(ctx, "acme", "old@acme.test", testPassword); err != nil || work != cost {
		t.Fatalf("second sign-in: %d iterations, %v", work, err)
	}
	o, err := c.State.operatorByEmail("acme", "old@acme.test")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := PasswordCost(o.PasswordHash); got != cost {
		t.Fatalf("after a sign-in the hash costs %d, want %d", got, cost)
	}
	if err := VerifyPassword(o.PasswordHash, testPassword); err != nil {
		t.Fatalf("the rehashed password does not verify: %v", err)
	}
	if _, err := c.AuthenticateSession(raw); err != nil {
		t.Fatalf("the rehash ended the session: %v", err)
	}

	// A rehash made from a hash that has since changed is refused and
	// changes nothing: a new password is never overwritten by the old one.
	if _, err := c.SetPassword(ctx, "acme", "old", "a brand new password"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Apply(ctx, RehashPassword{Workspace: "acme", ID: "old", Old: o.PasswordHash, New: oldHash})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("stale rehash: %v, want ErrConflict", err)
	}
	if _, _, err := c.Login(ctx, "acme", "old@acme.test", "a brand new password"); err != nil {
		t.Fatalf("the new password no longer works after a stale rehash: %v", err)
	}
}

// hashSlots lets n checks run and queue wait; the next is refused at once.
func TestHashSlotsBoundTheWork(t *testing.T) {
	t.Parallel()
	h := newHashSlots(1, 2)
	ctx := context.Background()
	release, err := h.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan func(), 2)
	for range 2 {
		go func() {
			r, err := h.acquire(ctx)
			if err != nil {
				t.Error(err)
				r = func() {}
			}
			got <- r
		}()
	}
	// Both waiters are queued once a probe is refused as busy; poll for
	// that since they start in their own goroutines. The probe's context
	// is done already, so a probe that finds a queue place leaves at once.
	done, cancel := context.WithCancel(ctx)
	cancel()
	eventually.Holds(t, 10*time.Second, "a probe with 1 check running and 2 queued is refused as busy", func() error {
		if _, err := h.acquire(done); !errors.Is(err, ErrBusy) {
			return fmt.Errorf("probe: %v, want ErrBusy", err)
		}
		return nil
	})
	if n := h.inUse(); n != 1 {
		t.Fatalf("%d checks running, want 1", n)
	}
	select {
	case <-got:
		t.Fatal("a waiter ran while the only slot was held")
	default:
	}
	release()
	r := <-got
	if n := h.inUse(); n != 1 {
		t.Fatalf("%d checks running after handing the slot on, want 1", n)
	}
	r()
	(<-got)()
	// A waiter whose context ends gives its queue place back.
	release, _ = h.acquire(ctx)
	if _, err := h.acquire(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	release()
	for range 3 {
		r, err := h.acquire(ctx)
		if err != nil {
			t.Fatalf("after the cancelled waiter left: %v", err)
		}
		r()
	}
}
