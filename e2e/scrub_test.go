package e2e

import (
	"testing"
	"time"
)

// noFileHoldsWithin waits until no file of the nodes' data directories
// holds text, and fails if some still does after d.
func noFileHoldsWithin(t testing.TB, nodes []*nodeProc, text string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		found := scanFiles(t, nodes, []string{text})
		if len(found) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q still in %v %v after the removal", text, found, d)
		}
		<-tick.C
	}
}
