package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"parley/bench/internal/harness"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// vclient is one virtual visitor or agent. Its loop owns one connection at
// a time: a reader goroutine handles what the node sends, the loop writes.
// When the connection ends (a storm, a node killed, an error), the loop
// reconnects with the same identity, resumes its conversations from the
// highest seq it saw, and resends every message not yet acknowledged, with
// its original id: the node answers a resend of a stored message with
// dup:true and stores nothing.
type vclient struct {
	r     *run
	agent bool
	idx   int // among visitors, or among agents
	gidx  int // among all clients: picks the node and source address
	node  int // index of its node in the run's nodes
	base  string
	// transport is "ws" (WebSocket) or "wt" (WebTransport).
	transport string
	hb        time.Duration
	drop      chan time.Duration // a storm: drop the connection, reconnect after

	// Visitor state.
	visitorID, visitorSig string
	convs                 []int // conversation indices this visitor owns
	mu                    sync.Mutex
	queue                 []int            // due messages not yet written
	inflight              map[int]struct{} // written, not acknowledged
	wake                  chan struct{}
	vcurs                 map[int]*convCursor // per owned conversation

	// Agent state: a cursor per conversation index.
	curs []convCursor

	pre []*frame // frames that came before the welcome

	// lastRecv is when the reader last got a frame (unix nanos): the
	// session's liveness watchdog reads it.
	lastRecv atomic.Int64
	// stalled: the last session ended because the node did not answer.
	stalled bool
}

// failover moves a visitor to the next node (Scenario.Failover) after its
// node stalled or refused it. Its cursors are of the old node's seqs: it
// resumes from the start there. Called by the loop between sessions (no
// reader runs).
func (v *vclient) failover() {
	r := v.r
	if v.agent || !r.sc.Failover || len(r.nodes) < 2 {
		return
	}
	v.node = (v.node + 1) % len(r.nodes)
	v.base = r.nodes[v.node]
	clear(v.vcurs)
	r.rec.failovers.Add(1)
}

// answerTimeout is how long a client waits for any frame after writing one
// that expects an answer (a send, a ping) before it takes the connection
// for broken, as the widget does (docs/protocol.md). A WebTransport
// session whose node was killed ends with no close at all; without this it
// would wait for QUIC's idle timeout.
const answerTimeout = 5 * time.Second

// wtPing is how often WebTransport clients ping, so that a dead session is
// noticed within answerTimeout of it even on an idle connection (an agent).
const wtPing = 2 * time.Second

// convCursor is where a client stands in one conversation: the highest
// seq received, and, while a resume is not complete, the seq the replay
// started after. A replay paged with "more", or one cut short by a lost
// connection, leaves a gap below live events already received: the next
// resume must start below it, not at the highest seq.
type convCursor struct {
	max, safe uint64
	resuming  bool
}

// resumeFrom returns where to resume and marks the resume begun.
func (c *convCursor) resumeFrom() uint64 {
	if !c.resuming {
		c.safe = c.max
	}
	c.resuming = true
	return c.safe
}

func (v *vclient) cursor(ci int) *convCursor {
	if v.agent {
		return &v.curs[ci]
	}
	c := v.vcurs[ci]
	if c == nil {
		c = &convCursor{}
		v.vcurs[ci] = c
	}
	return c
}

func (v *vclient) role() string {
	if v.agent {
		return "agent"
	}
	return "visitor"
}

// connect dials and says hello; it returns the connection after welcome.
func (v *vclient) connect(ctx context.Context) (conn, error) {
	r := v.r
	t0 := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := r.dialer.dial(cctx, v.base, v.transport, v.gidx)
	if err != nil {
		return nil, fmt.Errorf("%s dial: %w", v.transport, err)
	}
	hello := map[string]any{"type": "hello", "v": 1, "workspace": r.sc.Target.Workspace, "role": v.role()}
	if v.agent {
		hello["token"] = r.token
		hello["name"] = "bench agent " + strconv.Itoa(v.idx)
	} else {
		hello["name"] = "bench visitor " + strconv.Itoa(v.idx)
		if v.visitorID != "" {
			hello["visitor_id"], hello["visitor_sig"] = v.visitorID, v.visitorSig
		}
	}
	if err := writeJSON(cctx, c, hello); err != nil {
		c.CloseNow()
		return nil, err
	}
	// The node may send events before the welcome (the connection joins
	// its workspace first): keep them for the reader.
	v.pre = v.pre[:0]
	w, err := await(cctx, c, "welcome", "", func(f *frame) { v.pre = append(v.pre, f) })
	if err != nil {
		c.CloseNow()
		return nil, err
	}
	r.rec.recordOn(v.transport, mConnect, time.Since(t0))
	if !v.agent && v.visitorID == "" {
		v.visitorID, v.visitorSig = w.VisitorID, w.VisitorSig
	}
	if w.HeartbeatMS > 0 {
		v.hb = time.Duration(w.HeartbeatMS) * time.Millisecond
	}
	r.rec.clientConns.Add(1)
	return c, nil
}

// setup connects for the first time; a visitor starts its conversations.
func (v *vclient) setup(ctx context.Context) (conn, error) {
	c, err := v.connect(ctx)
	if err != nil {
		v.r.rec.reconnectOn(v.transport, false)
		v.r.rec.errorOn(v.transport, errCode(err))
		return nil, err
	}
	if v.agent {
		return c, nil
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for i, ci := range v.convs {
		ref := "s" + strconv.Itoa(i)
		if err := writeJSON(sctx, c, map[string]any{"type": "start", "ref": ref}); err != nil {
			c.CloseNow()
			return nil, err
		}
		f, err := await(sctx, c, "started", ref, nil)
		if err != nil {
			c.CloseNow()
			v.r.rec.errorOn(v.transport, errCode(err))
			return nil, err
		}
		v.r.setConv(ci, f.Conversation)
	}
	return c, nil
}

// loop runs the client until ctx ends, starting with connection c.
func (v *vclient) loop(ctx context.Context, c conn) {
	r := v.r
	for {
		v.stalled = false
		delay := v.session(ctx, c)
		r.rec.clientConns.Add(-1)
		if ctx.Err() != nil {
			return
		}
		if delay > 0 && harness.SleepCtx(ctx, delay) != nil {
			return
		}
		if v.stalled {
			v.failover()
		}
		backoff := 50 * time.Millisecond
		for {
			var err error
			if c, err = v.connect(ctx); err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			r.rec.reconnectOn(v.transport, false)
			r.rec.errorOn(v.transport, errCode(err))
			v.failover()
			if harness.SleepCtx(ctx, backoff+rand.N(backoff)) != nil {
				return
			}
			backoff = min(2*backoff, time.Second)
		}
		r.rec.reconnectOn(v.transport, true)
		if err := v.resume(ctx, c); err != nil {
			r.rec.errorOn(v.transport, errCode(err))
		}
	}
}

// resume, after a reconnect, asks for what the client missed and queues
// the unacknowledged messages again, oldest first.
func (v *vclient) resume(ctx context.Context, c conn) error {
	if v.agent {
		for ci := range v.curs {
			conv := v.r.conv(ci)
			if conv == "" {
				continue
			}
			if err := writeJSON(ctx, c, resumeFrame(ci, conv, v.curs[ci].resumeFrom())); err != nil {
				return err
			}
		}
		return nil
	}
	v.mu.Lock()
	again := make([]int, 0, len(v.inflight))
	for k := range v.inflight {
		again = append(again, k)
	}
	slices.Sort(again)
	v.queue = append(again, v.queue...)
	v.mu.Unlock()
	for _, ci := range v.convs {
		if err := writeJSON(ctx, c, resumeFrame(ci, v.r.conv(ci), v.cursor(ci).resumeFrom())); err != nil {
			return err
		}
	}
	return nil
}

func resumeFrame(ci int, conv string, after uint64) map[string]any {
	return map[string]any{"type": "resume", "ref": "r" + strconv.Itoa(ci), "conversation": conv, "after": after}
}

// requeue puts message k, written but refused for now, at the head of the
// queue to be written again.
func (v *vclient) requeue(k int) {
	v.mu.Lock()
	if _, ok := v.inflight[k]; !ok { // already queued again by a resume
		v.mu.Unlock()
		return
	}
	delete(v.inflight, k)
	v.queue = append([]int{k}, v.queue...)
	v.mu.Unlock()
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// enqueue hands message k to the visitor; it never blocks.
func (v *vclient) enqueue(k int) {
	v.mu.Lock()
	v.queue = append(v.queue, k)
	v.mu.Unlock()
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

func (v *vclient) pop() (int, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.queue) == 0 {
		return 0, false
	}
	k := v.queue[0]
	v.queue = v.queue[1:]
	if len(v.queue) == 0 {
		v.queue = nil
	}
	v.inflight[k] = struct{}{}
	return k, true
}

// session serves one connection until it ends; it returns how long to wait
// before reconnecting (a storm's delay).
func (v *vclient) session(ctx context.Context, c conn) time.Duration {
	r := v.r
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- v.readLoop(sctx, c) }()
	every := v.hb
	if v.transport == "wt" {
		every = min(every, wtPing)
	}
	ping := time.NewTicker(every)
	defer ping.Stop()
	watch := time.NewTicker(time.Second)
	defer watch.Stop()
	// waiting is when the oldest frame expecting an answer, with nothing
	// received since, was written (unix nanos; 0: none).
	var waiting int64
	v.lastRecv.Store(time.Now().UnixNano())
	expect := func() {
		if waiting == 0 || v.lastRecv.Load() >= waiting {
			waiting = time.Now().UnixNano()
		}
	}
	var buf []byte
	// end closes the connection and waits for the reader.
	end := func(graceful bool) {
		if graceful {
			cl := make(chan struct{})
			go func() { c.Close(); close(cl) }()
			select {
			case <-cl:
			case <-time.After(2 * time.Second):
			}
		}
		cancel()
		c.CloseNow()
		<-done
	}
	for {
		if !v.agent {
			if k, ok := v.pop(); ok {
				buf = sendFrame(buf, r.ids.id(k), r.conv(k%r.nconv), r.body)
				if err := c.Write(sctx, buf); err != nil {
					if ctx.Err() == nil {
						r.rec.drops.Add(1)
						r.rec.errorOn(v.transport, errCode(err))
					}
					end(false)
					return 0
				}
				expect()
				if r.ledger.Sent(k) {
					r.rec.written.Add(1)
					r.rec.record(mLag, time.Since(r.due(k)))
				} else {
					r.rec.resent.Add(1)
				}
				select {
				case d := <-v.drop:
					end(false)
					return d
				case err := <-done:
					v.readerEnded(ctx, c, err)
					return 0
				case <-ctx.Done():
					end(true)
					return 0
				default:
				}
				continue
			}
		}
		select {
		case <-v.wake:
		case <-ping.C:
			if err := c.Write(sctx, []byte(`{"type":"ping","ref":"p"}`)); err != nil {
				end(false)
				return 0
			}
			expect()
		case now := <-watch.C:
			if waiting != 0 && v.lastRecv.Load() < waiting && now.UnixNano()-waiting > int64(answerTimeout) {
				r.rec.drops.Add(1)
				r.rec.errorOn(v.transport, "no_answer")
				v.stalled = true
				end(false)
				return 0
			}
		case d := <-v.drop:
			end(false)
			return d
		case err := <-done:
			v.readerEnded(ctx, c, err)
			return 0
		case <-ctx.Done():
			end(true)
			return 0
		}
	}
}

func (v *vclient) readerEnded(ctx context.Context, c conn, err error) {
	c.CloseNow()
	if ctx.Err() == nil {
		v.r.rec.drops.Add(1)
		// Close codes come with an error frame already counted.
		if code := errCode(err); err != nil && !strings.HasPrefix(code, "close_") {
			v.r.rec.errorOn(v.transport, code)
		}
	}
}

// readLoop handles the node's frames until the connection ends.
func (v *vclient) readLoop(ctx context.Context, c conn) error {
	pre := v.pre
	v.pre = nil
	for _, f := range pre {
		if err := v.handle(ctx, c, f, time.Now()); err != nil {
			return err
		}
	}
	for {
		f, err := readFrame(ctx, c)
		if err != nil {
			return err
		}
		now := time.Now()
		v.lastRecv.Store(now.UnixNano())
		if err := v.handle(ctx, c, f, now); err != nil {
			return err
		}
	}
}

// handle acts on one frame from the node.
func (v *vclient) handle(ctx context.Context, c conn, f *frame, now time.Time) error {
	r := v.r
	switch f.Type {
	case "deliver":
		ci, ok := r.convIndex(f.Conversation)
		if !ok {
			return nil
		}
		if cur := v.cursor(ci); f.Seq > cur.max {
			cur.max = f.Seq
		}
		if !v.agent {
			return nil
		}
		id, st := f.message()
		if k := r.ids.index(id); k >= 0 && r.ledger.Delivered(v.idx, k, f.Seq, st) {
			r.rec.delivered.Add(1)
			r.rec.recordOn(v.transport, mE2E, now.Sub(r.due(k)))
		}
	case "ack":
		k := r.ids.index(f.ID)
		if k < 0 {
			return nil
		}
		v.mu.Lock()
		delete(v.inflight, k)
		v.mu.Unlock()
		if f.Dup {
			r.rec.dupAcks.Add(1)
		}
		if r.ledger.Acked(k, v.node, f.Seq) {
			r.rec.acked.Add(1)
			r.rec.recordOn(v.transport, mAck, now.Sub(r.due(k)))
		}
	case "resumed":
		r.rec.resumes.Add(1)
		ci, ok := r.convIndex(f.Conversation)
		if !ok {
			return nil
		}
		cur := v.cursor(ci)
		if !f.More {
			cur.resuming = false
			return nil
		}
		cur.safe = f.Head
		if err := writeJSON(ctx, c, resumeFrame(ci, f.Conversation, f.Head)); err != nil {
			return err
		}
	case "error":
		r.rec.errorOn(v.transport, f.Code)
		if k := r.ids.index(f.Ref); k >= 0 {
			if f.Code == "unavailable" {
				// Stored here but not confirmed by a second replica in
				// time (or the store is busy): send it again with the
				// same id, which is never stored twice.
				v.requeue(k)
				return nil
			}
			v.mu.Lock()
			delete(v.inflight, k)
			v.mu.Unlock()
			r.ledger.Rejected(k)
		} else if len(f.Ref) > 1 && f.Ref[0] == 'r' {
			// A resume refused (rate_limited, unavailable): ask again soon.
			if ci, err := strconv.Atoi(f.Ref[1:]); err == nil && ci >= 0 && ci < r.nconv {
				fr := resumeFrame(ci, r.conv(ci), v.cursor(ci).resumeFrom())
				time.AfterFunc(200*time.Millisecond, func() { _ = writeJSON(ctx, c, fr) })
			}
		}
	}
	return nil
}
