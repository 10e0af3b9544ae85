package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"parley/gateway/wire"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"
)

// WebTransportPath is where clients open a WebTransport session.
const WebTransportPath = "/v1/wt"

// WebTransportConfig configures NewWebTransport.
type WebTransportConfig struct {
	// TLS holds the listener's certificate (Certificates or GetCertificate).
	TLS *tls.Config
	// Handler serves every HTTP/3 request other than a WebTransport session
	// at WebTransportPath: the node's pages, the same as over TCP, since the
	// node advertises HTTP/3 with Alt-Svc. Nil: 404.
	Handler http.Handler
	// IdleTimeout closes a QUIC connection that received nothing for this
	// long. The server sends no QUIC keep-alives: clients ping every
	// heartbeat (10 s), which keeps the path and NAT bindings alive, and a
	// client that gets no answer to a ping soon enough takes the session for
	// broken and falls back to WebSocket (see docs/protocol.md). Keep-alives
	// from the server would cost a packet each way per connection every few
	// seconds. Zero: 30s, three heartbeats, as for a silent WebSocket.
	IdleTimeout time.Duration
	// StatelessResetKey lets the node, restarted after a crash on the same
	// port, answer packets of connections it no longer knows with a QUIC
	// stateless reset, so that their clients reconnect at once instead of
	// after IdleTimeout. Keep it secret and the same across restarts (the
	// node derives it from its cluster key). Nil: no resets.
	StatelessResetKey *quic.StatelessResetKey
}

// WebTransport serves HTTP/3 and the wire protocol over WebTransport on
// one UDP socket. Sessions, the hub, acks, resume, error codes and limits are
// the gateway's, shared with WebSocket: only the framing differs (see
// docs/protocol.md, "Transports").
type WebTransport struct {
	gw      *Server
	h3      *http3.Server
	wt      *webtransport.Server
	handler http.Handler
	closed  atomic.Bool
	active  atomic.Int64 // WebTransport handlers running

	resetKey *quic.StatelessResetKey

	mu sync.Mutex
	tr *quic.Transport // set by Serve; closed by Close
}

type quicConnKey struct{}

// NewWebTransport returns the HTTP/3 server of gateway s; Serve runs it.
func (s *Server) NewWebTransport(cfg WebTransportConfig) *WebTransport {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	handler := cfg.Handler
	if handler == nil {
		handler = http.NotFoundHandler()
	}
	w := &WebTransport{gw: s, handler: handler, resetKey: cfg.StatelessResetKey}
	w.h3 = &http3.Server{
		TLSConfig: http3.ConfigureTLSConfig(cfg.TLS),
		QUICConfig: &quic.Config{
			MaxIdleTimeout:                   cfg.IdleTimeout,
			HandshakeIdleTimeout:             5 * time.Second,
			EnableDatagrams:                  true,
			EnableStreamResetPartialDelivery: true,
		},
		Handler:        http.HandlerFunc(w.serveHTTP),
		MaxHeaderBytes: 64 << 10,
		Logger:         s.log,
		ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
			return context.WithValue(ctx, quicConnKey{}, c)
		},
	}
	webtransport.ConfigureHTTP3Server(w.h3)
	w.wt = &webtransport.Server{
		H3: w.h3,
		// Any origin may connect, as over WebSocket: the widget runs on
		// customers' sites, and credentials travel in hello, not cookies.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return w
}

// Serve serves HTTP/3 on pc until Close; it does not close pc. It accepts
// the QUIC connections itself and hands each to webtransport-go: the
// library's own Serve counts itself on a WaitGroup that its Close waits on,
// and a Close soon after start raced with that count.
func (w *WebTransport) Serve(pc net.PacketConn) error {
	tr := &quic.Transport{Conn: pc, StatelessResetKey: w.resetKey}
	ln, err := tr.ListenEarly(w.h3.TLSConfig, w.h3.QUICConfig)
	if err != nil {
		tr.Close()
		return fmt.Errorf("webtransport: listen: %w", err)
	}
	w.mu.Lock()
	if w.closed.Load() {
		w.mu.Unlock()
		ln.Close()
		tr.Close()
		return nil
	}
	w.tr = tr
	w.mu.Unlock()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		qc, err := ln.Accept(context.Background())
		if err != nil {
			if w.closed.Load() {
				return nil
			}
			return fmt.Errorf("webtransport: accept: %w", err)
		}
		conns.Go(func() { w.wt.ServeQUICConn(qc) })
	}
}

// Close closes every QUIC connection at once (while the socket is open, so
// that their CONNECTION_CLOSE frames go out), then the listener.
func (w *WebTransport) Close() error {
	w.mu.Lock()
	w.closed.Store(true)
	tr := w.tr
	w.mu.Unlock()
	err := w.wt.Close()
	if tr != nil {
		// Closes the listener too; pc stays open (it is not the Transport's).
		tr.Close()
	}
	return err
}

// Shutdown waits, until ctx ends, for the WebTransport sessions to be over
// and their clients to have closed their QUIC connections, then closes. Shut
// the gateway down first: it tells WebTransport clients, like WebSocket ones,
// to reconnect, and closes their sessions; closing the connections before
// the clients read that would lose it.
func (w *WebTransport) Shutdown(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for w.active.Load() > 0 {
		select {
		case <-ctx.Done():
			w.Close()
			return ctx.Err()
		case <-t.C:
		}
	}
	return w.Close()
}

func (w *WebTransport) serveHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		w.handler.ServeHTTP(rw, r)
		return
	}
	if r.URL.Path != WebTransportPath {
		http.NotFound(rw, r)
		return
	}
	w.active.Add(1)
	defer w.active.Add(-1)
	s := w.gw
	ip := clientIP(r)
	if !s.admit(ip, false) {
		s.metrics.Error(wire.CodeRateLimited)
		rw.WriteHeader(http.StatusTooManyRequests)
		return
	}
	sess, err := w.wt.Upgrade(rw, r)
	if err != nil {
		s.release(ip, false)
		s.log.Debug("webtransport upgrade", "err", err)
		rw.WriteHeader(http.StatusBadRequest)
		return
	}
	// The client opens one bidirectional stream for the protocol.
	actx, cancel := context.WithTimeout(sess.Context(), s.cfg.HelloTimeout)
	str, err := sess.AcceptStream(actx)
	cancel()
	if err != nil {
		s.release(ip, false)
		sess.CloseWithError(wire.CloseUnauthentic, "no stream opened")
		return
	}
	t := newWTTransport(sess, str)
	s.serve(context.WithoutCancel(r.Context()), t, ip, false, func() { s.release(ip, false) })
	// One session per QUIC connection: once it is over, so is the
	// connection. The client normally closes it itself; give it a moment to
	// read the session's close first.
	if qc, ok := r.Context().Value(quicConnKey{}).(*quic.Conn); ok {
		timer := time.NewTimer(time.Second)
		select {
		case <-qc.Context().Done():
		case <-timer.C:
			qc.CloseWithError(0, "")
		}
		timer.Stop()
	}
}

// wtTransport carries frames as lines on one bidirectional stream: each frame
// is one JSON object followed by "\n" (encoded JSON never contains a raw
// newline). Only the connection's writer goroutine writes and closes; only
// its reader reads.
type wtTransport struct {
	sess     *webtransport.Session
	str      *webtransport.Stream
	lines    *lineReader
	wbuf     []byte
	readDone chan struct{} // closed when the read side ended
	readOnce sync.Once
	closed   sync.Once

	rmu      sync.Mutex // held by a Read in progress, or by Close draining
	draining bool       // Close reads what is left: Read returns io.EOF
}

func newWTTransport(sess *webtransport.Session, str *webtransport.Stream) *wtTransport {
	return &wtTransport{sess: sess, str: str, lines: newLineReader(str), readDone: make(chan struct{})}
}

func (t *wtTransport) Name() string { return "wt" }

// Read returns the next line. A line over wire.MaxFrameBytes comes back as its
// first wire.MaxFrameBytes+1 bytes, which decodeFrame refuses with too_large
// (and the connection closes), without the rest ever being buffered.
func (t *wtTransport) Read(ctx context.Context) ([]byte, error) {
	t.rmu.Lock()
	defer t.rmu.Unlock()
	if t.draining {
		return nil, io.EOF
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { t.str.CancelRead(0) })
		defer stop()
	}
	line, err := t.lines.next()
	if err != nil {
		t.readOnce.Do(func() { close(t.readDone) })
		return nil, err
	}
	return line, nil
}

// WriteFrames writes a burst of frames as one write of their lines. The
// deadline is on the whole burst.
func (t *wtTransport) WriteFrames(frames []wframe, timeout time.Duration) error {
	t.str.SetWriteDeadline(time.Now().Add(timeout))
	// Frames are shared between connections and must not be appended to
	// in place.
	t.wbuf = t.wbuf[:0]
	for _, f := range frames {
		if f.op != 0 {
			continue // WebSocket control frames have no counterpart here
		}
		t.wbuf = append(append(t.wbuf, f.data...), '\n')
	}
	if len(t.wbuf) == 0 {
		return nil
	}
	_, err := t.str.Write(t.wbuf)
	if cap(t.wbuf) > 64<<10 {
		t.wbuf = nil // a rare big burst: do not keep its buffer
	}
	return err
}

// wtCloseGrace bounds the wait for a client to read the last frames: unlike
// a WebSocket's, a WebTransport client loses what it has not read yet when
// the session closes.
const wtCloseGrace = 2 * time.Second

// Close ends the stream after what was written (FIN), waits for the client
// to finish reading (it ends its side of the stream, or the session), at most
// wtCloseGrace, then closes the session with code, the WebSocket close code
// of the same meaning: a browser reads it in WebTransport.closed.
func (t *wtTransport) Close(code int, reason string) error {
	t.closed.Do(func() {
		t.str.SetWriteDeadline(time.Now().Add(closeGrace))
		t.str.Close()
		deadline := time.Now().Add(wtCloseGrace)
		if t.rmu.TryLock() {
			// Nobody reads (the reader stopped at a fatal error): read
			// and drop what the client still sends, up to its end.
			t.draining = true
			t.str.SetReadDeadline(deadline)
			io.Copy(io.Discard, io.LimitReader(t.str, 4*wire.MaxFrameBytes))
			t.rmu.Unlock()
		} else {
			// The reader is in Read: it sees the client's end.
			timer := time.NewTimer(time.Until(deadline))
			select {
			case <-t.readDone:
			case <-t.sess.Context().Done():
			case <-timer.C:
			}
			timer.Stop()
		}
		t.sess.CloseWithError(webtransport.SessionErrorCode(code), reason)
	})
	return nil
}

// lineReader splits a byte stream into frames at "\n" (a "\r" before the
// "\n" is dropped, and empty lines are skipped). It buffers 4 KiB per
// connection, and at most wire.MaxFrameBytes+2 more for one long line.
type lineReader struct {
	br      *bufio.Reader
	tooLong bool
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 4<<10)}
}

// errLineTooLong ends the reader after it returned an oversized line.
var errLineTooLong = errors.New("line too long")

// next returns a fresh copy of the next line. A line over wire.MaxFrameBytes is
// returned cut to wire.MaxFrameBytes+1 bytes, and every later call returns
// errLineTooLong: the rest of it is never read.
func (l *lineReader) next() ([]byte, error) {
	if l.tooLong {
		return nil, errLineTooLong
	}
	var long []byte
	for {
		chunk, err := l.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, chunk...)
			// Even if "\r\n" came next, the line would be too long.
			if len(long) > wire.MaxFrameBytes+1 {
				l.tooLong = true
				return long[:wire.MaxFrameBytes+1], nil
			}
			continue
		}
		if err != nil {
			// The stream ended: an unterminated last line is incomplete,
			// not a frame.
			return nil, err
		}
		var line []byte
		if long != nil {
			line = append(long, chunk...)
		} else {
			line = bytes.Clone(chunk)
		}
		line = line[:len(line)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) > wire.MaxFrameBytes {
			l.tooLong = true
			return line[:wire.MaxFrameBytes+1], nil
		}
		if len(line) == 0 {
			continue
		}
		return line, nil
	}
}
