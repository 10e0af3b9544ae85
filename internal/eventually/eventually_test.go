package eventually

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestPollReturnsOnceCondHolds(t *testing.T) {
	n := 0
	err := Poll(10*time.Second, func() error {
		if n++; n < 3 {
			return fmt.Errorf("check %d", n)
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("Poll = %v after %d checks, want nil after 3", err, n)
	}
}

func TestPollReturnsTheLastError(t *testing.T) {
	errLast := errors.New("still missing")
	n := 0
	err := Poll(50*time.Millisecond, func() error {
		n++
		if n == 1 {
			return errors.New("first")
		}
		return errLast
	})
	if !errors.Is(err, errLast) {
		t.Fatalf("Poll = %v, want the last error %v", err, errLast)
	}
	if n < 2 {
		t.Fatalf("%d checks, want the first and at least one more", n)
	}
}

func TestPollChecksAtTheDeadline(t *testing.T) {
	start := time.Now()
	within := 30 * time.Millisecond
	err := Poll(within, func() error {
		if time.Since(start) < within {
			return errors.New("too early")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Poll = %v, want the check at the deadline to see the condition hold", err)
	}
}

func TestPollWithinZeroChecksOnce(t *testing.T) {
	n := 0
	if err := Poll(0, func() error { n++; return errors.New("no") }); err == nil || n != 1 {
		t.Fatalf("Poll(0) = %v after %d checks, want an error after 1", err, n)
	}
}

func TestPollContextEndsWithItsContext(t *testing.T) {
	errGone := errors.New("the process exited")
	ctx, cancel := context.WithCancelCause(context.Background())
	n := 0
	err := PollContext(ctx, time.Hour, func() error {
		if n++; n == 3 {
			cancel(errGone)
		}
		return fmt.Errorf("check %d", n)
	})
	if !errors.Is(err, errGone) || !strings.Contains(err.Error(), "check 3") || n != 3 {
		t.Fatalf("PollContext = %v after %d checks, want the cause and the last error after 3", err, n)
	}
}

// recorder is a testing.TB that records a Fatalf instead of ending the test.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestHoldsSaysWhatAndWhy(t *testing.T) {
	r := &recorder{TB: t}
	Holds(r, 20*time.Millisecond, "the replica converges", func() error { return errors.New("2 of 3 messages") })
	if !strings.Contains(r.failed, "the replica converges") || !strings.Contains(r.failed, "2 of 3 messages") {
		t.Fatalf("failure %q does not say what and why", r.failed)
	}
	r = &recorder{TB: t}
	Holds(r, time.Second, "at once", func() error { return nil })
	if r.failed != "" {
		t.Fatalf("failed although the condition held: %q", r.failed)
	}
}
