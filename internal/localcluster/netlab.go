package localcluster

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
//
// A lab records its owner's process id in OwnerDir: NewNetLab first
// removes the labs whose owner is gone (killed before it could Close),
// with whatever still runs in their namespaces.
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

// OwnerDir holds a file per lab, named by its id, with the process id of
// the process that made it.
const OwnerDir = "/run/parley-netlab"

// NewNetLab creates the bridge and n namespaces, on a subnet no other
// interface here uses, after removing the stale labs of owners that are
// gone (SweepNetLabs). Close removes them.
func NewNetLab(n int) (*NetLab, error) {
	if err := NetLabAvailable(); err != nil {
		return nil, err
	}
	if n < 1 || n > 250 {
		return nil, fmt.Errorf("netlab: want 1..250 nodes, got %d", n)
	}
	if _, err := SweepNetLabs(); err != nil {
		return nil, err
	}
	l := &NetLab{n: n, cuts: map[[2]int]int{}}
	if err := l.claim(); err != nil {
		return nil, err
	}
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

// claim picks the lab's id (one no lab here has) and subnet (one no
// address here is in), and records this process as its owner.
func (l *NetLab) claim() error {
	if err := os.MkdirAll(OwnerDir, 0o755); err != nil {
		return fmt.Errorf("netlab: %w", err)
	}
	out, err := exec.Command("ip", "-4", "-o", "addr", "show").Output()
	if err != nil {
		return fmt.Errorf("netlab: ip addr show: %w", err)
	}
	var free []int
	for x := 1; x <= 250; x++ {
		if !strings.Contains(string(out), fmt.Sprintf(" 10.77.%d.", x)) {
			free = append(free, x)
		}
	}
	if len(free) == 0 {
		return errors.New("netlab: every subnet 10.77.1-250.0/24 is in use")
	}
	l.subnet = fmt.Sprintf("10.77.%d.", free[rand.IntN(len(free))])
	for range 20 {
		l.id = fmt.Sprintf("%04x", rand.IntN(1<<16))
		if _, err := os.Stat("/sys/class/net/" + l.bridge()); err == nil {
			continue // a lab of code without owner files, or of another run
		}
		f, err := os.OpenFile(filepath.Join(OwnerDir, l.id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("netlab: %w", err)
		}
		_, err = fmt.Fprintf(f, "%d\n", os.Getpid())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("netlab: %w", err)
		}
		return nil
	}
	return errors.New("netlab: no free lab id")
}

// SweepNetLabs removes every lab whose owner (OwnerDir) no longer runs:
// it kills the processes left in its namespaces, deletes them, their
// bridge and their files in /etc/netns. Labs of running owners, and
// namespaces of no lab it recorded, are left alone. It returns the ids of
// the labs removed.
func SweepNetLabs() ([]string, error) {
	entries, err := os.ReadDir(OwnerDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	var swept []string
	var errs []error
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(OwnerDir, e.Name()))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err == nil && pid > 0 && syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // its owner runs
		}
		if err := sweep(e.Name()); err != nil {
			errs = append(errs, err)
			continue
		}
		swept = append(swept, e.Name())
	}
	return swept, errors.Join(errs...)
}

// sweep removes the lab id whose owner is gone.
func sweep(id string) error {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return fmt.Errorf("netlab: ip netns list: %w", err)
	}
	var errs []error
	prefix := "pns" + id + "-"
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], prefix) {
			continue
		}
		ns := f[0]
		if pids, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for p := range strings.FieldsSeq(string(pids)) {
				if pid, err := strconv.Atoi(p); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if err := runCmd("ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
		_ = os.RemoveAll(filepath.Join("/etc/netns", ns))
	}
	if _, err := os.Stat("/sys/class/net/pbr" + id); err == nil {
		if err := runCmd("ip", "link", "del", "pbr"+id); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		_ = os.Remove(filepath.Join(OwnerDir, id))
	}
	return errors.Join(errs...)
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

// NSPath is the file of node i's namespace, for setns(2).
func (l *NetLab) NSPath(i int) string { return "/var/run/netns/" + l.NS(i) }

// SetHosts names the hosts: in every namespace, names[j] resolves to
// Host(j), through /etc/netns/NS/hosts, which ip netns exec (Wrap) puts in
// place of /etc/hosts for the programs it runs. Close removes the files.
func (l *NetLab) SetHosts(names []string) error {
	if len(names) != l.n {
		return fmt.Errorf("netlab: %d names for %d hosts", len(names), l.n)
	}
	var b strings.Builder
	b.WriteString("127.0.0.1 localhost\n::1 localhost\n")
	for j, name := range names {
		fmt.Fprintf(&b, "%s %s\n", l.Host(j), name)
	}
	for i := range l.n {
		dir := filepath.Join("/etc/netns", l.NS(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("netlab: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("netlab: %w", err)
		}
	}
	return nil
}

// Do runs fn on an OS thread of its own inside node i's namespace: the
// sockets fn opens (a listener, a dial) are that host's, and stay so after
// fn returns. The thread goes back to the caller's namespace afterwards
// (it is not ended: a process started from it with a parent-death signal
// would be killed).
func (l *NetLab) Do(i int, fn func() error) error {
	if i < 0 || i >= l.n {
		return fmt.Errorf("netlab: no node %d", i)
	}
	target, err := os.Open(l.NSPath(i))
	if err != nil {
		return fmt.Errorf("netlab: %w", err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open(threadNetNS())
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netlab: %w", err)
			return
		}
		defer self.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netlab: enter %s: %w", l.NS(i), err)
			return
		}
		ferr := fn()
		if err := setns(self); err != nil {
			// The thread stays in the lab's namespace: leave it locked,
			// so that it ends with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("netlab: leave %s: %w", l.NS(i), err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

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
		for i := range l.n {
			_ = os.RemoveAll(filepath.Join("/etc/netns", l.NS(i)))
		}
		if len(errs) == 0 {
			_ = os.Remove(filepath.Join(OwnerDir, l.id))
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
