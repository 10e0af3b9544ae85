package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"parley/gateway/wire"
)

// errBinary is returned by a transport's Read for a frame that is not text.
var errBinary = errors.New("binary frame")

// errEOF ends a polled connection's reading: the client closed its side.
var errEOF = io.EOF

// errPeerClosed ends reading once the client sent its close frame.
var errPeerClosed = errors.New("websocket: client closed")

// hardReadLimit is where the WebSocket transport itself cuts a connection
// (close 1009). Frames between wire.MaxFrameBytes and it get a too_large error
// frame first, so that a client learns why.
const hardReadLimit = 4 * wire.MaxFrameBytes

// ServeHTTP upgrades a request to a WebSocket connection and serves it.
// Any origin may connect: the widget runs on customers' sites, and no
// credential rides on cookies (tokens and signatures travel in hello), so a
// cross-site page gains nothing a script could not do by itself.
//
// The connection is then read by a poller (poll_linux.go) and returns its
// handler goroutine at once: a plain TCP one, and a TLS one whose socket
// was accepted through PollableTLS (wstls.go: the node's own HTTPS
// listener). Any other is read by the handler goroutine, which lasts as
// long as it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ip, viaRelay := clientIP(r), false
	if s.cfg.Forwarded != nil {
		if fwd, ok := s.cfg.Forwarded(r); ok {
			ip, viaRelay = fwd, true
		}
	}
	cnt := counted(r.Context(), ip)
	if !s.admit(ip, cnt) {
		s.metrics.Error(wire.CodeRateLimited)
		http.Error(w, `{"code":"rate_limited","message":"too many connections from this address"}`, http.StatusTooManyRequests)
		return
	}
	release := func() { s.release(ip, cnt) }
	t, err := acceptWS(w, r)
	if err != nil {
		release()
		return
	}
	// The connection outlives the request: nothing of the request's context
	// is kept, which would keep net/http's buffers of the connection.
	s.serve(context.Background(), t, ip, viaRelay, release)
}

// acceptWS completes the handshake and takes the connection from net/http.
func acceptWS(w http.ResponseWriter, r *http.Request) (*wsConn, error) {
	key, err := wsCheckUpgrade(w, r)
	if err != nil {
		return nil, err
	}
	h := w.Header()
	h.Set("Upgrade", "websocket")
	h.Set("Connection", "Upgrade")
	h.Set("Sec-WebSocket-Accept", wsAcceptKey(key))
	w.WriteHeader(http.StatusSwitchingProtocols)
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, err
	}
	t := &wsConn{nc: nc}
	if n := brw.Reader.Buffered(); n > 0 {
		// The client's first frames came with the request.
		b, _ := brw.Reader.Peek(n)
		t.early = append([]byte(nil), b...)
	}
	if tc, ok := nc.(*tls.Conn); ok {
		// Polled through the tls.Conn (wstls.go); written through it.
		t.tls = tlsPolled(tc)
	} else if sc, ok := nc.(syscall.Conn); ok && canPoll {
		if rc, err := sc.SyscallConn(); err == nil {
			t.rc = rc
		}
	}
	t.parser.limit = hardReadLimit
	return t, nil
}

// frameSink receives what a connection's client sends.
type frameSink interface {
	// deliver hands over a text message, or nil for a binary one; false
	// says the sink is full: the transport reads no more until
	// resumeReading (it may have read a little more meanwhile).
	deliver(data []byte) bool
	// full says whether the sink asked for a pause it has not lifted
	// (with resumeReading) since.
	full() bool
	// readEnd says no message follows.
	readEnd()
	// pong queues the answer to a client's ping.
	pong(data []byte)
}

// wsConn is a server WebSocket connection on a hijacked net/http
// connection. Its reads are driven by a poller when the connection is plain
// TCP or TLS on a socket that may be polled (poll); otherwise by the
// goroutine calling Read. Only the connection's writer writes
// (WriteFrames, Close).
type wsConn struct {
	nc    net.Conn
	rc    syscall.RawConn // plain TCP's socket, polled and written with writev; nil: not plain or not pollable
	tls   *wsTLS          // a TLS connection's polled reading; nil: not TLS or not pollable
	early []byte          // bytes read with the handshake, parsed first
	sink  frameSink

	// Reader side: the poller's goroutine, a TLS connection's read pass
	// (readTLS), or Read's caller.
	parser wsParser
	rq     []wsMessage // Read: parsed, not yet returned
	rerr   error       // Read: why reading ended

	p  *poller
	id uint64

	mu         sync.Mutex
	ended      bool // readEnd was called
	peerClosed bool
	peerCode   int
	protoErr   *wsProtocolError
	closedCh   chan struct{} // made by Close while it waits for the client's close
	closeOnce  sync.Once

	polled bool

	// pend is what tryWriteFrames could not write yet; the writer's.
	pend *wsWriteBuf
}

// wsWriteBuf is a burst's frame headers and iovecs (or joined bytes),
// pooled: a connection holds them only while it writes.
type wsWriteBuf struct {
	hdrs []byte
	iov  [][]byte
	join []byte
	// writevAll's
	rest [][]byte
	vecs []iovec // writev's (poll_linux.go)
	n    int
	werr error
	fn   func(fd uintptr) bool
	ctl  func(fd uintptr) // writevOnce's
}

var wsWriteBufs = sync.Pool{New: func() any { return new(wsWriteBuf) }}

type wsMessage struct {
	data   []byte
	binary bool
}

func (t *wsConn) Name() string { return "ws" }

// poll hands the connection's reading to a poller, delivering to sink;
// false when it cannot be polled (no socket of its own, or no poller
// here), and Read must be called instead.
func (t *wsConn) poll(sink frameSink, ps *pollers) bool {
	t.sink = sink
	rc := t.rc
	if t.tls != nil {
		rc = t.tls.nb.rc
	}
	if rc == nil {
		return false
	}
	p, err := ps.pick()
	if err != nil {
		return false
	}
	t.p, t.polled = p, true
	if t.tls != nil {
		// Nothing else reads it: net/http let go of it with the hijack.
		t.tls.nb.nonblock.Store(true)
	}
	if len(t.early) > 0 {
		early := t.early
		t.early = nil
		if err := t.parser.feed(early, t.emit); err != nil {
			t.readFailed(err)
			return true
		}
	}
	t.mu.Lock()
	if t.ended {
		t.mu.Unlock()
		return true
	}
	id, err := p.add(rc, t)
	t.id = id
	t.mu.Unlock()
	if err != nil {
		t.readFailed(err)
		return true
	}
	if t.tls != nil {
		// The tls.Conn may hold records read with the handshake or the
		// request, which the socket will not show again.
		t.readTLSSoon()
	}
	return true
}

// readable is the poller's: read what arrived and hand it on (a TLS
// connection's on a goroutine of its own: decrypting may wait for its
// writer, to send an alert or a key update).
func (t *wsConn) readable(buf []byte) bool {
	if t.tls != nil {
		t.readTLSSoon()
		return false
	}
	for range 4 {
		n, err := readNonblock(t.rc, buf)
		if err != nil {
			t.readFailed(err)
			return false
		}
		if n == 0 {
			break
		}
		if err := t.parser.feed(buf[:n], t.emit); err != nil {
			t.readFailed(err)
			return false
		}
		if n < len(buf) {
			break
		}
	}
	// The sink is asked, not told: it lifts a pause (resumeReading) from
	// its own goroutine, maybe before this one learnt of the pause. A
	// pause it lifted before this check finds it not full (watch again);
	// one lifted after, resumeReading watches again. Both may: arming
	// twice is harmless.
	if t.sink.full() {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended {
		return false
	}
	if err := t.p.arm(t.rc, t.id); err != nil {
		t.endLocked(err)
		return false
	}
	return true
}

// resumeReading watches the socket again after deliver asked for a pause
// (a TLS connection's first reads what its tls.Conn holds).
func (t *wsConn) resumeReading() {
	if t.tls != nil {
		t.readTLSSoon()
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended {
		return
	}
	if err := t.p.arm(t.rc, t.id); err != nil {
		t.endLocked(err)
	}
}

// emit handles a parsed message or control frame of a polled connection.
func (t *wsConn) emit(op byte, data []byte) {
	switch op {
	case wsOpText, wsOpBinary:
		t.mu.Lock()
		ended := t.ended || t.peerClosed
		t.mu.Unlock()
		if ended {
			return
		}
		if op == wsOpBinary {
			data = nil
		}
		t.sink.deliver(data) // full: readable does not watch again
	case wsOpPing:
		t.sink.pong(data)
	case wsOpClose:
		t.peerClose(data)
		t.mu.Lock()
		t.endLocked(errPeerClosed)
		t.mu.Unlock()
	}
}

func (t *wsConn) peerClose(data []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.peerClosed {
		return
	}
	t.peerClosed = true
	t.peerCode = wsCloseNoStatus
	if len(data) >= 2 {
		t.peerCode = int(data[0])<<8 | int(data[1])
	}
	if t.closedCh != nil {
		close(t.closedCh)
	}
}

func (t *wsConn) readFailed(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.endLocked(err)
}

// endLocked ends reading, once: the sink hears of it.
func (t *wsConn) endLocked(err error) {
	if t.ended {
		return
	}
	t.ended = true
	var pe *wsProtocolError
	if errors.As(err, &pe) {
		t.protoErr = pe
	}
	if t.p != nil {
		t.p.remove(t.id)
	}
	if t.closedCh != nil && !t.peerClosed {
		close(t.closedCh)
		t.closedCh = nil
	}
	if t.polled {
		// The sink takes its own locks; it may call back into t.
		go t.sink.readEnd()
	}
}

// Read returns the next message of a connection that is not polled.
func (t *wsConn) Read(context.Context) ([]byte, error) {
	for {
		if len(t.rq) > 0 {
			m := t.rq[0]
			t.rq[0] = wsMessage{}
			t.rq = t.rq[1:]
			if len(t.rq) == 0 {
				t.rq = nil
			}
			if m.binary {
				return nil, errBinary
			}
			return m.data, nil
		}
		if t.rerr != nil {
			return nil, t.rerr
		}
		var b []byte
		if len(t.early) > 0 {
			b, t.early = t.early, nil
		} else {
			var buf [4 << 10]byte
			n, err := t.nc.Read(buf[:])
			if err != nil {
				t.rerr = err
				t.readFailed(err)
				continue
			}
			b = buf[:n]
		}
		if err := t.parser.feed(b, t.emitQueued); err != nil {
			t.rerr = err
			t.readFailed(err)
		}
	}
}

func (t *wsConn) emitQueued(op byte, data []byte) {
	switch op {
	case wsOpText, wsOpBinary:
		if t.rerr == nil {
			t.rq = append(t.rq, wsMessage{data: data, binary: op == wsOpBinary})
		}
	case wsOpPing:
		t.sink.pong(data)
	case wsOpClose:
		t.peerClose(data)
		if t.rerr == nil {
			t.rerr = errPeerClosed
		}
		t.readFailed(errPeerClosed)
	}
}

// WriteFrames writes frames in as few system calls as it can: one writev
// for a burst on a plain TCP connection, one write otherwise (through the
// tls.Conn on TLS, which writes to its socket with the socket's own
// blocking Write, deadline included, even while a poller reads it). It
// fails when no byte could be written for timeout.
func (t *wsConn) WriteFrames(frames []wframe, timeout time.Duration) error {
	t.nc.SetWriteDeadline(time.Now().Add(timeout))
	b := wsWriteBufs.Get().(*wsWriteBuf)
	defer b.put()
	if t.rc != nil {
		b.vectors(frames)
		// The deadline is on progress: a client that reads, however
		// slowly, is not cut off in the middle of a burst.
		return b.writevAll(t.rc, t.nc, timeout)
	}
	for _, f := range frames {
		b.hdrs = appendWSHeader(b.hdrs, f.wsOp(), len(f.data))
	}
	off := 0
	for _, f := range frames {
		n := wsHeaderLen(len(f.data))
		b.join = append(append(b.join, b.hdrs[off:off+n]...), f.data...)
		off += n
	}
	_, err := t.nc.Write(b.join)
	return err
}

// canTryWrite says whether tryWriteFrames may be called: a plain TCP
// connection, whose socket can be written without waiting.
func (t *wsConn) canTryWrite() bool { return t.rc != nil }

// tryWriteFrames writes frames with one writev that does not wait: all
// reports whether the socket took every byte. When it did not, the rest
// is kept, and flushWrites must write it before anything else is written.
// Only the connection's writer calls it, with nothing kept.
func (t *wsConn) tryWriteFrames(frames []wframe) (all bool, err error) {
	b := wsWriteBufs.Get().(*wsWriteBuf)
	b.vectors(frames)
	if err := b.writevOnce(t.rc); err != nil {
		b.put()
		return false, err
	}
	if len(b.rest) == 0 {
		b.put()
		return true, nil
	}
	t.pend = b
	return false, nil
}

// flushWrites writes what tryWriteFrames kept, waiting for the socket as
// WriteFrames does.
func (t *wsConn) flushWrites(timeout time.Duration) error {
	b := t.pend
	if b == nil {
		return nil
	}
	t.pend = nil
	defer b.put()
	t.nc.SetWriteDeadline(time.Now().Add(timeout))
	return b.writevAll(t.rc, t.nc, timeout)
}

// vectors fills b.iov (and the headers it points into) with frames, and
// sets b.rest to all of it.
func (b *wsWriteBuf) vectors(frames []wframe) {
	for _, f := range frames {
		b.hdrs = appendWSHeader(b.hdrs, f.wsOp(), len(f.data))
	}
	off := 0
	for _, f := range frames {
		n := wsHeaderLen(len(f.data))
		b.iov = append(b.iov, b.hdrs[off:off+n])
		if len(f.data) > 0 {
			b.iov = append(b.iov, f.data)
		}
		off += n
	}
	b.rest = b.iov
}

// put returns b to the pool, unless it grew for a rare big burst.
func (b *wsWriteBuf) put() {
	clear(b.iov)
	b.rest = nil
	if cap(b.join) > 64<<10 || cap(b.iov) > 4096 {
		return // a rare big burst: do not keep its buffers
	}
	b.hdrs, b.iov, b.join = b.hdrs[:0], b.iov[:0], b.join[:0]
	wsWriteBufs.Put(b)
}

func wsHeaderLen(n int) int {
	switch {
	case n < 126:
		return 2
	case n <= 0xFFFF:
		return 4
	}
	return 10
}

// Close sends a close frame and waits briefly for the client's answer: a
// client that stopped reading must not hold the connection for long. A
// client that broke the protocol gets the protocol's close code instead
// of code, one that closed first gets its own code back.
func (t *wsConn) Close(code int, reason string) error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		switch {
		case t.protoErr != nil:
			code, reason = t.protoErr.code, t.protoErr.reason
		case t.peerClosed:
			code, reason = t.peerCode, ""
		}
		wait := !t.peerClosed && !t.ended
		var ch chan struct{}
		if wait {
			ch = make(chan struct{})
			t.closedCh = ch
		}
		t.mu.Unlock()
		err := t.WriteFrames([]wframe{{op: wsOpClose, data: wsClosePayload(code, reason)}}, closeGrace)
		if wait && err == nil {
			timer := time.NewTimer(closeGrace)
			select {
			case <-ch:
			case <-timer.C:
			}
			timer.Stop()
		}
		t.nc.Close()
		t.readFailed(net.ErrClosed)
	})
	return nil
}

const closeGrace = 500 * time.Millisecond
