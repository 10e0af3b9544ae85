package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"parley/cluster/membership"
	"parley/cluster/schema"

	"github.com/prometheus/client_golang/prometheus"
)

// gossip is the node's membership: who is alive, where, and how to reach
// them. The control plane registers each node's gossip address, so a node
// (re)joins gossip through the registered addresses of the others, and keeps
// trying those it does not see alive: that is how gossip heals after a
// partition that outlasted memberlist's own memory of the dead.
type gossip struct {
	m      *membership.Membership
	ctl    *control
	log    *slog.Logger
	events *prometheus.CounterVec
	// changes carries the nodes that joined, came back, failed or left,
	// from memberlist's callback (which must not block) to run, which
	// tells run's callbacks; a change beyond its room is dropped.
	changes chan membership.Event
}

// gossipRetry is how often registered nodes not seen alive are contacted.
const gossipRetry = 5 * time.Second

func openGossip(cfg Config, log *slog.Logger, ctl *control, reg prometheus.Registerer) (*gossip, error) {
	addr, err := persistedAddr(cfg.GossipAddr, filepath.Join(cfg.DataDir, "gossip-addr"), cfg.HTTPAddr)
	if err != nil {
		return nil, err
	}
	g := &gossip{ctl: ctl, log: log, changes: make(chan membership.Event, 1024), events: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_gossip_events_total", Help: "Membership changes seen by this node: joined, updated, left, failed.",
	}, []string{"kind"})}
	advertise := ""
	if host, port, _ := net.SplitHostPort(addr); isUnspecified(host) {
		if cfg.Advertise == "" || port == "0" {
			return nil, fmt.Errorf("gossip address %s binds every interface: give -advertise and a fixed port", addr)
		}
		advertise = net.JoinHostPort(cfg.Advertise, port)
	}
	g.m, err = membership.Start(membership.Config{
		NodeID: cfg.NodeID, Region: cfg.Region, Zone: cfg.Zone,
		HTTPAddr: ctl.apiAddr, RaftAddr: ctl.c.Addr(), Proto: schema.ProtocolVersion,
		BindAddr: addr, AdvertiseAddr: advertise,
		Key:    ctl.key.derive("gossip-key/v1"),
		Logger: log,
		Drop:   faultDrop(cfg.faults),
		OnEvent: func(e membership.Event) {
			g.events.WithLabelValues(e.Kind.String()).Inc()
			if e.Kind == membership.Failed || e.Kind == membership.Left || e.Kind == membership.Joined && e.Member.ID != cfg.NodeID {
				select {
				case g.changes <- e:
				default:
				}
			}
		},
	})
	if err != nil {
		return nil, err
	}
	ctl.gossip.Store(g.m)
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "gossip-addr"), []byte(g.m.Addr()+"\n"), 0o600); err != nil {
		g.m.Close()
		return nil, err
	}
	reg.MustRegister(g.events,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_gossip_members", Help: "Members alive in this node's view, itself included."},
			func() float64 { return float64(len(g.m.Members())) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_gossip_member_failures_total", Help: "Members declared dead by failure detection."},
			func() float64 { return float64(g.m.Failures()) }))
	return g, nil
}

// run tells onUp of each node that joined or came back (not this one) and
// onDown of each that failed or left, so that its clients' presence ends
// at once; and contacts registered members not seen alive: every 200ms
// while this node starts (it should see its peers as soon as it is a
// member), then every gossipRetry. It returns when ctx ends.
func (g *gossip) run(ctx context.Context, onUp, onDown func(node string)) error {
	var readyAt time.Time
	for {
		wait := 200 * time.Millisecond
		if g.ctl.ready.Load() {
			if readyAt.IsZero() {
				readyAt = time.Now()
			}
			if missing := g.reconcile(); !missing || time.Since(readyAt) > 30*time.Second {
				wait = gossipRetry
			}
		}
		t := time.NewTimer(wait)
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case e := <-g.changes:
				if e.Kind == membership.Joined {
					onUp(e.Member.ID)
				} else {
					onDown(e.Member.ID)
				}
			case <-t.C:
				waiting = false
			}
		}
	}
}

// reconcile joins the registered members not seen alive, and says whether
// there were any.
func (g *gossip) reconcile() bool {
	var addrs []string
	for _, n := range g.ctl.c.Nodes() {
		if n.ID != g.ctl.cfg.NodeID && n.GossipAddr != "" && !g.m.Alive(n.ID) {
			addrs = append(addrs, n.GossipAddr)
		}
	}
	if len(addrs) == 0 {
		return false
	}
	if n, err := g.m.Join(addrs); err != nil {
		g.log.Debug("gossip: registered members unreachable", "addrs", addrs, "err", err)
	} else {
		g.log.Info("gossip: contacted registered members", "reached", n)
	}
	return true
}

func (g *gossip) close() error { return g.m.Close() }

// persistedAddr is the address to bind: the flag, else the one of the last
// start kept in file, else the HTTP host with a free port.
func persistedAddr(flag, file, httpAddr string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if b, err := os.ReadFile(file); err == nil {
		if a := strings.TrimSpace(string(b)); a != "" {
			return a, nil
		}
	}
	host, _, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, "0"), nil
}

func isUnspecified(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || (ip != nil && ip.IsUnspecified())
}

// faultDial and faultDrop are Config.faults' parts, nil without it.
func faultDial(f faultHook) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if f == nil {
		return nil
	}
	return f.DialContext
}

func faultDrop(f faultHook) func(addr string) bool {
	if f == nil {
		return nil
	}
	return f.DropGossip
}
