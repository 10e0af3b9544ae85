package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"parley/internal/localcluster"
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
	if err := localcluster.Build(context.Background(), parleyBin, "-race"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// nodeProc is one node process of the launcher (internal/localcluster),
// with the helpers the tests use.
type nodeProc struct {
	*localcluster.Node
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
// by wrap (such as prlimit).
func startNodeAt(t testing.TB, bin string, wrap []string, addr, dataDir string, extraArgs ...string) *nodeProc {
	t.Helper()
	return startNodeWith(t, localcluster.NodeConfig{Bin: bin, Wrap: wrap, Addr: addr, DataDir: dataDir, Args: extraArgs})
}

// loosePerIP lifts the per-address budgets of visitors for the tests that
// are not about them: every test client comes from 127.0.0.1, like
// hundreds of visitors behind one office address. A test of the budgets
// gives its own values after these (the last flag wins).
var loosePerIP = []string{"-ip-message-rate", "1e6", "-ip-message-burst", "1000000",
	"-ip-start-rate", "1e6", "-ip-start-burst", "1000000", "-address-share", "1",
	"-ip-plan-conversations", "1000000000", "-ip-plan-messages", "1000000000", "-ip-plan-fraction", "1"}

// startNodeWith starts a node as c says, with the test's operator token
// and a log of its own; the test's end stops it.
func startNodeWith(t testing.TB, c localcluster.NodeConfig) *nodeProc {
	t.Helper()
	c.Args = append(slices.Clone(loosePerIP), c.Args...)
	c.Token, c.LogPath = testAgentToken, filepath.Join(t.TempDir(), "node.log")
	nd, err := localcluster.StartNode(context.Background(), c)
	if nd != nil {
		t.Cleanup(nd.Stop)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &nodeProc{nd}
}

// Kill9 kills the node with SIGKILL and waits for it to be gone.
func (n *nodeProc) Kill9(t testing.TB) {
	t.Helper()
	if err := n.Kill(); err != nil {
		t.Fatalf("kill -9 %s: %v", n.Addr, err)
	}
}

// Restart starts the node again with the same address and data directory.
func (n *nodeProc) Restart(t testing.TB) {
	t.Helper()
	if err := n.Node.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	a, err := localcluster.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// testCtx returns a context bounded by d and cancelled with the test.
func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
