package localcluster

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The launcher runs nodes as processes and imports none of the server, so
// that the bench harness, which measures the node from outside, links none
// of it either.
func TestLinksNoServer(t *testing.T) {
	t.Parallel()
	server := []string{"parley/node", "parley/cluster", "parley/gateway", "parley/store", "parley/embedder"}
	// Not the server: the cluster key's file format, and the wire
	// protocol's words and its one Go client (which import no server
	// package themselves: gateway/client's TestImportsNoServerPackage).
	allowed := []string{"parley/cluster/clusterkey", "parley/gateway/wire", "parley/gateway/client"}
	for _, pkg := range []string{"parley/internal/localcluster", "parley/bench"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for dep := range strings.Lines(string(out)) {
			dep = strings.TrimSpace(dep)
			for _, s := range server {
				if (dep == s || strings.HasPrefix(dep, s+"/")) && !slices.Contains(allowed, dep) {
					t.Errorf("%s links %s", pkg, dep)
				}
			}
		}
	}
}
