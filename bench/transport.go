package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/webtransport-go"
)

// conn is one client connection to a node, over WebSocket (ws) or
// WebTransport (wt): the same frames either way (docs/protocol.md).
type conn interface {
	// Write sends one frame; safe for concurrent use.
	Write(ctx context.Context, frame []byte) error
	// Read returns the next frame; one reader at a time. The slice is
	// valid until the next Read.
	Read(ctx context.Context) ([]byte, error)
	// Close ends the connection politely (bounded); CloseNow at once.
	Close()
	CloseNow()
}

// wsConn is a conn over a WebSocket: one frame per text message.
type wsConn struct{ c *websocket.Conn }

func (w wsConn) Write(ctx context.Context, b []byte) error {
	return w.c.Write(ctx, websocket.MessageText, b)
}

func (w wsConn) Read(ctx context.Context) ([]byte, error) {
	_, b, err := w.c.Read(ctx)
	return b, err
}

func (w wsConn) Close()    { _ = w.c.Close(websocket.StatusNormalClosure, "bench done") }
func (w wsConn) CloseNow() { _ = w.c.CloseNow() }

// wtConn is a conn over a WebTransport session: one bidirectional stream,
// one JSON frame per line.
type wtConn struct {
	sess *webtransport.Session
	str  *webtransport.Stream
	br   *bufio.Reader

	wmu  sync.Mutex
	wbuf []byte
}

// wtMaxLine bounds a line the harness reads (frames are at most 16 KiB).
const wtMaxLine = 64 << 10

func newWTConn(sess *webtransport.Session, str *webtransport.Stream) *wtConn {
	return &wtConn{sess: sess, str: str, br: bufio.NewReaderSize(str, wtMaxLine)}
}

// onCancel makes a blocked stream operation return when ctx ends, by
// moving its deadline to now; done restores it and reports whether ctx
// interrupted the operation.
func onCancel(ctx context.Context, setDeadline func(time.Time) error) (done func() bool) {
	if ctx.Done() == nil {
		return func() bool { return false }
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = setDeadline(time.Now())
		close(fired)
	})
	return func() bool {
		if stop() {
			return false
		}
		<-fired
		_ = setDeadline(time.Time{})
		return true
	}
}

func (w *wtConn) Read(ctx context.Context) ([]byte, error) {
	done := onCancel(ctx, w.str.SetReadDeadline)
	for {
		line, err := w.br.ReadSlice('\n')
		if err != nil {
			if done() {
				return nil, ctx.Err()
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, fmt.Errorf("wt: a line over %d bytes: %w", wtMaxLine, err)
			}
			return nil, err
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
		if len(line) == 0 {
			continue
		}
		done()
		return line, nil
	}
}

func (w *wtConn) Write(ctx context.Context, b []byte) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	done := onCancel(ctx, w.str.SetWriteDeadline)
	w.wbuf = append(append(w.wbuf[:0], b...), '\n')
	_, err := w.str.Write(w.wbuf)
	if done() && err != nil {
		return ctx.Err()
	}
	return err
}

// Close ends the stream (FIN) and closes the session with 1000, the
// normal close code.
func (w *wtConn) Close() {
	w.wmu.Lock()
	_ = w.str.SetWriteDeadline(time.Now().Add(time.Second))
	_ = w.str.Close()
	w.wmu.Unlock()
	_ = w.sess.CloseWithError(1000, "bench done")
}

func (w *wtConn) CloseNow() { _ = w.sess.CloseWithError(0, "") }

// wtDialer opens WebTransport sessions. Clients share a few UDP sockets
// (as browsers behind one NAT would): one each would take a descriptor per
// connection. The node's certificate is self-signed and changes at every
// start: before each dial, the node's /v1/transport gives its URL and
// certificate hashes, and the TLS check accepts a certificate whose
// SHA-256 a node published (as serverCertificateHashes does in browsers).
type wtDialer struct {
	hc *http.Client
	t  *webtransport.Transport

	mu     sync.Mutex
	hashes map[[32]byte]bool
	pcs    []net.PacketConn
	qts    []*quic.Transport
	next   int
}

const wtSockets = 8

func newWTDialer(hc *http.Client) *wtDialer {
	d := &wtDialer{hc: hc, hashes: map[[32]byte]bool{}}
	d.t = &webtransport.Transport{
		TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, // replaced by the hash check below
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				if len(raw) == 0 {
					return errors.New("wt: no certificate")
				}
				d.mu.Lock()
				ok := d.hashes[sha256.Sum256(raw[0])]
				d.mu.Unlock()
				if !ok {
					return errors.New("wt: certificate hash not published by the node")
				}
				return nil
			},
		},
		DialAddr: func(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			qt, err := d.quic()
			if err != nil {
				return nil, err
			}
			ua, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				return nil, fmt.Errorf("wt: %w", err)
			}
			return qt.DialEarly(ctx, ua, tc, qc)
		},
	}
	return d
}

// quic returns one of the shared QUIC transports, round robin, opening
// the UDP sockets on first use.
func (d *wtDialer) quic() (*quic.Transport, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.qts) == 0 {
		for range wtSockets {
			pc, err := net.ListenPacket("udp", ":0")
			if err != nil {
				return nil, fmt.Errorf("wt: UDP socket: %w", err)
			}
			d.pcs = append(d.pcs, pc)
			d.qts = append(d.qts, &quic.Transport{Conn: pc})
		}
	}
	d.next++
	return d.qts[d.next%len(d.qts)], nil
}

// transportInfo is a node's GET /v1/transport.
type transportInfo struct {
	WebTransport *struct {
		URL        string   `json:"url"`
		CertHashes []string `json:"cert_hashes"`
	} `json:"webtransport"`
}

// dial opens a session to the node at base (http://host:port) and its
// stream.
func (d *wtDialer) dial(ctx context.Context, base string) (*wtConn, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/v1/transport", nil)
	if err != nil {
		return nil, fmt.Errorf("wt: %w", err)
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("wt: /v1/transport: %w", err)
	}
	var info transportInfo
	err = json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("wt: /v1/transport: %w", err)
	}
	if info.WebTransport == nil {
		return nil, errors.New("wt: the node offers no WebTransport (is HTTP/3 off?)")
	}
	d.mu.Lock()
	for _, h := range info.WebTransport.CertHashes {
		b, err := base64.StdEncoding.DecodeString(h)
		if err == nil && len(b) == 32 {
			d.hashes[[32]byte(b)] = true
		}
	}
	d.mu.Unlock()
	rsp, sess, err := d.t.Dial(ctx, info.WebTransport.URL, nil)
	if err != nil {
		if rsp != nil && rsp.StatusCode == http.StatusTooManyRequests {
			return nil, &wireError{Code: "rate_limited", Message: "too many connections from this address (HTTP 429)"}
		}
		return nil, fmt.Errorf("wt: dial %s: %w", info.WebTransport.URL, err)
	}
	str, err := sess.OpenStreamSync(ctx)
	if err != nil {
		_ = sess.CloseWithError(0, "")
		return nil, fmt.Errorf("wt: open stream: %w", err)
	}
	return newWTConn(sess, str), nil
}

// close ends the transport and the UDP sockets; sessions must be closed
// first.
func (d *wtDialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.qts) > 0 { // Dial ran: the transport was initialised
		_ = d.t.Close()
	}
	for _, qt := range d.qts {
		_ = qt.Close()
	}
	for _, pc := range d.pcs {
		_ = pc.Close()
	}
	d.qts, d.pcs = nil, nil
}
