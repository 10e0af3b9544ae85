package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"parley/bench/internal/harness"
	"parley/gateway/client"
	"parley/gateway/wire"
	"parley/ident"
)

// clusterView is what one node's admin API says of the cluster
// (GET /v1/admin/cluster, docs/api.md).
type clusterView struct {
	Raft struct {
		Voters   int    `json:"voters"`
		LeaderID string `json:"leader_id"`
	} `json:"raft"`
	Alive []struct {
		ID string `json:"id"`
	} `json:"alive"`
}

// view asks node i how it sees the cluster.
func (c *LocalCluster) view(ctx context.Context, i int) (*clusterView, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Nodes[i].URL+"/v1/admin/cluster", nil)
	if err != nil {
		return nil, fmt.Errorf("cluster view: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cluster view of %s: %w", c.Nodes[i].ID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("cluster view of %s: %s", c.Nodes[i].ID, resp.Status)
	}
	var v clusterView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, fmt.Errorf("cluster view of %s: %w", c.Nodes[i].ID, err)
	}
	return &v, nil
}

// Up reports whether node i's process is running.
func (c *LocalCluster) Up(i int) bool {
	if i < 0 || i >= len(c.Nodes) {
		return false
	}
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.done != nil
}

// NodesInRegion returns the indices of the nodes of region.
func (c *LocalCluster) NodesInRegion(region string) []int {
	var out []int
	for i, n := range c.Nodes {
		if n.Region == region {
			out = append(out, i)
		}
	}
	return out
}

// WaitAlive waits until every running node sees every running node alive
// (gossip) and knows a Raft leader. A single node: at once.
func (c *LocalCluster) WaitAlive(ctx context.Context, within time.Duration) error {
	if len(c.Nodes) < 2 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var up []string
	for i, n := range c.Nodes {
		if c.Up(i) {
			up = append(up, n.ID)
		}
	}
	slices.Sort(up)
	var last error
	for i := range c.Nodes {
		if !c.Up(i) {
			continue
		}
		for {
			v, err := c.view(ctx, i)
			if err == nil {
				var alive []string
				for _, m := range v.Alive {
					alive = append(alive, m.ID)
				}
				slices.Sort(alive)
				switch {
				case !slices.Equal(alive, up):
					err = fmt.Errorf("%s sees %v alive, want %v", c.Nodes[i].ID, alive, up)
				case v.Raft.LeaderID == "":
					err = fmt.Errorf("%s knows no Raft leader", c.Nodes[i].ID)
				default:
					last = nil
				}
			}
			if err == nil {
				break
			}
			last = err
			if harness.SleepCtx(ctx, 100*time.Millisecond) != nil {
				return fmt.Errorf("cluster not formed after %s: %w", within, last)
			}
		}
	}
	return nil
}

// waitFormed waits until the cluster is whole (WaitAlive) and the demo
// workspace's operator token is accepted on every node: the workspace and
// the session are in the control plane, replicated to each node.
func (c *LocalCluster) waitFormed(ctx context.Context, within time.Duration) error {
	start := time.Now()
	if err := c.WaitAlive(ctx, within); err != nil {
		return err
	}
	d := newDialer(nil)
	defer d.close()
	for i, n := range c.Nodes {
		var err error
		for {
			if err = probeAgent(ctx, d, n.URL, "demo", c.Token); err == nil {
				break
			}
			if time.Since(start) > within || harness.SleepCtx(ctx, 200*time.Millisecond) != nil {
				return fmt.Errorf("node %d (%s): the demo workspace's operator token is not accepted: %w", i, n.ID, err)
			}
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
