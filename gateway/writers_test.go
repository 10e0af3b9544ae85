package gateway

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"parley/internal/eventually"
)

// TestWritesInOrderPastAFullSocket: frames queued faster than the client
// reads them, so that a writer worker's writev finds the socket full in
// the middle of a burst and hands the rest to a goroutine of the
// connection while more frames are queued, and later turns of the workers
// write again once it drained, reach the client whole, once each and in
// the order they were queued.
func TestWritesInOrderPastAFullSocket(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.SendQueueBytes = 1 << 30 })
	cl, c := rawAgent(t, e, e.url)
	const n = 6000
	prefix := []byte(`{"type":"typing","n":`)
	frame := func(i int) []byte {
		return []byte(fmt.Sprintf(`%s%d,"pad":"%s"}`, prefix, i, strings.Repeat("x", i*7919%12000)))
	}
	read := make(chan error, 1)
	start := make(chan struct{})
	go func() {
		<-start
		cl.nc.SetReadDeadline(time.Now().Add(60 * time.Second))
		for want := 0; want < n; {
			op, err := cl.next()
			if err != nil {
				read <- fmt.Errorf("after %d frames: %w", want, err)
				return
			}
			b := cl.last
			if op != wsOpText || !bytes.HasPrefix(b, prefix) {
				continue
			}
			end := bytes.IndexByte(b[len(prefix):], ',')
			got, err := strconv.Atoi(string(b[len(prefix) : len(prefix)+max(end, 0)]))
			if err != nil || got != want || !bytes.Equal(b, frame(got)) {
				read <- fmt.Errorf("frame %d: got %.60q (%d bytes)", want, b, len(b))
				return
			}
			want++
		}
		read <- nil
	}()
	for i := range n {
		if i == n/2 {
			// The socket is full by now: the client starts reading while
			// the rest is queued.
			if e.gw.writers.handoffs.Load() == 0 {
				t.Fatalf("%d frames queued for a client that reads nothing, and no burst found the socket full", i)
			}
			close(start)
		}
		c.send(&outItem{kind: outFrame, data: frame(i)})
		if i%16 == 0 {
			runtime.Gosched()
		}
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
}

// TestBusyConnectionTakesTurns: a connection that is given more to write
// each time it writes keeps its writer worker busy for ever; another
// connection handed to the same worker is written all the same.
func TestBusyConnectionTakesTurns(t *testing.T) {
	s := New(Config{Auth: testAuth{}})
	s.writers.size = 1
	defer s.writers.close()
	busy := &feedTransport{}
	defer busy.stop.Store(true) // before the workers stop: they wait for it
	a := &conn{srv: s, t: busy, stop: make(chan struct{})}
	a.writer = a.writeRun
	busy.c = a
	other := &feedTransport{}
	b := &conn{srv: s, t: other, stop: make(chan struct{})}
	b.writer = b.writeRun
	frame := &outItem{kind: outFrame, data: []byte(`{"type":"typing"}`)}
	a.send(frame)
	eventually.Holds(t, 5*time.Second, "the busy connection is being written", func() error {
		if busy.n.Load() < 10 {
			return fmt.Errorf("%d bursts", busy.n.Load())
		}
		return nil
	})
	b.send(frame)
	eventually.Holds(t, 5*time.Second, "the other connection written", func() error {
		if other.n.Load() == 0 {
			return fmt.Errorf("not yet, after %d bursts to the busy one", busy.n.Load())
		}
		return nil
	})
	busy.stop.Store(true)
	eventually.Holds(t, 5*time.Second, "the busy connection's writer idle", func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.writing {
			return fmt.Errorf("still writing")
		}
		return nil
	})
}

// feedTransport is a transport the writer workers write; each burst
// written to it queues another on c, until stop.
type feedTransport struct {
	c    *conn
	n    atomic.Int64
	stop atomic.Bool
}

func (f *feedTransport) Read(context.Context) ([]byte, error)      { select {} }
func (f *feedTransport) WriteFrames([]wframe, time.Duration) error { return nil }
func (f *feedTransport) Close(int, string) error                   { return nil }
func (f *feedTransport) Name() string                              { return "ws" }
func (f *feedTransport) canTryWrite() bool                         { return true }
func (f *feedTransport) tryWriteFrames([]wframe) (bool, error) {
	f.n.Add(1)
	if f.c != nil && !f.stop.Load() {
		f.c.send(&outItem{kind: outFrame, data: []byte(`{"type":"typing"}`)})
	}
	return true, nil
}
func (f *feedTransport) flushWrites(time.Duration) error { return nil }

// TestStalledWorkerHoldsUpNobodyElse: a writer worker stopped in the
// middle of a write (here a transport that does not return; on a busy
// machine, a worker's thread the operating system stops for a while)
// holds up the connection it is writing, not the connections queued
// after it: the other worker writes them all meanwhile.
func TestStalledWorkerHoldsUpNobodyElse(t *testing.T) {
	s := New(Config{Auth: testAuth{}})
	s.writers.size = 2
	stalled := &stallTransport{entered: make(chan struct{}), release: make(chan struct{})}
	a := &conn{srv: s, t: stalled, stop: make(chan struct{})}
	a.writer = a.writeRun
	defer s.writers.close()
	defer close(stalled.release) // before the workers stop: one waits for it
	frame := &outItem{kind: outFrame, data: []byte(`{"type":"typing"}`)}
	a.send(frame)
	<-stalled.entered
	others := make([]*feedTransport, 40)
	for i := range others {
		others[i] = &feedTransport{}
		c := &conn{srv: s, t: others[i], stop: make(chan struct{})}
		c.writer = c.writeRun
		c.send(frame)
	}
	eventually.Holds(t, 5*time.Second, "every other connection written while one worker is stalled", func() error {
		n := 0
		for _, o := range others {
			if o.n.Load() > 0 {
				n++
			}
		}
		if n < len(others) {
			return fmt.Errorf("%d of %d written", n, len(others))
		}
		return nil
	})
}

// stallTransport is a transport the writer workers write whose first
// write does not return until release is closed.
type stallTransport struct {
	feedTransport
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (s *stallTransport) tryWriteFrames([]wframe) (bool, error) {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	return true, nil
}
