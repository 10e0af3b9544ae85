package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"parley/gateway/client"

	"parley/cluster"
	"parley/crdt"
)

// faultNet stands between nodes running in one process: each dials the
// others' HTTP addresses (internal requests, replication links) through it
// and sends gossip past it (Config.faults). Nodes cut apart cannot dial each
// other, lose each other's gossip, and the connections open between them
// break, as in a partition. The control plane's Raft traffic is not cut:
// its partitions are TestPartitionedNodeRefusesCredentials' (e2e).
type faultNet struct {
	mu    sync.Mutex
	owner map[string]string    // HTTP or gossip address -> node
	cut   map[[2]string]bool   // both orders of each pair cut apart
	conns map[*faultConn]bool  // open between nodes
	drops map[[2]string]uint64 // gossip packets lost, by pair
}

func newFaultNet() *faultNet {
	return &faultNet{owner: map[string]string{}, cut: map[[2]string]bool{}, conns: map[*faultConn]bool{}, drops: map[[2]string]uint64{}}
}

// port is one node's way through the net.
type faultPort struct {
	f    *faultNet
	node string
}

func (p faultPort) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	f := p.f
	f.mu.Lock()
	to := f.owner[addr]
	cut := f.cut[[2]string{p.node, to}]
	f.mu.Unlock()
	if cut {
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("%s unreachable from %s (fault injection)", to, p.node)}
	}
	c, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	fc := &faultConn{Conn: c, f: f, pair: [2]string{p.node, to}}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut[fc.pair] { // cut while dialling
		c.Close()
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("unreachable (fault injection)")}
	}
	f.conns[fc] = true
	return fc, nil
}

func (p faultPort) DropGossip(addr string) bool {
	f := p.f
	f.mu.Lock()
	defer f.mu.Unlock()
	pair := [2]string{p.node, f.owner[addr]}
	if f.cut[pair] {
		f.drops[pair]++
		return true
	}
	return false
}

type faultConn struct {
	net.Conn
	f    *faultNet
	pair [2]string
}

func (c *faultConn) Close() error {
	c.f.mu.Lock()
	delete(c.f.conns, c)
	c.f.mu.Unlock()
	return c.Conn.Close()
}

// partition cuts every node of a from every node of b, breaking the
// connections between them; heal undoes it.
func (f *faultNet) partition(a, b []string) (heal func()) {
	f.mu.Lock()
	for _, x := range a {
		for _, y := range b {
			f.cut[[2]string{x, y}], f.cut[[2]string{y, x}] = true, true
		}
	}
	var broken []*faultConn
	for c := range f.conns {
		if f.cut[c.pair] {
			broken = append(broken, c)
		}
	}
	f.mu.Unlock()
	for _, c := range broken {
		c.Close()
	}
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, x := range a {
			for _, y := range b {
				delete(f.cut, [2]string{x, y})
				delete(f.cut, [2]string{y, x})
			}
		}
	}
}

func (f *faultNet) dropped(from, to string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.drops[[2]string{from, to}]
}

// inProcessCluster starts n nodes of one region in this process, every one
// reaching the others through f; it returns them and the admin token.
func inProcessCluster(t *testing.T, f *faultNet, n int) ([]*running, string) {
	t.Helper()
	return inProcessClusterWith(t, f, n, nil)
}

// inProcessClusterWith is inProcessCluster with each node's Config changed
// by with (when not nil) before it starts.
func inProcessClusterWith(t *testing.T, f *faultNet, n int, with func(*Config)) ([]*running, string) {
	t.Helper()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "cluster.key")
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(key)), 0o600); err != nil {
		t.Fatal(err)
	}
	root, err := AdminToken(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*running
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		cfg := Config{NodeID: id, DataDir: filepath.Join(dir, id), ClusterKey: keyFile, Region: "eu", NoDemo: true, H3Addr: h3Off,
			LogLevel: "warn", FrameRate: 10000, WorkspaceRate: 10000, IPMessageRate: 1e6, IPMessageBurst: 1e6, IPStartRate: 1e6, IPStartBurst: 1e6, AddressShare: 1,
			passwordIterations: cluster.MinPasswordIterations,
			faults:             faultPort{f, id}}
		if i > 0 {
			cfg.Join, cfg.Voter = []string{nodes[0].n.ctl.c.Addr()}, voterYes
		}
		if with != nil {
			with(&cfg)
		}
		r := runNode(t, cfg)
		f.mu.Lock()
		f.owner[r.n.ctl.c.Addr()], f.owner[r.n.gossip.m.Addr()] = id, id
		f.mu.Unlock()
		nodes = append(nodes, r)
	}
	for _, r := range nodes {
		waitMembers(t, r, n)
	}
	return nodes, root
}

// waitMembers waits until a node's gossip sees n members alive.
func waitMembers(t *testing.T, r *running, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); len(r.n.gossip.m.Members()) != n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s sees %d members alive, want %d", r.n.cfg.NodeID, len(r.n.gossip.m.Members()), n)
		}
	}
}

// inProcVisitor writes as one visitor through whichever node it is given,
// resending each message with the same id until it is acknowledged.
type inProcVisitor struct {
	t     *testing.T
	ws    string
	vis   map[string]any
	conv  string
	acked map[string]bool
}

func (v *inProcVisitor) write(r *running, prefix string, n int) {
	t := v.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := dialTest(t, ctx, r.base, client.Options{})
	defer c.c.CloseNow()
	send, await := c.send, c.await
	hello := map[string]any{"type": "hello", "v": 1, "workspace": v.ws, "role": "visitor"}
	for k, x := range v.vis {
		hello[k] = x
	}
	send(hello)
	w := await(func(m map[string]any) bool { return m["type"] == "welcome" || m["type"] == "error" })
	if w["type"] != "welcome" {
		t.Fatalf("visitor hello on %s: %v", r.n.cfg.NodeID, w)
	}
	v.vis = map[string]any{"visitor_id": w["visitor_id"], "visitor_sig": w["visitor_sig"]}
	if v.conv == "" {
		send(map[string]any{"type": "start", "ref": "s"})
		v.conv = await(func(m map[string]any) bool { return m["type"] == "started" })["conversation"].(string)
	}
	for i := range n {
		id := fmt.Sprintf("%s-%06d", prefix, i)
		for try := 0; ; try++ {
			ref := fmt.Sprintf("r-%s-%d", id, try)
			send(map[string]any{"type": "send", "ref": ref, "conversation": v.conv, "id": id, "body": "across an in-process partition"})
			m := await(func(m map[string]any) bool { return m["ref"] == ref })
			if m["type"] == "ack" {
				v.acked[id] = true
				break
			}
			if m["code"] != "unavailable" || try > 200 {
				t.Fatalf("send %s via %s: %v", id, r.n.cfg.NodeID, m)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// held is how many times each message ID is in a node's log of conv.
func held(t *testing.T, r *running, ws, conv string) map[string]int {
	t.Helper()
	out := map[string]int{}
	evs, more, err := r.n.store.Events(ws, conv, 0, 10000)
	if err != nil || more {
		t.Fatalf("%s: events of %s: %v (more %v)", r.n.cfg.NodeID, conv, err, more)
	}
	for _, e := range evs {
		out[e.Message.ID]++
	}
	return out
}

// TestInProcessPartitionHeals partitions a region of three nodes running in
// one process with a fault-injecting transport (the in-process half of the
// partition tests; TestPartitionHealsWithoutLoss cuts real processes with
// iptables): n3 is cut off from n1 and n2, both sides take writes of one
// conversation (600 on n3: more than one anti-entropy request holds), the
// partition heals, and anti-entropy brings the three to the same state,
// with every acknowledged message exactly once.
func TestInProcessPartitionHeals(t *testing.T) {
	f := newFaultNet()
	nodes, root := inProcessCluster(t, f, 3)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	if st, code, m := call(t, n1.base, "POST", "/v1/admin/workspaces", root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}); st != 200 {
		t.Fatalf("create workspace: %d %s %v", st, code, m)
	}
	v := &inProcVisitor{t: t, ws: "acme", acked: map[string]bool{}}
	v.write(n1, "m-before", 5)

	heal := f.partition([]string{"n3"}, []string{"n1", "n2"})
	defer heal()
	waitMembers(t, n3, 1) // n3 declared the others dead: it acknowledges alone
	waitMembers(t, n1, 2)
	waitMembers(t, n2, 2)
	v.write(n1, "m-majority", 10)
	// More than one range request holds (maxInternalBody): anti-entropy
	// sends them in parts.
	v.write(n3, "m-minority", 600)
	// The cut held: neither side has the other's writes.
	if h := held(t, n1, "acme", v.conv); h["m-minority-000000"] != 0 {
		t.Fatal("n1 got a message written on n3 during the partition")
	}
	if h := held(t, n3, "acme", v.conv); h["m-majority-000000"] != 0 {
		t.Fatal("n3 got a message written on n1 during the partition")
	}
	if f.dropped("n3", "n1") == 0 || f.dropped("n1", "n3") == 0 {
		t.Fatal("no gossip was lost between the sides")
	}

	heal()
	healed := time.Now()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var states []string
		for _, r := range nodes {
			st, n, err := r.n.store.StateDigest("acme", v.conv)
			if err != nil {
				t.Fatal(err)
			}
			states = append(states, fmt.Sprintf("%v %s/%d", crdt.Vector(mustFrontier(t, r, v.conv)), st, n))
		}
		if states[0] == states[1] && states[1] == states[2] && strings.HasSuffix(states[0], fmt.Sprintf("/%d", len(v.acked))) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas did not converge 60s after healing: %v (%d acknowledged)", states, len(v.acked))
		}
	}
	t.Logf("%d messages acknowledged on both sides; converged %s after healing", len(v.acked), time.Since(healed).Round(time.Millisecond))
	for _, r := range nodes {
		h := held(t, r, "acme", v.conv)
		for id := range v.acked {
			if h[id] != 1 {
				t.Errorf("%s holds %s %d times", r.n.cfg.NodeID, id, h[id])
			}
		}
		if len(h) != len(v.acked) {
			t.Errorf("%s holds %d messages, %d acknowledged", r.n.cfg.NodeID, len(h), len(v.acked))
		}
		if f := mustFrontier(t, r, v.conv); f["n1"] != 15 || f["n3"] != 600 {
			t.Errorf("%s's frontier %v, want n1.15 and n3.600", r.n.cfg.NodeID, f)
		}
	}
	// Anti-entropy repaired both sides (no writes followed the heal).
	sent := func(r *running) float64 {
		mfs, err := r.n.metrics.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "parley_antientropy_events_sent_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatal("no parley_antientropy_events_sent_total")
		return 0
	}
	if sent(n3) == 0 || sent(n1)+sent(n2) == 0 {
		t.Errorf("events sent by anti-entropy: n1 %v, n2 %v, n3 %v", sent(n1), sent(n2), sent(n3))
	}
}

func mustFrontier(t *testing.T, r *running, conv string) map[string]uint64 {
	t.Helper()
	f, err := r.n.store.Frontier("acme", conv)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
