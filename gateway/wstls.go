package gateway

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
)

// WebSockets over TLS read by the poller. crypto/tls reads its records
// from the net.Conn beneath it and blocks only as long as that Read does;
// a Read that fails with a temporary net.Error (Timeout and Temporary
// true) leaves what it had of a record in the tls.Conn's own input and
// does not end the connection (crypto/tls, readRecordOrCCS: only errors
// that are not temporary are set on the connection), so the next Read
// carries on with the record. A TLS WebSocket is therefore read like a
// plain one: the poller watches its socket, and when bytes arrive a
// goroutine of the connection's (readTLS) reads through the tls.Conn what
// is there, records whole or in pieces, and ends when the socket has no
// more; an idle one holds no goroutine and no read buffer.
//
// For that the socket beneath the tls.Conn must be one whose Read may be
// made non-blocking: PollableTLS wraps the listener a TLS server wraps.
// Writes are not concerned: they go through the socket's own Write, with
// its deadline, as before.

// PollableTLS returns a listener whose connections a TLS server
// (http.Server.ServeTLS, tls.NewListener) may wrap so that the gateway's
// poller reads their WebSockets once upgraded, instead of a goroutine per
// connection. A connection without a socket of its own (syscall.Conn: a
// PROXY-protocol connection with its own buffer, say) is returned as it
// is, and its WebSocket keeps a reader goroutine. Where there is no
// poller, PollableTLS returns ln.
func PollableTLS(ln net.Listener) net.Listener {
	if !canPoll {
		return ln
	}
	return pollableListener{ln}
}

type pollableListener struct{ net.Listener }

func (l pollableListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c, nil
	}
	return &nbConn{Conn: c, rc: rc}, nil
}

// nbConn is a socket beneath a tls.Conn. Its Read blocks, as any
// net.Conn's, until the gateway polls the connection (wsConn.poll); from
// then on it reads what is there and fails with errWouldBlock when
// nothing is. Everything else (Write, deadlines, Close) is the socket's.
type nbConn struct {
	net.Conn
	rc       syscall.RawConn
	nonblock atomic.Bool
}

func (c *nbConn) Read(b []byte) (int, error) {
	if !c.nonblock.Load() {
		return c.Conn.Read(b)
	}
	n, err := readNonblock(c.rc, b)
	if n == 0 && err == nil {
		return 0, errWouldBlock
	}
	return n, err
}

// NetConn returns the connection nbConn wraps (as tls.Conn's does), for
// whoever looks beneath it (the node counts connections by address on
// its own wrapper).
func (c *nbConn) NetConn() net.Conn { return c.Conn }

// errWouldBlock is an nbConn's Read when the socket has nothing to read:
// a temporary timeout, which crypto/tls returns without ending the
// connection.
var errWouldBlock net.Error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "gateway: nothing to read yet" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// wsTLS is the polled reading of a TLS WebSocket.
type wsTLS struct {
	tc *tls.Conn
	nb *nbConn
	// Under the wsConn's mu: a read pass (readTLS) runs; another was asked
	// for while it ran.
	reading, again bool
}

// tlsPolled returns the polled reading of a TLS connection, or nil when its
// socket cannot be polled (not accepted through PollableTLS).
func tlsPolled(tc *tls.Conn) *wsTLS {
	nb, ok := tc.NetConn().(*nbConn)
	if !ok || !canPoll {
		return nil
	}
	return &wsTLS{tc: tc, nb: nb}
}

// tlsReadBuffer is what one read of a tls.Conn may return: a record's
// plaintext at most.
const tlsReadBuffer = 16 << 10

var tlsReadBufs = sync.Pool{New: func() any { return new([tlsReadBuffer]byte) }}

// readTLSSoon starts a read pass on a goroutine of the connection's, or
// has the one running read again before it ends. The poller calls it
// when bytes arrived (readable), the sink when it lifts a pause
// (resumeReading): a tls.Conn may hold bytes the socket no longer shows.
func (t *wsConn) readTLSSoon() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended {
		return
	}
	if t.tls.reading {
		t.tls.again = true
		return
	}
	t.tls.reading = true
	go t.readTLS()
}

// readTLS reads what is there, hands it to the parser, and watches the
// socket again, unless the sink asked for a pause (resumeReading starts
// the next pass) or reading ended.
func (t *wsConn) readTLS() {
	buf := tlsReadBufs.Get().(*[tlsReadBuffer]byte)
	defer tlsReadBufs.Put(buf)
	for {
		paused, err := t.readTLSAvailable(buf[:])
		t.mu.Lock()
		switch {
		case err != nil:
			t.endLocked(err)
		case t.ended:
		case t.tls.again:
			t.tls.again = false
			t.mu.Unlock()
			continue
		case paused:
		default:
			if err := t.p.arm(t.tls.nb.rc, t.id); err != nil {
				t.endLocked(err)
			}
		}
		t.tls.reading = false
		t.mu.Unlock()
		return
	}
}

// readTLSAvailable reads until the socket has nothing more (nil), the
// sink is full (true), reading ended or fails.
func (t *wsConn) readTLSAvailable(buf []byte) (paused bool, err error) {
	for {
		t.mu.Lock()
		ended := t.ended
		t.mu.Unlock()
		if ended {
			return false, nil
		}
		if t.sink.full() {
			return true, nil
		}
		n, err := t.tls.tc.Read(buf)
		if n > 0 {
			if err := t.parser.feed(buf[:n], t.emit); err != nil {
				return false, err
			}
		}
		switch {
		case err == errWouldBlock:
			// Itself, not wrapped: a tls.Conn that kept it as its
			// error (were it to take it as permanent) would return
			// it wrapped from then on, and must end.
			return false, nil
		case err != nil:
			return false, err
		}
	}
}
