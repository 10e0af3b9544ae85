package gateway

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"parley/gateway/wire"
	"parley/store"

	"golang.org/x/time/rate"
)

// transport moves whole frames for one connection: ws.go implements it for
// WebSocket, webtransport.go for a WebTransport stream.
type transport interface {
	// Read returns the next text frame. A binary frame returns errBinary.
	// A transport that polls (polledTransport) is not read this way.
	Read(ctx context.Context) ([]byte, error)
	// WriteFrames writes frames, in order, in as few writes as it can; it
	// fails when no byte could be written for timeout.
	WriteFrames(frames []wframe, timeout time.Duration) error
	Close(code int, reason string) error
	Name() string
}

// polledTransport is a transport whose reads a poller may drive: poll
// hands them to sink, on one of ps, and reports true, or reports false
// when this connection cannot be polled (Read it then).
type polledTransport interface {
	transport
	poll(sink frameSink, ps *pollers) bool
	// resumeReading reads again after sink.deliver asked for a pause.
	resumeReading()
}

// wframe is one frame to write: op is a WebSocket opcode, 0 for text.
type wframe struct {
	op   byte
	data []byte
}

func (f wframe) wsOp() byte {
	if f.op == 0 {
		return wsOpText
	}
	return f.op
}

type outKind uint8

const (
	outFrame       outKind = iota // a direct answer or notice: always written
	outLive                       // a conversation event: deduplicated by seq
	outReplayStart                // hold live events of conv until its replay
	outReplay                     // a resume's replay, then its resumed frame
)

// outItem is one thing for the writer: frames are encoded once by whoever
// queues them, and shared between the connections they go to.
type outItem struct {
	kind   outKind
	op     byte // the WebSocket opcode: 0 for text (every frame but a pong)
	conv   string
	seq    uint64            // outLive: 0 for events outside the message log (reads, typing)
	at     store.Stamp       // outLive: the event's stamp, the same on every replica
	since  map[string]uint64 // outReplayStart: what a resume by vector covers
	data   []byte
	start  time.Time // when the event reached the node; zero if not a message
	replay []outItem
	more   bool // outReplay: the replay stopped short; the client resumes again
	// quiet: a replayed event whose message a later event of the same
	// replay brings (with this event's stamp in its also): counted as
	// sent, never written.
	quiet bool
}

// conn is one client connection. Nothing runs for it while it is idle:
// its frames are handled on a goroutine started when they arrive (drain)
// and its writes, when something is queued, by a turn of a writer worker
// (writeTurn, writers.go) or a goroutine of its own (writeRun); each ends
// when it has nothing left to do. (A transport that cannot be polled
// keeps a reader goroutine; see serve.)
type conn struct {
	srv     *Server
	t       transport
	ctx     context.Context
	ip      string
	limiter *rate.Limiter
	resumes *rate.Limiter // resume frames' own limit (Config.ResumeRate)

	id     identity // set once by hello, before the conn joins the hub
	authed atomic.Bool
	// relay is set when hello hands the connection to another node (see
	// relay.go); relaying says so to other goroutines. viaRelay marks a
	// connection another node relays here.
	relay    Upstream
	relaying atomic.Bool
	viaRelay bool
	relayLim *rate.Limiter // the frame limit of a relayed connection
	// relayDone is closed when the upstream's reader ended.
	relayDone chan struct{}
	convs     map[string]bool // conversations this connection may touch; reader only
	// counted holds the conversations whose first message this connection
	// has sent or found already there (firstMessage); under countMu.
	countMu sync.Mutex
	counted map[string]bool

	lastSeen   atomic.Int64 // unix ms of the last frame read
	leaseAt    int64        // unix ms of the last presence renewal; reader only
	leaseID    string
	away       atomic.Bool // the agent said they are away (status frame)
	violations int         // frames over the rate limit in a row; reader only
	// fetchMisses counts the conversations fetched for this connection
	// that no replica held (fetch); reader only.
	fetchMisses int

	stop      chan struct{} // closed by fail
	closeOnce sync.Once
	closeErr  *wireError // why the server ends it; read by the writer after stop
	closeRef  string
	ops       chan struct{}
	opsWG     sync.WaitGroup
	// answers holds the changes decided and not yet answered, in the
	// order taken; answering says answerChanges runs (answer.go).
	answerMu  sync.Mutex
	answers   []changeWait
	answering bool
	bg        sync.WaitGroup // the relay's upstream reader

	mu sync.Mutex // guards what follows
	// The send queue, by items and bytes not yet written. It is allocated
	// when something is queued and let go when the writer is idle again.
	queue       *itemQueue
	queuedBytes int
	queuedItems int        // items queued or in the batch being written: behind
	spare       *itemQueue // the writer's emptied batch, reused while it runs
	writing     bool       // a writeRun goroutine is running
	closing     bool       // fail was called: the writer finishes
	// room is signalled by the writer each time it takes the queue: a
	// resume waits on it while the queue is more than half of
	// Config.SendQueue (waitRoom). Made on first use.
	room chan struct{}
	// The inbox of a polled connection: messages read, not yet handled;
	// inbox1 its room for one, which most reads bring (no allocation).
	inbox     [][]byte
	inbox1    [1][]byte
	handling  bool // a drain goroutine is running
	paused    bool // the transport reads no more until the inbox drains
	readEOF   bool // the transport delivers nothing more
	readStop  bool // the connection is ending: drop what is read
	readDone  bool // no frame will be handled any more
	writeDone bool // the writer finished and the transport is closed
	onDone    func()
	writer    func() // writeRun, as a value made once: a go statement of it allocates nothing

	// The writer's own, across its runs (writeRun).
	lastSent map[string]*seqSet
	// covered holds, per conversation resumed by vector, the events the
	// client had from another node: a live event it already has is not
	// written again.
	covered  map[string]map[string]uint64
	pending  map[string][]*outItem
	draining map[string]bool
}

// inboxMax is how many read messages a polled connection holds before its
// transport stops reading: the rate limits answer a flood long before.
const inboxMax = 256

// send queues an item without blocking, and starts the writer if it is
// not running. A client is too slow to serve live only when what is
// queued for it, not yet written, passes Config.SendQueueBytes, or when
// the writer could not write a byte to it for Config.WriteTimeout (the
// write fails): it is then cut off and resumes after reconnecting, rather
// than holding memory or blocking the fan-out to everybody else.
func (c *conn) send(it *outItem) {
	if c.queueOut(it) {
		c.srv.writers.start(c)
	}
}

// queueOut queues it as send does, but leaves the writer to the caller:
// true says the caller now owns the writer (none was running) and must
// start it, or write itself (writeNow).
func (c *conn) queueOut(it *outItem) (own bool) {
	n := it.size()
	c.mu.Lock()
	if c.closing {
		if c.closeErr != nil && c.closeErr.relayed && it.kind == outFrame {
			// The serving node's last frames before its close: finish
			// writes them.
			c.queue = c.queue.push(it)
		}
		c.mu.Unlock()
		return false
	}
	if c.queuedBytes+n > c.srv.cfg.SendQueueBytes && c.queuedBytes > 0 {
		c.mu.Unlock()
		c.fail(fatalf(wire.CodeSlowConsumer, wire.CloseSlowConsumer, "send queue full: reconnect and resume"))
		return false
	}
	c.queue = c.queue.push(it)
	c.queuedBytes += n
	c.queuedItems++
	own = !c.writing
	c.writing = true
	c.mu.Unlock()
	return own
}

// writeNow is the writer's turn taken by its owner (queueOut) on its own
// goroutine, where the socket takes the queue at once: what is left after
// the turn goes to a writer worker, as does a transport whose writes
// cannot be tried.
func (c *conn) writeNow() {
	if tw, ok := c.t.(burstWriter); ok && tw.canTryWrite() && !c.writeTurn(tw) {
		return
	}
	c.srv.writers.start(c)
}

// size is what an item counts for in the send queue's bytes.
func (it *outItem) size() int {
	n := len(it.data)
	for i := range it.replay {
		n += len(it.replay[i].data)
	}
	return n
}

// waitRoom holds a resume until the send queue is at most half of
// Config.SendQueue items, so that a client resuming many conversations at
// once neither fills it (and is cut off as slow) nor leaves no room for
// live events. It reports false when the connection ends meanwhile.
func (c *conn) waitRoom() bool {
	for {
		c.mu.Lock()
		if c.queue.len() <= c.srv.cfg.SendQueue/2 {
			c.mu.Unlock()
			return true
		}
		if c.room == nil {
			c.room = make(chan struct{}, 1)
		}
		room := c.room
		c.mu.Unlock()
		select {
		case <-room:
		case <-c.stop:
			return false
		}
	}
}

// fail ends the connection; the writer sends e (if any) and closes with its code.
func (c *conn) fail(e *wireError) { c.failWithRef("", e) }

// reply queues a direct answer.
func (c *conn) reply(v any) { c.send(&outItem{kind: outFrame, data: encode(v)}) }

// pong answers a client's WebSocket ping.
func (c *conn) pong(data []byte) { c.send(&outItem{kind: outFrame, op: wsOpPong, data: data}) }

// replyErr sends an error frame, and ends the connection if the error does.
func (c *conn) replyErr(ref string, e *wireError) {
	c.srv.metrics.Error(e.Code)
	if e.close != 0 {
		c.failWithRef(ref, e)
		return
	}
	c.reply(wire.Error{Type: wire.TypeError, Ref: ref, Code: e.Code, Message: e.Message, RetryMS: e.retry})
}

func (c *conn) failWithRef(ref string, e *wireError) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closeErr = e
		c.closeRef = ref
		c.closing = true
		c.readStop = true
		close(c.stop)
		start := !c.writing
		c.writing = true
		c.mu.Unlock()
		if start {
			go c.writer()
		}
	})
}

// writeRun is the connection's writer while it has something to write: the
// only goroutine writing to the transport. It takes everything queued at
// once and writes it in one burst (WriteFrames), and ends when the queue is
// empty, letting go of it; once the connection fails it finishes it.
func (c *conn) writeRun() {
	for {
		batch, closing := c.take()
		if closing {
			c.finishClosing()
			return
		}
		if batch == nil {
			return
		}
		bu := c.burstOf(batch.items)
		var err error
		if len(bu.frames) > 0 {
			err = c.t.WriteFrames(bu.frames, c.srv.cfg.WriteTimeout)
		}
		if !c.written(batch, bu, err) {
			return
		}
	}
}

// writeTurn is a writer worker's turn at the connection (writers.go): it
// writes what is queued as far as the socket takes it without waiting. A
// burst the socket does not take whole, a failed write and a connection
// that is closing are handed to a goroutine of the connection, which may
// wait (flushRun, then writeRun: it stays the writer until the queue is
// empty). again says the turn ended with the connection still the
// worker's, after turnBursts bursts while more kept coming: it goes to the
// back of the workers' line, so that one busy connection does not hold up
// the others.
func (c *conn) writeTurn(tw burstWriter) (again bool) {
	for range turnBursts {
		batch, closing := c.take()
		if closing {
			go c.writer()
			return false
		}
		if batch == nil {
			return false
		}
		bu := c.burstOf(batch.items)
		all, err := true, error(nil)
		if len(bu.frames) > 0 {
			all, err = tw.tryWriteFrames(bu.frames)
		}
		switch {
		case err != nil:
			// Closing the transport may wait for the client.
			go c.written(batch, bu, err)
			return false
		case !all:
			c.srv.writers.handoffs.Add(1)
			go c.flushRun(tw, batch, bu)
			return false
		}
		c.written(batch, bu, nil)
	}
	return true
}

// turnBursts is how many bursts a connection writes in one turn of a
// writer worker.
const turnBursts = 4

// flushRun writes the rest of a burst that writeTurn began, waiting for
// the socket, then goes on as the connection's writer.
func (c *conn) flushRun(tw burstWriter, batch *itemQueue, bu *burst) {
	if c.written(batch, bu, tw.flushWrites(c.srv.cfg.WriteTimeout)) {
		c.writeRun()
	}
}

// take returns what is queued, for the writer to write, or nil when
// nothing is: the writer then stops (writing is false) and the queue is
// let go. closing says the connection is ending: the writer finishes it
// (finishClosing).
func (c *conn) take() (batch *itemQueue, closing bool) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil, true
	}
	if c.queue.len() == 0 {
		c.writing = false
		// Idle: hold no queue.
		c.queue.release()
		c.spare.release()
		c.queue, c.spare = nil, nil
		c.mu.Unlock()
		return nil, false
	}
	batch = c.queue
	c.queue = c.spare
	c.spare = nil
	room := c.room
	c.mu.Unlock()
	if room != nil {
		select {
		case room <- struct{}{}:
		default:
		}
	}
	return batch, false
}

// finishClosing writes the closing frame and closes the transport; the
// writer ends.
func (c *conn) finishClosing() {
	c.finish()
	c.mu.Lock()
	c.queue, c.spare, c.queuedBytes, c.queuedItems = nil, nil, 0, 0
	c.writeDone = true
	c.mu.Unlock()
	c.ended()
}

// written accounts for a batch once its burst was written (err nil) or
// failed, and lets go of both; false says the write failed and the
// connection ended.
func (c *conn) written(batch *itemQueue, bu *burst, err error) bool {
	if err == nil {
		for _, st := range bu.started {
			c.srv.metrics.Delivered(c.t.Name(), time.Since(st))
		}
	}
	bu.put()
	n, k := 0, len(batch.items)
	for _, it := range batch.items {
		n += it.size()
	}
	clear(batch.items)
	batch.items = batch.items[:0]
	c.mu.Lock()
	c.queuedBytes -= n
	c.queuedItems -= k
	if c.spare == nil {
		c.spare = batch
	} else {
		batch.release()
	}
	c.mu.Unlock()
	if err != nil {
		c.t.Close(wsCloseInternal, "write failed")
		c.mu.Lock()
		c.closing, c.readStop = true, true
		c.queue, c.spare, c.queuedBytes, c.queuedItems = nil, nil, 0, 0
		c.writeDone = true
		c.mu.Unlock()
		c.closeOnce.Do(func() { close(c.stop) })
		c.ended()
		return false
	}
	return true
}

// burstOf makes the burst a batch of queued items holds for the client.
// It keeps, per conversation, the seqs written, so that an event arriving
// both live and in a replay is written once, and it holds a conversation's
// live events while its replay is being read so that none is written out
// of order.
func (c *conn) burstOf(batch []*outItem) *burst {
	bu := bursts.Get().(*burst)
	for _, it := range batch {
		switch it.kind {
		case outFrame:
			bu.add(it)
		case outReplayStart:
			delete(c.draining, it.conv)
			// A resume asks for everything after its seq, even what this
			// connection was sent before: forget those, and hold live
			// events until the replay has been written.
			delete(c.lastSent, it.conv)
			delete(c.covered, it.conv)
			if it.since != nil {
				if c.covered == nil {
					c.covered = map[string]map[string]uint64{}
				}
				c.covered[it.conv] = it.since
			}
			if c.pending == nil {
				c.pending = map[string][]*outItem{}
			}
			if c.pending[it.conv] == nil {
				c.pending[it.conv] = []*outItem{}
			}
		case outLive:
			if c.draining[it.conv] {
				continue
			}
			if p, held := c.pending[it.conv]; held {
				c.pending[it.conv] = append(p, it)
				continue
			}
			c.addLive(bu, it)
		case outReplay:
			for i := range it.replay {
				c.addLive(bu, &it.replay[i])
			}
			if !it.more {
				for _, p := range c.pending[it.conv] {
					c.addLive(bu, p)
				}
			}
			delete(c.pending, it.conv)
			if it.more {
				// The client resumes again for the rest; a live event now
				// would jump over what it has not read yet. Drop them: the
				// next replay reads them from the log.
				if c.draining == nil {
					c.draining = map[string]bool{}
				}
				c.draining[it.conv] = true
			}
			bu.add(it)
		}
	}
	return bu
}

// burst is the frames of one batch (burstOf), pooled: a connection holds
// them only while it writes.
type burst struct {
	frames  []wframe
	started []time.Time
}

var bursts = sync.Pool{New: func() any { return new(burst) }}

func (bu *burst) put() {
	clear(bu.frames)
	if cap(bu.frames) <= 4096 {
		bu.frames, bu.started = bu.frames[:0], bu.started[:0]
		bursts.Put(bu)
	}
}

// itemQueue is a send queue; queues are pooled: an idle connection holds
// none. A nil *itemQueue is an empty one.
type itemQueue struct{ items []*outItem }

var itemQueues = sync.Pool{New: func() any { return new(itemQueue) }}

func (q *itemQueue) push(it *outItem) *itemQueue {
	if q == nil {
		q = itemQueues.Get().(*itemQueue)
	}
	q.items = append(q.items, it)
	return q
}

func (q *itemQueue) len() int {
	if q == nil {
		return 0
	}
	return len(q.items)
}

func (q *itemQueue) all() []*outItem {
	if q == nil {
		return nil
	}
	return q.items
}

func (q *itemQueue) release() {
	if q == nil {
		return
	}
	clear(q.items)
	if cap(q.items) > 4096 {
		return // a rare big burst: do not keep it
	}
	q.items = q.items[:0]
	itemQueues.Put(q)
}

// addLive adds a conversation event unless the event with its seq was
// written to this connection already, or the client had it from another
// node (covered). Events without a seq always go. A seq counts as written
// once it is in the burst: a burst that fails ends the connection.
func (c *conn) addLive(bu *burst, it *outItem) {
	if it.seq == 0 {
		bu.add(it)
		return
	}
	if v := c.covered[it.conv]; v != nil && it.at.OSeq != 0 && it.at.OSeq <= v[it.at.Origin] {
		return
	}
	s := c.lastSent[it.conv]
	if s == nil {
		s = &seqSet{}
		if c.lastSent == nil {
			c.lastSent = map[string]*seqSet{}
		}
		c.lastSent[it.conv] = s
	}
	if s.has(it.seq) {
		return
	}
	s.add(it.seq)
	if !it.quiet {
		bu.add(it)
	}
}

// add adds one frame to the burst.
func (bu *burst) add(it *outItem) {
	bu.frames = append(bu.frames, wframe{op: it.op, data: it.data})
	if !it.start.IsZero() {
		bu.started = append(bu.started, it.start)
	}
}

// finish writes the closing error frame, if any, and closes the transport
// with its code.
func (c *conn) finish() {
	c.mu.Lock()
	e := c.closeErr
	var rest []*outItem
	if e != nil && e.relayed {
		// The serving node's last frames, its error frame among them,
		// were queued before its close arrived: write them before
		// closing.
		for _, it := range c.queue.all() {
			if it.kind == outFrame {
				rest = append(rest, it)
			}
		}
	}
	c.mu.Unlock()
	switch {
	case e == nil:
		c.t.Close(wsCloseNormal, "")
	case e.relayed:
		if len(rest) > 0 {
			frames := make([]wframe, len(rest))
			for i, it := range rest {
				frames[i] = wframe{op: it.op, data: it.data}
			}
			c.t.WriteFrames(frames, c.srv.cfg.WriteTimeout)
		}
		c.t.Close(e.close, e.Code)
	default:
		c.t.WriteFrames([]wframe{{data: encode(wire.Error{Type: wire.TypeError, Ref: c.closeRef, Code: e.Code, Message: e.Message})}}, time.Second)
		c.t.Close(e.close, e.Code)
	}
}
