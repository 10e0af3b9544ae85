package e2e

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"parley/internal/eventually"
	"parley/internal/localcluster"
	"parley/node"
)

// TestMakeClusterStartsFiveNodesInThreeRegions runs the command behind
// `make cluster` and checks what it promises: 5 nodes on 127.0.0.1-5 in 3
// regions, one control plane, every node seeing the others alive, the demo
// workspace pinned to the first region; and a clean stop.
func TestMakeClusterStartsFiveNodesInThreeRegions(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "parley-cluster")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/parley-cluster").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := t.TempDir()
	port := 20000 + rand.IntN(20000)
	cmd := exec.Command(bin, "-bin", parleyBin, "-data", data, "-port", fmt.Sprint(port), "-for", "3m")
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
