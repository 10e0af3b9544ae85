package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"parley/internal/eventually"
)

// parleyBin is the node binary built once by TestMain for every test here.
var parleyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "parley-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	parleyBin = filepath.Join(dir, "parley")
	if err := makeE2ECert(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e certificate:", err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-race", "-o", parleyBin, "../cmd/parley")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the node:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// nodeProc is one running node process.
type nodeProc struct {
	URL     string // http://127.0.0.1:PORT, or https:// with tlsArgs
	Addr    string // 127.0.0.1:PORT
	DataDir string
	Token   string // operator token of the demo workspace
	args    []string
	bin     string   // the node binary; zero: parleyBin
	wrap    []string // a command the node runs under (ip netns exec NS)
	cmd     *exec.Cmd
	done    chan error
	log     *os.File
}

const testAgentToken = "e2e-operator-token-0123456789abcdef"

// startNode starts a node on a free loopback port with its data in dataDir
// and waits until /readyz answers 200.
func startNode(t testing.TB, dataDir string, extraArgs ...string) *nodeProc {
	return startNodeBin(t, parleyBin, dataDir, extraArgs...)
}

// startNodeBin is startNode with another node binary (benchmarks run one
// built without the race detector).
func startNodeBin(t testing.TB, bin, dataDir string, extraArgs ...string) *nodeProc {
	return startNodeAt(t, bin, nil, freeAddr(t), dataDir, extraArgs...)
}

// startNodeAt starts a node on a given HTTP address, its command prefixed
// by wrap (such as ip netns exec NS).
func startNodeAt(t testing.TB, bin string, wrap []string, addr, dataDir string, extraArgs ...string) *nodeProc {
	t.Helper()
	n := &nodeProc{URL: "http://" + addr, Addr: addr, DataDir: dataDir, Token: testAgentToken, bin: bin, wrap: wrap}
	if slices.Contains(extraArgs, "-tls-cert") {
		n.URL = "https://" + addr
	}
	n.args = append(append([]string{"-http", addr, "-data", dataDir, "-agent-token", testAgentToken}, loosePerIP...), extraArgs...)
	n.start(t)
	return n
}

// loosePerIP lifts the per-address budgets of visitors for the tests that
// are not about them: every test client comes from 127.0.0.1, like
// hundreds of visitors behind one office address. A test of the budgets
// gives its own values after these (the last flag wins).
var loosePerIP = []string{"-ip-message-rate", "1e6", "-ip-message-burst", "1000000",
	"-ip-start-rate", "1e6", "-ip-start-burst", "1000000", "-address-share", "1"}

func (n *nodeProc) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(t.TempDir(), "node.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	n.log = logf
	bin := n.bin
	if bin == "" {
		bin = parleyBin
	}
	argv := append(append(append([]string(nil), n.wrap...), bin), n.args...)
	n.cmd = exec.Command(argv[0], argv[1:]...)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	n.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan<- error) { done <- cmd.Wait() }(n.cmd, n.done)
	t.Cleanup(func() { n.stop() })
	if err := eventually.Poll(30*time.Second, func() error {
		select {
		case err := <-n.done:
			t.Fatalf("node exited before ready: %v\n%s", err, n.logs())
		default:
		}
		resp, err := http.Get(n.URL + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	}); err != nil {
		t.Fatalf("node not ready: %v\n%s", err, n.logs())
	}
}

// Kill9 kills the node with SIGKILL and waits for it to be gone.
func (n *nodeProc) Kill9(t testing.TB) {
	t.Helper()
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
	n.done = nil
}

// Restart starts the node again with the same address and data directory.
func (n *nodeProc) Restart(t testing.TB) {
	t.Helper()
	n.start(t)
}

func (n *nodeProc) stop() {
	if n.done == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
	n.done = nil
}

func (n *nodeProc) logs() string {
	b, _ := os.ReadFile(n.log.Name())
	return string(b)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// testCtx returns a context bounded by d and cancelled with the test.
func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
