package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"

	"parley/internal/eventually"
)

// ErrNotRunning is returned for a fault on a node whose process is not
// running (killed and not restarted, or stopped).
var ErrNotRunning = errors.New("not running")

// errExited cancels a readiness wait whose process has exited.
var errExited = errors.New("exited before ready")

// ReadyTimeout is how long a node has to answer /readyz once started.
const ReadyTimeout = 60 * time.Second

// StopTimeout is how long Stop waits after SIGTERM before SIGKILL.
const StopTimeout = 10 * time.Second

// NodeConfig says how to run one node process.
type NodeConfig struct {
	Bin     string // the parley binary; required
	ID      string // -node; empty: not given (the node's default)
	Addr    string // -http, host:port; required
	DataDir string // -data; required
	LogPath string // the file stdout and stderr are appended to; required
	Token   string // -agent-token, the demo workspace's operator token; empty: not given
	// Args come after the flags above.
	Args []string
	// Wrap is a command the node runs under (ip netns exec NS); nil: none.
	Wrap []string
	// Link and Region are only recorded (they are in Args when set).
	Link, Region string
	// Command, when set, is the node's whole command line, the binary
	// first, as a unit file's ExecStart runs it: the launcher adds no flag
	// of its own (Bin and Args are not used; ID and Token are only
	// recorded), and Addr and DataDir only say where the node serves and
	// keeps its data, as its config file does.
	Command []string
	// URL is the node's base URL. Empty: http://Addr, or https:// when
	// Args has -tls-cert.
	URL string
	// Client asks /readyz (a test's client that trusts the node's own
	// certificate); nil: http.DefaultTransport, one second a request.
	Client *http.Client
}

// Node is one node process: started by StartNode or a Cluster, run again by
// Restart with the same flags and data directory.
type Node struct {
	ID      string
	Addr    string // host:port of HTTP (and HTTP/3 on UDP)
	URL     string // http://Addr, or https:// when Args has -tls-cert
	Link    string // host:port of the node link (-raft-addr); empty for a node alone
	Region  string
	DataDir string
	LogPath string
	Token   string // the demo workspace's operator token (-agent-token)
	Bin     string
	// Args are the flags it runs with; Wrap, the command it runs under.
	Args, Wrap []string

	client  *http.Client // for /readyz
	mu      sync.Mutex
	cur     *proc // the last process started; nil before the first
	stopped bool  // sent SIGSTOP and not yet SIGCONT
}

// proc is one run of a node's process.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once Wait returned
	err    error         // Wait's, set before exited closes
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// StartNode starts a node process and waits until it answers /readyz.
func StartNode(ctx context.Context, c NodeConfig) (*Node, error) {
	return startNode(ctx, c, "/readyz")
}

// startNode starts a node process and waits until path answers 200.
func startNode(ctx context.Context, c NodeConfig, path string) (*Node, error) {
	if len(c.Command) > 0 {
		c.Bin = c.Command[0]
	}
	if c.Bin == "" || c.Addr == "" || c.DataDir == "" || c.LogPath == "" {
		return nil, errors.New("localcluster: a node needs Bin (or Command), Addr, DataDir and LogPath")
	}
	var args []string
	if len(c.Command) > 0 {
		args = slices.Clone(c.Command[1:])
	} else {
		args = []string{"-http", c.Addr, "-data", c.DataDir}
		if c.ID != "" {
			args = append(args, "-node", c.ID)
		}
		if c.Token != "" {
			args = append(args, "-agent-token", c.Token)
		}
		args = append(args, c.Args...)
	}
	n := &Node{ID: c.ID, Addr: c.Addr, URL: c.URL, Link: c.Link, Region: c.Region,
		DataDir: c.DataDir, LogPath: c.LogPath, Token: c.Token, Bin: c.Bin, Args: args, Wrap: c.Wrap, client: c.Client}
	switch {
	case n.URL != "":
	case slices.Contains(args, "-tls-cert"):
		n.URL = "https://" + c.Addr
	default:
		n.URL = "http://" + c.Addr
	}
	if err := n.start(ctx, path); err != nil {
		return n, err
	}
	return n, nil
}

// StandIn starts argv as a stand-in node: a process to stop, continue and
// end in tests of faults, without a parley binary. It serves nothing and
// is not waited for.
func StandIn(id string, argv ...string) (*Node, error) {
	n := &Node{ID: id, URL: "http://stand-in", LogPath: os.DevNull, Bin: argv[0], Args: argv[1:]}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = ProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	n.cur = p
	return n, nil
}

func (n *Node) name() string {
	if n.ID != "" {
		return n.ID
	}
	return n.Addr
}

// start runs the node's command and waits until path answers 200:
// /readyz, or /healthz (serving) for a node that cannot be ready alone.
func (n *Node) start(ctx context.Context, path string) error {
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("node %s: log: %w", n.name(), err)
	}
	argv := append(append(slices.Clone(n.Wrap), n.Bin), n.Args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = ProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start node %s: %w", n.name(), err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	n.mu.Lock()
	n.cur, n.stopped = p, false
	n.mu.Unlock()

	if err := n.wait(ctx, p, path); err != nil {
		if p.running() {
			n.signal(p, syscall.SIGKILL)
		}
		return err
	}
	return nil
}

// wait waits until path answers 200 on p, which must keep running.
func (n *Node) wait(ctx context.Context, p *proc, path string) error {
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	hc := n.client
	if hc == nil {
		hc = &http.Client{Timeout: time.Second}
	}
	err := eventually.PollContext(wctx, ReadyTimeout, func() error {
		if !p.running() {
			cancel(fmt.Errorf("%w: %v", errExited, p.err))
			return errExited
		}
		resp, err := hc.Get(n.URL + path)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", path, resp.Status)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("node %s not ready: %w\n%s", n.name(), err, n.Tail(2000))
	}
	return nil
}

// signal sends sig to p and, for SIGKILL, waits until it is gone.
func (n *Node) signal(p *proc, sig syscall.Signal) {
	_ = p.cmd.Process.Signal(sig)
	if sig == syscall.SIGKILL {
		<-p.exited
	}
}

// running returns the node's process while it runs, else nil.
func (n *Node) running() *proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cur == nil || !n.cur.running() {
		return nil
	}
	return n.cur
}

// Running reports whether the node's process runs (stopped by SIGSTOP
// included).
func (n *Node) Running() bool { return n.running() != nil }

// PID is the node's process id, 0 when it is not running.
func (n *Node) PID() int {
	if p := n.running(); p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// Exited is closed once the process last started has exited (nil before
// the first start); ExitErr then says how.
func (n *Node) Exited() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cur == nil {
		return nil
	}
	return n.cur.exited
}

// ExitErr is how the process last started ended: Wait's error, nil while
// it runs or when it exited with status 0.
func (n *Node) ExitErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cur == nil || n.cur.running() {
		return nil
	}
	return n.cur.err
}

// Kill sends SIGKILL and waits until the process is gone.
func (n *Node) Kill() error {
	p := n.running()
	if p == nil {
		return ErrNotRunning
	}
	n.signal(p, syscall.SIGKILL)
	n.mu.Lock()
	n.stopped = false // SIGKILL ends a stopped process as well
	n.mu.Unlock()
	return nil
}

// Suspend sends SIGSTOP: the process freezes with its sockets open
// (connections are accepted by the kernel and go unanswered), as a node
// stalled by its machine would. It returns once the kernel reports the
// process stopped. Continue undoes it; Stop and Kill continue a stopped
// node first, so none is left behind.
func (n *Node) Suspend() error {
	n.mu.Lock()
	p := n.cur
	if p == nil || !p.running() {
		n.mu.Unlock()
		return ErrNotRunning
	}
	err := p.cmd.Process.Signal(syscall.SIGSTOP)
	if err == nil {
		n.stopped = true
	}
	n.mu.Unlock()
	if err != nil {
		return fmt.Errorf("SIGSTOP %s: %w", n.name(), err)
	}
	// The signal is delivered asynchronously: wait (briefly) until /proc
	// says the process is stopped, so that the fault's time is right.
	_ = eventually.Poll(time.Second, func() error {
		if st, err := ProcState(p.cmd.Process.Pid); err == nil && st != 'T' {
			return fmt.Errorf("state %c", st)
		}
		return nil
	})
	return nil
}

// Continue sends SIGCONT if the node is stopped (Suspend). It reports
// whether it was.
func (n *Node) Continue() (bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.stopped {
		return false, nil
	}
	n.stopped = false
	if n.cur == nil || !n.cur.running() {
		return true, nil // gone meanwhile (killed): nothing left to continue
	}
	if err := n.cur.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return true, fmt.Errorf("SIGCONT %s: %w", n.name(), err)
	}
	return true, nil
}

// Stopped reports whether the node was sent SIGSTOP and not yet SIGCONT.
func (n *Node) Stopped() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stopped
}

// Restart starts the node again, with the same command line and data
// directory, and waits until it is ready. Its ports may take a moment to
// be free again: a start that fails is tried again, five times in all.
func (n *Node) Restart(ctx context.Context) error {
	if n.Running() {
		return fmt.Errorf("restart %s: still running", n.name())
	}
	var err error
	for range 5 {
		if err = n.start(ctx, "/readyz"); err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return err
}

// Stop ends the process: SIGCONT if it is stopped (a stopped process holds
// SIGTERM pending), SIGTERM, then SIGKILL after StopTimeout. It returns
// once the process is gone; a node not running is left as it is.
func (n *Node) Stop() {
	_, _ = n.Continue()
	p := n.running()
	if p == nil {
		return
	}
	n.signal(p, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(StopTimeout):
		n.signal(p, syscall.SIGKILL)
	}
}

// ProcessState is the state of the process last started once it has
// exited, else nil.
func (n *Node) ProcessState() *os.ProcessState {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cur == nil || n.cur.running() {
		return nil
	}
	return n.cur.cmd.ProcessState
}

// Logs is the node's log, every run of it.
func (n *Node) Logs() string {
	b, _ := os.ReadFile(n.LogPath)
	return string(b)
}

// Tail is the last max bytes of the node's log.
func (n *Node) Tail(max int) string {
	s := n.Logs()
	if len(s) > max {
		s = s[len(s)-max:]
	}
	return s
}
