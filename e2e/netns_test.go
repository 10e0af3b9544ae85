package e2e

import (
	"testing"
	"time"

	"parley/internal/localcluster"
)

// newNetLab puts each of n nodes in a network namespace of its own
// (localcluster.NetLab: a bridge, a veth pair per node, node i at Host(i), the test
// on the bridge); Cut drops, inside the namespaces, every packet between
// the cut nodes and the others, while the test still reaches every node.
// It skips the test where namespaces cannot be made (no root, no ip).
func newNetLab(t testing.TB, n int) *localcluster.NetLab {
	t.Helper()
	if err := localcluster.NetLabAvailable(); err != nil {
		t.Skip(err)
	}
	l, err := localcluster.NewNetLab(n)
	if err != nil {
		t.Skipf("network namespaces unavailable here: %v", err)
	}
	// Registered first, so it runs after the nodes' own cleanups stopped
	// them.
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("removing the network namespaces: %v", err)
		}
	})
	return l
}

// cut isolates node i (0-based) from the other nodes until heal, which the
// test's end also calls.
func cut(t testing.TB, l *localcluster.NetLab, i int) (heal func()) {
	t.Helper()
	h, err := l.Cut([]int{i})
	if err != nil {
		t.Fatal(err)
	}
	heal = func() {
		if err := h(); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(heal)
	return heal
}

// TestPartitionHealsWithoutLoss runs 3 nodes in their own network
// namespaces and cuts one off: both sides keep taking messages of the same
// conversation (the cut-off node alone, once it has declared the others
// dead); after the partition heals, anti-entropy brings every replica to
// the same digest, with every acknowledged message once.
func TestPartitionHealsWithoutLoss(t *testing.T) {
	lab := newNetLab(t, 3)
	tc := startClusterOn(t, clusterSpec{bin: parleyBin, n: 3, lab: lab})
	n1, n3 := tc.nodes[0], tc.nodes[2]
	tc.createWorkspace(t, map[string]any{"id": "acme", "name": "Acme", "plan": "team"})
	w := newVisitorWriter(t, testCtx(t, 180*time.Second), "acme", "across a partition")
	w.write(n1, "m-before", 5)
	heal := cut(t, lab, 2)
	w.write(n1, "m-majority", 10)
	w.write(n3, "m-minority", 10)
	heal()
	healed := time.Now()
	for _, nd := range tc.nodes {
		tc.waitAlive(t, nd, 3, 60*time.Second)
	}
	tc.waitConverged(t, "acme", w.conv, len(w.acked), 60*time.Second)
	t.Logf("%d messages acknowledged on both sides of a partition; converged %s after healing",
		len(w.acked), time.Since(healed).Round(time.Millisecond))
}
