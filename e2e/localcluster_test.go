package e2e

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"parley/internal/eventually"
	"parley/internal/localcluster"
	"parley/node"
)

// TestReadmeClustersAsWritten runs the README's "Operating a cluster" as
// written, in the order written, in one working directory (bin/ holding the
// binaries the tests built, as `make build` would): the three hand-made
// nodes (their own commands, the README's ports), the parleyctl block
// against them (bash -e: every command must succeed), then the command
// behind `make cluster` in the same directory (on another port than 8080)
// and what it promises: 5 nodes on 127.0.0.1-5 in 3 regions, one control
// plane, every node seeing the others alive, the demo workspace pinned to
// the first region; parleyctl with the README's environment for it, and,
// with `make run`'s data/cluster.key present, a refusal that names the key
// file; and a clean stop.
func TestReadmeClustersAsWritten(t *testing.T) {
	wd := t.TempDir()
	binDir := filepath.Join(wd, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"parley": parleyBin, "parleyctl": buildCtl(t)} {
		if err := os.Symlink(target, filepath.Join(binDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(binDir, "parley-cluster")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/parley-cluster").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	runReadmeHandCluster(t, wd)

	data := filepath.Join(wd, "cluster-data")
	port := 20000 + rand.IntN(20000)
	cmd := exec.Command(bin, "-bin", "bin/parley", "-port", fmt.Sprint(port), "-for", "3m")
	cmd.Dir = wd
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-done
	}()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var banner []string
	for waiting := true; waiting; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("parley-cluster ended early: %v\n%s", <-done, strings.Join(banner, "\n"))
			}
			banner = append(banner, l)
			waiting = !strings.Contains(l, "Ctrl-C stops")
		case <-time.After(2 * time.Minute):
			t.Fatalf("no banner after 2 minutes: %s", strings.Join(banner, "\n"))
		}
	}
	root, err := node.AdminToken(filepath.Join(data, "cluster.key"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		url := fmt.Sprintf("http://127.0.0.%d:%d", i, port)
		if !strings.Contains(strings.Join(banner, "\n"), url+"/agent#token=") {
			t.Errorf("banner lacks node %d's console: %s", i, strings.Join(banner, "\n"))
		}
		nd := &nodeProc{&localcluster.Node{URL: url}}
		var info struct {
			Raft  struct{ Voters, Nonvoters int } `json:"raft"`
			Alive []struct{ ID, Region string }   `json:"alive"`
		}
		eventually.Holds(t, 30*time.Second, fmt.Sprintf("node %d sees 5 nodes alive and 5 voters", i), func() error {
			st, _ := api(nd, "GET", "/v1/admin/cluster", root, nil, &info)
			// 3 voters join as such; the leader then promotes two more.
			if st != 200 || len(info.Alive) != 5 || info.Raft.Voters != 5 {
				return fmt.Errorf("status %d, %d alive, raft %+v", st, len(info.Alive), info.Raft)
			}
			return nil
		})
		regions := map[string]int{}
		for _, m := range info.Alive {
			regions[m.Region]++
		}
		if regions["eu"] != 2 || regions["us"] != 2 || regions["ap"] != 1 || info.Raft.Voters+info.Raft.Nonvoters != 5 {
			t.Errorf("node %d: regions %v, raft %+v", i, regions, info.Raft)
		}
		var ws struct{ Region string }
		mustAPI(t, nd, "GET", "/v1/admin/workspaces/demo", root, nil, &ws)
		if ws.Region != "eu" {
			t.Errorf("node %d: demo workspace in region %q", i, ws.Region)
		}
	}
	// parleyctl with the README's environment for make cluster.
	first := fmt.Sprintf("http://127.0.0.1:%d", port)
	out, err := readmeShell(wd, "export PARLEY_CLUSTER_KEY_FILE=cluster-data/cluster.key\nbin/parleyctl -node "+first+" cluster status")
	if err != nil || strings.Count(out, "voter") < 5 {
		t.Fatalf("parleyctl cluster status on make cluster: %v\n%s", err, out)
	}
	// make run's key beside it: a refusal that says which key was used.
	if err := os.MkdirAll(filepath.Join(wd, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wd, "data", "cluster.key"), []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = readmeShell(wd, "bin/parleyctl -node "+first+" cluster status")
	if err == nil || !strings.Contains(out, "derived from data/cluster.key") || !strings.Contains(out, "cluster-data/cluster.key") ||
		strings.Contains(out, "session refused") {
		t.Fatalf("parleyctl with another cluster's data/cluster.key: %v\n%s", err, out)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("parley-cluster after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("parley-cluster did not stop")
	}
}

// TestClusterResumesFromItsData stops a whole cluster and starts it again
// on the same data, as a second `make cluster` does: no node can be ready
// before a quorum runs, so the launcher must start them all before it
// waits for readiness; the cluster forms again, with its workspaces.
func TestClusterResumesFromItsData(t *testing.T) {
	dir := t.TempDir()
	cfg := localcluster.Config{Bin: parleyBin, Nodes: 3, Dir: dir, Hosts: []string{"127.0.0.71", "127.0.0.72", "127.0.0.73"},
		HTTPPort: 20000 + rand.IntN(20000), Voters: true, Token: testAgentToken, Args: []string{"-h3", "off"}}
	cl, err := localcluster.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustAPI(t, &nodeProc{cl.Nodes[0]}, "POST", "/v1/admin/workspaces", cl.AdminToken, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	cl.Stop()

	cl, err = localcluster.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("the cluster does not start again on its data: %v", err)
	}
	defer cl.Stop()
	for _, nd := range cl.Nodes {
		var ws struct{ Name string }
		mustAPI(t, &nodeProc{nd}, "GET", "/v1/admin/workspaces/acme", cl.AdminToken, nil, &ws)
		if ws.Name != "Acme" {
			t.Errorf("%s: workspace %+v after the restart", nd.ID, ws)
		}
	}
}

// readmeSection returns the sh blocks of the README section titled title.
func readmeSection(t *testing.T, title string) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("README has no section %q", title)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	var blocks []string
	for {
		_, rest, ok := strings.Cut(sec, "```sh\n")
		if !ok {
			return blocks
		}
		block, after, _ := strings.Cut(rest, "```")
		blocks = append(blocks, block)
		sec = after
	}
}

// readmeShell runs script with bash -e in wd, without the test's PARLEY_*
// variables, and returns its output (stdout and stderr).
func readmeShell(wd, script string) (string, error) {
	cmd := exec.Command("bash", "-e", "-o", "pipefail", "-c", script)
	cmd.Dir = wd
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// runReadmeHandCluster starts the README's three hand-made nodes as
// written, each once the one before is ready (as a reader would, in three
// terminals), runs the parleyctl block against them, and stops them.
func runReadmeHandCluster(t *testing.T, wd string) {
	t.Helper()
	blocks := readmeSection(t, "Operating a cluster")
	if len(blocks) != 2 {
		t.Fatalf("README's \"Operating a cluster\" has %d sh blocks, want 2 (the nodes, then parleyctl)", len(blocks))
	}
	var nodes []string
	for _, line := range strings.Split(strings.ReplaceAll(blocks[0], "\\\n", " "), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			nodes = append(nodes, line)
		}
	}
	if len(nodes) != 3 {
		t.Fatalf("README starts %d nodes, want 3: %q", len(nodes), nodes)
	}
	httpFlag := regexp.MustCompile(`-http (\S+)`)
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
			p.Wait()
		}
	}()
	for i, line := range nodes {
		m := httpFlag.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("README's node command has no -http: %s", line)
		}
		logf, err := os.Create(filepath.Join(wd, fmt.Sprintf("readme-n%d.log", i+1)))
		if err != nil {
			t.Fatal(err)
		}
		p := exec.Command("bash", "-c", "exec "+line)
		p.Dir, p.Stdout, p.Stderr = wd, logf, logf
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "PARLEY_") {
				p.Env = append(p.Env, kv)
			}
		}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
		if err := eventually.Poll(60*time.Second, func() error {
			resp, err := http.Get("http://" + m[1] + "/readyz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("readyz: %s", resp.Status)
			}
			return nil
		}); err != nil {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("README's node %d (%s) not ready: %v\n%s", i+1, line, err, b)
		}
	}
	out, err := readmeShell(wd, blocks[1])
	if err != nil {
		t.Fatalf("README's parleyctl block failed: %v\n%s", err, out)
	}
	for _, want := range []string{"MEMBER", "identity secret", "one-time password", "session", "The key is shown once",
		"every node has applied it", "every node has erased its copies", "recorded inv-2026-11", "revoke_key"} {
		if !strings.Contains(out, want) {
			t.Errorf("README's parleyctl block: no %q in its output:\n%s", want, out)
		}
	}
}
