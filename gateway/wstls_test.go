package gateway

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"parley/internal/eventually"
)

// Tests of WebSockets over TLS read by the poller (wstls.go). The client
// is a rawWSClient over a tls.Conn over a wireConn, which shapes the bytes
// the server receives: records corked and sent in one TCP write,
// dribbled a byte at a time, cut short or corrupted.

// wireConn is a TLS client's socket, beneath its tls.Conn.
type wireConn struct {
	net.Conn
	mu      sync.Mutex
	corked  bool
	held    []byte
	dribble time.Duration // > 0: one byte per write, this long apart
	cut     bool          // the next write sends half its bytes, and nothing is sent after
	cutDone bool
	flipOut bool // the next write's last byte is corrupted
	flipIn  bool // the next read's last byte is corrupted
}

func (w *wireConn) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.flipOut {
		w.flipOut = false
		b = bytes.Clone(b)
		b[len(b)-1] ^= 0x55
	}
	switch {
	case w.cutDone:
		return len(b), nil
	case w.cut:
		w.cutDone = true
		if _, err := w.Conn.Write(b[:len(b)/2]); err != nil {
			return 0, err
		}
		return len(b), nil
	case w.corked:
		w.held = append(w.held, b...)
		return len(b), nil
	case w.dribble > 0:
		for i := range b {
			if _, err := w.Conn.Write(b[i : i+1]); err != nil {
				return i, err
			}
			time.Sleep(w.dribble)
		}
		return len(b), nil
	}
	return w.Conn.Write(b)
}

func (w *wireConn) Read(b []byte) (int, error) {
	n, err := w.Conn.Read(b)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.flipIn && n > 0 {
		w.flipIn = false
		b[n-1] ^= 0x55
	}
	return n, err
}

func (w *wireConn) set(f func(w *wireConn)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(w)
}

// uncork sends what was corked in one write.
func (w *wireConn) uncork() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.corked = false
	held := w.held
	w.held = nil
	_, err := w.Conn.Write(held)
	return err
}

// startTLS serves h over TLS on a listener wrapped by PollableTLS (as the
// node's HTTPS listener is), or not.
func startTLS(t *testing.T, h http.Handler, pollable bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	if pollable {
		srv.Listener = PollableTLS(srv.Listener)
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// dialTLS opens a TLS connection to srv, over a wireConn.
func dialTLS(t *testing.T, srv *httptest.Server) (*tls.Conn, *wireConn) {
	t.Helper()
	addr := srv.Listener.Addr().String()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	w := &wireConn{Conn: nc}
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.ServerName = "127.0.0.1"
	tc := tls.Client(w, cfg)
	t.Cleanup(func() { tc.Close() })
	return tc, w
}

// dialTLSWS opens a WebSocket to srv over TLS.
func dialTLSWS(t *testing.T, srv *httptest.Server) (*rawWSClient, *wireConn) {
	t.Helper()
	tc, w := dialTLS(t, srv)
	cl, err := upgradeRawWS(tc, srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return cl, w
}

// recSink is a frameSink that records what it is handed.
type recSink struct {
	got   chan string
	ended chan struct{}
	once  sync.Once
}

func newRecSink() *recSink { return &recSink{got: make(chan string, 1024), ended: make(chan struct{})} }

func (s *recSink) deliver(data []byte) bool { s.got <- string(data); return true }
func (s *recSink) full() bool               { return false }
func (s *recSink) readEnd()                 { s.once.Do(func() { close(s.ended) }) }
func (s *recSink) pong([]byte)              {}

// expect waits for the next messages to be want, in order.
func (s *recSink) expect(t *testing.T, want ...string) {
	t.Helper()
	for i, w := range want {
		select {
		case got := <-s.got:
			if got != w {
				t.Fatalf("message %d: got %.40q, want %.40q", i, got, w)
			}
		case <-s.ended:
			t.Fatalf("reading ended before message %d of %d", i, len(want))
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d of %d never delivered", i, len(want))
		}
	}
}

func (s *recSink) waitEnd(t *testing.T) {
	t.Helper()
	select {
	case <-s.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("reading never ended")
	}
}

// tlsWSServer serves WebSockets over TLS whose wsConns the test takes
// (accepted) and polls with a sink of its own.
type tlsWSServer struct {
	srv      *httptest.Server
	accepted chan *wsConn
	ps       pollers
}

func newTLSWSServer(t *testing.T) *tlsWSServer {
	if !canPoll {
		t.Skip("no poller on this platform")
	}
	s := &tlsWSServer{accepted: make(chan *wsConn, 1024)}
	s.srv = startTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := acceptWS(w, r); err == nil {
			s.accepted <- c
		}
	}), true)
	t.Cleanup(s.ps.close)
	return s
}

// open opens a WebSocket and polls the server's side with sink.
func (s *tlsWSServer) open(t *testing.T, sink frameSink) (*rawWSClient, *wireConn, *wsConn) {
	t.Helper()
	cl, w := dialTLSWS(t, s.srv)
	ws := <-s.accepted
	t.Cleanup(func() { ws.nc.Close() })
	if ws.tls == nil {
		t.Fatal("the TLS connection cannot be polled")
	}
	if !ws.poll(sink, &s.ps) {
		t.Fatal("the TLS connection is not polled")
	}
	return cl, w, ws
}

func writeAll(t *testing.T, nc net.Conn, parts ...[]byte) {
	t.Helper()
	for _, p := range parts {
		if _, err := nc.Write(p); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTLSWebSocket: a TLS WebSocket, polled (PollableTLS) or read by its
// handler's goroutine (a listener without it), is served the same way:
// hello, a ping, a protocol error's close code, and nothing left running
// once it closed.
func TestTLSWebSocket(t *testing.T) {
	for _, pollable := range []bool{true, false} {
		t.Run(fmt.Sprintf("pollable=%v", pollable), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			srv := startTLS(t, e.gw, pollable)
			cl, _ := dialTLSWS(t, srv)
			cl.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			next := func(typ string) {
				t.Helper()
				for {
					op, err := cl.next()
					if err != nil {
						t.Fatalf("waiting for %s: %v", typ, err)
					}
					if op == wsOpText && bytes.Contains(cl.last, []byte(`"type":"`+typ+`"`)) {
						return
					}
				}
			}
			cl.writeText([]byte(`{"type":"hello","v":1,"workspace":"ws1","role":"visitor","name":"Ada"}`))
			next("welcome")
			cl.writeText([]byte(`{"type":"ping","ref":"p1"}`))
			next("pong")
			// A binary frame with a reserved bit set: close 1002.
			if _, err := cl.nc.Write([]byte{0xC2, 0x80, 1, 2, 3, 4}); err != nil {
				t.Fatal(err)
			}
			for {
				op, err := cl.next()
				if err != nil {
					t.Fatalf("no close frame: %v", err)
				}
				if op == wsOpClose {
					if len(cl.last) < 2 || int(cl.last[0])<<8|int(cl.last[1]) != wsCloseProtocol {
						t.Fatalf("close %x, want %d", cl.last, wsCloseProtocol)
					}
					break
				}
			}
			eventually.Holds(t, 5*time.Second, "the connection left the hub", func() error {
				if n := len(e.gw.hub.conns()); n != 0 {
					return fmt.Errorf("%d connections in the hub", n)
				}
				return nil
			})
		})
	}
}

// TestTLSRecordsInPieces: records and frames cut anywhere, however the
// bytes arrive, give the messages sent, in order: several frames in one
// record, a record boundary at every place inside a frame, a frame over
// many records, and records dribbled a byte at a time with pauses between
// (each byte a readiness of its own: the tls.Conn keeps what it has of a
// record between reads).
func TestTLSRecordsInPieces(t *testing.T) {
	s := newTLSWSServer(t)
	msg := func(i int) string { return fmt.Sprintf(`{"type":"ping","ref":"m%d"}`, i) }

	t.Run("frames in one record", func(t *testing.T) {
		sink := newRecSink()
		cl, _, _ := s.open(t, sink)
		writeAll(t, cl.nc, bytes.Join([][]byte{
			maskedFrame(wsOpText, true, msg(0)), maskedFrame(wsOpText, true, msg(1)), maskedFrame(wsOpText, true, msg(2))}, nil))
		sink.expect(t, msg(0), msg(1), msg(2))
	})
	t.Run("a record boundary inside a frame", func(t *testing.T) {
		sink := newRecSink()
		cl, _, _ := s.open(t, sink)
		f := maskedFrame(wsOpText, true, msg(7))
		for k := 1; k < len(f); k++ {
			writeAll(t, cl.nc, f[:k], f[k:])
			sink.expect(t, msg(7))
		}
		// Fragments, each cut across records.
		f = append(maskedFrame(wsOpText, false, `{"type":"ping",`), maskedFrame(wsOpContinuation, true, `"ref":"frag"}`)...)
		writeAll(t, cl.nc, f[:3], f[3:20], f[20:25], f[25:])
		sink.expect(t, `{"type":"ping","ref":"frag"}`)
	})
	t.Run("a frame over many records", func(t *testing.T) {
		sink := newRecSink()
		cl, _, _ := s.open(t, sink)
		big := strings.Repeat("x", hardReadLimit-1) // four records of 16 KiB at least
		writeAll(t, cl.nc, maskedFrame(wsOpText, true, big))
		sink.expect(t, big)
		f := maskedFrame(wsOpText, true, strings.Repeat("y", 3000))
		var parts [][]byte
		for len(f) > 0 {
			n := min(len(f), 1+rand.IntN(40))
			parts, f = append(parts, f[:n]), f[n:]
		}
		writeAll(t, cl.nc, parts...)
		sink.expect(t, strings.Repeat("y", 3000))
	})
	t.Run("dribbled a byte at a time", func(t *testing.T) {
		sink := newRecSink()
		cl, w, _ := s.open(t, sink)
		w.set(func(w *wireConn) { w.dribble = time.Millisecond })
		for i := range 3 {
			writeAll(t, cl.nc, maskedFrame(wsOpText, true, msg(i)))
		}
		f := maskedFrame(wsOpText, true, msg(3))
		writeAll(t, cl.nc, f[:5], f[5:])
		sink.expect(t, msg(0), msg(1), msg(2), msg(3))
	})
}

// TestTLSFramesWithTheHandshake: frames a client sends right behind its
// upgrade request are served, whether they came in the request's record
// (read by net/http before the hijack) or in records of their own that
// arrived with it (read from the socket by the tls.Conn, which the socket
// will not announce again).
func TestTLSFramesWithTheHandshake(t *testing.T) {
	e := newEnv(t, nil)
	srv := startTLS(t, e.gw, true)
	host := srv.Listener.Addr().String()
	req := []byte("GET / HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	hello := maskedFrame(wsOpText, true, `{"type":"hello","v":1,"workspace":"ws1","role":"visitor","name":"Ada"}`)
	for _, tc := range []struct {
		name  string
		parts [][]byte
	}{
		{"one record", [][]byte{append(bytes.Clone(req), hello...)}},
		{"records of their own", [][]byte{req, hello[:10], hello[10:]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, w := dialTLS(t, srv)
			if err := c.Handshake(); err != nil {
				t.Fatal(err)
			}
			w.set(func(w *wireConn) { w.corked = true })
			writeAll(t, c, tc.parts...)
			if err := w.uncork(); err != nil {
				t.Fatal(err)
			}
			readUntil(t, c, `"welcome"`)
		})
	}
}

// TestTLSEndOfStream: reading ends at the client's close_notify (after
// the messages before it), and when it closes its socket in the middle of
// a record.
func TestTLSEndOfStream(t *testing.T) {
	s := newTLSWSServer(t)
	t.Run("close_notify", func(t *testing.T) {
		sink := newRecSink()
		cl, _, _ := s.open(t, sink)
		writeAll(t, cl.nc, maskedFrame(wsOpText, true, "last"))
		cl.nc.Close() // a tls.Conn: close_notify, then the socket
		sink.expect(t, "last")
		sink.waitEnd(t)
	})
	t.Run("socket closed mid-record", func(t *testing.T) {
		sink := newRecSink()
		cl, w, _ := s.open(t, sink)
		w.set(func(w *wireConn) { w.cut = true })
		writeAll(t, cl.nc, maskedFrame(wsOpText, true, "never whole"))
		w.Conn.Close()
		sink.waitEnd(t)
		select {
		case got := <-sink.got:
			t.Fatalf("delivered %q from half a record", got)
		default:
		}
	})
}

// TestTLSAlerts: a record that fails to decrypt ends the reading (the
// server answers with an alert), and so does a fatal alert from the
// client (which it sends when a record of the server's fails to decrypt).
func TestTLSAlerts(t *testing.T) {
	s := newTLSWSServer(t)
	t.Run("corrupt record", func(t *testing.T) {
		sink := newRecSink()
		cl, w, _ := s.open(t, sink)
		writeAll(t, cl.nc, maskedFrame(wsOpText, true, "fine"))
		sink.expect(t, "fine")
		w.set(func(w *wireConn) { w.flipOut = true })
		writeAll(t, cl.nc, maskedFrame(wsOpText, true, "corrupt"))
		sink.waitEnd(t)
		cl.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := cl.next(); err == nil || !strings.Contains(err.Error(), "bad record MAC") {
			t.Fatalf("the client read %v, want the server's bad_record_mac alert", err)
		}
	})
	t.Run("alert from the client", func(t *testing.T) {
		sink := newRecSink()
		cl, w, ws := s.open(t, sink)
		w.set(func(w *wireConn) { w.flipIn = true })
		if err := ws.WriteFrames([]wframe{{data: []byte("to be corrupted")}}, time.Second); err != nil {
			t.Fatal(err)
		}
		cl.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := cl.next(); err == nil {
			t.Fatal("the client read a corrupted record")
		}
		sink.waitEnd(t)
	})
}

// TestTLSStalledMidRecord: clients that stop in the middle of a record
// hold no goroutine while they stall, and are closed, like any silent
// client, after three heartbeats; nothing of theirs is left.
func TestTLSStalledMidRecord(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Heartbeat = time.Second })
	srv := startTLS(t, e.gw, true)
	const n = 20
	before := runtime.NumGoroutine()
	clients := make([]*rawWSClient, n)
	for i := range clients {
		cl, w := dialTLSWS(t, srv)
		cl.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		cl.writeText([]byte(`{"type":"hello","v":1,"workspace":"ws1","role":"visitor","name":"Ada"}`))
		if op, err := cl.next(); err != nil || op != wsOpText {
			t.Fatalf("welcome: op %d, %v", op, err)
		}
		w.set(func(w *wireConn) { w.cut = true })
		cl.writeText([]byte(`{"type":"ping","ref":"stalled"}`))
		clients[i] = cl
	}
	holdNoGoroutine(t, 3*time.Second, before, n, "TLS connections stalled mid-record")
	for i, cl := range clients {
		for {
			_, err := cl.next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("client %d: %v, want the server to close it", i, err)
			}
		}
	}
	eventually.Holds(t, 5*time.Second, "the stalled connections are gone", func() error {
		if c := len(e.gw.hub.conns()); c != 0 {
			return fmt.Errorf("%d connections in the hub", c)
		}
		if got := runtime.NumGoroutine() - before; got > 2 {
			return fmt.Errorf("%d goroutines more than before", got)
		}
		return nil
	})
}

// TestTLSManyConnections: many polled TLS connections on one set of
// pollers, each sent frames cut into random writes while the server
// writes to it at the same time: every message arrives, in order, both
// ways.
func TestTLSManyConnections(t *testing.T) {
	s := newTLSWSServer(t)
	const conns, msgs = 100, 20
	type end struct {
		cl   *rawWSClient
		ws   *wsConn
		sink *recSink
	}
	ends := make([]end, conns)
	for i := range ends {
		sink := newRecSink()
		cl, _, ws := s.open(t, sink)
		ends[i] = end{cl, ws, sink}
	}
	msg := func(c, i int) string {
		return fmt.Sprintf(`{"c":%d,"i":%d,"pad":"%s"}`, c, i, strings.Repeat("p", i*37))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3*conns)
	for c, e := range ends {
		wg.Add(3)
		go func() { // the client writes, in random pieces
			defer wg.Done()
			var b []byte
			for i := range msgs {
				b = append(b, maskedFrame(wsOpText, true, msg(c, i))...)
			}
			for len(b) > 0 {
				n := min(len(b), 1+rand.IntN(300))
				if _, err := e.cl.nc.Write(b[:n]); err != nil {
					errs <- err
					return
				}
				b = b[n:]
			}
		}()
		go func() { // the server writes
			defer wg.Done()
			for i := range msgs {
				if err := e.ws.WriteFrames([]wframe{{data: []byte(msg(c, i))}}, 5*time.Second); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() { // the client reads
			defer wg.Done()
			e.cl.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
			for i := range msgs {
				if _, err := e.cl.next(); err != nil {
					errs <- err
					return
				}
				if string(e.cl.last) != msg(c, i) {
					errs <- fmt.Errorf("connection %d: the client read %.30q, want %.30q", c, e.cl.last, msg(c, i))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for c, e := range ends {
		want := make([]string, msgs)
		for i := range want {
			want[i] = msg(c, i)
		}
		e.sink.expect(t, want...)
	}
}
