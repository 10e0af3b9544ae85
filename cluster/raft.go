package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Config configures Open. Apart from NodeID, the zero value of every field
// is a usable default.
type Config struct {
	// NodeID names this node in the Raft configuration, for ever: a node
	// restarted from its DataDir must keep it. Required, [a-z0-9_-]{1,64}.
	NodeID string
	// Region is where this node runs ("eu", "us", ...); reported in Members
	// and RegisterSelf. Zero: none.
	Region string
	// RaftAddr is the TCP address Raft listens on. Zero: "127.0.0.1:0", a
	// free loopback port, which suits a single node (its peers would have to
	// learn the port anew at every start).
	RaftAddr string
	// AdvertiseAddr is the address peers dial, needed when RaftAddr binds
	// all interfaces. Zero: the address bound.
	AdvertiseAddr string
	// Stream carries Raft between nodes; when set, RaftAddr and
	// AdvertiseAddr are ignored and Stream's Addr is this node's Raft
	// address. Nodes pass their nodelink, mutually authenticated and
	// encrypted. Zero: plain TCP on RaftAddr, which authenticates nobody:
	// for this package's own tests only.
	Stream StreamLayer
	// DataDir holds raft.db (the bbolt log and stable store), snapshots/ and,
	// when MasterKey is empty, master.key. Zero: "raft".
	DataDir string
	// Bootstrap makes a node with no Raft state start a new cluster whose
	// voters are itself and Peers. With no Peers it elects itself at once, so
	// a single node needs no other configuration. A node that has state
	// ignores it. Only the first node(s) of a cluster bootstrap; the others
	// start empty and are added by the leader (AddVoter, AddNonvoter).
	Bootstrap bool
	// Peers are the other voters of a bootstrapped cluster. Every node that
	// bootstraps must be given the same set. Zero: none.
	Peers []Peer
	// Voter says whether this node should be added as a voter (3 or 5 per
	// cluster, spread across regions) or as a non-voter that replicates the
	// log and answers reads. Open does not act on it: the node passes it
	// along when it asks the leader to add it. Bootstrap implies it.
	Voter bool
	// Logger receives the package's and Raft's logs, as they are: give it
	// the node's ID as an attribute if several nodes share an output.
	// Zero: slog.Default().
	Logger *slog.Logger
	// MasterKey (32 bytes) seals workspace secrets; every node of a cluster
	// must have the same one. Zero: read from DataDir/master.key, generated
	// there (mode 0600) on first start: for a single node in development.
	MasterKey []byte
	// Forwarder carries commands from this node, when it is a follower, to
	// the leader. Zero: none; Apply on a follower returns ErrNotLeader.
	Forwarder Forwarder
	// Observer receives apply latencies for metrics. Zero: none.
	Observer Observer
	// Versions reports the protocol version (schema.ProtocolVersion) of
	// the nodes this one knows alive, by node ID (the node passes
	// gossip's view); a member of the Raft configuration it leaves out
	// is of unknown version. Apply refuses a command newer than the
	// lowest (ErrClusterUpgrading). Zero: every member runs this build's
	// version (this package's tests).
	Versions func() map[string]int

	// SnapshotThreshold is how many log entries since the last snapshot
	// trigger a new one. Zero: 8192.
	SnapshotThreshold uint64
	// SnapshotInterval is how often the threshold is checked. Zero: 2m.
	SnapshotInterval time.Duration
	// TrailingLogs is how many entries a snapshot leaves in the log, so a
	// follower slightly behind catches up from the log rather than from a
	// snapshot. Zero: 10240.
	TrailingLogs uint64
	// HeartbeatTimeout and ElectionTimeout: how long without a leader before
	// an election. Zero: 1s each.
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// LeaderLeaseTimeout: how long a leader stays leader without reaching a
	// quorum. Zero: 500ms, or HeartbeatTimeout if that is shorter.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout bounds how long an idle leader waits before sending
	// entries. Zero: 50ms.
	CommitTimeout time.Duration
	// ApplyTimeout bounds Apply, membership changes and Consistent when the
	// context has no deadline. Zero: 10s.
	ApplyTimeout time.Duration

	// PasswordIterations is the PBKDF2 cost of new password hashes. Zero:
	// DefaultPasswordIterations; at least MinPasswordIterations.
	PasswordIterations int
	// PasswordChecks bounds the password hashings and checks (PBKDF2) that
	// run at once on this node, so that a storm of sign-ins cannot take
	// every core from chat. Zero: half the CPUs Go may use, at least one.
	PasswordChecks int
	// PasswordQueue bounds the sign-ins waiting for a check; beyond it
	// Login answers ErrBusy at once. Zero: 8 per check.
	PasswordQueue int
	// SessionTTL is how long a new session lasts. Zero: 12h.
	SessionTTL time.Duration
	// Now is the wall clock, for timestamps set before proposing and for
	// session expiry. The FSM never reads it. Zero: time.Now.
	Now func() time.Time
}

// Peer is a Raft server: its node ID and Raft address.
type Peer struct {
	ID   string
	Addr string
}

// Observer receives measurements for the node's metrics.
type Observer interface {
	// ObserveApply is called after each Apply (and HandleForward) with its
	// duration, the forward included, and its error.
	ObserveApply(d time.Duration, err error)
}

func (cfg Config) withDefaults() (Config, error) {
	if err := checkID("node id", cfg.NodeID); err != nil {
		return cfg, err
	}
	if err := checkRegion(cfg.Region); err != nil {
		return cfg, err
	}
	for _, p := range cfg.Peers {
		if err := firstErr(checkID("peer id", p.ID), checkAddr("peer address", p.Addr)); err != nil {
			return cfg, err
		}
		if p.Addr == "" || p.ID == cfg.NodeID {
			return cfg, invalidf("peer %q: needs an address and an ID other than this node's", p.ID)
		}
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if cfg.RaftAddr == "" {
		cfg.RaftAddr = "127.0.0.1:0"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "raft"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SnapshotThreshold == 0 {
		cfg.SnapshotThreshold = 8192
	}
	if cfg.TrailingLogs == 0 {
		cfg.TrailingLogs = 10240
	}
	def(&cfg.SnapshotInterval, 2*time.Minute)
	def(&cfg.HeartbeatTimeout, time.Second)
	def(&cfg.ElectionTimeout, time.Second)
	def(&cfg.LeaderLeaseTimeout, min(500*time.Millisecond, cfg.HeartbeatTimeout))
	def(&cfg.CommitTimeout, 50*time.Millisecond)
	def(&cfg.ApplyTimeout, 10*time.Second)
	def(&cfg.SessionTTL, 12*time.Hour)
	if cfg.PasswordIterations == 0 {
		cfg.PasswordIterations = DefaultPasswordIterations
	}
	if cfg.PasswordIterations < MinPasswordIterations {
		return cfg, invalidf("password iterations %d, fewer than %d", cfg.PasswordIterations, MinPasswordIterations)
	}
	if cfg.PasswordChecks <= 0 {
		cfg.PasswordChecks = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if cfg.PasswordQueue <= 0 {
		cfg.PasswordQueue = 8 * cfg.PasswordChecks
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Bootstrap {
		cfg.Voter = true
	}
	return cfg, nil
}

// Cluster is one node's member of the Raft control plane. Its embedded
// State answers reads from the local copy of the state; writes go through
// Apply. Methods are safe for concurrent use.
type Cluster struct {
	*State

	cfg    Config
	log    *slog.Logger
	raft   *raft.Raft
	fsm    *fsm
	store  *raftboltdb.BoltStore
	logs   raft.LogStore
	snaps  *raft.FileSnapshotStore
	trans  *raft.NetworkTransport
	sealer *sealer

	// mu guards closed; waits holds the goroutines that wait on raft
	// futures for a caller's context, so Close can wait for them.
	mu       sync.Mutex
	closed   bool
	closing  chan struct{}
	waits    sync.WaitGroup
	closeErr error
	closeOne sync.Once

	dummyOnce sync.Once
	dummy     string
	// seenMu guards seen: the highest protocol version gossip has shown
	// for each member since this node started (Versions), kept while the
	// member is out of sight (RequireLastSeen).
	seenMu sync.Mutex
	seen   map[string]int
	// hashing bounds the PBKDF2 work running at once (login.go).
	hashing *hashSlots

	// leaderMu guards leaderCh, closed and replaced whenever the leader
	// this node knows changes (watchLeader), so a forward can give up on a
	// leader that was replaced while it waited for its answer.
	leaderMu sync.Mutex
	leaderCh chan struct{}
	observer *raft.Observer
}

// Open starts this node's Raft member from cfg.DataDir, bootstrapping a new
// cluster if cfg says so and there is no state yet. It returns once Raft
// runs, before any leader is known: use WaitLeader.
func Open(cfg Config) (*Cluster, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	key := cfg.MasterKey
	if len(key) == 0 {
		if key, err = loadOrCreateMasterKey(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	sl, err := newSealer(key)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	hl := &hclogAdapter{l: log, name: "raft"}

	c := &Cluster{cfg: cfg, log: log, sealer: sl, closing: make(chan struct{}), leaderCh: make(chan struct{}), hashing: newHashSlots(cfg.PasswordChecks, cfg.PasswordQueue)}
	var undo []func() error
	fail := func(err error) (*Cluster, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return nil, err
	}

	c.store, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.DataDir, "raft.db")})
	if err != nil {
		return fail(fmt.Errorf("open raft.db: %w", err))
	}
	undo = append(undo, c.store.Close)
	// The file store keeps the last two snapshots in DataDir/snapshots.
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hl.Named("snapshots"))
	if err != nil {
		return fail(fmt.Errorf("snapshot store: %w", err))
	}
	c.snaps = snaps
	// Recent entries are served from memory to followers and the FSM.
	logs, err := raft.NewLogCache(512, c.store)
	if err != nil {
		return fail(err)
	}
	c.logs = logs
	c.trans, err = newTransport(cfg.Stream, cfg.RaftAddr, cfg.AdvertiseAddr, hl)
	if err != nil {
		return fail(err)
	}
	undo = append(undo, c.trans.Close)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hl
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.ShutdownOnRemove = true
	if err := raft.ValidateConfig(rc); err != nil {
		return fail(fmt.Errorf("%w: raft config: %v", ErrInvalid, err))
	}

	if cfg.Bootstrap {
		has, err := raft.HasExistingState(logs, c.store, snaps)
		if err != nil {
			return fail(fmt.Errorf("raft state: %w", err))
		}
		if !has {
			servers := []raft.Server{{ID: rc.LocalID, Address: c.trans.LocalAddr(), Suffrage: raft.Voter}}
			for _, p := range cfg.Peers {
				servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr), Suffrage: raft.Voter})
			}
			if err := raft.BootstrapCluster(rc, logs, c.store, snaps, c.trans, raft.Configuration{Servers: servers}); err != nil {
				return fail(fmt.Errorf("bootstrap: %w", err))
			}
			log.Info("cluster: bootstrapped", "voters", len(servers))
		}
	}

	c.State = newState(cfg.Now)
	c.fsm = newFSM(c.State, log)
	c.raft, err = raft.NewRaft(rc, c.fsm, logs, c.store, snaps, c.trans)
	if err != nil {
		return fail(fmt.Errorf("start raft: %w", err))
	}
	obs := make(chan raft.Observation, 16)
	c.observer = raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	c.raft.RegisterObserver(c.observer)
	c.waits.Add(1)
	go c.watchLeader(obs)
	log.Info("cluster: raft started", "addr", c.Addr(), "dir", cfg.DataDir)
	return c, nil
}

// watchLeader wakes the waiters of leaderChanged at each change of leader
// raft reports, until Close. Raft drops an observation when obs is full,
// but only while one is pending there, which wakes them anyway.
func (c *Cluster) watchLeader(obs <-chan raft.Observation) {
	defer c.waits.Done()
	for {
		select {
		case <-obs:
			c.leaderMu.Lock()
			close(c.leaderCh)
			c.leaderCh = make(chan struct{})
			c.leaderMu.Unlock()
		case <-c.closing:
			return
		}
	}
}

// leaderChanged returns a channel closed at the next change of the leader
// this node knows: get it before reading Leader, so no change is missed.
func (c *Cluster) leaderChanged() <-chan struct{} {
	c.leaderMu.Lock()
	defer c.leaderMu.Unlock()
	return c.leaderCh
}

// Close shuts Raft down (a leader stops leading; peers elect another), then
// closes the transport and the bbolt file. It waits for every goroutine the
// Cluster started; calls in flight fail with ErrClosed or ErrUncertain.
func (c *Cluster) Close() error {
	c.closeOne.Do(func() {
		c.mu.Lock()
		c.closed = true
		close(c.closing)
		c.mu.Unlock()
		c.raft.DeregisterObserver(c.observer)
		errs := []error{c.raft.Shutdown().Error()}
		// Shutdown answers every pending future, so the waiters return.
		c.waits.Wait()
		// Close the pooled outgoing connections, then the listener and the
		// accepted ones: raft's per-connection goroutines end with them.
		c.trans.CloseStreams()
		errs = append(errs, c.trans.Close(), c.store.Close())
		c.closeErr = errors.Join(errs...)
		c.log.Info("cluster: closed")
	})
	return c.closeErr
}

// Addr is the Raft address peers reach this node at.
func (c *Cluster) Addr() string { return string(c.trans.LocalAddr()) }

// ID is this node's ID.
func (c *Cluster) ID() string { return c.cfg.NodeID }

// Leader returns the current leader's ID and Raft address, empty when none
// is known.
func (c *Cluster) Leader() (id, addr string) {
	a, i := c.raft.LeaderWithID()
	return string(i), string(a)
}

// IsLeader says whether this node is the leader.
func (c *Cluster) IsLeader() bool { return c.raft.State() == raft.Leader }

func (c *Cluster) notLeader() error {
	id, addr := c.Leader()
	return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
}

// LastLeaderContact is when this node last heard from the leader: now on
// the leader, zero if never. A node that has not heard from the leader for
// longer than the lease may hold a stale state (a revocation it has not
// applied): the node layer stops accepting credentials then.
func (c *Cluster) LastLeaderContact() time.Time {
	if c.IsLeader() {
		return time.Now()
	}
	return c.raft.LastContact()
}

// WaitLeader waits until a leader is known (this node or another).
func (c *Cluster) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if _, addr := c.Leader(); addr != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for a leader: %w", ErrNotLeader, ctx.Err())
		case <-c.closing:
			return ErrClosed
		case <-t.C:
		}
	}
}

// withTimeout gives ctx the ApplyTimeout when it has no deadline, and
// returns the time left, for raft calls that take a timeout.
func (c *Cluster) withTimeout(ctx context.Context) (context.Context, context.CancelFunc, time.Duration) {
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancel := context.WithTimeout(ctx, c.cfg.ApplyTimeout)
		return ctx, cancel, c.cfg.ApplyTimeout
	}
	dl, _ := ctx.Deadline()
	return ctx, func() {}, max(time.Until(dl), time.Millisecond)
}

// wait waits for a raft future or the context. Raft answers every future
// (at the latest on Shutdown), so the goroutine ends; Close waits for it.
func (c *Cluster) wait(ctx context.Context, f raft.Future) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.waits.Add(1)
	c.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		defer c.waits.Done()
		done <- f.Error()
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUncertain, ctx.Err())
	}
}

// raftError maps raft's errors to the package's: whether the command may
// have been applied is what a caller needs to know.
func (c *Cluster) raftError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUncertain):
		return err
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return c.notLeader() // refused before it entered the log
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w: %w", ErrUncertain, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		if c.isClosed() {
			return fmt.Errorf("%w: %w", ErrUncertain, ErrClosed)
		}
		return fmt.Errorf("%w: %w", ErrUncertain, err)
	}
	return fmt.Errorf("raft: %w", err)
}

func (c *Cluster) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Apply validates cmd, proposes it and waits until it is applied. On the
// leader it goes straight into the log; on a follower it goes through
// cfg.Forwarder to the leader (ErrNotLeader, with the leader's address, if
// there is no Forwarder). Without a leader it waits for one until the
// context ends.
//
// The command travels in a Request with an ID of its own, so Apply can send
// it again without applying it twice: when the leader it forwarded to is
// replaced (or this node's own leadership is lost) before the answer came,
// when the forward fails, or when the leader answers that it lost its
// leadership, Apply sends the same request to the leader it learns next,
// and hears the first copy's answer if that one was applied after all. It
// stops when the context ends (ApplyTimeout when it has no deadline).
//
// The error is the command's own (ErrExists, ErrConflict, ...) or says
// whether it may have been applied: ErrNotLeader and ErrInvalid mean not,
// ErrUncertain means perhaps (a copy was handed to a leader and no answer
// came before the context ended).
//
// When ctx carries an audit context (WithAudit), cmd is proposed as an
// Audited command, which the state machine records in the audit log.
func (c *Cluster) Apply(ctx context.Context, cmd Command) (Result, error) {
	if err := c.checkVersion(cmd); err != nil {
		return Result{}, err
	}
	cmd, call := c.audited(ctx, cmd)
	res, err := c.applyCommand(ctx, cmd)
	if call != nil {
		call.applied(res, err)
	}
	return res, err
}

func (c *Cluster) applyCommand(ctx context.Context, cmd Command) (Result, error) {
	start := time.Now()
	ctx, cancel, _ := c.withTimeout(ctx)
	defer cancel()
	base := c.raft.CommitIndex()
	for {
		data, err := EncodeCommand(Request{ID: newRequestID(), Base: base, Cmd: cmd})
		if err != nil {
			return Result{}, err
		}
		res, delivered, err := c.propose(ctx, data, c.cfg.Forwarder)
		if delivered == 1 && errors.Is(err, ErrUncertain) && res.Index > base {
			// The state machine answered (an index) that the request was
			// made too long before (this node was far behind the leader,
			// as after a restart): the only copy sent was refused, so
			// nothing was applied. Make it anew from that index.
			base = res.Index
			continue
		}
		c.observe(start, err)
		return res, err
	}
}

// apply is Apply of an encoded command, once: HandleForward's.
func (c *Cluster) apply(ctx context.Context, data []byte, fwd Forwarder) (Result, error) {
	start := time.Now()
	res, _, err := c.propose(ctx, data, fwd)
	c.observe(start, err)
	return res, err
}

func (c *Cluster) observe(start time.Time, err error) {
	if c.cfg.Observer != nil {
		c.cfg.Observer.ObserveApply(time.Since(start), err)
	}
}

// propose applies data on this node if it leads, else forwards it with fwd,
// and tries again as long as no answer came from the state machine. Without
// fwd (on the leader, for HandleForward) it tries once: a forwarded command
// makes one hop, and its origin tries again. delivered counts the copies
// that may have entered a leader's log.
func (c *Cluster) propose(ctx context.Context, data []byte, fwd Forwarder) (res Result, delivered int, err error) {
	ctx, cancel, _ := c.withTimeout(ctx)
	defer cancel()
	backoff := 10 * time.Millisecond
	for {
		if c.isClosed() {
			if delivered > 0 {
				return Result{}, delivered, fmt.Errorf("%w: %w", ErrUncertain, ErrClosed)
			}
			return Result{}, 0, ErrClosed
		}
		moved := c.leaderChanged()
		if c.IsLeader() {
			res, err = c.applyLocal(ctx, data)
			if !errors.Is(err, ErrNotLeader) {
				delivered++
			}
			if fwd == nil {
				return res, delivered, err
			}
		} else if fwd == nil {
			return Result{}, 0, c.notLeader()
		} else {
			var maybe bool
			res, maybe, err = c.forward(ctx, fwd, data)
			if maybe {
				delivered++
			}
		}
		if !retryable(res, err) {
			return res, delivered, err
		}
		// No leader, one that lost it, or no answer: wait for the election
		// (or a moment) and send the same request again.
		select {
		case <-ctx.Done():
			if delivered > 0 {
				return Result{}, delivered, fmt.Errorf("%w: no answer before the deadline (last: %v): %w", ErrUncertain, err, ctx.Err())
			}
			return Result{}, 0, fmt.Errorf("%w: %w", err, ctx.Err())
		case <-c.closing:
			continue // answered at the top
		case <-moved:
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// retryable says whether an attempt's outcome calls for sending the request
// again: not when the state machine answered (a Result with an index, or no
// error), nor for an error of the command's own.
func retryable(res Result, err error) bool {
	if err == nil || res.Index != 0 {
		return false
	}
	return errors.Is(err, ErrNotLeader) || errors.Is(err, ErrUncertain)
}

// applyLocal applies on this node if it is the leader.
func (c *Cluster) applyLocal(ctx context.Context, data []byte) (Result, error) {
	if !c.IsLeader() {
		return Result{}, c.notLeader()
	}
	ctx, cancel, timeout := c.withTimeout(ctx)
	defer cancel()
	f := c.raft.Apply(data, timeout)
	if err := c.wait(ctx, f); err != nil {
		return Result{}, c.raftError(err)
	}
	r, ok := f.Response().(*applyResult)
	if !ok || r == nil {
		return Result{}, fmt.Errorf("%w: apply returned %T", ErrInternal, f.Response())
	}
	return r.Result, r.Err
}

// Consistent makes the next reads on this node linearizable: it confirms
// with a quorum that this node is still the leader, then waits with a
// barrier until every entry committed before the call is applied to the
// local state. On a follower it returns ErrNotLeader naming the leader, so a
// caller can ask the leader (ReadIndex) and WaitApplied locally instead.
func (c *Cluster) Consistent(ctx context.Context) error {
	_, err := c.ReadIndex(ctx)
	return err
}

// ReadIndex is Consistent that also returns the local state's index after
// the barrier: a follower that has applied that index (WaitApplied) has
// seen every write acknowledged before the call.
func (c *Cluster) ReadIndex(ctx context.Context) (uint64, error) {
	if !c.IsLeader() {
		return 0, c.notLeader()
	}
	ctx, cancel, timeout := c.withTimeout(ctx)
	defer cancel()
	if err := c.wait(ctx, c.raft.VerifyLeader()); err != nil {
		return 0, c.raftError(err)
	}
	if err := c.wait(ctx, c.raft.Barrier(timeout)); err != nil {
		return 0, c.raftError(err)
	}
	return c.State.Index(), nil
}

// LeaderCommitIndex confirms with a quorum that this node is the leader and
// returns the index a node's state must reach (WaitApplied) to have seen
// every write acknowledged before the call: the last command at or below
// the commit index. Raft's own entries, such as a new leader's no-op or a
// configuration change, never reach the state, so waiting for the commit
// index itself after them would wait for the next write. Followers use it to
// prove they are caught up (node lease). Unlike ReadIndex it writes nothing
// to the log. Leader only.
func (c *Cluster) LeaderCommitIndex(ctx context.Context) (uint64, error) {
	if !c.IsLeader() {
		return 0, c.notLeader()
	}
	ctx, cancel, _ := c.withTimeout(ctx)
	defer cancel()
	if err := c.wait(ctx, c.raft.VerifyLeader()); err != nil {
		return 0, c.raftError(err)
	}
	return c.lastCommand(c.raft.CommitIndex()), nil
}

// lastCommand returns the index of the last command entry at or below index
// (committed), found by reading the log back from index to what this
// node's state has applied, itself a command's index.
func (c *Cluster) lastCommand(index uint64) uint64 {
	applied := c.State.Index()
	for i := index; i > applied; i-- {
		var l raft.Log
		if err := c.logs.GetLog(i, &l); err != nil {
			// Compacted into a snapshot since applied was read: the state
			// has applied the snapshot, so it now holds every command up
			// to i, and there is none above i (read already).
			return c.State.Index()
		}
		if l.Type == raft.LogCommand {
			return i
		}
	}
	return applied
}

// WaitApplied waits until this node's state has applied the log index
// index, such as a Result.Index.
//
// It is how revocation becomes immediate across the cluster: the node that
// handles a revoke (RevokeKey, RevokeSession) applies it, then asks every
// live node to WaitApplied(result.Index) and answers the revoke's caller
// only when all have confirmed. A node's AuthenticateKey reads its local
// state, so from that moment no node accepts the key. A node that cannot be
// reached must not be serving either: the node layer makes a member whose
// LastLeaderContact is older than the lease stop accepting credentials.
func (c *Cluster) WaitApplied(ctx context.Context, index uint64) error {
	for {
		got, moved := c.State.appliedWait()
		if got >= index {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return fmt.Errorf("waiting for index %d (at %d): %w", index, got, ctx.Err())
		case <-c.closing:
			return ErrClosed
		}
	}
}

// AddVoter adds a node as a voter, or promotes a non-voter. Leader only
// (ErrNotLeader otherwise). It returns once the new configuration is
// committed.
func (c *Cluster) AddVoter(ctx context.Context, id, addr string) error {
	return c.changeMembership(ctx, id, addr, func(timeout time.Duration) raft.Future {
		return c.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout)
	})
}

// AddNonvoter adds a node that replicates the log and answers reads from
// its state but does not vote. Leader only.
func (c *Cluster) AddNonvoter(ctx context.Context, id, addr string) error {
	return c.changeMembership(ctx, id, addr, func(timeout time.Duration) raft.Future {
		return c.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout)
	})
}

// RemoveServer removes a node from the cluster. Leader only. A leader that
// removes itself steps down, and its Raft shuts down once the change is
// committed; Close it afterwards.
func (c *Cluster) RemoveServer(ctx context.Context, id string) error {
	return c.changeMembership(ctx, id, "", func(timeout time.Duration) raft.Future {
		return c.raft.RemoveServer(raft.ServerID(id), 0, timeout)
	})
}

func (c *Cluster) changeMembership(ctx context.Context, id, addr string, change func(time.Duration) raft.Future) error {
	if err := checkID("node id", id); err != nil {
		return err
	}
	if err := checkAddr("raft address", addr); err != nil {
		return err
	}
	if !c.IsLeader() {
		return c.notLeader()
	}
	ctx, cancel, timeout := c.withTimeout(ctx)
	defer cancel()
	if err := c.wait(ctx, change(timeout)); err != nil {
		return fmt.Errorf("membership change of %s: %w", id, c.raftError(err))
	}
	return nil
}

// Members lists the servers of the latest Raft configuration this node
// knows, by ID (nil once closed).
func (c *Cluster) Members() []Member {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil
	}
	leaderID, _ := c.Leader()
	versions := c.versions()
	var out []Member
	for _, s := range f.Configuration().Servers {
		m := Member{
			ID:     string(s.ID),
			Addr:   string(s.Address),
			Voter:  s.Suffrage == raft.Voter,
			Leader: string(s.ID) == leaderID,
		}
		if n, err := c.State.Node(m.ID); err == nil {
			m.Region = n.Region
		}
		if m.ID == c.cfg.NodeID {
			m.Region = c.cfg.Region
		}
		m.Version = versions[m.ID]
		out = append(out, m)
	}
	sortBy(out, func(m Member) string { return m.ID })
	return out
}

// Stats returns this node's Raft statistics.
func (c *Cluster) Stats() Stats {
	id, addr := c.Leader()
	s := Stats{
		NodeID:            c.cfg.NodeID,
		State:             c.raft.State().String(),
		LeaderID:          id,
		LeaderAddr:        addr,
		Term:              c.raft.CurrentTerm(),
		LastLogIndex:      c.raft.LastIndex(),
		CommitIndex:       c.raft.CommitIndex(),
		AppliedIndex:      c.raft.AppliedIndex(),
		StateIndex:        c.State.Index(),
		SnapshotsRestored: c.fsm.restores.Load(),
	}
	s.LastSnapshotIndex, _ = strconv.ParseUint(c.raft.Stats()["last_snapshot_index"], 10, 64)
	for _, m := range c.Members() {
		if m.Voter {
			s.Voters++
		} else {
			s.Nonvoters++
		}
	}
	return s
}

// Snapshot takes a snapshot now (it also happens on its own after
// SnapshotThreshold entries), e.g. before maintenance.
func (c *Cluster) Snapshot(ctx context.Context) error {
	ctx, cancel, _ := c.withTimeout(ctx)
	defer cancel()
	err := c.wait(ctx, c.raft.Snapshot())
	if errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return nil
	}
	return err
}

// RegisterSelf records this node in the replicated state (see
// RegisterNode): info's addresses and preferences, with this node's ID,
// region and Raft address filled in.
func (c *Cluster) RegisterSelf(ctx context.Context, info NodeInfo) (Result, error) {
	info.ID, info.Region, info.RaftAddr = c.cfg.NodeID, c.cfg.Region, c.Addr()
	return c.Apply(ctx, RegisterNode{Node: info})
}
