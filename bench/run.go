package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"parley/bench/internal/harness"
	"parley/gateway/client"
	"parley/gateway/wire"
	"parley/internal/eventually"
	"parley/internal/localcluster"
)

// Options are how a scenario is run (as opposed to what it runs).
type Options struct {
	// Progress receives the live progress line every second (stderr).
	// Nil: no progress.
	Progress io.Writer
	// Cluster is set when the harness started the nodes itself (--local):
	// faults need it.
	Cluster *localcluster.Cluster
	// Clock of the scheduler. Nil: the wall clock.
	Clock Clock
	// LedgerCSV, when set, receives one row per message (its fate in
	// detail) at the end of the run.
	LedgerCSV io.Writer
}

// run is the state of one scenario run.
type run struct {
	// quiet: the drain is over; visitors write nothing more, so that the
	// audit reads histories no send changes while it reads them.
	quiet  atomic.Bool
	sc     *Scenario
	opts   Options
	nodes  []string
	token  string
	dialer *dialer
	ids    msgIDs
	body   string
	sched  Schedule
	total  int
	nconv  int
	ledger *Ledger
	rec    *recorder

	convMu  sync.RWMutex
	convs   []string
	convIdx map[string]int

	visitors []*vclient
	agents   []*vclient

	sendStart atomic.Int64 // unix nanos; 0 before the send phase
	issued    atomic.Int64

	evMu   sync.Mutex
	events []Event

	lastNodes     atomic.Pointer[[]NodeSample]
	faultsPending atomic.Int64
	hists         []map[string]PromHist

	harnessMu sync.Mutex
	harness   []NodeSample
	lastCPU   float64
	lastCPUAt time.Time
}

// Event is something that happened to the run: a storm, a kill, a restart.
type Event struct {
	T    float64 `json:"t"`
	What string  `json:"what"`
}

func (r *run) event(format string, a ...any) {
	t := 0.0
	if s := r.sendStart.Load(); s != 0 {
		t = round3(time.Since(time.Unix(0, s)).Seconds())
	}
	what := fmt.Sprintf(format, a...)
	r.evMu.Lock()
	r.events = append(r.events, Event{T: t, What: what})
	r.evMu.Unlock()
	if r.opts.Progress != nil {
		fmt.Fprintf(r.opts.Progress, "\n[%6.1fs] %s\n", t, what)
	}
}

func (r *run) setConv(ci int, id string) {
	r.convMu.Lock()
	r.convs[ci] = id
	r.convIdx[id] = ci
	r.convMu.Unlock()
}

func (r *run) conv(ci int) string {
	r.convMu.RLock()
	defer r.convMu.RUnlock()
	return r.convs[ci]
}

func (r *run) convIndex(id string) (int, bool) {
	r.convMu.RLock()
	defer r.convMu.RUnlock()
	ci, ok := r.convIdx[id]
	return ci, ok
}

// due is when message k was due.
func (r *run) due(k int) time.Time {
	return time.Unix(0, r.sendStart.Load()).Add(r.sched.Due(k))
}

// Run runs a scenario to its end and returns its result. It stops by
// itself: the send phase lasts the scenario's duration, the drain at most
// its drain time, the whole run at most its timeout. When ctx is cancelled
// (SIGINT), it stops sending, skips the drain and the audit, and returns
// the partial result with Interrupted set.
func Run(ctx context.Context, sc *Scenario, opts Options) (*Result, error) {
	if err := sc.Ready(opts.Cluster); err != nil {
		return nil, err
	}
	if opts.Clock == nil {
		opts.Clock = RealClock{}
	}
	var idb [4]byte
	rand.Read(idb[:])
	runID := hex.EncodeToString(idb[:])
	r := &run{
		sc: sc, opts: opts, nodes: sc.Target.Nodes, token: sc.AgentToken(),
		dialer: newDialer(nil), ids: msgIDs{prefix: "pb" + runID + "-"},
		body: bodyOf(sc.MessageSize), sched: Schedule{Rate: sc.Rate, RampUp: sc.RampUp.D()},
		total: sc.TotalMessages(), nconv: sc.Conversations,
		rec: newRecorder(), convs: make([]string, sc.Conversations), convIdx: map[string]int{},
	}
	r.ledger = NewLedger(r.total, sc.Agents)
	defer r.dialer.close() // last: after every client stopped
	if opts.Cluster != nil {
		// Whatever ends the run, no node stays stopped by a stop fault
		// (the fault continues it itself; this is the safety net).
		defer opts.Cluster.ContinueAll()
	}
	res := &Result{Version: 1, Name: sc.Name, RunID: runID, Scenario: sc, Nodes: r.nodes,
		Started: time.Now().UTC(), Host: HostInfo()}
	if opts.Cluster != nil {
		res.Local = localInfo(opts.Cluster)
	}

	// Every run is bounded by its timeout; ctx (SIGINT) interrupts it.
	bounded, cancelBound := context.WithTimeout(context.Background(), sc.Timeout.D())
	defer cancelBound()
	stopped := func() string {
		switch {
		case ctx.Err() != nil:
			return "interrupted"
		case bounded.Err() != nil:
			return "timeout " + sc.Timeout.String()
		}
		return ""
	}
	runCtx, cancelRun := context.WithCancel(bounded)
	defer cancelRun()
	go func() {
		select {
		case <-ctx.Done():
			cancelRun()
		case <-runCtx.Done():
		}
	}()

	// Node metrics, every second, for the whole run.
	scr := newScraper(r.nodes)
	scrCtx, stopScrape := context.WithCancel(context.Background())
	var scrWG sync.WaitGroup
	scrWG.Add(1)
	go func() {
		defer scrWG.Done()
		scr.run(scrCtx, func(s []NodeSample) { r.lastNodes.Store(&s) })
	}()
	finishScrape := func() { stopScrape(); scrWG.Wait() }
	defer finishScrape()
	before := scr.sample(runCtx)

	// Clients live until the run's end (not cancelled by SIGINT directly:
	// they are stopped in order, after the result is taken).
	clientCtx, stopClients := context.WithCancel(context.Background())
	defer stopClients()
	var clientWG sync.WaitGroup

	// Idle connections first: their memory is measured before the load.
	var idle *idleSet
	if sc.Idle != nil {
		var err error
		idle, err = openIdle(runCtx, clientCtx, r, scr, before)
		if idle != nil {
			defer idle.close()
		}
		res.Idle = idle.result()
		if err != nil && runCtx.Err() == nil {
			// The scale test failed (limits, dial errors): report it as it
			// stands rather than load a node in an unknown state.
			res.Error = err.Error()
			res.Stopped = stopped()
			return r.finish(res, scr, time.Now(), time.Now(), time.Now()), err
		}
	}

	// Setup: agents first, so that they see every conversation.
	progressCtx, stopProgress := context.WithCancel(context.Background())
	var progWG sync.WaitGroup
	progWG.Add(1)
	go func() { defer progWG.Done(); r.progress(progressCtx) }()
	defer func() { stopProgress(); progWG.Wait() }()

	setupStart := time.Now()
	if err := r.setup(runCtx, clientCtx, &clientWG); err != nil {
		res.Error = "setup: " + err.Error()
		res.Stopped = stopped()
		stopClients()
		clientWG.Wait()
		return r.finish(res, scr, time.Now(), time.Now(), setupStart), errors.New(res.Error)
	}
	res.SetupSeconds = round3(time.Since(setupStart).Seconds())

	// Send phase.
	start := opts.Clock.Now().Add(100 * time.Millisecond)
	r.sendStart.Store(start.UnixNano())
	r.rec.start(start)
	var bg sync.WaitGroup
	r.scheduleStorms(runCtx, start, &bg)
	r.scheduleFaults(runCtx, start, &bg)
	issued := 0
	if r.total > 0 {
		issued = RunSchedule(runCtx, opts.Clock, r.sched, start, r.total, func(k int, due time.Time) {
			r.visitors[(k%r.nconv)%len(r.visitors)].enqueue(k)
			r.issued.Add(1)
			r.rec.issued.Add(1)
		})
	} else {
		_ = opts.Clock.SleepUntil(runCtx, start.Add(sc.Duration.D()))
	}
	if issued == r.total && runCtx.Err() == nil {
		// Let the send phase run to its full duration (the last message is
		// due a little before it ends).
		_ = opts.Clock.SleepUntil(runCtx, start.Add(sc.Duration.D()))
	}
	sendEnd := time.Now()

	// Drain: outstanding acks and deliveries, and faults still running
	// (a node killed near the end restarts before the drain can end).
	deadline := time.Now().Add(sc.Drain.D())
	for runCtx.Err() == nil {
		if !r.faultsDone() {
			// A node still down: the drain starts once it is back.
			deadline = time.Now().Add(sc.Drain.D())
		} else if !r.ledger.pending(issued) || !time.Now().Before(deadline) {
			break
		}
		_ = harness.SleepCtx(runCtx, 100*time.Millisecond)
	}
	bg.Wait()
	res.DrainSeconds = round3(time.Since(sendEnd).Seconds())
	r.quieten(runCtx)

	// Audit the node's history: exactly once for every acked message?
	if *sc.Audit && runCtx.Err() == nil && r.total > 0 {
		if nodes, err := r.audit(runCtx); err != nil {
			res.AuditError = err.Error()
		} else {
			r.ledger.MarkAudited(nodes...)
		}
	}
	res.Stopped = stopped()
	r.hists = scr.histograms(context.Background())
	stopClients()
	clientWG.Wait()
	res.Issued = issued
	return r.finish(res, scr, start, sendEnd, setupStart), nil
}

// setup connects the agents and the visitors at the connect rate; visitors
// start their conversations. Client loops run from their first connection.
func (r *run) setup(ctx, clientCtx context.Context, wg *sync.WaitGroup) error {
	sc := r.sc
	n := 0
	mk := func(agent bool, idx int) *vclient {
		node := n % len(r.nodes)
		v := &vclient{r: r, agent: agent, idx: idx, gidx: n, node: node, base: r.nodes[node],
			transport: pickTransport(sc.Transports, n), hb: 10 * time.Second, drop: make(chan time.Duration, 1)}
		n++
		r.rec.client(v.transport)
		if agent {
			v.curs = make([]client.Cursor, r.nconv)
			r.ledger.SetAgentNode(idx, node)
		} else {
			v.inflight = map[int]struct{}{}
			v.wake = make(chan struct{}, 1)
			v.vcurs = map[int]*client.Cursor{}
		}
		return v
	}
	for i := 0; i < sc.Agents; i++ {
		r.agents = append(r.agents, mk(true, i))
	}
	for i := 0; i < sc.Visitors; i++ {
		r.visitors = append(r.visitors, mk(false, i))
	}
	for ci := 0; ci < r.nconv; ci++ {
		v := r.visitors[ci%len(r.visitors)]
		v.convs = append(v.convs, ci)
	}
	all := append(append([]*vclient(nil), r.agents...), r.visitors...)
	interval := time.Duration(float64(time.Second) / sc.ConnectRate)
	var (
		mu       sync.Mutex
		firstErr error
		failed   int
		setupWG  sync.WaitGroup
	)
	sem := make(chan struct{}, 256)
	t0 := time.Now()
	for i, v := range all {
		if i == len(r.agents) && i > 0 {
			setupWG.Wait() // agents online before the first conversation
		}
		if err := harness.SleepUntil(ctx, t0.Add(time.Duration(i)*interval)); err != nil {
			return err
		}
		sem <- struct{}{}
		setupWG.Add(1)
		go func(v *vclient) {
			defer setupWG.Done()
			defer func() { <-sem }()
			var c conn
			var err error
			for attempt := 0; attempt < 3; attempt++ {
				if c, err = v.setup(ctx); err == nil || ctx.Err() != nil {
					break
				}
				_ = harness.SleepCtx(ctx, time.Duration(attempt+1)*200*time.Millisecond)
			}
			if err != nil {
				mu.Lock()
				failed++
				if firstErr == nil {
					firstErr = fmt.Errorf("%s %d: %w", v.role(), v.idx, err)
				}
				mu.Unlock()
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); v.loop(clientCtx, c) }()
		}(v)
	}
	setupWG.Wait()
	if firstErr != nil {
		return fmt.Errorf("%d of %d clients could not connect; first: %w", failed, len(all), firstErr)
	}
	return ctx.Err()
}

// pickTransport gives client i a transport so that the mix follows the
// weights (spread evenly by a low-discrepancy sequence, not in blocks).
func pickTransport(weights map[string]float64, i int) string {
	names := make([]string, 0, len(weights))
	total := 0.0
	for n, w := range weights {
		if w > 0 {
			names = append(names, n)
			total += w
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "ws"
	}
	x := math.Mod(float64(i)*0.6180339887498949, 1) * total
	for _, n := range names {
		if x < weights[n] {
			return n
		}
		x -= weights[n]
	}
	return names[len(names)-1]
}

// scheduleStorms drops the chosen fraction of clients at each storm's time.
func (r *run) scheduleStorms(ctx context.Context, start time.Time, wg *sync.WaitGroup) {
	rng := mrand.New(mrand.NewPCG(uint64(r.sc.Seed), 7))
	for _, st := range r.sc.ReconnectStorms {
		all := append(append([]*vclient(nil), r.agents...), r.visitors...)
		n := int(float64(len(all))*st.Fraction + 0.5)
		rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		victims := all[:n]
		delays := make([]time.Duration, n)
		for i := range delays {
			if st.Over > 0 {
				delays[i] = time.Duration(rng.Int64N(int64(st.Over)))
			}
		}
		wg.Add(1)
		go func(st Storm) {
			defer wg.Done()
			if harness.SleepUntil(ctx, start.Add(st.At.D())) != nil {
				return
			}
			r.event("reconnect storm: dropping %d of %d connections, reconnecting over %s", n, len(all), st.Over)
			for i, v := range victims {
				select {
				case v.drop <- delays[i]:
					r.rec.stormDrops.Add(1)
				default:
				}
			}
		}(st)
	}
}

// scheduleFaults runs the scenario's faults against the local cluster.
// Each fault counts as pending until its node is back (restarted or
// continued, or its partition healed): the drain starts after.
func (r *run) scheduleFaults(ctx context.Context, start time.Time, wg *sync.WaitGroup) {
	cl := r.opts.Cluster
	if cl == nil {
		return
	}
	for i, f := range r.sc.Faults {
		wg.Add(1)
		r.faultsPending.Add(1)
		go func() {
			defer wg.Done()
			defer r.faultsPending.Add(-1)
			if harness.SleepUntil(ctx, start.Add(f.At.D())) != nil {
				return
			}
			switch f.Action {
			case "kill":
				r.kill(ctx, cl, f)
			case "stop":
				r.stop(ctx, cl, f)
			case "partition":
				side, err := r.sc.partitionSide(i, cl)
				if err != nil {
					r.event("partition failed: %v", err)
					return
				}
				r.partition(ctx, cl, side, f.HealAfter.D())
			}
		}()
	}
}

// kill sends SIGKILL to a node and, after RestartAfter, starts it again
// with the same data and flags; on a cluster it then waits for the node to
// be seen alive by every other.
func (r *run) kill(ctx context.Context, cl *localcluster.Cluster, f Fault) {
	node := cl.Nodes[f.Node]
	if err := cl.Kill(f.Node); err != nil {
		r.event("kill -9 %s failed: %v", node.ID, err)
		return
	}
	r.event("kill -9 %s (%s)", node.ID, node.URL)
	if f.RestartAfter <= 0 {
		return
	}
	// The restart happens even if the send phase ended meanwhile: the
	// drain waits for it.
	if harness.SleepCtx(ctx, f.RestartAfter.D()) != nil {
		return
	}
	t0 := time.Now()
	rctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cl.Restart(rctx, f.Node); err != nil {
		r.event("restart %s failed: %v", node.ID, err)
		return
	}
	r.event("restarted %s: ready after %s", node.ID, time.Since(t0).Round(time.Millisecond))
	if len(cl.Nodes) > 1 {
		if err := cl.WaitAlive(rctx, 30*time.Second); err != nil {
			r.event("after the restart of %s: %v", node.ID, err)
			return
		}
		r.event("%s rejoined: every node sees every node alive %s after the restart", node.ID, time.Since(t0).Round(time.Millisecond))
	}
}

// stop sends SIGSTOP to a node and, after ResumeAfter (or at once when the
// run is interrupted), SIGCONT; on a cluster it then waits for the node to
// be seen alive by every other. The node keeps its sockets: its clients'
// frames go unanswered until they give up on the connection (no_answer)
// and reconnect, to the same node, which answers once it continues (or,
// with Scenario.Failover, visitors to the next node).
func (r *run) stop(ctx context.Context, cl *localcluster.Cluster, f Fault) {
	node := cl.Nodes[f.Node]
	if err := cl.Suspend(f.Node); err != nil {
		r.event("SIGSTOP %s failed: %v", node.ID, err)
		return
	}
	t0 := time.Now()
	r.event("SIGSTOP %s (%s) for %s", node.ID, node.URL, f.ResumeAfter)
	// Continue even when the run is interrupted: no stopped process is
	// left behind (Run and the cluster's Stop make sure of it too).
	_ = harness.SleepCtx(ctx, f.ResumeAfter.D())
	if _, err := cl.Continue(f.Node); err != nil {
		r.event("SIGCONT %s failed: %v", node.ID, err)
		return
	}
	t1 := time.Now()
	r.event("SIGCONT %s after %s", node.ID, t1.Sub(t0).Round(100*time.Millisecond))
	if len(cl.Nodes) > 1 && ctx.Err() == nil {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := cl.WaitAlive(wctx, 30*time.Second); err != nil {
			r.event("after SIGCONT %s: %v", node.ID, err)
			return
		}
		r.event("%s back: every node sees every node alive %s after SIGCONT", node.ID, time.Since(t1).Round(time.Millisecond))
	}
}

// partition cuts the nodes of side off from the others for heal, then
// heals and waits until every node sees every other alive again.
func (r *run) partition(ctx context.Context, cl *localcluster.Cluster, side []int, heal time.Duration) {
	var ids []string
	for _, i := range side {
		ids = append(ids, cl.Nodes[i].ID)
	}
	healFn, err := cl.Lab.Cut(side)
	if err != nil {
		r.event("partition of %v failed: %v", ids, err)
		return
	}
	r.event("partition: %v cut off from the other nodes for %s", ids, heal)
	// Heal even when the run is interrupted: the namespaces outlive no
	// run, but a cut left in place would make the audit wait.
	_ = harness.SleepCtx(ctx, heal)
	t0 := time.Now()
	if err := healFn(); err != nil {
		r.event("healing the partition of %v failed: %v", ids, err)
		return
	}
	r.event("partition of %v healed", ids)
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.WaitAlive(wctx, 30*time.Second); err != nil {
		r.event("after healing %v: %v", ids, err)
		return
	}
	r.event("after healing %v, every node sees every node alive within %s", ids, time.Since(t0).Round(time.Millisecond))
}

func (r *run) faultsDone() bool { return r.faultsPending.Load() == 0 }

// audit reads every conversation's history from the start on a fresh
// agent connection to each node that is up, and records where each
// message is stored there. It returns the nodes it read.
// quieten stops the visitors' writes (messages still queued stay unacked)
// and waits, up to 5 s, for the answers to those written: a message acked
// while the audit reads its conversation would count as lost.
func (r *run) quieten(ctx context.Context) {
	r.quiet.Store(true)
	_ = eventually.PollContext(ctx, 5*time.Second, func() error {
		for _, v := range r.visitors {
			v.mu.Lock()
			n := len(v.inflight)
			v.mu.Unlock()
			if n > 0 {
				return fmt.Errorf("%d messages of a visitor unanswered", n)
			}
		}
		return nil
	})
}

func (r *run) audit(ctx context.Context) ([]int, error) {
	if r.token == "" || len(r.nodes) == 0 {
		return nil, errors.New("audit needs an agent token")
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var nodes []int
	for nd := range r.nodes {
		if cl := r.opts.Cluster; cl != nil && !cl.Up(nd) {
			continue // killed for good by a fault
		}
		if err := r.auditNode(actx, nd); err != nil {
			return nil, fmt.Errorf("node %d: %w", nd, err)
		}
		nodes = append(nodes, nd)
	}
	if len(nodes) == 0 {
		return nil, errors.New("no node is up")
	}
	return nodes, nil
}

func (r *run) auditNode(ctx context.Context, nd int) error {
	a := &vclient{r: r, agent: true, idx: -1, node: nd, base: r.nodes[nd], transport: "ws", hb: 10 * time.Second}
	var c conn
	var err error
	// A node that just came back, or just healed, may refuse a moment.
	for attempt := 0; ; attempt++ {
		if c, err = a.connect(ctx); err == nil {
			break
		}
		if attempt == 10 || harness.SleepCtx(ctx, 500*time.Millisecond) != nil {
			return fmt.Errorf("audit connect: %w", err)
		}
	}
	defer c.closeNow()
	defer r.rec.clientConns.Add(-1)
	bound := boundBy(ctx, c)
	return bound(r.auditConn(ctx, c, nd))
}

// auditConn reads every conversation's history from the start on c, an
// agent's connection to node nd, into the ledger.
func (r *run) auditConn(ctx context.Context, c conn, nd int) error {
	for ci := 0; ci < r.nconv; ci++ {
		conv := r.conv(ci)
		after := uint64(0)
		for {
			ref := fmt.Sprintf("a%d-%d", ci, after)
			if err := resume(c, ref, conv, after); err != nil {
				return err
			}
			var resumed *wire.Resumed
			for resumed == nil {
				f, err := c.next()
				if err != nil {
					return fmt.Errorf("audit of %s: %w", conv, err)
				}
				switch {
				case f.Type == wire.TypeDeliver && f.Conversation == conv:
					if k := r.ids.index(f.ID); f.OK && k >= 0 {
						r.ledger.Stored(nd, k, ci, f.Seq, f.State)
					}
				case f.Type == wire.TypeResumed && f.Ref == ref:
					if !f.OK {
						return fmt.Errorf("audit of %s: a resumed frame that does not decode: %.200s", conv, f.Raw)
					}
					resumed = &wire.Resumed{Head: f.Head, More: f.More}
				case f.Type == wire.TypeError && f.Ref == ref:
					if f.Code == wire.CodeRateLimited {
						_ = harness.SleepCtx(ctx, 200*time.Millisecond)
						resumed = &wire.Resumed{More: true, Head: after}
						break
					}
					return fmt.Errorf("audit of %s: %w", conv, f.asError())
				}
			}
			if !resumed.More {
				break
			}
			after = resumed.Head
		}
	}
	return nil
}

// progress prints one line a second on the progress writer.
func (r *run) progress(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if r.opts.Progress != nil {
				fmt.Fprintln(r.opts.Progress)
			}
			return
		case now := <-t.C:
			r.sampleHarness(now)
			s := r.sendStart.Load()
			if s == 0 {
				if r.opts.Progress != nil {
					fmt.Fprintf(r.opts.Progress, "\rsetup: %d connections open, %d connect failures%s   ",
						r.rec.clientConns.Load(), r.rec.connFails.Load(), r.nodeLine())
				}
				continue
			}
			el := now.Sub(time.Unix(0, s)).Seconds()
			iv := r.rec.tick(now, el)
			if r.opts.Progress == nil {
				continue
			}
			fmt.Fprintf(r.opts.Progress, "\r%5.0fs issued %d/%d acked %d delivered %d | %5.0f/s e2e p50 %s p99 %s ack p99 %s | err %d reconn %d conns %d%s   ",
				el, r.issued.Load(), r.total, r.rec.acked.Load(), r.rec.delivered.Load(),
				iv.Acked, fmtMs(iv.E2E.P50), fmtMs(iv.E2E.P99), fmtMs(iv.Ack.P99),
				r.rec.errorsN.Load(), r.rec.reconnects.Load(), r.rec.clientConns.Load(), r.nodeLine()+r.harnessLine())
		}
	}
}

// sampleHarness records this process's CPU and memory: on a machine the
// harness shares with the node, its own load is part of the result.
func (r *run) sampleHarness(now time.Time) {
	cpu := harness.SelfCPUSeconds()
	r.harnessMu.Lock()
	defer r.harnessMu.Unlock()
	smp := NodeSample{OK: true, CPUSeconds: cpu, RSS: selfRSS()}
	if s := r.sendStart.Load(); s != 0 {
		smp.T = round3(now.Sub(time.Unix(0, s)).Seconds())
	} else {
		smp.T = -1
	}
	if !r.lastCPUAt.IsZero() {
		if dt := now.Sub(r.lastCPUAt).Seconds(); dt > 0 {
			smp.CPUPercent = round3((cpu - r.lastCPU) / dt * 100)
		}
	}
	r.lastCPU, r.lastCPUAt = cpu, now
	r.harness = append(r.harness, smp)
}

func (r *run) harnessLine() string {
	r.harnessMu.Lock()
	defer r.harnessMu.Unlock()
	if len(r.harness) == 0 {
		return ""
	}
	return fmt.Sprintf(" | harness cpu %3.0f%%", r.harness[len(r.harness)-1].CPUPercent)
}

func (r *run) nodeLine() string {
	p := r.lastNodes.Load()
	if p == nil {
		return ""
	}
	var b strings.Builder
	for i, s := range *p {
		if !s.OK {
			fmt.Fprintf(&b, " | node%d down", i)
			continue
		}
		fmt.Fprintf(&b, " | node%d cpu %3.0f%% rss %s conns %.0f", i, s.CPUPercent, harness.FmtBytes(s.RSS), s.Conns)
	}
	return b.String()
}

func fmtMs(ms float64) string {
	switch {
	case ms == 0:
		return "-"
	case ms < 10:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.0fms", ms)
	}
	return fmt.Sprintf("%.2fs", ms/1000)
}

// finish assembles the result.
func (r *run) finish(res *Result, scr *scraper, sendStart, sendEnd, setupStart time.Time) *Result {
	res.Finished = time.Now().UTC()
	res.Host.LoadAvg = append(res.Host.LoadAvg, LoadAvg())
	if r.opts.LedgerCSV != nil {
		_ = r.ledger.WriteCSV(r.opts.LedgerCSV, res.Issued, func(k int) string { return r.conv(k % r.nconv) })
	}
	sec := sendEnd.Sub(sendStart).Seconds()
	res.SendSeconds = round3(sec)
	res.Accounting = r.ledger.Account(res.Issued)
	res.Latency = map[string]Percentiles{}
	res.Curves = map[string][]CurvePoint{}
	for m := metric(0); m < nMetrics; m++ {
		p, c := r.rec.summary(m)
		res.Latency[metricNames[m]] = p
		res.Curves[metricNames[m]] = c
	}
	res.Errors = r.rec.errorCounts()
	res.Transports = r.rec.transports()
	res.Counts = Counts{
		Issued: r.rec.issued.Load(), Written: r.rec.written.Load(), Resent: r.rec.resent.Load(),
		Acked: r.rec.acked.Load(), DupAcks: r.rec.dupAcks.Load(), Delivered: r.rec.delivered.Load(),
		Errors: r.rec.errorsN.Load(), Reconnects: r.rec.reconnects.Load(), ConnectFailures: r.rec.connFails.Load(),
		Resumes: r.rec.resumes.Load(), Drops: r.rec.drops.Load(), StormDrops: r.rec.stormDrops.Load(), Failovers: r.rec.failovers.Load(),
	}
	if sec > 0 {
		res.Throughput = Throughput{
			IssuedPerSec:    round3(float64(res.Counts.Issued) / sec),
			AckedPerSec:     round3(float64(res.Counts.Acked) / sec),
			DeliveredPerSec: round3(float64(res.Counts.Delivered) / sec),
		}
	}
	res.Timeline = r.rec.intervals()
	res.NodeMetrics = scr.result(sendStart, sendEnd)
	for i := range res.NodeMetrics {
		if i < len(r.hists) {
			res.NodeMetrics[i].Histograms = r.hists[i]
		}
	}
	r.harnessMu.Lock()
	res.Harness = NodeSeries{Node: "harness", Samples: append([]NodeSample(nil), r.harness...)}
	r.harnessMu.Unlock()
	for _, s := range res.Harness.Samples {
		res.Harness.PeakRSS = max(res.Harness.PeakRSS, s.RSS)
		if s.T > 0 && s.T <= res.SendSeconds+1 {
			res.Harness.CPUSecondsSend += s.CPUPercent / 100
		}
	}
	res.Harness.CPUSecondsSend = round3(res.Harness.CPUSecondsSend)
	var cpu float64
	for _, n := range res.NodeMetrics {
		cpu += n.CPUSecondsSend
	}
	res.NodeCPUSeconds = round3(cpu)
	if res.Counts.Acked > 0 && cpu > 0 {
		res.AckedPerCPUSecond = round3(float64(res.Counts.Acked) / cpu)
	}
	r.evMu.Lock()
	res.Events = append([]Event(nil), r.events...)
	r.evMu.Unlock()
	sort.SliceStable(res.Events, func(i, j int) bool { return res.Events[i].T < res.Events[j].T })
	res.Verdict = verdict(res)
	return res
}

// HostInfo describes this machine, with its load average now.
func HostInfo() Host {
	h, _ := os.Hostname()
	return Host{Hostname: h, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, LoadAvg: []string{LoadAvg()}}
}

// LoadAvg is /proc/loadavg now (empty elsewhere).
func LoadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}
