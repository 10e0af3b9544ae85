package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"parley/gateway/wire"
	"parley/internal/eventually"
)

// TestIdleConnectionsHoldNoGoroutine: connections that said hello and then
// stay silent hold no goroutine of the gateway's (before issue 16 each held
// two, a reader and a writer), plain or TLS on a listener wrapped by
// PollableTLS (each held its handler's, blocked in tls.Conn.Read, before
// branch tlspoll); and they still serve. The clients are rawWSClients,
// which hold none either.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	for _, tc := range []struct {
		name string
		// dialer returns how the test connects to e's gateway.
		dialer func(t *testing.T, e *env) func() *rawWSClient
	}{
		{"plain", func(t *testing.T, e *env) func() *rawWSClient {
			return func() *rawWSClient {
				cl, err := dialRawWS(e.url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { cl.nc.Close() })
				return cl
			}
		}},
		{"TLS", func(t *testing.T, e *env) func() *rawWSClient {
			srv := startTLS(t, e.gw, true)
			return func() *rawWSClient {
				cl, _ := dialTLSWS(t, srv)
				return cl
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			dial := tc.dialer(t, e)
			const n = 40
			before := runtime.NumGoroutine()
			clients := make([]*rawWSClient, n)
			for i := range clients {
				cl := dial()
				if err := cl.writeText([]byte(`{"type":"hello","v":1,"workspace":"ws1","role":"visitor","name":"Ada"}`)); err != nil {
					t.Fatal(err)
				}
				if op, err := cl.next(); err != nil || op != wsOpText {
					t.Fatalf("welcome: op %d, %v", op, err)
				}
				clients[i] = cl
			}
			// The goroutines that answered the hellos end once they have
			// nothing left to do.
			holdNoGoroutine(t, 5*time.Second, before, n, "idle connections")
			for _, cl := range clients {
				if err := cl.writeText([]byte(`{"type":"ping","ref":"p"}`)); err != nil {
					t.Fatal(err)
				}
			}
			for _, cl := range clients {
				cl.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				for {
					if _, err := cl.next(); err != nil {
						t.Fatalf("no pong: %v", err)
					}
					if bytes.Contains(cl.last, []byte(`"pong"`)) {
						break
					}
				}
			}
		})
	}
}

// holdNoGoroutine waits, up to within, for n connections opened since
// before to hold no goroutine (a few may still be ending).
func holdNoGoroutine(t *testing.T, within time.Duration, before, n int, what string) {
	t.Helper()
	eventually.Holds(t, within, what+" hold no goroutine", func() error {
		if got := runtime.NumGoroutine() - before; got > n/4 {
			return fmt.Errorf("%d %s hold %d goroutines", n, what, got)
		}
		return nil
	})
}

// TestBurstIsNotSlowConsumer: a burst of events for one agent, far more
// than the old 512-item queue, queued faster than any socket takes them
// (as the fan-out does after a commit of many messages), is delivered
// whole: a consumer is cut off for the bytes waiting, not for the count of
// frames.
func TestBurstIsNotSlowConsumer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ag := e.agent(t, "ws1")
	c := onlyConn(t, e)
	const n = 4000
	for i := range n {
		c.send(&outItem{kind: outFrame, data: []byte(fmt.Sprintf(`{"type":"typing","conversation":"c_%024d","participant":"v:x","typing":true}`, i))})
	}
	for i := 0; i < n; {
		m, err := ag.next(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d of %d frames: %v", i, n, err)
		}
		switch m["type"] {
		case "typing":
			i++
		case "presence":
		default:
			t.Fatalf("frame %d: %v", i, m)
		}
	}
	ag.send(map[string]any{"type": "ping", "ref": "alive"})
	ag.expect("pong", refIs("alive"))
}

// TestSlowConsumerByBytes: a client that reads nothing while more than
// SendQueueBytes pile up for it is cut off as slow_consumer; it learns so
// once it reads what was written before.
func TestSlowConsumerByBytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.SendQueueBytes = 256 << 10 })
	cl, c := rawAgent(t, e, e.url)
	frame := []byte(`{"type":"typing","pad":"` + strings.Repeat("x", 8<<10) + `"}`)
	// The kernel's socket buffers take some megabytes first; the queue
	// then grows until it passes the bound.
	for i := 0; i < 100000; i++ {
		if c.stopped() {
			break
		}
		c.send(&outItem{kind: outFrame, data: frame})
	}
	if !c.stopped() {
		t.Fatal("100,000 frames of 8 KiB queued for a client that reads nothing, and it was not cut off")
	}
	var last []byte
	code := 0
	cl.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		op, err := cl.next()
		if err != nil {
			t.Fatalf("read to the close: %v (last %q)", err, last)
		}
		if op == wsOpClose {
			code = int(binary.BigEndian.Uint16(cl.buf))
			break
		}
		last = append(last[:0], cl.buf[:min(200, len(cl.buf))]...)
	}
	if code != wire.CloseSlowConsumer || !bytes.Contains(last, []byte(wire.CodeSlowConsumer)) {
		t.Fatalf("close %d after %q, want %d after a slow_consumer error", code, last, wire.CloseSlowConsumer)
	}
}

func (c *conn) stopped() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

func onlyConn(t testing.TB, e *env) *conn {
	t.Helper()
	var c *conn
	eventually.Holds(t, 5*time.Second, "one connection joined", func() error {
		conns := e.gw.hub.conns()
		if len(conns) != 1 {
			return fmt.Errorf("%d connections", len(conns))
		}
		c = conns[0]
		return nil
	})
	return c
}

// TestBurstIsOneWrite: what is queued while the writer writes goes out in
// its next write, whole.
func TestBurstIsOneWrite(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ft := &gateTransport{release: make(chan struct{})}
	c := &conn{srv: e.gw, t: ft, stop: make(chan struct{})}
	c.writer = c.writeRun
	first := &outItem{kind: outFrame, data: []byte(`{"type":"pong"}`)}
	c.send(first)
	eventually.Holds(t, 5*time.Second, "the first write began", func() error {
		if ft.calls() == 0 {
			return fmt.Errorf("no write yet")
		}
		return nil
	})
	for range 50 {
		c.send(&outItem{kind: outFrame, data: []byte(`{"type":"typing"}`)})
	}
	close(ft.release)
	eventually.Holds(t, 5*time.Second, "all 51 frames written", func() error {
		if got := ft.frames(); got != 51 {
			return fmt.Errorf("%d frames written", got)
		}
		return nil
	})
	if got := ft.calls(); got != 2 {
		t.Fatalf("51 frames took %d writes, want 2 (the first, then the 50 queued meanwhile)", got)
	}
}

// gateTransport holds its first write until release is closed.
type gateTransport struct {
	release chan struct{}
	mu      sync.Mutex
	n, f    int
}

func (g *gateTransport) Name() string                         { return "test" }
func (g *gateTransport) Read(context.Context) ([]byte, error) { select {} }
func (g *gateTransport) Close(int, string) error              { return nil }
func (g *gateTransport) WriteFrames(frames []wframe, _ time.Duration) error {
	g.mu.Lock()
	g.n++
	g.f += len(frames)
	g.mu.Unlock()
	<-g.release
	return nil
}
func (g *gateTransport) calls() int  { g.mu.Lock(); defer g.mu.Unlock(); return g.n }
func (g *gateTransport) frames() int { g.mu.Lock(); defer g.mu.Unlock(); return g.f }

// TestWSParserAnySplit: messages come out whole and in order however the
// bytes are cut: fragmented text with a ping between its fragments, a
// binary message, a 16-bit and a 64-bit length.
func TestWSParserAnySplit(t *testing.T) {
	big := strings.Repeat("b", 300)
	huge := strings.Repeat("h", 70000)
	var stream []byte
	stream = append(stream, maskedFrame(wsOpText, false, "hel")...)
	stream = append(stream, maskedFrame(wsOpPing, true, "p")...)
	stream = append(stream, maskedFrame(wsOpContinuation, true, "lo")...)
	stream = append(stream, maskedFrame(wsOpBinary, true, "bin")...)
	stream = append(stream, maskedFrame(wsOpText, true, big)...)
	stream = append(stream, maskedFrame(wsOpText, true, huge)...)
	want := []string{"9:p", "1:hello", "2:bin", "1:" + big, "1:" + huge}
	for _, step := range []int{1, 2, 3, 7, 100, 4096, len(stream)} {
		p := wsParser{limit: 1 << 20}
		var got []string
		for i := 0; i < len(stream); i += step {
			if err := p.feed(stream[i:min(i+step, len(stream))], func(op byte, data []byte) {
				got = append(got, fmt.Sprintf("%d:%s", op, data))
			}); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("step %d: got %.80q, want %.80q", step, got, want)
		}
		if p.partial != nil || p.msg != nil {
			t.Fatalf("step %d: the parser holds %d+%d bytes between messages", step, len(p.partial), len(p.msg))
		}
	}
	p := wsParser{limit: 100}
	err := p.feed(maskedFrame(wsOpText, true, strings.Repeat("x", 101)), func(byte, []byte) {})
	if pe, ok := err.(*wsProtocolError); !ok || pe.code != wire.CloseTooLarge {
		t.Fatalf("over the limit: %v", err)
	}
	p = wsParser{limit: 100}
	unmasked := []byte{0x81, 0x01, 'x'}
	if err := p.feed(unmasked, func(byte, []byte) {}); err == nil {
		t.Fatal("an unmasked client frame was taken")
	}
}

func maskedFrame(op byte, fin bool, payload string) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	f := []byte{b0}
	n := len(payload)
	switch {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n <= 0xFFFF:
		f = binary.BigEndian.AppendUint16(append(f, 0x80|126), uint16(n))
	default:
		f = binary.BigEndian.AppendUint64(append(f, 0x80|127), uint64(n))
	}
	key := []byte{1, 2, 3, 4}
	f = append(f, key...)
	for i := range len(payload) {
		f = append(f, payload[i]^key[i&3])
	}
	return f
}

// TestFramesWithTheHandshake: frames a client sends in the same packet as
// its upgrade request (read by net/http before the hijack) are served.
func TestFramesWithTheHandshake(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	host := strings.TrimPrefix(e.url, "ws://")
	nc, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := "GET / HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	hello := maskedFrame(wsOpText, true, `{"type":"hello","v":1,"workspace":"ws1","role":"visitor","name":"Ada"}`)
	if _, err := nc.Write(append([]byte(req), hello...)); err != nil {
		t.Fatal(err)
	}
	readUntil(t, nc, `"welcome"`)
}

// readUntil reads nc until what it read holds want.
func readUntil(t *testing.T, nc net.Conn, want string) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(got, []byte(want)) {
		n, err := nc.Read(buf)
		if err != nil {
			t.Fatalf("no %s: %v (got %q)", want, err, got)
		}
		got = append(got, buf[:n]...)
	}
}

// TestOverHardLimitCloses1009: a message past the hard read limit ends
// the connection with 1009, as the WebSocket library did.
func TestOverHardLimitCloses1009(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	v, _ := e.visitor(t, "ws1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v.c.WriteRaw(ctx, bytes.Repeat([]byte("a"), hardReadLimit+1))
	if code := closeCode(t, v); code != wire.CloseTooLarge {
		t.Fatalf("close %d, want %d", code, wire.CloseTooLarge)
	}
}

// TestShutdownStopsThePollers: the pollers a server started for its
// WebSocket connections end with its Shutdown; none is left behind.
func TestShutdownStopsThePollers(t *testing.T) {
	e := newEnv(t, nil)
	cl, err := dialRawWS(e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.nc.Close()
	if err := cl.writeText([]byte(`{"type":"hello","v":1,"workspace":"ws1","role":"visitor","name":"Ada"}`)); err != nil {
		t.Fatal(err)
	}
	if op, err := cl.next(); err != nil || op != wsOpText {
		t.Fatalf("welcome: op %d, %v", op, err)
	}
	// Other tests' servers may have pollers too: count this one's.
	before := pollerLoops()
	if before == 0 {
		t.Fatal("no poller reads the connection")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.gw.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if after := pollerLoops(); after != before-max(1, runtime.GOMAXPROCS(0)/4) {
		t.Fatalf("%d poller loops before Shutdown, %d after", before, after)
	}
}

// pollerLoops counts the goroutines running a poller's loop.
func pollerLoops() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("(*poller).loop"))
}

// FuzzWSParser: any bytes, fed whole or cut in two anywhere, give the same
// messages and the same verdict; no message is over the limit, and the
// parser never panics.
func FuzzWSParser(f *testing.F) {
	f.Add(append(maskedFrame(wsOpText, false, "hel"), maskedFrame(wsOpContinuation, true, "lo")...), uint16(3))
	f.Add(maskedFrame(wsOpPing, true, "p"), uint16(1))
	f.Add(maskedFrame(wsOpText, true, strings.Repeat("x", 300)), uint16(2))
	f.Add([]byte{0x81, 0x01, 'x'}, uint16(0))
	f.Add([]byte{0x81, 0xff, 0, 0, 0, 0, 0, 0, 0x10, 0}, uint16(5))
	const limit = 1024
	run := func(parts ...[]byte) (string, bool) {
		p := wsParser{limit: limit}
		var got []string
		for _, b := range parts {
			err := p.feed(b, func(op byte, data []byte) {
				if len(data) > limit {
					panic(fmt.Sprintf("a message of %d bytes past the limit of %d", len(data), limit))
				}
				got = append(got, fmt.Sprintf("%d:%q", op, data))
			})
			if err != nil {
				return strings.Join(got, ","), true
			}
		}
		return strings.Join(got, ","), false
	}
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		at := 0
		if len(b) > 0 {
			at = int(cut) % (len(b) + 1)
		}
		whole, wholeErr := run(append([]byte(nil), b...))
		split, splitErr := run(append([]byte(nil), b[:at]...), append([]byte(nil), b[at:]...))
		if whole != split || wholeErr != splitErr {
			t.Fatalf("cut at %d: whole %s (error %v), split %s (error %v)", at, whole, wholeErr, split, splitErr)
		}
	})
}
