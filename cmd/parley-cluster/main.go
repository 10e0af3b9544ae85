// Command parley-cluster starts a local Parley cluster on loopback with one
// command (`make cluster`): by default 5 nodes in 3 regions, node i on
// 127.0.0.i, the first bootstrapping the control plane and the others
// joining it, with the demo workspace pinned to the first region. It prints
// each node's URLs and runs until interrupted (or for -for), then stops the
// nodes. Data stays in -data, so the next run resumes the same cluster.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"parley/node"
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

type proc struct {
	id, url string
	cmd     *exec.Cmd
	done    chan error
}

func run(ctx context.Context, o options) error {
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("node binary: %w (make build)", err)
	}
	if err := os.MkdirAll(o.data, 0o700); err != nil {
		return err
	}
	keyFile := filepath.Join(o.data, "cluster.key")
	token, err := secretFile(filepath.Join(o.data, "agent-token"), 24)
	if err != nil {
		return err
	}
	if _, err := secretFile(keyFile, 32); err != nil {
		return err
	}
	root, err := node.AdminToken(keyFile)
	if err != nil {
		return err
	}
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			select {
			case <-p.done:
			case <-time.After(15 * time.Second):
				p.cmd.Process.Kill()
			}
		}
	}()
	first := "127.0.0.1:7000" // n1's node link (Raft address)
	for i := range o.nodes {
		id := fmt.Sprintf("n%d", i+1)
		host := fmt.Sprintf("127.0.0.%d", i+1)
		region := regionOf(i, o.nodes, o.regions)
		args := []string{"-node", id, "-http", fmt.Sprintf("%s:%d", host, o.port), "-data", filepath.Join(o.data, id),
			"-raft-addr", host + ":7000", "-gossip-addr", host + ":7946", "-region", region, "-zone", region + "-a",
			"-cluster-key", keyFile, "-agent-token", token}
		if i > 0 {
			args = append(args, "-join", first)
		}
		p, err := start(ctx, bin, id, filepath.Join(o.data, id+".log"), args)
		if err != nil {
			return err
		}
		procs = append(procs, p)
		if err := ready(ctx, p); err != nil {
			return err
		}
	}
	// The demo workspace lives in the first region only.
	if err := pin(ctx, procs[0].url, root, o.regions[0]); err != nil {
		return err
	}
	fmt.Printf("Parley cluster: %d nodes in regions %s; data and logs in %s\n", o.nodes, strings.Join(o.regions, ", "), o.data)
	fmt.Printf("  demo workspace pinned to %s\n  admin token: parleyctl -node %s -cluster-key %s ...\n", o.regions[0], procs[0].url, keyFile)
	for i, p := range procs {
		fmt.Printf("  %s (%s): demo %s/demo  console %s/agent#token=%s&workspace=demo  metrics %s/metrics\n",
			p.id, regionOf(i, o.nodes, o.regions), p.url, p.url, token, p.url)
	}
	fmt.Println("Ctrl-C stops the cluster.")
	for _, p := range procs {
		go func(p *proc) {
			select {
			case err := <-p.done:
				fmt.Fprintf(os.Stderr, "parley-cluster: node %s exited: %v\n", p.id, err)
				p.done <- err // for the deferred stop
			case <-ctx.Done():
			}
		}(p)
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

func start(ctx context.Context, bin, id, logPath string, args []string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", id, err)
	}
	p := &proc{id: id, url: "http://" + args[3], cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	return p, nil
}

func ready(ctx context.Context, p *proc) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("node %s exited before ready: %v (see its log)", p.id, err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := http.Get(p.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("node " + p.id + " not ready after 60s (see its log)")
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
