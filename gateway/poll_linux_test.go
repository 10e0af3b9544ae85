package gateway

import (
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"parley/internal/eventually"
)

// pausingSink is a frameSink that asks for a pause after every message and
// lifts it when the test (or deliver itself, with liftEarly) says: the
// interleavings of a connection's drain and the poller, one at a time.
type pausingSink struct {
	t         *wsConn
	liftEarly bool // the drain lifts the pause before deliver returns

	mu     sync.Mutex
	paused bool
	early  int // messages delivered while paused
	got    chan string
	asked  chan struct{} // full was called (dropped when nobody waits)
}

// deliver pauses; with liftEarly the drain it started catches up and
// lifts the pause before deliver returns, as conn's drain goroutine may.
func (s *pausingSink) deliver(data []byte) bool {
	s.mu.Lock()
	if s.paused {
		s.early++
	}
	s.paused = true
	s.mu.Unlock()
	s.got <- string(data)
	if s.liftEarly {
		s.lift()
	}
	return false
}

func (s *pausingSink) full() bool {
	s.mu.Lock()
	paused := s.paused
	s.mu.Unlock()
	select {
	case s.asked <- struct{}{}:
	default:
	}
	return paused
}

// lift is the drain catching up: the pause ends and the transport is told.
func (s *pausingSink) lift() {
	s.mu.Lock()
	s.paused = false
	s.mu.Unlock()
	s.t.resumeReading()
}

// next waits for the next message delivered, which must be want.
func (s *pausingSink) next(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-s.got:
		if got != want {
			t.Fatalf("delivered %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%q never delivered: the socket is no longer watched", want)
	}
}

func (s *pausingSink) readEnd()    {}
func (s *pausingSink) pong([]byte) {}

// TestPollerPauseRace: a connection's sink asks for a pause and lifts it
// from its own goroutine, before or after the poller learns of the pause.
// Either way the socket is watched again: every message the client sends
// next is delivered, and none while the pause lasts. (A poller that remembered the pause from deliver's
// answer, instead of asking the sink at the end of its read, stopped
// watching for ever when the lift came first — found by the kill -9 load
// test, with frames waiting in the socket.)
func TestPollerPauseRace(t *testing.T) {
	for _, tc := range []struct {
		name      string
		liftEarly bool
	}{
		{"lifted before the poller asks", true},
		{"lifted after the poller asked", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, nc, rc := tcpPair(t)
			ws := &wsConn{nc: nc, rc: rc}
			ws.parser.limit = hardReadLimit
			sink := &pausingSink{t: ws, liftEarly: tc.liftEarly, got: make(chan string, 1), asked: make(chan struct{}, 1)}
			var ps pollers
			defer ps.close()
			if !ws.poll(sink, &ps) {
				t.Fatal("the connection is not polled")
			}
			const n = 5
			msg := func(i int) string { return fmt.Sprintf(`{"n":%d}`, i) }
			write := func(i int) {
				if _, err := client.Write(maskedFrame(wsOpText, true, msg(i))); err != nil {
					t.Fatal(err)
				}
			}
			write(0)
			for i := range n {
				sink.next(t, msg(i))
				if i+1 == n {
					break
				}
				if tc.liftEarly {
					write(i + 1)
					continue
				}
				// The drain catches up after the poller asked (or, if it
				// never asks, a while later). The next message is already
				// in the socket: it must wait for the lift.
				select {
				case <-sink.asked:
				case <-time.After(time.Second):
				}
				write(i + 1)
				time.Sleep(50 * time.Millisecond) // a chance to read it early
				sink.lift()
			}
			sink.mu.Lock()
			defer sink.mu.Unlock()
			if sink.early > 0 {
				t.Fatalf("%d messages delivered while the sink was paused", sink.early)
			}
		})
	}
}

// TestTLSPauseReadsHeldRecords: records that arrived together, in one TCP
// segment, are read by the tls.Conn from its socket at once; the
// connection's sink pausing after each message must not leave the rest in
// the tls.Conn, where no readiness of the socket will announce them: each
// lift of the pause reads what the tls.Conn holds.
func TestTLSPauseReadsHeldRecords(t *testing.T) {
	s := newTLSWSServer(t)
	sink := &pausingSink{got: make(chan string, 1), asked: make(chan struct{}, 1)}
	cl, w, ws := s.open(t, sink)
	sink.t = ws
	const n = 5
	msg := func(i int) string { return fmt.Sprintf(`{"n":%d}`, i) }
	w.set(func(w *wireConn) { w.corked = true })
	for i := range n {
		writeAll(t, cl.nc, maskedFrame(wsOpText, true, msg(i)))
	}
	if err := w.uncork(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		sink.next(t, msg(i))
		sink.lift()
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.early > 0 {
		t.Fatalf("%d messages delivered while the sink was paused", sink.early)
	}
}

// TestPollerCallsAllocateNothing: re-arming a socket and reading it (here
// with nothing to read) allocate nothing; a closure per call did, one
// allocation per read and per re-arm.
func TestPollerCallsAllocateNothing(t *testing.T) {
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		unix.Close(p.epfd)
		unix.Close(p.wake)
	}()
	client, _, rc := tcpPair(t)
	if err := p.ctl(rc, unix.EPOLL_CTL_ADD, 1); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	allocs := testing.AllocsPerRun(200, func() {
		if err := p.arm(rc, 1); err != nil {
			t.Fatal(err)
		}
		if n, err := readNonblock(rc, buf); n != 0 || err != nil {
			t.Fatalf("read %d, %v; want nothing yet", n, err)
		}
	})
	if allocs != 0 && !raceEnabled {
		t.Errorf("%.1f allocations per re-arm and read, want 0", allocs)
	}
	if _, err := client.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	eventually.Holds(t, 10*time.Second, "the bytes written read", func() error {
		n, err := readNonblock(rc, buf)
		switch {
		case err != nil:
			t.Fatal(err)
		case string(buf[:n]) != "hi":
			return fmt.Errorf("read %q, want hi", buf[:n])
		}
		return nil
	})
}

// TestDeliverOneAllocatesNothing: a message read into a polled
// connection's empty inbox, the usual read, takes no allocation (the
// inbox's room for one).
func TestDeliverOneAllocatesNothing(t *testing.T) {
	c := &conn{handling: true} // a drain runs: deliver only queues
	data := []byte(`{"type":"ping"}`)
	allocs := testing.AllocsPerRun(200, func() {
		c.deliver(data)
		c.mu.Lock()
		c.inbox = nil // drained
		c.mu.Unlock()
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per message delivered, want 0", allocs)
	}
}

// tcpPair is a connected pair of loopback TCP sockets, closed when the
// test ends, and the server side's raw socket.
func tcpPair(t *testing.T) (client, server net.Conn, rc syscall.RawConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	rc, err = server.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return client, server, rc
}
