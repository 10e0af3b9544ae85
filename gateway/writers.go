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
// connection given something to write while its writer is idle is handed
// to one of them (round robin), which writes its queue without waiting
// (conn.writeTurn). A fan-out to thousands of connections is then a few
// goroutines writing in turn, each on a stack already grown, rather than a
// goroutine started, grown and scheduled per connection; and it is spread
// over the Ps. Started on first use, stopped by Shutdown (close); a
// connection handed over after that gets a goroutine of its own, as one
// whose transport cannot be tried does.
type writers struct {
	mu     sync.Mutex
	ws     []*writerWorker
	closed bool
	next   atomic.Uint64
	wg     sync.WaitGroup
	// handoffs counts the bursts the socket did not take whole, finished
	// by a goroutine of their connection (conn.flushRun).
	handoffs atomic.Uint64
	// size is how many workers start. Zero: GOMAXPROCS.
	size int
}

// writerWorker is one worker: the connections handed to it, in order.
type writerWorker struct {
	mu   sync.Mutex
	q    []*conn
	stop bool
	wake chan struct{} // 1: q has work, or stop was set
}

// start makes c's writer run: c.writing was set by the caller, which owns
// the writer until it hands it over here.
func (g *writers) start(c *conn) {
	tw, ok := c.t.(burstWriter)
	if !ok || !tw.canTryWrite() {
		go c.writer()
		return
	}
	w := g.pick()
	if w == nil || !w.push(c) {
		go c.writer()
	}
}

func (g *writers) pick() *writerWorker {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	if g.ws == nil {
		n := g.size
		if n == 0 {
			n = runtime.GOMAXPROCS(0)
		}
		for range n {
			w := &writerWorker{wake: make(chan struct{}, 1)}
			g.ws = append(g.ws, w)
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				w.loop()
			}()
		}
	}
	ws := g.ws
	g.mu.Unlock()
	return ws[g.next.Add(1)%uint64(len(ws))]
}

// close stops the workers once they have had their turn at every
// connection handed to them, and waits for them.
func (g *writers) close() {
	g.mu.Lock()
	g.closed = true
	ws := g.ws
	g.mu.Unlock()
	for _, w := range ws {
		w.mu.Lock()
		w.stop = true
		w.mu.Unlock()
		w.signal()
	}
	g.wg.Wait()
}

// push queues c for a turn; false once the worker is stopping.
func (w *writerWorker) push(c *conn) bool {
	w.mu.Lock()
	if w.stop {
		w.mu.Unlock()
		return false
	}
	w.q = append(w.q, c)
	first := len(w.q) == 1
	w.mu.Unlock()
	if first {
		w.signal()
	}
	return true
}

func (w *writerWorker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *writerWorker) loop() {
	var spare []*conn
	for range w.wake {
		for {
			w.mu.Lock()
			q, stop := w.q, w.stop
			w.q = spare[:0]
			w.mu.Unlock()
			if len(q) == 0 {
				if stop {
					return
				}
				spare = q
				break
			}
			for i, c := range q {
				if c.writeTurn(c.t.(burstWriter)) && !w.push(c) {
					go c.writer()
				}
				q[i] = nil
			}
			spare = q
		}
	}
}
