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
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// LocalCluster is a set of node processes the harness started on loopback,
// each with its own data directory, and tears down after the run. Today
// the nodes are independent; when clustering lands, ExtraArgs carries the
// join flags and nothing else changes: the scenario sees a list of URLs.
type LocalCluster struct {
	Bin   string
	Token string
	Dir   string // temporary: data directories and logs
	Nodes []*LocalNode
	keep  bool
}

// LocalNode is one node process.
type LocalNode struct {
	ID      string
	Addr    string // 127.0.0.1:port
	URL     string // http://127.0.0.1:port
	DataDir string
	LogPath string
	args    []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan error
	log  *os.File
}

// ClusterInfo describes a local cluster in results.
type ClusterInfo struct {
	Bin   string   `json:"bin"`
	Nodes []string `json:"nodes"`
	Args  []string `json:"args"`
	Logs  []string `json:"logs"`
}

// LocalOptions configure StartLocal.
type LocalOptions struct {
	Bin   string // node binary; default bin/parley
	Nodes int    // how many; default 1
	// NodeArgs are added to every node's command line (after the
	// harness's own: -http, -data, -node, -agent-token and raised limits).
	NodeArgs []string
	// Keep leaves the data directories and logs (their path is printed).
	Keep bool
	// Log receives start/stop notes. Nil: none.
	Log func(format string, a ...any)
}

// LocalLimits are the rate limits the harness gives local nodes: high
// enough that the bench measures the node, not its abuse protection.
var LocalLimits = []string{"-frame-rate", "1000000", "-workspace-rate", "10000000", "-max-conns-per-ip", "10000000", "-log-level", "warn"}

// StartLocal starts the nodes and waits until each answers /readyz.
func StartLocal(ctx context.Context, o LocalOptions) (*LocalCluster, error) {
	if o.Bin == "" {
		o.Bin = "bin/parley"
	}
	if o.Nodes <= 0 {
		o.Nodes = 1
	}
	bin, err := filepath.Abs(o.Bin)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		return nil, fmt.Errorf("node binary %s not found: build it first (make build, or go build -o %s ./cmd/parley)", o.Bin, o.Bin)
	}
	dir, err := os.MkdirTemp("", "parley-bench-")
	if err != nil {
		return nil, err
	}
	var tb [16]byte
	rand.Read(tb[:])
	c := &LocalCluster{Bin: bin, Token: "bench-" + hex.EncodeToString(tb[:]), Dir: dir, keep: o.Keep}
	for i := 0; i < o.Nodes; i++ {
		addr, err := freeLoopbackAddr()
		if err != nil {
			c.Stop()
			return nil, err
		}
		n := &LocalNode{ID: "n" + strconv.Itoa(i+1), Addr: addr, URL: "http://" + addr,
			DataDir: filepath.Join(dir, "n"+strconv.Itoa(i+1)), LogPath: filepath.Join(dir, "n"+strconv.Itoa(i+1)+".log")}
		n.args = append([]string{"-http", addr, "-data", n.DataDir, "-node", n.ID, "-agent-token", c.Token}, LocalLimits...)
		n.args = append(n.args, o.NodeArgs...)
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		if err := n.start(ctx, bin); err != nil {
			c.Stop()
			return nil, err
		}
		if o.Log != nil {
			o.Log("started node %s at %s (pid %d, log %s)", n.ID, n.URL, n.pid(), n.LogPath)
		}
	}
	return c, nil
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
	ci := &ClusterInfo{Bin: c.Bin}
	for _, n := range c.Nodes {
		ci.Nodes = append(ci.Nodes, n.ID+"="+n.URL)
		ci.Logs = append(ci.Logs, n.LogPath)
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

func (n *LocalNode) pid() int {
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
	cmd := exec.Command(bin, n.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = nodeProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start node %s: %w", n.ID, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logf.Close() }()
	n.mu.Lock()
	n.cmd, n.done, n.log = cmd, done, logf
	n.mu.Unlock()

	deadline := time.Now().Add(30 * time.Second)
	hc := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			n.mu.Lock()
			n.done = nil
			n.mu.Unlock()
			b, _ := os.ReadFile(n.LogPath)
			return fmt.Errorf("node %s exited before ready: %v\n%s", n.ID, err, tail(b, 2000))
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
	return fmt.Errorf("node %s not ready after 30s (log %s)", n.ID, n.LogPath)
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
	n.mu.Unlock()
	if done == nil {
		return errors.New("not running")
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	return nil
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
// temporary directory unless asked to keep it.
func (c *LocalCluster) Stop() {
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Add(1)
		go func(n *LocalNode) {
			defer wg.Done()
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
	if !c.keep && c.Dir != "" {
		os.RemoveAll(c.Dir)
	}
}

// Logs returns the last bytes of each node's log.
func (c *LocalCluster) Logs(max int) map[string]string {
	out := map[string]string{}
	for _, n := range c.Nodes {
		b, _ := os.ReadFile(n.LogPath)
		out[n.ID] = tail(b, max)
	}
	return out
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
