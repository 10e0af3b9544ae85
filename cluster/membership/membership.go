// Package membership tells a node which other nodes are alive, where they
// run and how to reach them. It is gossip (hashicorp/memberlist, SWIM with
// Lifeguard): each node advertises its region, zone and addresses; a node
// that stops answering probes is declared dead by its peers within the
// failure-detection time, and every node hears of it. Placement of
// conversations (Replicas) is computed from this view.
package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Member is a node as gossip knows it.
type Member struct {
	ID     string `json:"id"`
	Region string `json:"region,omitempty"`
	Zone   string `json:"zone,omitempty"`
	// HTTPAddr serves clients and the nodes' internal API; RaftAddr the
	// control plane; GossipAddr this package.
	HTTPAddr   string `json:"http"`
	RaftAddr   string `json:"raft,omitempty"`
	GossipAddr string `json:"gossip,omitempty"`
	// Leaving is set by a member about to leave gracefully, so that its
	// departure is told apart from a failure (memberlist does not say).
	Leaving bool `json:"leaving,omitempty"`
	// Proto is the protocol version the member runs (Config.Proto); a
	// node of the first release advertises none (0): see Version.
	Proto int `json:"proto,omitempty"`
}

// Version is the protocol version the member runs: Proto, or 1 when it
// advertises none (nodes of the first release).
func (m Member) Version() int { return max(m.Proto, 1) }

// EventKind is what happened to a member.
type EventKind int

const (
	Joined  EventKind = iota + 1
	Updated           // its metadata changed
	Left              // it left gracefully
	Failed            // it stopped answering: declared dead
)

func (k EventKind) String() string {
	switch k {
	case Joined:
		return "joined"
	case Updated:
		return "updated"
	case Left:
		return "left"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Event is a change of the membership.
type Event struct {
	Kind   EventKind
	Member Member
	At     time.Time
}

// Config configures Start. Apart from NodeID and HTTPAddr, the zero value of
// every field is a usable default.
type Config struct {
	// NodeID names this node; the same as its control-plane ID.
	NodeID string
	// Region and Zone are advertised to the other nodes.
	Region, Zone string
	// HTTPAddr and RaftAddr are advertised: where peers reach this node.
	HTTPAddr, RaftAddr string
	// Proto is the protocol version this node runs, advertised so that
	// the others know what they may ask of it during a rolling upgrade.
	// Zero: none advertised, read as 1.
	Proto int
	// BindAddr is the UDP and TCP address of gossip. Zero: 127.0.0.1:0.
	BindAddr string
	// AdvertiseAddr is the gossip address peers dial, needed when BindAddr
	// binds every interface. A host name is resolved once, by Start, to its
	// first address (IPv4 first): gossip tells peers addresses, not names.
	// Zero: the address bound.
	AdvertiseAddr string
	// Key (16, 24 or 32 bytes) encrypts and authenticates gossip; every node
	// must have the same. Zero: gossip in clear, for tests only.
	Key []byte
	// Logger receives memberlist's logs. Zero: slog.Default().
	Logger *slog.Logger
	// OnEvent is called for every change, in order, from one goroutine at a
	// time; it must not block. Zero: none.
	OnEvent func(Event)
	// ProbeInterval is how often a random peer is probed; with
	// ProbeTimeout and SuspicionMult it sets the failure-detection time
	// (measured in docs/benchmarks.md). Zero: 500ms, 250ms and 3, tuned for
	// a LAN or loopback; across regions raise them.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int
	// Drop, for fault tests, loses gossip to the addresses for which it
	// returns true: their packets are dropped and streams refused, as a
	// partition would. Zero: none.
	Drop func(addr string) bool
}

// Membership is this node's view of the cluster.
type Membership struct {
	cfg  Config
	list *memberlist.Memberlist

	metaMu sync.Mutex
	meta   []byte

	mu      sync.RWMutex
	members map[string]Member // alive, by ID, this node included
	failed  uint64
	// others counts members but this node, for Others without the lock.
	others atomic.Int32
}

// Start begins gossiping (alone until Join).
func Start(cfg Config) (*Membership, error) {
	if cfg.NodeID == "" || cfg.HTTPAddr == "" {
		return nil, errors.New("membership: NodeID and HTTPAddr are required")
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = 500 * time.Millisecond
	}
	if cfg.ProbeTimeout == 0 {
		cfg.ProbeTimeout = 250 * time.Millisecond
	}
	if cfg.SuspicionMult == 0 {
		cfg.SuspicionMult = 3
	}
	self := Member{ID: cfg.NodeID, Region: cfg.Region, Zone: cfg.Zone, HTTPAddr: cfg.HTTPAddr, RaftAddr: cfg.RaftAddr, Proto: cfg.Proto}
	meta, err := json.Marshal(self)
	if err != nil {
		return nil, err
	}
	if len(meta) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("membership: node metadata of %d bytes over %d", len(meta), memberlist.MetaMaxSize)
	}
	m := &Membership{cfg: cfg, meta: meta, members: map[string]Member{}}

	host, port, err := splitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("membership: bind address: %w", err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeID
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	if cfg.AdvertiseAddr != "" {
		ah, ap, err := splitHostPort(cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("membership: advertise address: %w", err)
		}
		if ah, err = resolveHost(ah); err != nil {
			return nil, fmt.Errorf("membership: advertise address: %w", err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	mc.ProbeInterval = cfg.ProbeInterval
	mc.ProbeTimeout = cfg.ProbeTimeout
	mc.SuspicionMult = cfg.SuspicionMult
	mc.GossipInterval = 100 * time.Millisecond
	mc.PushPullInterval = 15 * time.Second
	mc.SecretKey = cfg.Key
	mc.Delegate = (*delegate)(m)
	mc.Events = (*events)(m)
	mc.Logger = slog.NewLogLogger(cfg.Logger.With("component", "gossip").Handler(), slog.LevelDebug)
	if cfg.Drop != nil {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: mc.Logger})
		if err != nil {
			return nil, fmt.Errorf("membership: %w", err)
		}
		if port == 0 {
			mc.BindPort = nt.GetAutoBindPort()
			if cfg.AdvertiseAddr == "" {
				mc.AdvertisePort = mc.BindPort
			}
		}
		mc.Transport = &dropTransport{Transport: nt, drop: cfg.Drop}
	}
	list, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	m.list = list
	return m, nil
}

// splitHostPort parses host:port where a port of 0 asks for a free one;
// memberlist then binds TCP and UDP on the same free port.
func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q", p)
	}
	return host, port, nil
}

// resolveHost returns host if it is an IP address, else the first address
// it resolves to, IPv4 first.
func resolveHost(host string) (string, error) {
	if net.ParseIP(host) != nil {
		return host, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil {
		return "", err
	}
	if len(ips) == 0 {
		return "", fmt.Errorf("%s: no address", host)
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip.String(), nil
		}
	}
	return ips[0].String(), nil
}

// Join contacts gossip addresses of existing members and returns how many
// answered; an error only if none did.
func (m *Membership) Join(addrs []string) (int, error) {
	n, err := m.list.Join(addrs)
	if n > 0 {
		return n, nil
	}
	return 0, fmt.Errorf("membership: join %v: %w", addrs, err)
}

// Addr is the gossip address peers reach this node at.
func (m *Membership) Addr() string { return m.list.LocalNode().Address() }

// Self is this node as advertised.
func (m *Membership) Self() Member {
	s := m.decode(m.list.LocalNode())
	return s
}

// Members lists the alive members, this node included, by ID.
func (m *Membership) Members() []Member {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Member, 0, len(m.members))
	for _, mb := range m.members {
		out = append(out, mb)
	}
	slices.SortFunc(out, func(a, b Member) int { return cmpString(a.ID, b.ID) })
	return out
}

// Others counts the alive members other than this node, without a lock
// or an allocation: the data plane's test for having no peer to send to.
func (m *Membership) Others() int { return int(m.others.Load()) }

// Alive says whether the member with that ID is alive in this node's view.
func (m *Membership) Alive(id string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.members[id]
	return ok
}

// Failures counts the members declared dead since Start.
func (m *Membership) Failures() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.failed
}

// Close leaves the cluster gracefully (peers see Left, not Failed), then
// stops gossip.
func (m *Membership) Close() error {
	self := m.Self()
	self.Leaving = true
	if meta, err := json.Marshal(self); err == nil {
		m.metaMu.Lock()
		m.meta = meta
		m.metaMu.Unlock()
		m.list.UpdateNode(time.Second)
	}
	err := m.list.Leave(2 * time.Second)
	return errors.Join(err, m.list.Shutdown())
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// decode reads a node's advertised metadata; a node whose metadata does not
// decode is kept with its name and gossip address only.
func (m *Membership) decode(n *memberlist.Node) Member {
	var mb Member
	if err := json.Unmarshal(n.Meta, &mb); err != nil || mb.ID != n.Name {
		m.cfg.Logger.Warn("gossip: member with undecodable metadata", "member", n.Name, "err", err)
		mb = Member{ID: n.Name}
	}
	mb.GossipAddr = n.Address()
	return mb
}

// delegate gives memberlist this node's metadata; user messages and state
// exchange are not used (replication has its own transport).
type delegate Membership

func (d *delegate) NodeMeta(limit int) []byte {
	d.metaMu.Lock()
	defer d.metaMu.Unlock()
	if len(d.meta) > limit {
		return nil
	}
	return d.meta
}
func (d *delegate) NotifyMsg([]byte)                {}
func (d *delegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d *delegate) LocalState(bool) []byte          { return nil }
func (d *delegate) MergeRemoteState([]byte, bool)   {}

// events keeps the alive set and passes changes on; memberlist calls it
// from one goroutine at a time.
type events Membership

func (e *events) NotifyJoin(n *memberlist.Node)   { e.change(Joined, n) }
func (e *events) NotifyUpdate(n *memberlist.Node) { e.change(Updated, n) }
func (e *events) NotifyLeave(n *memberlist.Node) {
	kind := Failed
	if (*Membership)(e).decode(n).Leaving {
		kind = Left
	}
	e.change(kind, n)
}

func (e *events) change(kind EventKind, n *memberlist.Node) {
	m := (*Membership)(e)
	mb := m.decode(n)
	m.mu.Lock()
	switch kind {
	case Joined, Updated:
		m.members[mb.ID] = mb
	case Left, Failed:
		delete(m.members, mb.ID)
		if kind == Failed {
			m.failed++
		}
	}
	others := len(m.members)
	if _, ok := m.members[m.cfg.NodeID]; ok {
		others--
	}
	m.others.Store(int32(others))
	m.mu.Unlock()
	if kind != Updated && mb.ID != m.cfg.NodeID {
		m.cfg.Logger.Info("gossip: member "+kind.String(), "member", mb.ID, "region", mb.Region, "addr", mb.GossipAddr)
	}
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(Event{Kind: kind, Member: mb, At: time.Now()})
	}
}

// dropTransport is memberlist's transport with Config.Drop applied to
// what this node sends (only memberlist.Transport's methods: memberlist
// reaches the others through WriteTo and DialTimeout).
type dropTransport struct {
	memberlist.Transport
	drop func(addr string) bool
}

func (t *dropTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.drop(addr) {
		return time.Now(), nil // lost on the way
	}
	return t.Transport.WriteTo(b, addr)
}

func (t *dropTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.drop(addr) {
		return nil, fmt.Errorf("dial %s: unreachable (fault injection)", addr)
	}
	return t.Transport.DialTimeout(addr, timeout)
}
