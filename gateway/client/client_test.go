package client

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsNoServerPackage keeps the client usable by the bench, which
// links no server: only the protocol's words (gateway/wire, ident, crdt).
func TestImportsNoServerPackage(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		for _, server := range []string{"parley/gateway", "parley/store", "parley/cluster", "parley/node", "parley/embedder", "parley/certs", "parley/edge"} {
			if p == server || strings.HasPrefix(p, server+"/") && !strings.HasPrefix(p, "parley/gateway/wire") && !strings.HasPrefix(p, "parley/gateway/client") {
				t.Errorf("the client depends on %s", p)
			}
		}
	}
}

// TestCursorResumesBelowAGap: a replay cut short leaves a gap below live
// events already seen; the next resume starts below it.
func TestCursorResumesBelowAGap(t *testing.T) {
	t.Parallel()
	var c Cursor
	c.Saw(3)
	if got := c.ResumeFrom(); got != 3 {
		t.Fatalf("first resume from %d, want 3", got)
	}
	c.Resumed(true, 10) // a page: replay goes on after 10
	c.Saw(40)           // a live event while the replay is paged
	if got := c.ResumeFrom(); got != 10 {
		t.Fatalf("resume after a cut replay from %d, want 10 (below the gap)", got)
	}
	c.Resumed(false, 40)
	if got := c.ResumeFrom(); got != 40 {
		t.Fatalf("resume after a complete one from %d, want 40", got)
	}
}
