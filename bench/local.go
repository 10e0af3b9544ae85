package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"parley/gateway/client"
	"parley/gateway/wire"
	"parley/ident"
	"parley/internal/eventually"
	"parley/internal/localcluster"
)

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
	// harness's own: -http, -data, -node, -agent-token, the cluster flags
	// and raised limits).
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
	"-ip-plan-conversations", "1000000000", "-ip-plan-messages", "1000000000", "-ip-plan-fraction", "1",
	"-log-level", "warn"}

// StartLocal starts the nodes through the launcher (parley/internal/
// localcluster): one node runs alone, as `parley` does by default; two or
// more form a real cluster (one shared cluster key, node 0 bootstraps the
// control plane and the others join it, regions round robin, zone
// REGION-a). The demo workspace (created by every node's start, unpinned,
// so held by every node) and its operator token, the same -agent-token on
// every node, work cluster-wide. It waits until each node answers /readyz;
// a cluster, until every node sees every other alive and a Raft leader,
// and the demo workspace's operator token is accepted on every node.
func StartLocal(ctx context.Context, o LocalOptions) (*localcluster.Cluster, error) {
	if o.Bin == "" {
		o.Bin = "bin/parley"
	}
	if o.Nodes <= 0 {
		o.Nodes = 1
	}
	if len(o.Regions) == 0 {
		o.Regions = []string{"r0", "r1", "r2"}
	}
	var tb [16]byte
	rand.Read(tb[:])
	c, err := localcluster.Start(ctx, localcluster.Config{Bin: o.Bin, Nodes: o.Nodes, Keep: o.Keep,
		Standalone: o.Nodes == 1, Isolate: o.Isolate, Regions: o.Regions, Zones: true,
		Token: "bench-" + hex.EncodeToString(tb[:]), Args: append(slices.Clone(LocalLimits), o.NodeArgs...), Log: o.Log})
	if err != nil {
		return nil, err
	}
	if o.Nodes > 1 {
		if err := waitDemoToken(ctx, c, 60*time.Second); err != nil {
			c.Stop()
			return nil, err
		}
		if o.Log != nil {
			o.Log("cluster of %d formed: every node sees every other alive, and the demo workspace's token works on each", len(c.Nodes))
		}
	}
	return c, nil
}

// localInfo describes the cluster for the result.
func localInfo(c *localcluster.Cluster) *ClusterInfo {
	ci := &ClusterInfo{Isolated: c.Lab != nil}
	for _, n := range c.Nodes {
		ci.Bin = n.Bin
		ci.Nodes = append(ci.Nodes, n.ID+"="+n.URL)
		ci.Logs = append(ci.Logs, n.LogPath)
		if n.Region != "" {
			ci.Regions = append(ci.Regions, n.Region)
		}
	}
	if len(c.Nodes) > 0 {
		for _, a := range c.Nodes[0].Args {
			if a == c.Token {
				a = "<token>"
			}
			ci.Args = append(ci.Args, a)
		}
	}
	return ci
}

// waitDemoToken waits until the demo workspace's operator token is
// accepted on every node: the workspace and the session are in the control
// plane, replicated to each node.
func waitDemoToken(ctx context.Context, c *localcluster.Cluster, within time.Duration) error {
	d := newDialer(nil)
	defer d.close()
	deadline := time.Now().Add(within)
	for i, n := range c.Nodes {
		if err := eventually.PollContext(ctx, time.Until(deadline), func() error {
			return probeAgent(ctx, d, n.URL, "demo", c.Token)
		}); err != nil {
			return fmt.Errorf("node %d (%s): the demo workspace's operator token is not accepted: %w", i, n.ID, err)
		}
	}
	return nil
}

// probeAgent says hello as an agent of workspace to the node at base and
// waits for the welcome.
func probeAgent(ctx context.Context, d *dialer, base, workspace, token string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := d.dial(ctx, base, "ws", 0, 0)
	if err != nil {
		return err
	}
	defer c.CloseNow()
	if _, err := c.Hello(ctx, wire.Hello{Workspace: workspace, Role: ident.Agent, Token: token, Name: "bench probe"}, nil); err != nil {
		var we *client.Error
		if errors.As(err, &we) {
			return fmt.Errorf("hello refused: %w", err)
		}
		return err
	}
	return nil
}
