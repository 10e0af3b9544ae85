package gateway

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// burstWriter is a transport whose bursts can be written without waiting
// (ws.go: a WebSocket on plain TCP). A writer worker writes them; only a
// burst the socket does not take whole needs a goroutine of its own.
type burstWriter interface {
	// canTryWrite says whether this connection's writes can be tried.
	canTryWrite() bool
	// tryWriteFrames writes frames as far as the socket takes them at
	// once; when not all (and no error), it keeps the rest, and
	// flushWrites must write it before anything else is written.
	tryWriteFrames(frames []wframe) (all bool, err error)
	// flushWrites writes what tryWriteFrames kept, waiting for the socket
	// (and failing, like WriteFrames, when no byte moved for timeout).
	flushWrites(timeout time.Duration) error
}

// writers are a server's writer workers, one per P (GOMAXPROCS): a
// connection given something to write while its writer is idle joins
// their one line (start), and whichever worker is free takes the next few
// connections from its head and writes their queues without waiting
// (conn.writeTurn). A fan-out to thousands of connections is then a few
// goroutines writing in turn, each on a stack already grown, rather than a
// goroutine started, grown and scheduled per connection; and it is spread
// over the Ps as they come free. The line is shared rather than dealt out
// to the workers in advance: a worker whose thread the operating system
// stops for a while (the machine's other processes want the cores too)
// holds up only the few connections it took, and the others write the
// rest of the fan-out meanwhile (TestStalledWorkerHoldsUpNobodyElse).
// Started on first use, stopped by Shutdown (close); a connection handed
// over after that gets a goroutine of its own, as one whose transport
// cannot be tried does.
type writers struct {
	mu sync.Mutex
	// q[head:] is the line of connections waiting for a turn.
	q    []*conn
	head int
	// idle are the workers waiting for the line to have someone.
	idle    []*writerWorker
	started bool
	closed  bool
	wg      sync.WaitGroup
	// handoffs counts the bursts the socket did not take whole, finished
	// by a goroutine of their connection (conn.flushRun).
	handoffs atomic.Uint64
	// pushed counts the connections put in the line (guarded by mu).
	pushed uint64
	// size is how many workers start. Zero: GOMAXPROCS.
	size int
}

// writerWorker is one worker; wake is signalled when it is taken off the
// idle list, for a connection in the line or because the workers stop.
type writerWorker struct {
	wake chan struct{}
}

// takeMax is how many connections a worker takes from the line at once:
// few, so that a worker stopped in the middle holds up few, and the
// others share the rest.
const takeMax = 4

// start makes c's writer run: c.writing was set by the caller, which owns
// the writer until it hands it over here.
func (g *writers) start(c *conn) {
	tw, ok := c.t.(burstWriter)
	if !ok || !tw.canTryWrite() || !g.push(c) {
		go c.writer()
	}
}

// push puts c at the end of the line, waking an idle worker if there is
// one; false once the workers are stopping.
func (g *writers) push(c *conn) bool {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	if !g.started {
		g.startLocked()
	}
	g.q = append(g.q, c)
	g.pushed++
	var w *writerWorker
	if n := len(g.idle); n > 0 {
		w = g.idle[n-1]
		g.idle[n-1] = nil
		g.idle = g.idle[:n-1]
	}
	g.mu.Unlock()
	if w != nil {
		w.wake <- struct{}{}
	}
	return true
}

// startLocked starts the workers; each begins idle. Caller holds g.mu.
func (g *writers) startLocked() {
	g.started = true
	n := g.size
	if n == 0 {
		n = runtime.GOMAXPROCS(0)
	}
	for range n {
		w := &writerWorker{wake: make(chan struct{}, 1)}
		g.idle = append(g.idle, w)
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			w.loop(g)
		}()
	}
}

// take waits for connections in the line and takes up to takeMax of them
// into into, in order; it returns nothing once the workers stop and the
// line is empty.
func (g *writers) take(w *writerWorker, into []*conn) []*conn {
	g.mu.Lock()
	for g.head == len(g.q) {
		if g.closed {
			g.mu.Unlock()
			return into[:0]
		}
		g.idle = append(g.idle, w)
		g.mu.Unlock()
		<-w.wake
		g.mu.Lock()
	}
	n := min(len(g.q)-g.head, takeMax)
	into = append(into[:0], g.q[g.head:g.head+n]...)
	clear(g.q[g.head : g.head+n])
	g.head += n
	switch {
	case g.head == len(g.q):
		g.q, g.head = g.q[:0], 0
	case g.head >= 1024 && g.head > len(g.q)/2:
		// A line that never empties: move it to the front.
		k := copy(g.q, g.q[g.head:])
		clear(g.q[k:])
		g.q, g.head = g.q[:k], 0
	}
	g.mu.Unlock()
	return into
}

// close stops the workers once they have had their turn at every
// connection in the line, and waits for them.
func (g *writers) close() {
	g.mu.Lock()
	g.closed = true
	idle := g.idle
	g.idle = nil
	g.mu.Unlock()
	for _, w := range idle {
		w.wake <- struct{}{}
	}
	g.wg.Wait()
}

func (w *writerWorker) loop(g *writers) {
	var turn []*conn
	for {
		turn = g.take(w, turn)
		if len(turn) == 0 {
			return
		}
		for i, c := range turn {
			if c.writeTurn(c.t.(burstWriter)) && !g.push(c) {
				go c.writer()
			}
			turn[i] = nil
		}
	}
}
