package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"parley/tracing"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
)

// Conn is a message-oriented connection between two nodes (a WebSocket on
// the internal API, authenticated by the node).
type Conn interface {
	Read(ctx context.Context) ([]byte, error)
	Write(ctx context.Context, b []byte) error
	Close() error
}

// LinksConfig configures NewLinks. Self, Dial and Store are required.
type LinksConfig struct {
	// Self is this node's ID.
	Self string
	// Dial opens a link to a peer by node ID.
	Dial func(ctx context.Context, peer string) (Conn, error)
	// Store applies events a peer sent, in order, and returns once they
	// are applied, with what reports their durability (nil: already
	// durable); the peer's ack waits for that, while the next frames are
	// read and applied. ctx ends with the inbound link.
	Store func(ctx context.Context, from string, evs []Event) (durable func() error, err error)
	// Logger. Zero: slog.Default().
	Logger *slog.Logger
	// QueueLen bounds the frames waiting on one link. Zero: 1024.
	QueueLen int
	// AckTimeout bounds how long Send waits for a peer's ack. Zero: 5s.
	AckTimeout time.Duration
	// OnSignal receives a peer's signals (see Signal). Zero: dropped.
	OnSignal func(from string, b []byte)
	// Tracer records a span per traced events frame, sent (until the
	// peer's ack) and received (until durable and acknowledged). Zero:
	// off.
	Tracer *tracing.Tracer
}

// ErrLinkDown is what Send returns when the peer cannot be reached or the
// link broke before the peer acknowledged: the events may or may not be
// stored there (anti-entropy settles it).
var ErrLinkDown = errors.New("replication link down")

// Links keeps one outgoing link per peer, opened on first use, and
// serves the links peers open to it.
type Links struct {
	cfg LinksConfig
	log *slog.Logger

	mu     sync.Mutex
	ctx    context.Context // Run's; links live under it
	links  map[string]*link
	wg     sync.WaitGroup
	closed bool
}

// NewLinks returns Links; Run starts them.
func NewLinks(cfg LinksConfig) *Links {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 1024
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 5 * time.Second
	}
	return &Links{cfg: cfg, log: cfg.Logger.With("component", "replication"), links: map[string]*link{}}
}

// Run serves until ctx ends, then closes every link and waits for them.
func (r *Links) Run(ctx context.Context) error {
	r.mu.Lock()
	r.ctx = ctx
	r.mu.Unlock()
	<-ctx.Done()
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// Send queues events to a peer and waits until the peer has stored them.
func (r *Links) Send(ctx context.Context, peer string, evs []Event) error {
	l, err := r.link(peer)
	if err != nil {
		return err
	}
	out := &outFrame{f: frame{Type: frameEvents, Events: evs}, done: make(chan error, 1)}
	if !l.enqueue(out) {
		return fmt.Errorf("%w: %s: queue full", ErrLinkDown, peer)
	}
	t := time.NewTimer(r.cfg.AckTimeout)
	defer t.Stop()
	select {
	case err := <-out.done:
		return err
	case <-t.C:
		return fmt.Errorf("%w: %s: no ack in %s", ErrLinkDown, peer, r.cfg.AckTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Enqueue queues events to a peer at once, in the order of the calls, and
// returns where the peer's answer will come (nil once stored; a
// *GapsError; or ErrLinkDown), or false if they could not be queued.
// parent is the context of the span they are sent under (their Event's
// Trace), nil when not traced: the frame's span, a child of it, lasts
// until the peer's answer, and the peer's span continues its trace.
func (r *Links) Enqueue(parent context.Context, peer string, evs []Event) (<-chan error, bool) {
	span, tp := r.cfg.Tracer.Send(parent, "parley.replicate")
	if span.IsRecording() {
		span.SetAttributes(tracing.Peer(peer), tracing.Events(len(evs)))
	}
	l, err := r.link(peer)
	if err != nil {
		tracing.Fail(span, "link down")
		span.End()
		return nil, false
	}
	out := &outFrame{f: frame{Type: frameEvents, Events: evs, Trace: tp}, done: make(chan error, 1), span: span}
	if !l.enqueue(out) {
		tracing.Fail(span, "queue full")
		span.End()
		return nil, false
	}
	return out.done, true
}

// Signal queues an ephemeral signal to a peer (presence, typing): no ack;
// false if it was dropped.
func (r *Links) Signal(peer string, b []byte) bool {
	l, err := r.link(peer)
	if err != nil {
		return false
	}
	return l.enqueue(&outFrame{f: frame{Type: frameSignal, Signal: b}})
}

// Push queues events to a peer without waiting; false if they were dropped
// (queue full, or the link is down), which anti-entropy repairs.
func (r *Links) Push(peer string, evs []Event) bool {
	l, err := r.link(peer)
	if err != nil {
		return false
	}
	return l.enqueue(&outFrame{f: frame{Type: frameEvents, Events: evs}})
}

func (r *Links) link(peer string) (*link, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx == nil || r.closed {
		return nil, fmt.Errorf("%w: replicator not running", ErrLinkDown)
	}
	if l := r.links[peer]; l != nil {
		return l, nil
	}
	l := &link{r: r, peer: peer, queue: make(chan *outFrame, r.cfg.QueueLen), outstanding: map[*outFrame]struct{}{}}
	r.links[peer] = l
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		l.run(r.ctx)
	}()
	return l, nil
}

// Serve reads a link a peer opened to this node until it ends: each events
// frame is applied, in order, and acknowledged when asked once durable, by
// a writer of acks beside the reader, under one errgroup.
func (r *Links) Serve(ctx context.Context, from string, c Conn) error {
	defer c.Close()
	acks := make(chan frame, 1024)
	g, gctx := errgroup.WithContext(ctx)
	var pending sync.WaitGroup
	g.Go(func() error {
		defer c.Close()
		for {
			select {
			case a := <-acks:
				b, _ := encodeFrame(a)
				if err := c.Write(gctx, b); err != nil {
					return err
				}
			case <-gctx.Done():
				return nil
			}
		}
	})
	g.Go(func() error {
		defer pending.Wait() // no ack goroutine outlives the link
		for {
			b, err := c.Read(gctx)
			if err != nil {
				return err
			}
			f, err := decodeFrame(b)
			if err != nil {
				r.log.Warn("replication: bad frame from peer, closing its link", "peer", from, "err", err)
				return err
			}
			if f.Type == frameSignal {
				if r.cfg.OnSignal != nil {
					r.cfg.OnSignal(from, f.Signal)
				}
				continue
			}
			if f.Type != frameEvents {
				return fmt.Errorf("%w: %s on an inbound link", ErrBadFrame, f.Type)
			}
			sctx, span := r.cfg.Tracer.Receive(gctx, f.Trace, "parley.replication.receive")
			if span.IsRecording() {
				span.SetAttributes(tracing.Peer(from), tracing.Events(len(f.Events)), tracing.Bytes(len(b)))
			}
			durable, serr := r.cfg.Store(sctx, from, f.Events)
			gaps := gapsOf(serr)
			if serr != nil && len(gaps) == 0 {
				r.log.Warn("replication: storing a peer's events failed", "peer", from, "events", len(f.Events), "err", serr)
			}
			if serr != nil {
				tracing.Fail(span, "not stored")
			}
			if f.ID == 0 {
				span.End()
				continue
			}
			ack := frame{Type: frameAck, ID: f.ID, Gaps: gaps}
			if serr != nil {
				ack.Error = serr.Error()
			}
			if serr != nil || durable == nil {
				span.End()
				select {
				case acks <- ack:
				case <-gctx.Done():
					return nil
				}
				continue
			}
			pending.Add(1)
			go func() {
				defer pending.Done()
				defer span.End()
				if err := durable(); err != nil {
					ack.Error = err.Error()
					tracing.Fail(span, "not durable")
				}
				select {
				case acks <- ack:
				case <-gctx.Done():
				}
			}()
		}
	})
	err := g.Wait()
	if errors.Is(err, ErrBadFrame) {
		return err
	}
	return nil
}

// gapsOf collects the gaps an error from Store carries (errors.Join of
// several, or one).
func gapsOf(err error) []Gap {
	if err == nil {
		return nil
	}
	var out []Gap
	var g *Gap
	if errors.As(err, &g) {
		out = append(out, *g)
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		out = out[:0]
		for _, e := range j.Unwrap() {
			out = append(out, gapsOf(e)...)
		}
	}
	return out
}

// GapsError is what Send and Enqueue report when the peer stored nothing
// of some events because it lacks earlier ones of their origin.
type GapsError struct{ Gaps []Gap }

func (e *GapsError) Error() string {
	return fmt.Sprintf("%d gaps: first %s", len(e.Gaps), e.Gaps[0].Error())
}

// outFrame is a frame to send; done, when set, receives the ack's outcome.
// at is when it was queued.
type outFrame struct {
	f    frame
	done chan error
	at   time.Time
	// span is the frame's span, ended with it (end); nil when untraced.
	span trace.Span
}

// link is the outgoing half of a pair of nodes: events go out in order,
// acks come back.
type link struct {
	r     *Links
	peer  string
	queue chan *outFrame

	// outstanding holds the frames queued and not yet ended: not yet
	// written, or written and waiting for the peer's ack (end). Guarded by
	// mu, which enqueue holds across the send to queue so that a frame is
	// in outstanding before the writer can end it.
	mu          sync.Mutex
	outstanding map[*outFrame]struct{}
}

// enqueue queues o at once; false when the queue is full.
func (l *link) enqueue(o *outFrame) bool {
	o.at = time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case l.queue <- o:
		l.outstanding[o] = struct{}{}
		return true
	default:
		return false
	}
}

// end takes o out of the backlog and gives its waiter, if any, the
// outcome.
func (l *link) end(o *outFrame, err error) {
	if o == nil {
		return
	}
	l.mu.Lock()
	delete(l.outstanding, o)
	l.mu.Unlock()
	if o.span != nil {
		if err != nil {
			tracing.Fail(o.span, "not stored")
		}
		o.span.End()
	}
	if o.done != nil {
		o.done <- err
	}
}

// backlog is how many frames are outstanding and how long the oldest of
// them has been (zero when none).
func (l *link) backlog(now time.Time) (n int, oldest time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for o := range l.outstanding {
		oldest = max(oldest, now.Sub(o.at))
	}
	return len(l.outstanding), oldest
}

// run keeps the link connected while there is something to send, until
// ctx ends.
func (l *link) run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		var first *outFrame
		select {
		case first = <-l.queue:
		case <-ctx.Done():
			return
		}
		c, err := l.r.cfg.Dial(ctx, l.peer)
		if err != nil {
			// Fail what waits rather than let it time out: the caller
			// decides what a missing replica means for its ack.
			l.end(first, fmt.Errorf("%w: %s: %v", ErrLinkDown, l.peer, err))
			l.drain(fmt.Errorf("%w: %s: %v", ErrLinkDown, l.peer, err))
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		err = l.serve(ctx, c, first)
		c.Close()
		if err != nil && ctx.Err() == nil {
			l.r.log.Info("replication: link to peer broke", "peer", l.peer, "err", err)
		}
	}
}

// drain fails every frame queued now.
func (l *link) drain(err error) {
	for {
		select {
		case o := <-l.queue:
			l.end(o, err)
		default:
			return
		}
	}
}

// serve runs one connection: a writer that sends queued frames and a reader
// that matches acks to their waiters, under one errgroup; when one ends,
// both do, and every frame sent but not acknowledged fails.
func (l *link) serve(ctx context.Context, c Conn, first *outFrame) error {
	var mu sync.Mutex
	pending := map[uint64]*outFrame{}
	var next uint64
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer c.Close() // unblocks the reader
		o := first
		for {
			if o == nil {
				select {
				case o = <-l.queue:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			if o.done != nil {
				mu.Lock()
				next++
				o.f.ID = next
				pending[next] = o
				mu.Unlock()
			}
			b, err := encodeFrame(o.f)
			if err == nil {
				err = c.Write(gctx, b)
			}
			if o.done == nil { // nothing waits for an ack: written or lost
				l.end(o, nil)
			}
			if err != nil {
				return err // o, if it waits, is pending: failed below
			}
			o = nil
		}
	})
	g.Go(func() error {
		for {
			b, err := c.Read(gctx)
			if err != nil {
				return err
			}
			f, err := decodeFrame(b)
			if err != nil || f.Type != frameAck {
				return fmt.Errorf("%w: expected an ack: %v", ErrBadFrame, err)
			}
			mu.Lock()
			o := pending[f.ID]
			delete(pending, f.ID)
			mu.Unlock()
			if o == nil {
				continue
			}
			switch {
			case len(f.Gaps) > 0:
				l.end(o, &GapsError{Gaps: f.Gaps})
			case f.Error != "":
				l.end(o, fmt.Errorf("%w: %s could not store: %s", ErrLinkDown, l.peer, f.Error))
			default:
				l.end(o, nil)
			}
		}
	})
	err := g.Wait()
	mu.Lock()
	for _, o := range pending {
		l.end(o, fmt.Errorf("%w: %s: %v", ErrLinkDown, l.peer, err))
	}
	mu.Unlock()
	return err
}
