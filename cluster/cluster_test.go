package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"parley/internal/eventually"
)

// The clusters below are real: hashicorp/raft over TCP on 127.0.0.1 with
// bbolt files in t.TempDir(), one process. Timeouts are generous for a
// loaded 2-core machine running -race.

var testMasterKey = bytes.Repeat([]byte{0x42}, 32)

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type testCluster struct {
	t   testing.TB
	fwd *LocalForwarder
	log *slog.Logger
	mod func(*Config)

	mu    sync.Mutex
	nodes map[string]*testNode
}

type testNode struct {
	c    *Cluster
	dir  string
	addr string
}

// newTestCluster starts n1 (bootstrapping) and adds n2..nN as voters.
func newTestCluster(t testing.TB, voters int, mod func(*Config)) *testCluster {
	t.Helper()
	tc := &testCluster{t: t, fwd: NewLocalForwarder(), log: testLogger(t), mod: mod, nodes: map[string]*testNode{}}
	t.Cleanup(tc.closeAll)
	tc.start("n1", true)
	tc.leader()
	for i := 2; i <= voters; i++ {
		id := fmt.Sprintf("n%d", i)
		tc.start(id, false)
		tc.addVoter(id)
	}
	return tc
}

func (tc *testCluster) config(id, dir, addr string, bootstrap bool) Config {
	cfg := Config{
		NodeID:             id,
		Region:             "eu",
		RaftAddr:           addr,
		DataDir:            dir,
		Bootstrap:          bootstrap,
		Logger:             tc.log.With("node", id),
		MasterKey:          testMasterKey,
		Forwarder:          tc.fwd,
		HeartbeatTimeout:   600 * time.Millisecond,
		ElectionTimeout:    600 * time.Millisecond,
		LeaderLeaseTimeout: 400 * time.Millisecond,
		CommitTimeout:      20 * time.Millisecond,
		ApplyTimeout:       20 * time.Second,
		PasswordIterations: MinPasswordIterations,
	}
	if tc.mod != nil {
		tc.mod(&cfg)
	}
	return cfg
}

// start opens a node, or reopens a stopped one from its directory and
// address.
func (tc *testCluster) start(id string, bootstrap bool) *Cluster {
	tc.t.Helper()
	tc.mu.Lock()
	n := tc.nodes[id]
	if n == nil {
		n = &testNode{dir: tc.t.TempDir(), addr: "127.0.0.1:0"}
		tc.nodes[id] = n
	}
	tc.mu.Unlock()
	c, err := Open(tc.config(id, n.dir, n.addr, bootstrap))
	if err != nil {
		tc.t.Fatalf("open %s: %v", id, err)
	}
	tc.mu.Lock()
	n.c, n.addr = c, c.Addr()
	tc.mu.Unlock()
	tc.fwd.Add(c)
	return c
}

// stop closes a node as a crash would look to its peers: unreachable at
// once. Its files stay for a restart.
func (tc *testCluster) stop(id string) {
	tc.t.Helper()
	tc.mu.Lock()
	n := tc.nodes[id]
	c := n.c
	n.c = nil
	tc.mu.Unlock()
	tc.fwd.Remove(c)
	if err := c.Close(); err != nil {
		tc.t.Errorf("close %s: %v", id, err)
	}
}

func (tc *testCluster) closeAll() {
	for _, c := range tc.live() {
		tc.stop(c.ID())
	}
}

func (tc *testCluster) node(id string) *Cluster {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.nodes[id].c
}

func (tc *testCluster) dir(id string) string {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.nodes[id].dir
}

// live lists the running nodes by ID.
func (tc *testCluster) live() []*Cluster {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	var out []*Cluster
	for _, n := range tc.nodes {
		if n.c != nil {
			out = append(out, n.c)
		}
	}
	slices.SortFunc(out, func(a, b *Cluster) int { return strings.Compare(a.ID(), b.ID()) })
	return out
}

// leader waits for one running node to lead and every running member of
// its configuration to know it.
func (tc *testCluster) leader() *Cluster {
	tc.t.Helper()
	var leader *Cluster
	eventually.Holds(tc.t, 20*time.Second, "a leader every member knows", func() error {
		leader = nil
		for _, c := range tc.live() {
			if c.IsLeader() {
				leader = c
			}
		}
		if leader == nil {
			return errors.New("no node leads")
		}
		members := map[string]bool{}
		for _, m := range leader.Members() {
			members[m.ID] = true
		}
		for _, c := range tc.live() {
			if id, _ := c.Leader(); members[c.ID()] && id != leader.ID() {
				return fmt.Errorf("%s leads, %s knows %q", leader.ID(), c.ID(), id)
			}
		}
		return nil
	})
	return leader
}

func (tc *testCluster) followers() []*Cluster {
	leader := tc.leader()
	var out []*Cluster
	for _, c := range tc.live() {
		if c != leader {
			out = append(out, c)
		}
	}
	return out
}

func (tc *testCluster) addVoter(id string)    { tc.changeMembership(id, true) }
func (tc *testCluster) addNonvoter(id string) { tc.changeMembership(id, false) }

func (tc *testCluster) changeMembership(id string, voter bool) {
	tc.t.Helper()
	ctx := testContext(tc.t)
	addr := tc.node(id).Addr()
	for {
		leader := tc.leader()
		var err error
		if voter {
			err = leader.AddVoter(ctx, id, addr)
		} else {
			err = leader.AddNonvoter(ctx, id, addr)
		}
		if err == nil {
			return
		}
		if !errors.Is(err, ErrNotLeader) || ctx.Err() != nil {
			tc.t.Fatalf("add %s: %v", id, err)
		}
	}
}

// waitApplied waits for every running node to apply index.
func (tc *testCluster) waitApplied(index uint64) {
	tc.t.Helper()
	ctx := testContext(tc.t)
	for _, c := range tc.live() {
		if err := c.WaitApplied(ctx, index); err != nil {
			tc.t.Fatalf("%s: %v", c.ID(), err)
		}
	}
}

func mustApply(t testing.TB, c *Cluster, cmd Command) Result {
	t.Helper()
	res, err := c.Apply(testContext(t), cmd)
	if err != nil {
		t.Fatalf("apply %T on %s: %v", cmd, c.ID(), err)
	}
	return res
}

func TestSingleNodeBootstrapAndRestart(t *testing.T) {
	t.Parallel()
	// No MasterKey: the node generates master.key, as `make run` will.
	tc := newTestCluster(t, 1, func(c *Config) { c.MasterKey = nil })
	c := tc.node("n1")
	ctx := testContext(t)
	if id, addr := c.Leader(); !c.IsLeader() || id != "n1" || addr != c.Addr() {
		t.Fatalf("leader %s at %s, IsLeader %v", id, addr, c.IsLeader())
	}
	mustApply(t, c, CreateWorkspace{ID: "acme", Name: "Acme", Region: "eu", Plan: "team", Created: t0})
	if _, _, err := c.AddOperator(ctx, NewOperator{Workspace: "acme", ID: "ann", Email: "ann@acme.test", Name: "Ann", Role: RoleAdmin, Password: testPassword}); err != nil {
		t.Fatal(err)
	}
	sessRaw, sess, err := c.Login(ctx, "acme", "ann@acme.test", testPassword)
	if err != nil || sess.Operator != "ann" {
		t.Fatalf("login: %+v, %v", sess, err)
	}
	for _, bad := range [][2]string{{"ann@acme.test", "wrong password"}, {"nobody@acme.test", testPassword}} {
		if _, _, err := c.Login(ctx, "acme", bad[0], bad[1]); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("login %s: %v", bad[0], err)
		}
	}
	keyRaw, key, _, err := c.MintKey(ctx, "acme", "", "server")
	if err != nil || !strings.HasPrefix(keyRaw, APIKeyPrefix) {
		t.Fatalf("mint: %q, %v", keyRaw, err)
	}
	if _, err := c.SetIdentitySecret(ctx, "acme", []byte("hmac-secret")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterSelf(ctx, NodeInfo{APIAddr: "127.0.0.1:8080", GossipAddr: "127.0.0.1:7946"}); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.State != "Leader" || st.Term == 0 || st.CommitIndex < st.StateIndex || st.StateIndex == 0 || st.Voters != 1 {
		t.Fatalf("stats %+v", st)
	}
	if m := c.Members(); len(m) != 1 || !m[0].Leader || !m[0].Voter || m[0].Region != "eu" {
		t.Fatalf("members %+v", m)
	}
	before := st.StateIndex

	tc.stop("n1")
	fi, err := os.Stat(filepath.Join(tc.dir("n1"), "master.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("master.key: %v, %v", fi, err)
	}
	for _, f := range []string{"raft.db", "snapshots"} {
		if _, err := os.Stat(filepath.Join(tc.dir("n1"), f)); err != nil {
			t.Fatal(err)
		}
	}

	// Restart from the bbolt files: Bootstrap is ignored, state comes back.
	c = tc.start("n1", true)
	if err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Consistent(ctx); err != nil {
		t.Fatal(err)
	}
	if c.State.Index() < before {
		t.Fatalf("restored index %d < %d", c.State.Index(), before)
	}
	if w, err := c.Workspace("acme"); err != nil || w.Region != "eu" {
		t.Fatalf("workspace after restart: %+v, %v", w, err)
	}
	if o, err := c.AuthenticateSession(sessRaw); err != nil || o.ID != "ann" {
		t.Fatalf("session after restart: %v", err)
	}
	if k, err := c.AuthenticateKey(keyRaw); err != nil || k.ID != key.ID {
		t.Fatalf("key after restart: %v", err)
	}
	if s, err := c.IdentitySecret("acme"); err != nil || string(s) != "hmac-secret" {
		t.Fatalf("secret after restart (master.key reused?): %q, %v", s, err)
	}
	if n, err := c.Node("n1"); err != nil || n.APIAddr != "127.0.0.1:8080" {
		t.Fatalf("node registry: %+v, %v", n, err)
	}
}

func TestForwardingToLeader(t *testing.T) {
	t.Parallel()
	// n3 has no Forwarder, to see what a follower without one answers.
	tc := newTestCluster(t, 3, func(c *Config) {
		if c.NodeID == "n3" {
			c.Forwarder = nil
		}
	})
	ctx := testContext(t)
	leader := tc.leader()
	var follower, noForward *Cluster
	for _, c := range tc.followers() {
		if c.ID() == "n3" {
			noForward = c
		} else {
			follower = c
		}
	}

	res := mustApply(t, follower, CreateWorkspace{ID: "acme", Name: "Acme", Plan: "team", Created: t0})
	if res.Index == 0 {
		t.Fatal("no index in a forwarded result")
	}
	tc.waitApplied(res.Index)
	for _, c := range tc.live() {
		if _, err := c.Workspace("acme"); err != nil {
			t.Fatalf("%s: %v", c.ID(), err)
		}
	}
	// Applied once: the same command again is refused, and the sentinel
	// survives the trip back from the leader.
	if _, err := follower.Apply(ctx, CreateWorkspace{ID: "acme", Name: "Acme", Plan: "team", Created: t0}); !errors.Is(err, ErrExists) {
		t.Fatalf("second create via follower: %v", err)
	}
	if _, err := follower.Apply(ctx, CreateWorkspace{ID: "Bad", Name: "x", Plan: "team", Created: t0}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid via follower: %v", err)
	}
	// Results travel too.
	mustApply(t, leader, CreateOperator{Workspace: "acme", ID: "ann", Email: "ann@acme.test", Name: "Ann", Role: RoleAgent, PasswordHash: testPasswordHash(), Created: t0})
	if r := mustApply(t, follower, Assign{Workspace: "acme", Conversation: "c1", Operator: "ann"}); r.Version != 1 {
		t.Fatalf("assign via follower: %+v", r)
	}

	if noForward != nil {
		_, err := noForward.Apply(ctx, DeleteWorkspace{ID: "acme"})
		var nl *NotLeaderError
		if !errors.Is(err, ErrNotLeader) || !errors.As(err, &nl) || nl.LeaderAddr != leader.Addr() || nl.LeaderID != leader.ID() {
			t.Fatalf("apply on a follower without forwarder: %v", err)
		}
	}
	// One hop only: a follower handed a forwarded command refuses it.
	data, _ := EncodeCommand(DeleteWorkspace{ID: "acme"})
	reply, err := follower.HandleForward(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeReply(reply); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("forward to a follower: %v", err)
	}

	// Linearizable reads: on the leader directly, on a follower through the
	// leader's read index.
	if err := follower.Consistent(ctx); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Consistent on a follower: %v", err)
	}
	idx, err := leader.ReadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := follower.WaitApplied(ctx, idx); err != nil {
		t.Fatal(err)
	}
	if a, _ := follower.Assignment("acme", "c1"); a.Version != 1 {
		t.Fatalf("follower read after read index: %+v", a)
	}
}

// Kill the leader in the middle of a stream of idempotent writes from
// several goroutines through every node; retry whatever was not
// acknowledged on another node. Every write ends up applied exactly once.
func TestLeaderKillExactlyOnce(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t, 3, nil)
	ctx := testContext(t)
	mustApply(t, tc.leader(), CreateWorkspace{ID: "acme", Name: "Acme", Plan: "business", Created: t0})

	const writers, perWriter, killAfter = 4, 40, 40
	var acked, retries, duplicates, uncertain atomic.Int64
	killed := make(chan string, 1)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				cmd := ReportUsage{NodeID: "n1", Workspace: "acme", Period: "2026-11", Messages: 1, IdempotencyKey: fmt.Sprintf("w%d-%d", w, i)}
				if i == 0 {
					cmd.Conversations = 1
				}
				for attempt := 0; ; attempt++ {
					live := tc.live()
					c := live[(w+i+attempt)%len(live)]
					cmd.NodeID = c.ID()
					res, err := c.Apply(ctx, cmd)
					if err == nil {
						acked.Add(1)
						if res.Duplicate {
							duplicates.Add(1)
						}
						break
					}
					if errors.Is(err, ErrInvalid) || errors.Is(err, ErrConflict) || ctx.Err() != nil {
						t.Errorf("write %s: %v", cmd.IdempotencyKey, err)
						return
					}
					if errors.Is(err, ErrUncertain) {
						uncertain.Add(1)
					}
					retries.Add(1)
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	wg.Go(func() {
		for acked.Load() < killAfter && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		leader := tc.leader()
		tc.stop(leader.ID())
		killed <- leader.ID()
	})
	wg.Wait()
	victim := <-killed
	if t.Failed() {
		return
	}

	leader := tc.leader()
	if leader.ID() == victim {
		t.Fatal("the killed node leads")
	}
	idx, err := leader.ReadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tc.waitApplied(idx)
	const total = writers * perWriter
	check := func(c *Cluster) {
		u, err := c.Usage("acme", "2026-11")
		if err != nil || u.Messages != total || u.Reports != total || u.Conversations != writers {
			t.Errorf("%s: usage %+v (%v), want %d reports applied exactly once", c.ID(), u, err, total)
		}
	}
	for _, c := range tc.live() {
		check(c)
	}
	// The killed node comes back from its bbolt files and catches up.
	c := tc.start(victim, false)
	if err := c.WaitApplied(ctx, idx); err != nil {
		t.Fatal(err)
	}
	check(c)
	t.Logf("killed leader %s after %d acks; %d retries (%d uncertain), %d answered as duplicates",
		victim, killAfter, retries.Load(), uncertain.Load(), duplicates.Load())
}

// A node stopped while the others write far more than SnapshotThreshold
// entries, and the leader truncates its log, can only catch up from a
// snapshot: the leader sends one, the node restores it.
func TestLaggingNodeCatchesUpFromSnapshot(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t, 3, func(c *Config) {
		c.SnapshotThreshold = 64
		c.TrailingLogs = 16
		c.SnapshotInterval = 100 * time.Millisecond
	})
	ctx := testContext(t)
	leader := tc.leader()
	mustApply(t, leader, CreateWorkspace{ID: "acme", Name: "Acme", Plan: "business", Created: t0})
	lagger := tc.followers()[0]
	laggerID := lagger.ID()
	tc.waitApplied(leader.State.Index())
	laggerLast := lagger.raft.LastIndex()
	tc.stop(laggerID)

	const writes = 300
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < writes; i += 8 {
				if _, err := leader.Apply(ctx, ReportUsage{NodeID: leader.ID(), Workspace: "acme", Period: "2026-11", Messages: 1, IdempotencyKey: fmt.Sprintf("k%d", i)}); err != nil {
					t.Errorf("write %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Wait for the leader to snapshot and drop the entries the lagger lacks.
	eventually.Holds(t, 30*time.Second, "the leader truncates its log past the lagger", func() error {
		first, err := leader.store.FirstIndex()
		if err != nil {
			t.Fatal(err)
		}
		if snap := leader.Stats().LastSnapshotIndex; first <= laggerLast+1 || snap <= laggerLast {
			return fmt.Errorf("first index %d, snapshot at %d, lagger at %d", first, snap, laggerLast)
		}
		return nil
	})
	idx, err := leader.ReadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}

	c := tc.start(laggerID, false)
	restoredAtStart := c.fsm.restores.Load()
	if err := c.WaitApplied(ctx, idx); err != nil {
		t.Fatal(err)
	}
	if got := c.fsm.restores.Load(); got <= restoredAtStart {
		t.Fatalf("caught up without installing a snapshot (restores %d)", got)
	}
	// Raft updates its own counters just after the FSM restored.
	eventually.Holds(t, 10*time.Second, "stats count the restored snapshot", func() error {
		if st := c.Stats(); st.LastSnapshotIndex <= laggerLast || st.SnapshotsRestored == 0 {
			return fmt.Errorf("stats after catching up: %+v", st)
		}
		return nil
	})
	if u, _ := c.Usage("acme", "2026-11"); u.Messages != writes {
		t.Fatalf("lagger usage %+v, want %d messages", u, writes)
	}
}

func TestMembershipChanges(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t, 3, nil)
	ctx := testContext(t)

	n4 := tc.start("n4", false)
	tc.addNonvoter("n4")
	leader := tc.leader()
	if st := leader.Stats(); st.Voters != 3 || st.Nonvoters != 1 {
		t.Fatalf("stats after AddNonvoter: %+v", st)
	}
	if m := leader.Members(); len(m) != 4 || m[3].ID != "n4" || m[3].Voter || m[3].Addr != n4.Addr() {
		t.Fatalf("members %+v", m)
	}
	// The non-voter forwards writes and answers reads from its own state.
	res := mustApply(t, n4, CreateWorkspace{ID: "acme", Name: "Acme", Plan: "team", Created: t0})
	if err := n4.WaitApplied(ctx, res.Index); err != nil {
		t.Fatal(err)
	}
	if _, err := n4.Workspace("acme"); err != nil {
		t.Fatalf("read on the non-voter: %v", err)
	}
	if since := time.Since(n4.LastLeaderContact()); since > 5*time.Second {
		t.Fatalf("non-voter last heard from the leader %v ago", since)
	}
	if err := n4.Consistent(ctx); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Consistent on a non-voter: %v", err)
	}
	if err := n4.AddVoter(ctx, "n9", "127.0.0.1:1"); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("AddVoter on a non-leader: %v", err)
	}

	// Remove a voting follower; writes go on with the rest.
	var gone *Cluster
	for _, c := range tc.followers() {
		if c.ID() != "n4" {
			gone = c
			break
		}
	}
	if err := leader.RemoveServer(ctx, gone.ID()); err != nil {
		t.Fatal(err)
	}
	tc.stop(gone.ID())
	for _, m := range leader.Members() {
		if m.ID == gone.ID() {
			t.Fatalf("%s still a member: %+v", gone.ID(), leader.Members())
		}
	}
	// Promote the non-voter.
	tc.addVoter("n4")
	leader = tc.leader()
	if st := leader.Stats(); st.Voters != 3 || st.Nonvoters != 0 {
		t.Fatalf("stats after promotion: %+v", st)
	}
	res = mustApply(t, n4, UpdateWorkspace{ID: "acme", Region: ptr("us")})
	tc.waitApplied(res.Index)

	// The leader removes itself: it steps down and the others elect a new one.
	old := leader
	if err := old.RemoveServer(ctx, old.ID()); err != nil {
		t.Fatal(err)
	}
	tc.stop(old.ID())
	leader = tc.leader()
	if leader == old {
		t.Fatal("removed leader still leads")
	}
	if m := leader.Members(); len(m) != 2 {
		t.Fatalf("members after removing the leader: %+v", m)
	}
	res = mustApply(t, leader, UpdateWorkspace{ID: "acme", Name: ptr("Acme 2")})
	tc.waitApplied(res.Index)
	for _, c := range tc.live() {
		if w, _ := c.Workspace("acme"); w.Name != "Acme 2" || w.Region != "us" {
			t.Fatalf("%s: %+v", c.ID(), w)
		}
	}
}

// Revocation is immediate: once the revoke returned and every live node
// applied its index (the node layer's protocol, see WaitApplied), no node
// accepts the key or the session, while readers hammer every node.
func TestRevocationImmediate(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t, 3, nil)
	ctx := testContext(t)
	tc.start("n4", false)
	tc.addNonvoter("n4")
	leader := tc.leader()
	mustApply(t, leader, CreateWorkspace{ID: "acme", Name: "Acme", Plan: "team", Created: t0})
	mustApply(t, leader, CreateOperator{Workspace: "acme", ID: "ann", Email: "ann@acme.test", Name: "Ann", Role: RoleAgent, PasswordHash: testPasswordHash(), Created: t0})
	follower := tc.followers()[0]
	keyRaw, key, _, err := follower.MintKey(ctx, "acme", "", "widget")
	if err != nil {
		t.Fatal(err)
	}
	sessRaw, sess, err := follower.NewSession(ctx, "acme", "ann")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := leader.ReadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tc.waitApplied(idx)

	type credential struct {
		name   string
		auth   func(*Cluster) error
		revoke Command
	}
	creds := []credential{
		{"key", func(c *Cluster) error { _, err := c.AuthenticateKey(keyRaw); return err }, RevokeKey{ID: key.ID}},
		{"session", func(c *Cluster) error { _, err := c.AuthenticateSession(sessRaw); return err }, RevokeSession{ID: sess.ID}},
	}
	for _, cred := range creds {
		for _, c := range tc.live() {
			if err := cred.auth(c); err != nil {
				t.Fatalf("%s on %s before revoke: %v", cred.name, c.ID(), err)
			}
		}
		var revoked atomic.Bool
		var accepted, after, violations atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, c := range tc.live() {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					wasRevoked := revoked.Load()
					err := cred.auth(c)
					if wasRevoked {
						after.Add(1)
					}
					switch {
					case err == nil && wasRevoked:
						violations.Add(1)
					case err == nil:
						accepted.Add(1)
					case !errors.Is(err, ErrRevoked):
						t.Errorf("%s on %s: %v", cred.name, c.ID(), err)
					}
					runtime.Gosched()
				}
			})
		}
		time.Sleep(50 * time.Millisecond)
		// The revoke goes through a follower, then every node waits for it.
		res, err := tc.followers()[0].Apply(ctx, cred.revoke)
		if err == nil {
			for _, c := range tc.live() {
				if err = c.WaitApplied(ctx, res.Index); err != nil {
					break
				}
			}
		}
		revoked.Store(true)
		time.Sleep(100 * time.Millisecond)
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("revoke %s: %v", cred.name, err)
		}
		if violations.Load() != 0 || accepted.Load() == 0 || after.Load() == 0 {
			t.Fatalf("%s: %d accepted after the revoke returned (%d before, %d checks after)", cred.name, violations.Load(), accepted.Load(), after.Load())
		}
		for _, c := range tc.live() {
			if err := cred.auth(c); !errors.Is(err, ErrRevoked) {
				t.Fatalf("%s on %s after revoke: %v", cred.name, c.ID(), err)
			}
		}
	}
}

// Two assignments of one conversation expecting version 0, sent at the same
// moment through two nodes: exactly one wins, the other gets ErrConflict
// and the winner's version.
func TestConcurrentAssign(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t, 3, nil)
	leader := tc.leader()
	mustApply(t, leader, CreateWorkspace{ID: "acme", Name: "Acme", Plan: "team", Created: t0})
	for _, op := range []string{"ann", "bob"} {
		mustApply(t, leader, CreateOperator{Workspace: "acme", ID: op, Email: op + "@acme.test", Name: op, Role: RoleAgent, PasswordHash: testPasswordHash(), Created: t0})
	}
	ctx := testContext(t)
	nodes := tc.live()
	for round := range 10 {
		conv := fmt.Sprintf("c%d", round)
		ops := []string{"ann", "bob"}
		results := make([]Result, 2)
		errs := make([]error, 2)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				<-start
				c := nodes[(round+i)%len(nodes)]
				results[i], errs[i] = c.Apply(ctx, Assign{Workspace: "acme", Conversation: conv, Operator: ops[i], ExpectVersion: 0})
			})
		}
		close(start)
		wg.Wait()
		var winner, loser int
		switch {
		case errs[0] == nil && errors.Is(errs[1], ErrConflict):
			winner, loser = 0, 1
		case errs[1] == nil && errors.Is(errs[0], ErrConflict):
			winner, loser = 1, 0
		default:
			t.Fatalf("round %d: errors %v, %v: want exactly one ErrConflict", round, errs[0], errs[1])
		}
		if results[winner].Version != 1 || results[loser].Version != 1 {
			t.Fatalf("round %d: versions %+v", round, results)
		}
		tc.waitApplied(results[winner].Index)
		for _, c := range nodes {
			if a, _ := c.Assignment("acme", conv); a.Operator != ops[winner] || a.Version != 1 {
				t.Fatalf("round %d on %s: %+v, winner %s", round, c.ID(), a, ops[winner])
			}
		}
	}
}

// The same billing event arriving on two nodes at the same moment is
// applied once; both callers get the same result.
func TestBillingEventTwiceAtOnce(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t, 3, nil)
	mustApply(t, tc.leader(), CreateWorkspace{ID: "acme", Name: "Acme", Plan: "team", Created: t0})
	ctx := testContext(t)
	nodes := tc.live()
	const rounds = 10
	for round := range rounds {
		ev := BillingEvent{IdempotencyKey: fmt.Sprintf("inv-%d", round), Workspace: "acme", Period: "2026-11", Kind: "charge", Amount: 4900, Currency: "EUR"}
		results := make([]Result, 2)
		errs := make([]error, 2)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				<-start
				e := ev
				e.At = time.Now().UTC() // each node stamps its own time
				results[i], errs[i] = nodes[(round+i)%len(nodes)].Apply(ctx, RecordBillingEvent{Event: e})
			})
		}
		close(start)
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: %v, %v", round, errs[0], errs[1])
		}
		if results[0].Duplicate == results[1].Duplicate || results[0].Index != results[1].Index {
			t.Fatalf("round %d: results %+v: want one original and one duplicate of it", round, results)
		}
	}
	idx, err := tc.leader().ReadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tc.waitApplied(idx)
	for _, c := range nodes {
		if evs, _ := c.BillingEvents("acme"); len(evs) != rounds {
			t.Fatalf("%s: %d events, want %d", c.ID(), len(evs), rounds)
		}
	}
}

// Close leaves no goroutine behind: raft's, the transport's and the apply
// waiters all end. Not parallel, so the count is this test's alone.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	tc := newTestCluster(t, 3, nil)
	ctx := testContext(t)
	mustApply(t, tc.followers()[0], CreateWorkspace{ID: "acme", Name: "Acme", Plan: "team", Created: t0})
	for i := range 20 {
		if _, err := tc.live()[i%3].Apply(ctx, ReportUsage{NodeID: "n1", Workspace: "acme", Period: "2026-11", Messages: 1, IdempotencyKey: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	tc.closeAll()
	eventually.Poll(10*time.Second, func() error { // the check below says what is left
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines", n)
		}
		return nil
	})
	if n := runtime.NumGoroutine(); n > before {
		var buf bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&buf, 1)
		t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf.String())
	}
}

// TestNewLeaderReadIndexWithoutWrites loses the leader of an idle cluster:
// the new leader's first entry is a no-op, which no state machine sees, yet
// the index it gives followers to prove they are caught up is one they have
// applied already, without waiting for a write.
func TestNewLeaderReadIndexWithoutWrites(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t, 3, nil)
	ctx := testContext(t)
	res := mustApply(t, tc.leader(), CreateWorkspace{ID: "acme", Name: "Acme", Plan: "business", Created: t0})
	tc.waitApplied(res.Index)
	tc.stop(tc.leader().ID())
	leader := tc.leader()
	// The new leader's no-op commits once a follower has it.
	eventually.Holds(t, 10*time.Second, "the new leader commits its no-op", func() error {
		if ci := leader.Stats().CommitIndex; ci <= res.Index {
			return fmt.Errorf("commit index %d, last write at %d", ci, res.Index)
		}
		return nil
	})
	idx, err := leader.LeaderCommitIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := leader.Stats(); idx != res.Index || st.CommitIndex <= idx {
		t.Fatalf("read index %d, commit index %d: want the last write's %d below the new leader's no-op", idx, st.CommitIndex, res.Index)
	}
	for _, c := range tc.live() {
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := c.WaitApplied(wctx, idx)
		cancel()
		if err != nil {
			t.Fatalf("%s cannot prove it is caught up with no write after the election: %v", c.ID(), err)
		}
	}
}
