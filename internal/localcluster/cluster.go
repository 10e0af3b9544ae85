// Package localcluster launches local Parley clusters of real `parley`
// processes, for the e2e tests, the bench harness and `make cluster`
// (cmd/parley-cluster): it assigns each node its addresses, region and data
// directory, writes the shared cluster key, starts the nodes in order (the
// first bootstraps the control plane, the others join it through its node
// link), captures their logs and waits until they are ready and the
// cluster is formed. Each node can then be killed (SIGKILL), stalled
// (SIGSTOP/SIGCONT), restarted on the same data and stopped cleanly.
//
// Nodes listen on 127.0.0.1 with free ports, on given hosts at fixed ports
// (127.0.0.1 to .5 for `make cluster`), or each in a network namespace of
// its own (NetLab), so that a partition can cut some from the others.
//
// It runs nodes; it imports nothing of the server (the bench harness, which
// must not, uses it).
package localcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"parley/cluster/clusterkey"
	"parley/internal/eventually"
)

// Ports of a node at a fixed address (Config.Hosts, a NetLab): each
// namespace, or each loopback address, has the same ports free.
const (
	FixedHTTPPort   = 18080
	FixedLinkPort   = 17000
	FixedGossipPort = 17946
)

// Config says how to start a cluster. Its zero value, with Bin, is one
// node of a control plane on 127.0.0.1 with free ports, in a temporary
// directory.
type Config struct {
	// Bin is the parley binary (Build makes one); required.
	Bin string
	// Nodes is how many; zero: 1.
	Nodes int
	// Dir holds the cluster key (cluster.key), each node's data directory
	// (n1, n2, …) and log (n1.log, …). Empty: a new temporary directory,
	// removed by Stop unless Keep. A Dir given is kept, and so is a
	// cluster key already in it: the next start resumes the same cluster.
	Dir  string
	Keep bool
	// Standalone runs each node alone, without the cluster flags (-raft-addr,
	// -gossip-addr, -cluster-key, -region, -join): no control plane.
	Standalone bool
	// Hosts puts node i on Hosts[i] at fixed ports (HTTPPort, LinkPort,
	// GossipPort; zero: the Fixed* ones). Nil: 127.0.0.1, free ports.
	Hosts                          []string
	HTTPPort, LinkPort, GossipPort int
	// Links, when set, are the nodes' link (-raft-addr) addresses, on
	// 127.0.0.1 with free HTTP and gossip ports.
	Links []string
	// Lab runs node i in the lab's namespace i at Lab.Host(i), fixed ports
	// (Hosts is then ignored). The caller owns the lab; see Isolate.
	Lab *NetLab
	// Isolate makes a NetLab of Nodes namespaces for the cluster (root
	// only), which Stop removes.
	Isolate bool
	// Regions are given to the nodes round robin; nil: eu, us, ap.
	Regions []string
	// Zones gives node i -zone REGION-a.
	Zones bool
	// Voters has the joining nodes ask to be voters (-voter yes).
	Voters bool
	// Token is every node's -agent-token (the demo workspace's operator
	// token); empty: a random one.
	Token string
	// Args are added to every node's command line, after the launcher's;
	// ArgsFor(i), when set, to node i's, after Args.
	Args    []string
	ArgsFor func(i int) []string
	// Log receives a line for each node started. Nil: none.
	Log func(format string, a ...any)
}

// Cluster is a set of node processes the launcher started.
type Cluster struct {
	Nodes []*Node
	Dir   string
	// KeyFile is the cluster key the nodes share, AdminToken the admin
	// API's token derived from it (empty for Standalone nodes).
	KeyFile    string
	AdminToken string
	Token      string // the demo workspace's operator token, on every node
	// Lab holds the nodes' network namespaces (Config.Lab or Isolate), else
	// nil.
	Lab *NetLab

	removeDir bool
	ownLab    bool
	stopOnce  sync.Once
}

// Start starts the nodes one after the other, each once the one before
// answers /readyz (a node joins through the first, which must be up), then
// for a control plane waits until every node sees every node alive and a
// leader (WaitAlive). A node that resumes from the data of an earlier run
// (its data directory is there) cannot be ready before a quorum of them
// runs: it is waited for until it serves (/healthz), and for /readyz once
// every node is started. On an error it stops what it started.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	c, err := start(ctx, cfg)
	if err != nil && c != nil {
		c.Stop()
	}
	return c, err
}

func start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Bin == "" {
		return nil, errors.New("localcluster: no node binary")
	}
	bin, err := filepath.Abs(cfg.Bin)
	if err != nil {
		return nil, fmt.Errorf("node binary: %w", err)
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		return nil, fmt.Errorf("node binary %s not found: build it first (make build, or go build -o %s ./cmd/parley)", cfg.Bin, cfg.Bin)
	}
	n := max(cfg.Nodes, 1)
	regions := cfg.Regions
	if len(regions) == 0 {
		regions = []string{"eu", "us", "ap"}
	}
	c := &Cluster{Dir: cfg.Dir, Token: cfg.Token, Lab: cfg.Lab}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "parley-cluster-"); err != nil {
			return nil, fmt.Errorf("cluster directory: %w", err)
		}
		c.removeDir = !cfg.Keep
	} else if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster directory: %w", err)
	}
	if c.Token == "" {
		var b [16]byte
		rand.Read(b[:])
		c.Token = "local-" + hex.EncodeToString(b[:])
	}
	if cfg.Isolate && c.Lab == nil {
		if c.Lab, err = NewNetLab(n); err != nil {
			return c, fmt.Errorf("isolating the nodes: %w", err)
		}
		c.ownLab = true
	}
	if !cfg.Standalone {
		c.KeyFile = filepath.Join(c.Dir, "cluster.key")
		key, err := clusterkey.Load(c.KeyFile, true)
		if err != nil {
			return c, err
		}
		c.AdminToken = key.AdminToken()
	}
	for i := range n {
		nc, err := c.nodeConfig(cfg, bin, i, regions[i%len(regions)])
		if err != nil {
			return c, err
		}
		path := "/readyz"
		if _, err := os.Stat(nc.DataDir); err == nil {
			path = "/healthz"
		}
		nd, err := startNode(ctx, nc, path)
		if nd != nil {
			c.Nodes = append(c.Nodes, nd)
		}
		if err != nil {
			return c, err
		}
		if cfg.Log != nil {
			cfg.Log("started node %s at %s %s(pid %d, log %s)", nd.ID, nd.URL, regionNote(nd), nd.PID(), nd.LogPath)
		}
	}
	for _, nd := range c.Nodes {
		if p := nd.running(); p != nil {
			if err := nd.wait(ctx, p, "/readyz"); err != nil {
				return c, err
			}
		}
	}
	if !cfg.Standalone {
		if err := c.WaitAlive(ctx, ReadyTimeout); err != nil {
			return c, err
		}
	}
	return c, nil
}

func regionNote(n *Node) string {
	if n.Region == "" {
		return ""
	}
	return "region " + n.Region + " "
}

// nodeConfig assigns node i its addresses, data directory, log and flags.
func (c *Cluster) nodeConfig(cfg Config, bin string, i int, region string) (NodeConfig, error) {
	id := "n" + strconv.Itoa(i+1)
	nc := NodeConfig{Bin: bin, ID: id, Token: c.Token,
		DataDir: filepath.Join(c.Dir, id), LogPath: filepath.Join(c.Dir, id+".log")}
	var link, gossip string
	host := ""
	switch {
	case c.Lab != nil:
		host = c.Lab.Host(i)
		nc.Wrap = c.Lab.Wrap(i)
	case cfg.Hosts != nil:
		host = cfg.Hosts[i]
	}
	if host != "" {
		port := func(p, def int) string {
			if p == 0 {
				p = def
			}
			return net.JoinHostPort(host, strconv.Itoa(p))
		}
		nc.Addr, link, gossip = port(cfg.HTTPPort, FixedHTTPPort), port(cfg.LinkPort, FixedLinkPort), port(cfg.GossipPort, FixedGossipPort)
	} else {
		for _, a := range []*string{&nc.Addr, &link, &gossip} {
			var err error
			if *a, err = FreeAddr(); err != nil {
				return nc, err
			}
		}
		if cfg.Links != nil {
			link = cfg.Links[i]
		}
	}
	var argsFor []string
	if cfg.ArgsFor != nil {
		argsFor = cfg.ArgsFor(i)
	}
	if !cfg.Standalone {
		nc.Link, nc.Region = link, region
		nc.Args = append(nc.Args, "-raft-addr", link, "-gossip-addr", gossip, "-cluster-key", c.KeyFile, "-region", region)
		if cfg.Zones {
			nc.Args = append(nc.Args, "-zone", region+"-a")
		}
		if i > 0 {
			nc.Args = append(nc.Args, "-join", c.joinAddr(cfg, 0))
			if cfg.Voters {
				nc.Args = append(nc.Args, "-voter", "yes")
			}
		}
	}
	nc.Args = append(append(nc.Args, cfg.Args...), argsFor...)
	return nc, nil
}

// joinAddr is the link address node i advertises: its -raft-addr, unless
// its ArgsFor gives another host with -advertise.
func (c *Cluster) joinAddr(cfg Config, i int) string {
	link := c.Nodes[i].Link
	if cfg.ArgsFor != nil {
		args := cfg.ArgsFor(i)
		for j := 0; j+1 < len(args); j++ {
			if args[j] == "-advertise" {
				_, port, _ := net.SplitHostPort(link)
				return net.JoinHostPort(args[j+1], port)
			}
		}
	}
	return link
}

// Build builds the parley binary to out with go build and its flags (such
// as -race), from anywhere in the module.
func Build(ctx context.Context, out string, flags ...string) error {
	args := append(append([]string{"build"}, flags...), "-o", out, "parley/cmd/parley")
	if b, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("building the node: %w\n%s", err, b)
	}
	return nil
}

// URLs are the nodes' base URLs, in order.
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.URL
	}
	return out
}

// node is node i, or an error.
func (c *Cluster) node(i int) (*Node, error) {
	if i < 0 || i >= len(c.Nodes) {
		return nil, fmt.Errorf("no node %d", i)
	}
	return c.Nodes[i], nil
}

// Kill sends SIGKILL to node i and waits until it is gone.
func (c *Cluster) Kill(i int) error {
	n, err := c.node(i)
	if err != nil {
		return err
	}
	return n.Kill()
}

// Suspend sends SIGSTOP to node i (Node.Suspend).
func (c *Cluster) Suspend(i int) error {
	n, err := c.node(i)
	if err != nil {
		return err
	}
	return n.Suspend()
}

// Continue sends SIGCONT to node i if it is stopped, and says whether it
// was.
func (c *Cluster) Continue(i int) (bool, error) {
	n, err := c.node(i)
	if err != nil {
		return false, err
	}
	return n.Continue()
}

// ContinueAll continues every stopped node.
func (c *Cluster) ContinueAll() {
	for _, n := range c.Nodes {
		_, _ = n.Continue()
	}
}

// Stopped reports whether node i was sent SIGSTOP and not yet SIGCONT.
func (c *Cluster) Stopped(i int) bool {
	n, err := c.node(i)
	return err == nil && n.Stopped()
}

// Up reports whether node i's process is running.
func (c *Cluster) Up(i int) bool {
	n, err := c.node(i)
	return err == nil && n.Running()
}

// Restart starts node i again on its data (Node.Restart).
func (c *Cluster) Restart(ctx context.Context, i int) error {
	n, err := c.node(i)
	if err != nil {
		return err
	}
	return n.Restart(ctx)
}

// NodesInRegion returns the indices of the nodes of region.
func (c *Cluster) NodesInRegion(region string) []int {
	var out []int
	for i, n := range c.Nodes {
		if n.Region == region {
			out = append(out, i)
		}
	}
	return out
}

// Stop ends every node at once (Node.Stop), removes the network namespaces
// it made and the temporary directory unless asked to keep it. Calling it
// again does nothing.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		var wg sync.WaitGroup
		for _, n := range c.Nodes {
			wg.Go(n.Stop)
		}
		wg.Wait()
		if c.ownLab {
			_ = c.Lab.Close()
		}
		if c.removeDir {
			os.RemoveAll(c.Dir)
		}
	})
}

// Logs returns the last max bytes of each node's log, by node ID.
func (c *Cluster) Logs(max int) map[string]string {
	out := map[string]string{}
	for _, n := range c.Nodes {
		out[n.ID] = n.Tail(max)
	}
	return out
}

// View is what one node's admin API says of the cluster (GET
// /v1/admin/cluster, docs/api.md), the parts the launcher waits on.
type View struct {
	Raft struct {
		Voters    int    `json:"voters"`
		Nonvoters int    `json:"nonvoters"`
		LeaderID  string `json:"leader_id"`
	} `json:"raft"`
	Alive []struct {
		ID     string `json:"id"`
		Region string `json:"region"`
	} `json:"alive"`
}

// AliveIDs are the IDs of the nodes the view sees alive, sorted.
func (v *View) AliveIDs() []string {
	var ids []string
	for _, m := range v.Alive {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	return ids
}

// View asks node n how it sees the cluster.
func (c *Cluster) View(ctx context.Context, n *Node) (*View, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/v1/admin/cluster", nil)
	if err != nil {
		return nil, fmt.Errorf("cluster view: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cluster view of %s: %w", n.name(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("cluster view of %s: %s", n.name(), resp.Status)
	}
	var v View
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, fmt.Errorf("cluster view of %s: %w", n.name(), err)
	}
	return &v, nil
}

// WaitAlive waits until every running node sees every running node alive
// (gossip) and knows a Raft leader. A single node: at once.
func (c *Cluster) WaitAlive(ctx context.Context, within time.Duration) error {
	if len(c.Nodes) < 2 {
		return nil
	}
	var up []string
	for _, n := range c.Nodes {
		if n.Running() {
			up = append(up, n.ID)
		}
	}
	slices.Sort(up)
	deadline := time.Now().Add(within)
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		err := eventually.PollContext(ctx, time.Until(deadline), func() error {
			v, err := c.View(ctx, n)
			switch {
			case err != nil:
				return err
			case !slices.Equal(v.AliveIDs(), up):
				return fmt.Errorf("%s sees %v alive, want %v", n.ID, v.AliveIDs(), up)
			case v.Raft.LeaderID == "":
				return fmt.Errorf("%s knows no Raft leader", n.ID)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("cluster not formed: %w", err)
		}
	}
	return nil
}

// WaitVoters waits until every node sees voters voters and a leader.
func (c *Cluster) WaitVoters(ctx context.Context, voters int, within time.Duration) error {
	return eventually.PollContext(ctx, within, func() error {
		for _, n := range c.Nodes {
			v, err := c.View(ctx, n)
			if err != nil {
				return err
			}
			if v.Raft.Voters != voters || v.Raft.LeaderID == "" {
				return fmt.Errorf("%s: %d voters, leader %q", n.name(), v.Raft.Voters, v.Raft.LeaderID)
			}
		}
		return nil
	})
}

// Leader is the node that leads, by the view of the first running node
// that names one.
func (c *Cluster) Leader(ctx context.Context, within time.Duration) (*Node, error) {
	var leader *Node
	err := eventually.PollContext(ctx, within, func() error {
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			v, err := c.View(ctx, n)
			if err != nil || v.Raft.LeaderID == "" {
				continue
			}
			for _, m := range c.Nodes {
				if m.ID == v.Raft.LeaderID {
					leader = m
					return nil
				}
			}
		}
		return errors.New("no running node names a leader")
	})
	return leader, err
}
