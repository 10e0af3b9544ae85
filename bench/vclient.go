package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"parley/bench/internal/harness"
	"parley/gateway/client"
	"parley/gateway/wire"
	"parley/ident"
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
	queue                 deque            // due messages not yet written
	inflight              map[int]struct{} // written, not acknowledged
	wake                  chan struct{}
	vcurs                 map[int]*client.Cursor // per owned conversation

	// Agent state: a cursor per conversation index.
	curs []client.Cursor

	pre []frame // frames that came before the welcome

	// lastRecv is when the reader last got a frame (unix nanos): the
	// session's liveness watchdog reads it.
	lastRecv atomic.Int64
	// stalled: the last session ended because the node did not answer.
	stalled bool
	// backoffUntil (unix nanos): the node shed one of this visitor's
	// sends (overloaded); it writes none before then.
	backoffUntil atomic.Int64
}

// backoff is how long the visitor still holds its sends, 0 when it does not.
func (v *vclient) backoff() time.Duration {
	return time.Duration(v.backoffUntil.Load() - time.Now().UnixNano())
}

// holdSends makes the visitor write nothing for d, as a client told to
// back off does.
func (v *vclient) holdSends(d time.Duration) {
	until := time.Now().Add(d).UnixNano()
	for {
		cur := v.backoffUntil.Load()
		if cur >= until || v.backoffUntil.CompareAndSwap(cur, until) {
			return
		}
	}
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

func (v *vclient) cursor(ci int) *client.Cursor {
	if v.agent {
		return &v.curs[ci]
	}
	c := v.vcurs[ci]
	if c == nil {
		c = &client.Cursor{}
		v.vcurs[ci] = c
	}
	return c
}

func (v *vclient) role() ident.Role {
	if v.agent {
		return ident.Agent
	}
	return ident.Visitor
}

// connect dials and says hello; it returns the connection after welcome.
func (v *vclient) connect(ctx context.Context) (conn, error) {
	r := v.r
	t0 := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := r.dialer.dialConn(cctx, v.base, v.transport, v.gidx)
	if err != nil {
		return nil, fmt.Errorf("%s dial: %w", v.transport, err)
	}
	bound := boundBy(cctx, c)
	hello := wire.Hello{Workspace: r.sc.Target.Workspace, Role: v.role()}
	if v.agent {
		hello.Token = r.token
		hello.Name = "bench agent " + strconv.Itoa(v.idx)
	} else {
		hello.Name = "bench visitor " + strconv.Itoa(v.idx)
		hello.VisitorID, hello.VisitorSig = v.visitorID, v.visitorSig
	}
	// The node may send events before the welcome (the connection joins
	// its workspace first): keep them for the reader.
	v.pre = v.pre[:0]
	w, err := sayHello(c, hello, func(f frame) { v.pre = append(v.pre, f) })
	if err = bound(err); err != nil {
		c.closeNow()
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

// vclientQueue is how many frames a client's connection holds for its
// read loop.
const vclientQueue = 1024

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
	bound := boundBy(sctx, c)
	for i, ci := range v.convs {
		ref := "s" + strconv.Itoa(i)
		if err := sendJSON(c, wire.Ref{Type: wire.TypeStart, Ref: ref}); err != nil {
			err = bound(err)
			c.closeNow()
			return nil, err
		}
		f, err := answer(c, wire.TypeStarted, ref, nil)
		if err != nil {
			err = bound(err)
			c.closeNow()
			v.r.rec.errorOn(v.transport, errCode(err))
			return nil, err
		}
		v.r.setConv(ci, f.Conversation)
	}
	if err := bound(nil); err != nil {
		c.closeNow()
		return nil, err
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
	bound := boundBy(ctx, c)
	if v.agent {
		for ci := range v.curs {
			conv := v.r.conv(ci)
			if conv == "" {
				continue
			}
			if err := resume(c, resumeRef(ci), conv, v.curs[ci].ResumeFrom()); err != nil {
				return bound(err)
			}
		}
		return bound(nil)
	}
	v.mu.Lock()
	again := make([]int, 0, len(v.inflight))
	for k := range v.inflight {
		again = append(again, k)
	}
	slices.Sort(again)
	clear(v.inflight) // written again from the queue, within the window
	v.queue.pushFront(again...)
	v.mu.Unlock()
	for _, ci := range v.convs {
		if err := resume(c, resumeRef(ci), v.r.conv(ci), v.cursor(ci).ResumeFrom()); err != nil {
			return bound(err)
		}
	}
	return bound(nil)
}

// resumeRef is the ref of conversation ci's resumes.
func resumeRef(ci int) string { return "r" + strconv.Itoa(ci) }

// requeue puts message k, written but refused for now, at the head of the
// queue to be written again.
func (v *vclient) requeue(k int) {
	v.mu.Lock()
	if _, ok := v.inflight[k]; !ok { // already queued again by a resume
		v.mu.Unlock()
		return
	}
	delete(v.inflight, k)
	v.queue.pushFront(k)
	v.mu.Unlock()
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// answered takes message k out of the window, and wakes the writer.
func (v *vclient) answered(k int) {
	v.mu.Lock()
	delete(v.inflight, k)
	v.mu.Unlock()
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// enqueue hands message k to the visitor; it never blocks.
func (v *vclient) enqueue(k int) {
	v.mu.Lock()
	v.queue.pushBack(k)
	v.mu.Unlock()
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// maxInflight is the most messages a visitor has written and not yet
// seen answered: the node's own bound on a connection's changes waiting
// for its store (gateway.Config.MaxInFlight), past which it reads no more
// of the connection's frames anyway. A visitor told to back off
// (overloaded) so writes at most this many before it hears again.
const maxInflight = 64

// popReady appends to ks the messages to write now, as many as are
// queued and the window has room for.
func (v *vclient) popReady(ks []int) []int {
	v.mu.Lock()
	defer v.mu.Unlock()
	for v.queue.len() > 0 && len(v.inflight) < maxInflight && !v.r.quiet.Load() {
		k := v.queue.popFront()
		v.inflight[k] = struct{}{}
		ks = append(ks, k)
	}
	return ks
}

// batchWriter is a connection that can queue frames and write them in
// one write (rawWS).
type batchWriter interface {
	queue(b []byte) error
	flush() error
}

// session serves one connection until it ends; it returns how long to wait
// before reconnecting (a storm's delay).
func (v *vclient) session(ctx context.Context, c conn) time.Duration {
	r := v.r
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The connection's waits end with the session (or the run).
	defer context.AfterFunc(sctx, c.closeNow)()
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
	var ready []int
	// end closes the connection and waits for the reader.
	end := func(graceful bool) {
		if graceful {
			cl := make(chan struct{})
			go func() { c.close(); close(cl) }()
			select {
			case <-cl:
			case <-time.After(2 * time.Second):
			}
		}
		cancel()
		c.closeNow()
		<-done
	}
	for {
		var held <-chan time.Time
		if !v.agent {
			if d := v.backoff(); d > 0 {
				held = time.After(d)
			} else if ready = v.popReady(ready[:0]); len(ready) > 0 {
				// Every send ready now, in one write where the connection
				// queues frames (rawWS), else one write each.
				var err error
				for _, k := range ready {
					buf = client.AppendSend(buf, r.ids.id(k), r.conv(k%r.nconv), r.body)
					if bw, ok := c.(batchWriter); ok {
						err = bw.queue(buf)
					} else {
						err = c.write(buf)
					}
					if err != nil {
						break
					}
				}
				if bw, ok := c.(batchWriter); ok && err == nil {
					err = bw.flush()
				}
				if err != nil {
					if ctx.Err() == nil {
						r.rec.drops.Add(1)
						r.rec.errorOn(v.transport, errCode(err))
					}
					end(false)
					return 0
				}
				expect()
				now := time.Now()
				for _, k := range ready {
					if r.ledger.Sent(k) {
						r.rec.written.Add(1)
						r.rec.record(mLag, now.Sub(r.due(k)))
					} else {
						r.rec.resent.Add(1)
					}
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
		case <-held:
		case <-v.wake:
		case <-ping.C:
			if err := c.write([]byte(`{"type":"ping","ref":"p"}`)); err != nil {
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
	c.closeNow()
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
	for i := range pre {
		if err := v.handle(ctx, c, &pre[i], time.Now()); err != nil {
			return err
		}
	}
	for {
		f, err := c.next()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%w: %w", ctx.Err(), err)
			}
			return err
		}
		now := time.Now()
		v.lastRecv.Store(now.UnixNano())
		if err := v.handle(ctx, c, &f, now); err != nil {
			return err
		}
	}
}

// handle acts on one frame from the node.
func (v *vclient) handle(ctx context.Context, c conn, f *frame, now time.Time) error {
	r := v.r
	switch f.Type {
	case wire.TypeDeliver:
		ci, ok := r.convIndex(f.Conversation)
		if !ok || !f.OK {
			return nil
		}
		v.cursor(ci).Saw(f.Seq)
		if !v.agent {
			return nil
		}
		if k := r.ids.index(f.ID); k >= 0 && r.ledger.Delivered(v.idx, k, f.Seq, f.State) {
			r.rec.delivered.Add(1)
			r.rec.recordOn(v.transport, mE2E, now.Sub(r.due(k)))
		}
	case wire.TypeAck:
		if !f.OK {
			return nil
		}
		k := r.ids.index(f.ID)
		if k < 0 {
			return nil
		}
		v.answered(k)
		if f.Dup {
			r.rec.dupAcks.Add(1)
		}
		if r.ledger.Acked(k, v.node, f.Seq) {
			r.rec.acked.Add(1)
			r.rec.recordOn(v.transport, mAck, now.Sub(r.due(k)))
		}
	case wire.TypeResumed:
		r.rec.resumes.Add(1)
		ci, ok := r.convIndex(f.Conversation)
		if !ok {
			return nil
		}
		if !f.OK {
			return nil
		}
		v.cursor(ci).Resumed(f.More, f.Head)
		if !f.More {
			return nil
		}
		if err := resume(c, resumeRef(ci), f.Conversation, f.Head); err != nil {
			return err
		}
	case wire.TypeError:
		r.rec.errorOn(v.transport, f.Code)
		if k := r.ids.index(f.Ref); k >= 0 {
			if f.Code == wire.CodeUnavailable {
				// Stored here but not confirmed by a second replica in
				// time (or the store is busy): send it again with the
				// same id, which is never stored twice.
				v.requeue(k)
				return nil
			}
			if f.Code == wire.CodeOverloaded {
				// Shed at the edge, nothing stored: the visitor writes
				// nothing for retry_ms, then this message again first.
				retry := f.asError().Retry
				if retry <= 0 {
					retry = 250 * time.Millisecond
				}
				v.holdSends(retry)
				v.requeue(k)
				return nil
			}
			v.answered(k)
			r.ledger.Rejected(k)
		} else if len(f.Ref) > 1 && f.Ref[0] == 'r' {
			// A resume refused (rate_limited, unavailable): ask again soon.
			if ci, err := strconv.Atoi(f.Ref[1:]); err == nil && ci >= 0 && ci < r.nconv {
				conv, after := r.conv(ci), v.cursor(ci).ResumeFrom()
				time.AfterFunc(200*time.Millisecond, func() {
					if ctx.Err() == nil {
						_ = resume(c, resumeRef(ci), conv, after)
					}
				})
			}
		}
	}
	return nil
}

// deque is a visitor's queue of message indices: pushed at the back as
// they fall due, at the front when written again (a resend), popped from
// the front; each in constant time (amortised), so that a visitor whose
// sends the node sheds by the thousand does not copy its queue each time.
type deque struct {
	buf        []int // a ring; len(buf) is 0 or a power of two
	head, size int
}

func (q *deque) len() int { return q.size }

// grow makes room for n more.
func (q *deque) grow(n int) {
	if q.size+n <= len(q.buf) {
		return
	}
	c := max(16, len(q.buf))
	for c < q.size+n {
		c *= 2
	}
	nb := make([]int, c)
	for i := 0; i < q.size; i++ {
		nb[i] = q.buf[(q.head+i)&(len(q.buf)-1)]
	}
	q.buf, q.head = nb, 0
}

func (q *deque) pushBack(k int) {
	q.grow(1)
	q.buf[(q.head+q.size)&(len(q.buf)-1)] = k
	q.size++
}

// pushFront puts ks at the front, in their order.
func (q *deque) pushFront(ks ...int) {
	q.grow(len(ks))
	for i := len(ks) - 1; i >= 0; i-- {
		q.head = (q.head - 1) & (len(q.buf) - 1)
		q.buf[q.head] = ks[i]
		q.size++
	}
}

// popFront takes the front; the deque must not be empty.
func (q *deque) popFront() int {
	k := q.buf[q.head]
	q.head = (q.head + 1) & (len(q.buf) - 1)
	q.size--
	return k
}
