// Package eventually waits in tests for a condition to hold: the one poll
// helper of the tests, in place of hand-made sleep loops. A condition says
// why it does not hold yet by its error, so that a test that gives up says
// what was still missing. Imported by tests and by the launcher of local
// clusters they use (internal/localcluster).
package eventually

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// The pause between two checks starts at firstPause and doubles up to
// maxPause: a condition that holds soon is seen soon, a slow one (a scan of
// a node's files, a round of requests to every node) is not run in a tight
// loop.
const (
	firstPause = 10 * time.Millisecond
	maxPause   = 100 * time.Millisecond
)

// Poll calls cond until it returns nil or within has passed, and returns
// nil or, after within, cond's last error. cond is checked once more at the
// deadline, so a condition that holds by then is not missed; with within
// zero or less it is checked once. For callers that must not fail the test
// (or fail it their own way); see Holds.
func Poll(within time.Duration, cond func() error) error {
	return PollContext(context.Background(), within, cond)
}

// PollContext is Poll that also gives up when ctx ends: it then returns
// ctx's cause and cond's last error, without waiting for within. A caller
// that knows the condition can no longer come about (a process it waits
// for has exited) cancels ctx with that as the cause.
func PollContext(ctx context.Context, within time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	pause := firstPause
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last: %w)", context.Cause(ctx), err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("not within %v: %w", within, err)
		}
		t := time.NewTimer(min(pause, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last: %w)", context.Cause(ctx), err)
		case <-t.C:
		}
		pause = min(2*pause, maxPause)
	}
}

// Holds polls cond as Poll does and fails the test, saying what did not
// come about and cond's last error, if cond does not return nil within.
func Holds(t testing.TB, within time.Duration, what string, cond func() error) {
	t.Helper()
	if err := Poll(within, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
