package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"parley/bench/internal/harness"
	"parley/node"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// LocalCluster is a set of node processes the harness started itself, each
// with its own data directory, and tears down after the run. One node runs
// alone, as `parley` does by default. Two or more form a real cluster: one
// shared cluster key, node 0 bootstraps the control plane and the others
// join it, regions spread round robin; the demo workspace (created by
// every node's start, unpinned, so held by every node) and its operator
// token, the same -agent-token on every node, work cluster-wide.
//
// Nodes listen on 127.0.0.1 with free ports, or, with Isolate, each in a
// network namespace of its own (NetLab) at a fixed port, so that a
// partition fault can cut some from the others.
type LocalCluster struct {
	Bin   string
	Token string // the demo workspace's operator token, on every node
	Dir   string // temporary: data directories and logs
	Nodes []*LocalNode
	// KeyFile and AdminToken: the cluster key shared by the nodes, and the
	// admin API token derived from it (clusters of 2 or more).
	KeyFile    string
	AdminToken string
	// Lab holds the nodes' network namespaces (Isolate), else nil.
	Lab  *NetLab
	keep bool
}

// LocalNode is one node process.
type LocalNode struct {
	ID      string
	Addr    string // host:port of HTTP (and HTTP/3 on UDP)
	Link    string // host:port of the node link (Raft and node-to-node), clustered only
	URL     string // http://host:port
	Region  string // empty for a single node
	DataDir string
	LogPath string
	args    []string
	wrap    []string // command prefix: ip netns exec NS (Isolate)

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan error
	log  *os.File
	// stopped: sent SIGSTOP and not yet SIGCONT.
	stopped bool
}

// ClusterInfo describes a local cluster in results.
type ClusterInfo struct {
	Bin      string   `json:"bin"`
	Nodes    []string `json:"nodes"`
	Regions  []string `json:"regions,omitempty"`
	Isolated bool     `json:"isolated,omitempty"` // in network namespaces
	Args     []string `json:"args"`
	Logs     []string `json:"logs"`
}

// LocalOptions configure StartLocal.
type LocalOptions struct {
	Bin   string // node binary; default bin/parley
	Nodes int    // how many; default 1
	// Regions are given to the nodes of a cluster round robin. Default
	// r0, r1, r2.
	Regions []string
	// Isolate starts each node in a network namespace of its own (root
	// only), which partition faults need.
	Isolate bool
	// NodeArgs are added to every node's command line (after the
	// harness's own: -http, -data, -node, -agent-token, raised limits and
	// the cluster flags).
	NodeArgs []string
	// Keep leaves the data directories and logs (their path is printed).
	Keep bool
	// Log receives start/stop notes. Nil: none.
	Log func(format string, a ...any)
}

// LocalLimits are the rate limits the harness gives local nodes: high
// enough that the bench measures the node, not its abuse protection.
var LocalLimits = []string{"-frame-rate", "1000000", "-workspace-rate", "10000000", "-max-conns-per-ip", "10000000",
	"-ip-message-rate", "1e7", "-ip-message-burst", "10000000", "-ip-start-rate", "1e7", "-ip-start-burst", "10000000", "-address-share", "1",
	"-log-level", "warn"}

// Ports of a node in a namespace of its own (each namespace has its own
// port space).
const (
	isolatedHTTPPort   = "18080"
	isolatedRaftPort   = "17000"
	isolatedGossipPort = "17946"
)

// StartLocal starts the nodes and waits until each answers /readyz; a
// cluster, until every node sees every other alive and a Raft leader, and
// the demo workspace's operator token is accepted on every node.
func StartLocal(ctx context.Context, o LocalOptions) (*LocalCluster, error) {
	if o.Bin == "" {
		o.Bin = "bin/parley"
	}
	if o.Nodes <= 0 {
		o.Nodes = 1
	}
	if len(o.Regions) == 0 {
		o.Regions = []string{"r0", "r1", "r2"}
	}
	bin, err := filepath.Abs(o.Bin)
	if err != nil {
		return nil, fmt.Errorf("node binary: %w", err)
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		return nil, fmt.Errorf("node binary %s not found: build it first (make build, or go build -o %s ./cmd/parley)", o.Bin, o.Bin)
	}
	dir, err := os.MkdirTemp("", "parley-bench-")
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	var tb [16]byte
	rand.Read(tb[:])
	c := &LocalCluster{Bin: bin, Token: "bench-" + hex.EncodeToString(tb[:]), Dir: dir, keep: o.Keep}
	if o.Isolate {
		if c.Lab, err = NewNetLab(o.Nodes); err != nil {
			c.Stop()
			return nil, fmt.Errorf("isolating the nodes: %w", err)
		}
	}
	clustered := o.Nodes > 1
	if clustered {
		key := make([]byte, 32)
		rand.Read(key)
		c.KeyFile = filepath.Join(dir, "cluster.key")
		if err := os.WriteFile(c.KeyFile, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			c.Stop()
			return nil, fmt.Errorf("cluster key: %w", err)
		}
		if c.AdminToken, err = node.AdminToken(c.KeyFile); err != nil {
			c.Stop()
			return nil, fmt.Errorf("admin token: %w", err)
		}
	}
	for i := 0; i < o.Nodes; i++ {
		id := "n" + strconv.Itoa(i+1)
		var httpAddr, raftAddr, gossipAddr string
		if c.Lab != nil {
			h := c.Lab.Host(i)
			httpAddr, raftAddr, gossipAddr = net.JoinHostPort(h, isolatedHTTPPort), net.JoinHostPort(h, isolatedRaftPort), net.JoinHostPort(h, isolatedGossipPort)
		} else {
			for _, a := range []*string{&httpAddr, &raftAddr, &gossipAddr} {
				if *a, err = harness.FreeLoopbackAddr(); err != nil {
					c.Stop()
					return nil, err
				}
			}
		}
		n := &LocalNode{ID: id, Addr: httpAddr, URL: "http://" + httpAddr,
			DataDir: filepath.Join(dir, id), LogPath: filepath.Join(dir, id+".log")}
		n.args = append([]string{"-http", httpAddr, "-data", n.DataDir, "-node", id, "-agent-token", c.Token}, LocalLimits...)
		if clustered {
			n.Region = o.Regions[i%len(o.Regions)]
			n.Link = raftAddr
			n.args = append(n.args, "-raft-addr", raftAddr, "-gossip-addr", gossipAddr, "-cluster-key", c.KeyFile,
				"-region", n.Region, "-zone", n.Region+"-a")
			if i > 0 {
				n.args = append(n.args, "-join", c.Nodes[0].Link)
			}
		}
		n.args = append(n.args, o.NodeArgs...)
		if c.Lab != nil {
			n.wrap = c.Lab.Wrap(i)
		}
		c.Nodes = append(c.Nodes, n)
	}
	// One at a time: a node joins through the first, which must be up.
	for _, n := range c.Nodes {
		if err := n.start(ctx, bin); err != nil {
			c.Stop()
			return nil, err
		}
		if o.Log != nil {
			o.Log("started node %s at %s %s(pid %d, log %s)", n.ID, n.URL, n.regionNote(), n.PID(), n.LogPath)
		}
	}
	if clustered {
		if err := c.waitFormed(ctx, 60*time.Second); err != nil {
			c.Stop()
			return nil, err
		}
		if o.Log != nil {
			o.Log("cluster of %d formed: every node sees every other alive, and the demo workspace's token works on each", len(c.Nodes))
		}
	}
	return c, nil
}

func (n *LocalNode) regionNote() string {
	if n.Region == "" {
		return ""
	}
	return "region " + n.Region + " "
}

// URLs are the nodes' base URLs, in order.
func (c *LocalCluster) URLs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.URL
	}
	return out
}

// Info describes the cluster for the result.
func (c *LocalCluster) Info() *ClusterInfo {
	ci := &ClusterInfo{Bin: c.Bin, Isolated: c.Lab != nil}
	for _, n := range c.Nodes {
		ci.Nodes = append(ci.Nodes, n.ID+"="+n.URL)
		ci.Logs = append(ci.Logs, n.LogPath)
		if n.Region != "" {
			ci.Regions = append(ci.Regions, n.Region)
		}
	}
	if len(c.Nodes) > 0 {
		for _, a := range c.Nodes[0].args {
			if a == c.Token {
				a = "<token>"
			}
			ci.Args = append(ci.Args, a)
		}
	}
	return ci
}

// PID is the node's process id, 0 when it is not running.
func (n *LocalNode) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

func (n *LocalNode) start(ctx context.Context, bin string) error {
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	argv := append(append(append([]string(nil), n.wrap...), bin), n.args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = harness.ProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start node %s: %w", n.ID, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logf.Close() }()
	n.mu.Lock()
	n.cmd, n.done, n.log = cmd, done, logf
	n.mu.Unlock()

	deadline := time.Now().Add(60 * time.Second)
	hc := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			n.mu.Lock()
			n.done = nil
			n.mu.Unlock()
			b, _ := os.ReadFile(n.LogPath)
			if err == nil {
				err = errors.New("exit status 0")
			}
			return fmt.Errorf("node %s exited before ready: %w\n%s", n.ID, err, harness.Tail(b, 2000))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := hc.Get(n.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("node %s not ready after 60s (log %s)", n.ID, n.LogPath)
}

// Kill sends SIGKILL to node i and waits until it is gone.
func (c *LocalCluster) Kill(i int) error {
	if i < 0 || i >= len(c.Nodes) {
		return fmt.Errorf("no node %d", i)
	}
	n := c.Nodes[i]
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.done = nil
	n.stopped = false // SIGKILL ends a stopped process as well
	n.mu.Unlock()
	if done == nil {
		return ErrNotRunning
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	return nil
}

// ErrNotRunning is returned for a fault on a node whose process is not
// running (killed and not restarted).
var ErrNotRunning = errors.New("not running")

// Suspend sends SIGSTOP to node i: the process freezes with its sockets
// open (connections are accepted by the kernel and go unanswered), as a
// node stalled by its machine would. It returns once the kernel reports
// the process stopped. Continue undoes it; Stop and Kill continue a
// stopped node first, so none is left behind.
func (c *LocalCluster) Suspend(i int) error {
	if i < 0 || i >= len(c.Nodes) {
		return fmt.Errorf("no node %d", i)
	}
	n := c.Nodes[i]
	n.mu.Lock()
	if n.done == nil {
		n.mu.Unlock()
		return ErrNotRunning
	}
	p := n.cmd.Process
	err := p.Signal(syscall.SIGSTOP)
	if err == nil {
		n.stopped = true
	}
	n.mu.Unlock()
	if err != nil {
		return fmt.Errorf("SIGSTOP %s: %w", n.ID, err)
	}
	// The signal is delivered asynchronously: wait (briefly) until /proc
	// says the process is stopped, so that the fault's time is right.
	for range 200 {
		if st, err := harness.ProcState(p.Pid); err != nil || st == 'T' {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// Continue sends SIGCONT to node i if it is stopped. It reports whether
// the node was stopped.
func (c *LocalCluster) Continue(i int) (bool, error) {
	if i < 0 || i >= len(c.Nodes) {
		return false, fmt.Errorf("no node %d", i)
	}
	return c.Nodes[i].cont()
}

// ContinueAll continues every stopped node (the end of a run, whatever
// ended it).
func (c *LocalCluster) ContinueAll() {
	for _, n := range c.Nodes {
		_, _ = n.cont()
	}
}

// Stopped reports whether node i was sent SIGSTOP and not yet SIGCONT.
func (c *LocalCluster) Stopped(i int) bool {
	if i < 0 || i >= len(c.Nodes) {
		return false
	}
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stopped
}

func (n *LocalNode) cont() (bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.stopped {
		return false, nil
	}
	n.stopped = false
	if n.done == nil {
		return true, nil // gone meanwhile (killed): nothing left to continue
	}
	if err := n.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return true, fmt.Errorf("SIGCONT %s: %w", n.ID, err)
	}
	return true, nil
}

// Restart starts node i again, with the same address and data directory.
func (c *LocalCluster) Restart(ctx context.Context, i int) error {
	if i < 0 || i >= len(c.Nodes) {
		return fmt.Errorf("no node %d", i)
	}
	n := c.Nodes[i]
	var err error
	// The port may take a moment to be free again.
	for attempt := 0; attempt < 5; attempt++ {
		if err = n.start(ctx, c.Bin); err == nil || ctx.Err() != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
	return err
}

// Stop ends every node (SIGTERM, then SIGKILL after 10 s) and removes the
// temporary directory unless asked to keep it. A stopped node (Suspend) is
// continued first: a stopped process would hold SIGTERM pending.
func (c *LocalCluster) Stop() {
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Add(1)
		go func(n *LocalNode) {
			defer wg.Done()
			_, _ = n.cont()
			n.mu.Lock()
			cmd, done := n.cmd, n.done
			n.done = nil
			n.mu.Unlock()
			if done == nil {
				return
			}
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}(n)
	}
	wg.Wait()
	if c.Lab != nil {
		_ = c.Lab.Close()
	}
	if !c.keep && c.Dir != "" {
		os.RemoveAll(c.Dir)
	}
}

// Logs returns the last bytes of each node's log.
func (c *LocalCluster) Logs(max int) map[string]string {
	out := map[string]string{}
	for _, n := range c.Nodes {
		b, _ := os.ReadFile(n.LogPath)
		out[n.ID] = harness.Tail(b, max)
	}
	return out
}
