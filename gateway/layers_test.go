package gateway

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsNothingOfCluster keeps the gateway below the control plane and
// the replication between nodes: the words it shares with them (version
// vectors, roles, ID grammars) live in crdt and ident, and the node wires
// the gateway to the cluster.
func TestImportsNothingOfCluster(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "parley/cluster" || strings.HasPrefix(p, "parley/cluster/") || p == "parley/node" {
			t.Errorf("gateway depends on %s", p)
		}
	}
}
