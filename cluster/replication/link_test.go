package replication

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"parley/internal/eventually"

	"github.com/coder/websocket"
)

// wsConn adapts a WebSocket to Conn, as the node does.
type wsConn struct{ c *websocket.Conn }

func (w wsConn) Read(ctx context.Context) ([]byte, error) {
	_, b, err := w.c.Read(ctx)
	return b, err
}
func (w wsConn) Write(ctx context.Context, b []byte) error {
	return w.c.Write(ctx, websocket.MessageText, b)
}
func (w wsConn) Close() error { return w.c.CloseNow() }

// peer is a node's receiving side on a real WebSocket server.
type peer struct {
	r       *Links
	srv     *httptest.Server
	mu      sync.Mutex
	stored  []Event
	fail    atomic.Bool
	gap     atomic.Bool
	hold    atomic.Pointer[chan struct{}] // while set, storing waits for it to close
	conns   atomic.Int32
	open    map[*websocket.Conn]bool // guarded by mu
	signals []string                 // guarded by mu
}

// drop closes every inbound link, as a restarting peer would.
func (p *peer) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.open {
		c.CloseNow()
	}
}

func newPeer(t *testing.T, id string) *peer {
	p := &peer{open: map[*websocket.Conn]bool{}}
	p.r = NewLinks(LinksConfig{Self: id, Dial: func(context.Context, string) (Conn, error) { return nil, errors.New("unused") },
		OnSignal: func(from string, b []byte) {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.signals = append(p.signals, from+":"+string(b))
		},
		Store: func(_ context.Context, from string, evs []Event) (func() error, error) {
			if p.fail.Load() {
				return nil, errors.New("disk full")
			}
			if h := p.hold.Load(); h != nil {
				<-*h
			}
			if p.gap.Load() {
				return nil, errors.Join(&Gap{Workspace: "w", Conversation: "c", Origin: "n1", Next: 3}, errors.New("other"))
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			p.stored = append(p.stored, evs...)
			return func() error { return nil }, nil
		}})
	ctx, cancel := context.WithCancel(context.Background())
	go p.r.Run(ctx)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		c.SetReadLimit(maxFrame)
		p.conns.Add(1)
		p.mu.Lock()
		p.open[c] = true
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			delete(p.open, c)
			p.mu.Unlock()
		}()
		p.r.Serve(r.Context(), r.URL.Query().Get("from"), wsConn{c})
	}))
	t.Cleanup(func() { p.srv.Close(); cancel() })
	return p
}

func (p *peer) events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.stored...)
}

func sender(t *testing.T, peers map[string]*peer) *Links {
	r := NewLinks(LinksConfig{Self: "n1", AckTimeout: 2 * time.Second,
		Store: func(context.Context, string, []Event) (func() error, error) { return nil, nil },
		Dial: func(ctx context.Context, id string) (Conn, error) {
			p := peers[id]
			if p == nil {
				return nil, errors.New("no such peer")
			}
			c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(p.srv.URL, "http")+"/?from=n1", nil)
			if err != nil {
				return nil, err
			}
			c.SetReadLimit(maxFrame)
			return wsConn{c}, nil
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually.Holds(t, 10*time.Second, "the replicator runs", func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.ctx == nil {
			return errors.New("not yet")
		}
		return nil
	})
	return r
}

func ev(i int) Event {
	return Event{Workspace: "w", Conversation: "c", Origin: "n1", OSeq: uint64(i), Payload: []byte(fmt.Sprintf(`{"i":%d}`, i))}
}

func TestSendIsStoredInOrderBeforeTheAck(t *testing.T) {
	t.Parallel()
	p := newPeer(t, "n2")
	r := sender(t, map[string]*peer{"n2": p})
	ctx := context.Background()
	for i := 1; i <= 50; i++ {
		if err := r.Send(ctx, "n2", []Event{ev(i)}); err != nil {
			t.Fatal(err)
		}
		if got := p.events(); len(got) != i || got[i-1].OSeq != uint64(i) {
			t.Fatalf("after ack %d the peer holds %d events", i, len(got))
		}
	}
	// Pushes and concurrent sends arrive once each, in queue order.
	var wg sync.WaitGroup
	for i := 51; i <= 100; i++ {
		if i%2 == 0 {
			r.Push("n2", []Event{ev(i)})
			continue
		}
		wg.Go(func() {
			if err := r.Send(ctx, "n2", []Event{ev(i)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	eventually.Poll(5*time.Second, func() error { // the check below says which are missing
		if n := len(p.events()); n < 100 {
			return fmt.Errorf("%d of 100 events stored", n)
		}
		return nil
	})
	seen := map[uint64]int{}
	for _, e := range p.events() {
		seen[e.OSeq]++
	}
	for i := 1; i <= 100; i++ {
		if seen[uint64(i)] != 1 {
			t.Fatalf("event %d stored %d times", i, seen[uint64(i)])
		}
	}
	if p.conns.Load() != 1 {
		t.Errorf("%d connections for one link", p.conns.Load())
	}
}

func TestSendFailsWhenThePeerCannot(t *testing.T) {
	t.Parallel()
	p := newPeer(t, "n2")
	r := sender(t, map[string]*peer{"n2": p})
	ctx := context.Background()

	start := time.Now()
	if err := r.Send(ctx, "n9", []Event{ev(1)}); !errors.Is(err, ErrLinkDown) {
		t.Fatalf("send to an unknown peer: %v", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("an unreachable peer took %s to fail", time.Since(start))
	}
	p.fail.Store(true)
	if err := r.Send(ctx, "n2", []Event{ev(1)}); !errors.Is(err, ErrLinkDown) || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("send to a peer that cannot store: %v", err)
	}
	p.fail.Store(false)
	// A peer missing earlier events says which: the sender can send them.
	p.gap.Store(true)
	err := r.Send(ctx, "n2", []Event{ev(5)})
	var gaps *GapsError
	if !errors.As(err, &gaps) || len(gaps.Gaps) != 1 || gaps.Gaps[0] != (Gap{Workspace: "w", Conversation: "c", Origin: "n1", Next: 3}) {
		t.Fatalf("send to a peer with a gap: %v", err)
	}
	p.gap.Store(false)
	done, queued := r.Enqueue(nil, "n2", []Event{ev(1)})
	if !queued || <-done != nil {
		t.Fatal("enqueue to a healthy peer failed")
	}
	// The peer drops the link: the next sends reconnect.
	p.drop()
	var ok bool
	for i := 2; i < 50 && !ok; i++ {
		ok = r.Send(ctx, "n2", []Event{ev(i)}) == nil
		time.Sleep(20 * time.Millisecond)
	}
	if !ok || p.conns.Load() < 2 {
		t.Fatalf("no reconnect after the link dropped (%d connections)", p.conns.Load())
	}
}

func TestServeClosesALinkThatSendsGarbage(t *testing.T) {
	t.Parallel()
	r := NewLinks(LinksConfig{Self: "n2", Store: func(context.Context, string, []Event) (func() error, error) {
		t.Error("garbage stored")
		return nil, nil
	}})
	for _, b := range []string{`{`, `{"t":"ack"}`, `{"t":"events","ev":[]}`, `{"t":"events","ev":[{"ws":"w","conv":"c","origin":"N1","oseq":1,"p":"eA=="}]}`,
		`{"t":"events","ev":[{"ws":"w","conv":"c","origin":"n1","oseq":0,"p":"eA=="}]}`, `{"t":"hello"}`} {
		c := &scripted{in: [][]byte{[]byte(b)}}
		if err := r.Serve(context.Background(), "n1", c); err == nil {
			t.Errorf("%s: served without error", b)
		}
	}
}

// scripted is a Conn that reads a fixed script.
type scripted struct {
	in  [][]byte
	out [][]byte
}

func (s *scripted) Read(context.Context) ([]byte, error) {
	if len(s.in) == 0 {
		return nil, errors.New("eof")
	}
	b := s.in[0]
	s.in = s.in[1:]
	return b, nil
}
func (s *scripted) Write(_ context.Context, b []byte) error { s.out = append(s.out, b); return nil }
func (s *scripted) Close() error                            { return nil }

func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{`{"t":"ack","id":3}`, `{"t":"events","id":1,"ev":[{"ws":"w","conv":"c","origin":"n1","oseq":1,"p":"eA=="}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeFrame(b)
		if err != nil {
			return
		}
		again, err := encodeFrame(fr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeFrame(again); err != nil {
			t.Fatalf("a frame that decoded does not decode re-encoded: %v", err)
		}
	})
}

func TestSignalsReachThePeerInOrder(t *testing.T) {
	t.Parallel()
	p := newPeer(t, "n2")
	r := sender(t, map[string]*peer{"n2": p})
	for i := range 20 {
		if !r.Signal("n2", []byte(fmt.Sprintf(`{"i":%d}`, i))) {
			t.Fatal("signal dropped")
		}
	}
	// An event after the signals: once it is stored, the signals before it
	// on the same link have been handled.
	if err := r.Send(context.Background(), "n2", []Event{ev(1)}); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.signals) != 20 || p.signals[0] != `n1:{"i":0}` || p.signals[19] != `n1:{"i":19}` {
		t.Fatalf("signals %v", p.signals)
	}
}

func TestDelayedKeepsOrderAndPipelines(t *testing.T) {
	t.Parallel()
	c := &scripted{}
	var mu sync.Mutex
	d := Delayed(&lockedConn{c: c, mu: &mu}, time.Second)
	// Twenty writes return at once, each due a second later, not twenty.
	for i := range 20 {
		if err := d.Write(context.Background(), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	early := len(c.out)
	mu.Unlock()
	if early != 0 {
		t.Fatalf("%d messages left before their delay", early)
	}
	eventually.Poll(10*time.Second, func() error { // the check below says what was written
		mu.Lock()
		defer mu.Unlock()
		if n := len(c.out); n != 20 {
			return fmt.Errorf("%d of 20 written", n)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(c.out) != 20 || string(c.out[0]) != "0" || string(c.out[19]) != "19" {
		t.Fatalf("wrote %q", c.out)
	}
	d.Close()
}

type lockedConn struct {
	c  *scripted
	mu *sync.Mutex
}

func (l *lockedConn) Read(ctx context.Context) ([]byte, error) { return l.c.Read(ctx) }
func (l *lockedConn) Write(ctx context.Context, b []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c.Write(ctx, b)
}
func (l *lockedConn) Close() error { return nil }
