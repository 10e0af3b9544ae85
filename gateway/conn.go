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
	Read(ctx context.Context) ([]byte, error)
	Write(ctx context.Context, frame []byte) error
	Close(code int, reason string) error
	Name() string
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

// conn is one client connection: a reader loop and a writer goroutine.
type conn struct {
	srv     *Server
	t       transport
	ip      string
	out     chan *outItem
	limiter *rate.Limiter
	resumes *rate.Limiter // resume frames' own limit (Config.ResumeRate)
	// room is signalled by the writer each time it takes an item off out:
	// a resume waits on it while out is more than half full (waitRoom).
	room chan struct{}

	id     identity // set once by hello, before the conn joins the hub
	authed atomic.Bool
	// relay is set when hello hands the connection to another node (see
	// relay.go); relaying says so to other goroutines. viaRelay marks a
	// connection another node relays here.
	relay    Upstream
	relaying atomic.Bool
	viaRelay bool
	convs    map[string]bool // conversations this connection may touch; reader only
	// counted holds the conversations whose first message this connection
	// has sent or found already there (firstMessage); under countMu.
	countMu sync.Mutex
	counted map[string]bool

	lastSeen atomic.Int64 // unix ms of the last frame read
	leaseAt  int64        // unix ms of the last presence renewal; reader only
	leaseID  string

	stop      chan struct{} // closed by fail: the writer finishes
	closeOnce sync.Once
	closeErr  *wireError // why the server ends it; read by the writer after cancel
	closeRef  string
	ops       chan struct{}
	opsWG     sync.WaitGroup
}

// send queues an item without blocking. A client that lets its queue fill is
// too slow to serve live: it is cut off and resumes after reconnecting,
// rather than holding memory or blocking the fan-out to everybody else.
// waitRoom holds a resume until the send queue is at most half full, so
// that a client resuming many conversations at once neither fills it (and
// is cut off as slow) nor leaves no room for live events. It reports false
// when the connection ends meanwhile.
func (c *conn) waitRoom() bool {
	for len(c.out) > cap(c.out)/2 {
		select {
		case <-c.room:
		case <-c.stop:
			return false
		}
	}
	return true
}

func (c *conn) send(it *outItem) {
	select {
	case c.out <- it:
	default:
		c.fail(fatalf(wire.CodeSlowConsumer, wire.CloseSlowConsumer, "send queue full: reconnect and resume"))
	}
}

// fail ends the connection; the writer sends e (if any) and closes with its code.
func (c *conn) fail(e *wireError) { c.failWithRef("", e) }

// reply queues a direct answer.
func (c *conn) reply(v any) { c.send(&outItem{kind: outFrame, data: encode(v)}) }

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
		c.closeErr = e
		c.closeRef = ref
		close(c.stop)
	})
}

// writeLoop is the only goroutine writing to the transport. It keeps, per
// conversation, the seqs written, so that an event arriving both live and in
// a replay is written once, and it holds a conversation's live events while
// its replay is being read so that none is written out of order.
func (c *conn) writeLoop(ctx context.Context) error {
	lastSent := map[string]*seqSet{}
	// covered holds, per conversation resumed by vector, the events the
	// client had from another node: a live event it already has is not
	// written again.
	covered := map[string]map[string]uint64{}
	pending := map[string][]*outItem{}
	draining := map[string]bool{}
	for {
		select {
		case <-c.stop:
			return c.finish()
		case it := <-c.out:
			select {
			case c.room <- struct{}{}:
			default:
			}
			var err error
			switch it.kind {
			case outFrame:
				err = c.write(ctx, it)
			case outReplayStart:
				delete(draining, it.conv)
				// A resume asks for everything after its seq, even what this
				// connection was sent before: forget those, and hold live
				// events until the replay has been written.
				delete(lastSent, it.conv)
				delete(covered, it.conv)
				if it.since != nil {
					covered[it.conv] = it.since
				}
				if pending[it.conv] == nil {
					pending[it.conv] = []*outItem{}
				}
			case outLive:
				if draining[it.conv] {
					continue
				}
				if p, held := pending[it.conv]; held {
					pending[it.conv] = append(p, it)
					continue
				}
				err = c.writeLive(ctx, it, lastSent, covered)
			case outReplay:
				for i := range it.replay {
					if err = c.writeLive(ctx, &it.replay[i], lastSent, covered); err != nil {
						break
					}
				}
				if err == nil && !it.more {
					for _, p := range pending[it.conv] {
						if err = c.writeLive(ctx, p, lastSent, covered); err != nil {
							break
						}
					}
				}
				delete(pending, it.conv)
				if it.more {
					// The client resumes again for the rest; a live event now
					// would jump over what it has not read yet. Drop them: the
					// next replay reads them from the log.
					draining[it.conv] = true
				}
				if err == nil {
					err = c.write(ctx, it)
				}
			}
			if err != nil {
				c.t.Close(1011, "write failed")
				return err
			}
		}
	}
}

// writeLive writes a conversation event unless the event with its seq was
// written to this connection already, or the client had it from another
// node (covered). Events without a seq always go.
func (c *conn) writeLive(ctx context.Context, it *outItem, sent map[string]*seqSet, covered map[string]map[string]uint64) error {
	if it.seq == 0 {
		return c.write(ctx, it)
	}
	if v := covered[it.conv]; v != nil && it.at.OSeq != 0 && it.at.OSeq <= v[it.at.Origin] {
		return nil
	}
	s := sent[it.conv]
	if s == nil {
		s = &seqSet{}
		sent[it.conv] = s
	}
	if s.has(it.seq) {
		return nil
	}
	if it.quiet {
		s.add(it.seq)
		return nil
	}
	if err := c.write(ctx, it); err != nil {
		return err
	}
	s.add(it.seq)
	return nil
}

// write writes one frame. Its context is not the connection's: cancelling a
// write makes the library drop the connection, and the writer still has a
// closing frame to send after fail.
func (c *conn) write(_ context.Context, it *outItem) error {
	wctx, cancel := context.WithTimeout(context.Background(), c.srv.cfg.WriteTimeout)
	defer cancel()
	if err := c.t.Write(wctx, it.data); err != nil {
		return err
	}
	if !it.start.IsZero() {
		c.srv.metrics.Delivered(c.t.Name(), time.Since(it.start))
	}
	return nil
}

// finish writes the closing error frame, if any, and closes the transport
// with its code.
func (c *conn) finish() error {
	e := c.closeErr
	if e == nil {
		c.t.Close(1000, "")
		return nil
	}
	if e.relayed {
		// The serving node's last frames, its error frame among them,
		// were queued before its close arrived, and the writer may have
		// picked stop first: write them before closing.
		for {
			select {
			case it := <-c.out:
				if it.kind == outFrame && c.write(context.Background(), it) != nil {
					c.t.Close(e.close, e.Code)
					return nil
				}
				continue
			default:
			}
			break
		}
		c.t.Close(e.close, e.Code)
		return nil
	}
	wctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c.t.Write(wctx, encode(wire.Error{Type: wire.TypeError, Ref: c.closeRef, Code: e.Code, Message: e.Message}))
	c.t.Close(e.close, e.Code)
	return nil
}
