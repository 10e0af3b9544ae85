package e2e

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// filesHolding lists the files under the nodes' data directories whose raw
// bytes contain text.
func filesHolding(t testing.TB, nodes []*nodeProc, text string) []string {
	t.Helper()
	var found []string
	for _, nd := range nodes {
		err := filepath.WalkDir(nd.DataDir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !d.Type().IsRegular() {
				return err
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(raw, []byte(text)) {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return found
}

// noFileHoldsWithin waits until no file of the nodes' data directories
// holds text, and fails if some still does after d.
func noFileHoldsWithin(t testing.TB, nodes []*nodeProc, text string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		found := filesHolding(t, nodes, text)
		if len(found) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q still in %v %v after the removal", text, found, d)
		}
		<-tick.C
	}
}
