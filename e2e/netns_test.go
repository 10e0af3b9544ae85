package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// netLab puts each node in a network namespace of its own, joined to the
// test's namespace by a veth pair on a bridge: node i is 10.77.X.i, the
// test 10.77.X.254. Cutting a node drops, inside its namespace, every
// packet from or to the other nodes, while the test still reaches it.
type netLab struct {
	t      testing.TB
	id     string
	subnet string // "10.77.X."
	n      int
}

func run(t testing.TB, args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func newNetLab(t testing.TB, n int) *netLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (make test-deps installs it): %v", tool, err)
		}
	}
	l := &netLab{t: t, id: fmt.Sprintf("%04x", rand.IntN(1<<16)), n: n}
	l.subnet = fmt.Sprintf("10.77.%d.", 1+rand.IntN(250))
	br := "pbr" + l.id
	t.Cleanup(l.destroy)
	steps := [][]string{
		{"ip", "link", "add", br, "type", "bridge"},
		{"ip", "addr", "add", l.subnet + "254/24", "dev", br},
		{"ip", "link", "set", br, "up"},
	}
	for i := 1; i <= n; i++ {
		ns, host, peer := l.ns(i), fmt.Sprintf("pv%s%d", l.id, i), fmt.Sprintf("pn%s%d", l.id, i)
		steps = append(steps,
			[]string{"ip", "netns", "add", ns},
			[]string{"ip", "link", "add", host, "type", "veth", "peer", "name", peer},
			[]string{"ip", "link", "set", peer, "netns", ns},
			[]string{"ip", "link", "set", host, "master", br},
			[]string{"ip", "link", "set", host, "up"},
			[]string{"ip", "netns", "exec", ns, "ip", "addr", "add", fmt.Sprintf("%s%d/24", l.subnet, i), "dev", peer},
			[]string{"ip", "netns", "exec", ns, "ip", "link", "set", peer, "up"},
			[]string{"ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"},
		)
	}
	for _, s := range steps {
		if err := run(t, s...); err != nil {
			t.Skipf("network namespaces unavailable here: %v", err)
		}
	}
	return l
}

func (l *netLab) ns(i int) string     { return fmt.Sprintf("pns%s-%d", l.id, i) }
func (l *netLab) host(i int) string   { return fmt.Sprintf("%s%d", l.subnet, i) }
func (l *netLab) wrap(i int) []string { return []string{"ip", "netns", "exec", l.ns(i + 1)} }

func (l *netLab) destroy() {
	for i := 1; i <= l.n; i++ {
		exec.Command("ip", "netns", "del", l.ns(i)).Run()
	}
	exec.Command("ip", "link", "del", "pbr"+l.id).Run()
}

// cut isolates node i (1-based) from the other nodes; heal undoes it.
func (l *netLab) cut(i int) (heal func()) {
	l.t.Helper()
	var rules [][]string
	for j := 1; j <= l.n; j++ {
		if j == i {
			continue
		}
		rules = append(rules, []string{"INPUT", "-s", l.host(j), "-j", "DROP"}, []string{"OUTPUT", "-d", l.host(j), "-j", "DROP"})
	}
	for _, r := range rules {
		if err := run(l.t, append([]string{"ip", "netns", "exec", l.ns(i), "iptables", "-w", "-I"}, r...)...); err != nil {
			l.t.Fatal(err)
		}
	}
	healed := false
	heal = func() {
		if healed {
			return
		}
		healed = true
		for _, r := range rules {
			if err := run(l.t, append([]string{"ip", "netns", "exec", l.ns(i), "iptables", "-w", "-D"}, r...)...); err != nil {
				l.t.Error(err)
			}
		}
	}
	l.t.Cleanup(heal)
	return heal
}

// TestPartitionHealsWithoutLoss runs 3 nodes in their own network
// namespaces and cuts one off: both sides keep taking messages of the same
// conversation (the cut-off node alone, once it has declared the others
// dead); after the partition heals, anti-entropy brings every replica to
// the same digest, with every acknowledged message once.
func TestPartitionHealsWithoutLoss(t *testing.T) {
	lab := newNetLab(t, 3)
	tc := startClusterOn(t, clusterSpec{bin: parleyBin, n: 3, hosts: []string{lab.host(1), lab.host(2), lab.host(3)}, wrap: lab.wrap})
	n1, n3 := tc.nodes[0], tc.nodes[2]
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	w := newVisitorWriter(t, testCtx(t, 180*time.Second), "acme", "across a partition")
	w.write(n1, "m-before", 5)
	heal := lab.cut(3)
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
