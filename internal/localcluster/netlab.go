package localcluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
)

// NetLab puts each of N nodes in a network namespace of its own, joined to
// the caller's namespace by a veth pair on a bridge: node i (0-based) is
// 10.77.X.(i+1), the caller 10.77.X.254. The caller reaches every node
// whatever is cut, so clients in the harness keep talking to both sides of
// a partition.
//
// Cut isolates a group of nodes from the others with blackhole routes
// inside the namespaces, on both sides (a packet from a node of one side to
// one of the other is dropped where it is sent), so only iproute2 is
// needed, not iptables. It needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
type NetLab struct {
	id     string
	subnet string // "10.77.X."
	n      int

	mu    sync.Mutex
	cuts  map[[2]int]int // (from, to) node pairs with a blackhole route, by count of cuts
	close sync.Once
}

// NetLabAvailable says whether NewNetLab can work here: root and the ip
// command. The error says what is missing.
func NetLabAvailable() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("network namespaces need the ip command (iproute2): %w", err)
	}
	return nil
}

// NewNetLab creates the bridge and n namespaces. Close removes them.
func NewNetLab(n int) (*NetLab, error) {
	if err := NetLabAvailable(); err != nil {
		return nil, err
	}
	if n < 1 || n > 250 {
		return nil, fmt.Errorf("netlab: want 1..250 nodes, got %d", n)
	}
	l := &NetLab{id: fmt.Sprintf("%04x", rand.IntN(1<<16)), n: n, cuts: map[[2]int]int{}}
	l.subnet = fmt.Sprintf("10.77.%d.", 1+rand.IntN(250))
	br := l.bridge()
	steps := [][]string{
		{"ip", "link", "add", br, "type", "bridge"},
		{"ip", "addr", "add", l.subnet + "254/24", "dev", br},
		{"ip", "link", "set", br, "up"},
	}
	for i := range n {
		ns, host, peer := l.NS(i), fmt.Sprintf("pv%s%d", l.id, i), fmt.Sprintf("pn%s%d", l.id, i)
		steps = append(steps,
			[]string{"ip", "netns", "add", ns},
			[]string{"ip", "link", "add", host, "type", "veth", "peer", "name", peer},
			[]string{"ip", "link", "set", peer, "netns", ns},
			[]string{"ip", "link", "set", host, "master", br},
			[]string{"ip", "link", "set", host, "up"},
			[]string{"ip", "-n", ns, "addr", "add", l.Host(i) + "/24", "dev", peer},
			[]string{"ip", "-n", ns, "link", "set", peer, "up"},
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
		)
	}
	for _, s := range steps {
		if err := runCmd(s...); err != nil {
			l.Close()
			return nil, fmt.Errorf("netlab: %w", err)
		}
	}
	return l, nil
}

// N is the number of namespaces.
func (l *NetLab) N() int { return l.n }

// NS is the name of node i's namespace.
func (l *NetLab) NS(i int) string { return fmt.Sprintf("pns%s-%d", l.id, i) }

// Host is node i's address.
func (l *NetLab) Host(i int) string { return fmt.Sprintf("%s%d", l.subnet, i+1) }

// Gateway is the caller's address on the bridge.
func (l *NetLab) Gateway() string { return l.subnet + "254" }

// Wrap is the command prefix that runs a program in node i's namespace.
func (l *NetLab) Wrap(i int) []string { return []string{"ip", "netns", "exec", l.NS(i)} }

func (l *NetLab) bridge() string { return "pbr" + l.id }

// Cut isolates the nodes of group from every other node (both ways); the
// caller still reaches all of them. Heal undoes exactly this cut (calling
// it again does nothing). Cuts may overlap: a pair stays cut while any cut
// that separates it is not healed.
func (l *NetLab) Cut(group []int) (heal func() error, err error) {
	var pairs [][2]int
	for _, i := range group {
		if i < 0 || i >= l.n {
			return nil, fmt.Errorf("netlab: no node %d", i)
		}
	}
	for _, i := range group {
		for j := range l.n {
			if !slices.Contains(group, j) {
				pairs = append(pairs, [2]int{i, j}, [2]int{j, i})
			}
		}
	}
	if len(pairs) == 0 {
		return nil, errors.New("netlab: the group holds every node: nothing to cut it from")
	}
	var done [][2]int
	for _, p := range pairs {
		if err := l.route("add", p); err != nil {
			for _, q := range done {
				_ = l.route("del", q)
			}
			return nil, err
		}
		done = append(done, p)
	}
	var once sync.Once
	return func() error {
		var errs []error
		once.Do(func() {
			for _, p := range pairs {
				if err := l.route("del", p); err != nil {
					errs = append(errs, err)
				}
			}
		})
		return errors.Join(errs...)
	}, nil
}

// route adds or removes, in the namespace of p[0], the blackhole route to
// p[1], counting overlapping cuts.
func (l *NetLab) route(op string, p [2]int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch op {
	case "add":
		l.cuts[p]++
		if l.cuts[p] > 1 {
			return nil
		}
	case "del":
		if l.cuts[p] == 0 {
			return nil
		}
		l.cuts[p]--
		if l.cuts[p] > 0 {
			return nil
		}
	}
	if err := runCmd("ip", "-n", l.NS(p[0]), "route", op, "blackhole", l.Host(p[1])+"/32"); err != nil {
		if op == "add" {
			l.cuts[p]--
		}
		return fmt.Errorf("netlab: %w", err)
	}
	return nil
}

// Close removes the namespaces and the bridge (the veth pairs go with
// their namespaces). Processes still running in a namespace keep it alive
// until they exit: stop them first.
func (l *NetLab) Close() error {
	var errs []error
	l.close.Do(func() {
		for i := range l.n {
			if err := runCmd("ip", "netns", "del", l.NS(i)); err != nil && !strings.Contains(err.Error(), "No such file") {
				errs = append(errs, err)
			}
		}
		if err := runCmd("ip", "link", "del", l.bridge()); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			errs = append(errs, err)
		}
	})
	return errors.Join(errs...)
}

func runCmd(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
