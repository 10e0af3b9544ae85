// Command parley-cluster starts a local Parley cluster on loopback with one
// command (`make cluster`): by default 5 nodes in 3 regions, node i on
// 127.0.0.i, the first bootstrapping the control plane and the others
// joining it, with the demo workspace pinned to the first region. It prints
// each node's URLs and runs until interrupted (or for -for), then stops the
// nodes. Data stays in -data, so the next run resumes the same cluster. The
// nodes are started by the launcher the e2e tests and the bench harness use
// too (internal/localcluster).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"parley/internal/localcluster"
)

type options struct {
	bin     string
	data    string
	nodes   int
	regions []string
	port    int
	forDur  time.Duration
}

func main() {
	var o options
	var regions string
	flag.StringVar(&o.bin, "bin", "bin/parley", "node binary")
	flag.StringVar(&o.data, "data", "cluster-data", "directory of the nodes' data, kept between runs")
	flag.IntVar(&o.nodes, "nodes", 5, "number of nodes (node i listens on 127.0.0.i)")
	flag.StringVar(&regions, "regions", "eu,us,ap", "regions, comma-separated; nodes are spread over them in order (eu, eu, us, us, ap for 5)")
	flag.IntVar(&o.port, "port", 8080, "HTTP port of every node (each on its own address)")
	flag.DurationVar(&o.forDur, "for", 0, "stop after this long (0: until interrupted)")
	flag.Parse()
	o.regions = strings.Split(regions, ",")
	if o.nodes < 1 || o.nodes > 50 || len(o.regions) == 0 {
		fmt.Fprintln(os.Stderr, "parley-cluster: want 1 to 50 nodes and at least one region")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.forDur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.forDur)
		defer cancel()
	}
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "parley-cluster:", err)
		os.Exit(1)
	}
}

// regionOf spreads nodes over regions in contiguous groups, so that with 5
// nodes and 3 regions the first two regions have two nodes each.
func regionOf(i, nodes int, regions []string) string {
	per := (nodes + len(regions) - 1) / len(regions)
	return regions[min(i/per, len(regions)-1)]
}

func run(ctx context.Context, o options) error {
	if err := os.MkdirAll(o.data, 0o700); err != nil {
		return err
	}
	token, err := secretFile(filepath.Join(o.data, "agent-token"), 24)
	if err != nil {
		return err
	}
	hosts, regions := make([]string, o.nodes), make([]string, o.nodes)
	for i := range o.nodes {
		hosts[i], regions[i] = fmt.Sprintf("127.0.0.%d", i+1), regionOf(i, o.nodes, o.regions)
	}
	// The launcher keeps the cluster key in o.data/cluster.key, each node's
	// data in o.data/nI and its log in o.data/nI.log.
	cl, err := localcluster.Start(ctx, localcluster.Config{Bin: o.bin, Nodes: o.nodes, Dir: o.data,
		Hosts: hosts, HTTPPort: o.port, LinkPort: 7000, GossipPort: 7946, Regions: regions, Zones: true, Token: token})
	if err != nil {
		return err
	}
	defer cl.Stop()
	// The demo workspace lives in the first region only.
	if err := pin(ctx, cl.Nodes[0].URL, cl.AdminToken, o.regions[0]); err != nil {
		return err
	}
	fmt.Printf("Parley cluster: %d nodes in regions %s; data and logs in %s\n", o.nodes, strings.Join(o.regions, ", "), o.data)
	fmt.Printf("  demo workspace pinned to %s\n  admin token: parleyctl -node %s -cluster-key %s ...\n", o.regions[0], cl.Nodes[0].URL, cl.KeyFile)
	for _, n := range cl.Nodes {
		fmt.Printf("  %s (%s): demo %s/demo  console %s/agent#token=%s&workspace=demo  metrics %s/metrics\n",
			n.ID, n.Region, n.URL, n.URL, token, n.URL)
	}
	fmt.Println("Ctrl-C stops the cluster.")
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, n := range cl.Nodes {
		wg.Go(func() {
			select {
			case <-n.Exited():
				fmt.Fprintf(os.Stderr, "parley-cluster: node %s exited: %v\n", n.ID, n.ExitErr())
			case <-ctx.Done():
			}
		})
	}
	<-ctx.Done()
	fmt.Println("stopping the cluster")
	return nil
}

// secretFile returns the hex secret kept in path, making it on first use.
func secretFile(path string, n int) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	raw := make([]byte, n)
	rand.Read(raw)
	s := hex.EncodeToString(raw)
	return s, os.WriteFile(path, []byte(s+"\n"), 0o600)
}

func pin(ctx context.Context, url, token, region string) error {
	body := strings.NewReader(fmt.Sprintf(`{"region":%q}`, region))
	req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, url+"/v1/admin/workspaces/demo", body)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("pin the demo workspace: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pin the demo workspace: %s", resp.Status)
	}
	return nil
}
