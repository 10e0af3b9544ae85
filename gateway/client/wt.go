package client

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
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/webtransport-go"
)

// WTConfig configures a WTDialer. The zero value accepts only
// certificates whose hashes a node published to DialNode.
type WTConfig struct {
	// TLS, when set, checks the node's certificate itself; nil: a
	// certificate is accepted when its SHA-256 is in CertHashes or was
	// published by a node DialNode asked (as browsers do with
	// serverCertificateHashes: nodes serve HTTP/3 with a self-signed
	// certificate).
	TLS *tls.Config
	// CertHashes are SHA-256 hashes of accepted certificates.
	CertHashes [][]byte
	// LocalAddr is the source address of the UDP sockets (nil: any).
	LocalAddr net.IP
	// QUIC configures the QUIC connections (nil: webtransport-go's
	// defaults).
	QUIC *quic.Config
	// Sockets is how many UDP sockets the sessions share, round robin
	// (0: 8), as browsers behind one NAT would: one each would take a
	// file descriptor per connection.
	Sockets int
}

// WTDialer opens WebTransport sessions; one serves many connections.
// Close it after their connections.
type WTDialer struct {
	cfg WTConfig
	t   *webtransport.Transport

	mu     sync.Mutex
	hashes map[[32]byte]bool
	pcs    []net.PacketConn
	qts    []*quic.Transport
	next   int
}

// NewWTDialer returns a dialer; it opens its sockets on first use.
func NewWTDialer(cfg WTConfig) *WTDialer {
	d := &WTDialer{cfg: cfg, hashes: map[[32]byte]bool{}}
	for _, h := range cfg.CertHashes {
		if len(h) == sha256.Size {
			d.hashes[[32]byte(h)] = true
		}
	}
	tc := cfg.TLS
	if tc == nil {
		tc = &tls.Config{
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
		}
	}
	d.t = &webtransport.Transport{
		TLSClientConfig: tc,
		QUICConfig:      cfg.QUIC,
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
func (d *WTDialer) quic() (*quic.Transport, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.qts) == 0 {
		n := d.cfg.Sockets
		if n <= 0 {
			n = 8
		}
		local := &net.UDPAddr{IP: d.cfg.LocalAddr}
		for range n {
			pc, err := net.ListenUDP("udp", local)
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

// DialNode opens a session to the node at base (http[s]://host:port): it
// reads the node's WebTransport URL and certificate hashes from its
// /v1/transport (with o's HTTP client), then dials.
func (d *WTDialer) DialNode(ctx context.Context, base string, o Options) (*Conn, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/v1/transport", nil)
	if err != nil {
		return nil, fmt.Errorf("wt: %w", err)
	}
	resp, err := o.httpClient().Do(req)
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
		if err == nil && len(b) == sha256.Size {
			d.hashes[[32]byte(b)] = true
		}
	}
	d.mu.Unlock()
	return d.Dial(ctx, info.WebTransport.URL, o)
}

// Dial opens a session to url (https://host:port/v1/wt) and its stream.
// A refusal of the handshake is a *HandshakeError.
func (d *WTDialer) Dial(ctx context.Context, url string, o Options) (*Conn, error) {
	rsp, sess, err := d.t.Dial(ctx, url, o.Header)
	if err != nil {
		if rsp != nil && rsp.StatusCode != 0 && rsp.StatusCode != http.StatusOK {
			return nil, &HandshakeError{Status: rsp.StatusCode, Err: err}
		}
		return nil, fmt.Errorf("wt: dial %s: %w", url, err)
	}
	str, err := sess.OpenStreamSync(ctx)
	if err != nil {
		_ = sess.CloseWithError(0, "")
		return nil, fmt.Errorf("wt: open stream: %w", err)
	}
	sc := bufio.NewScanner(str)
	sc.Buffer(make([]byte, 0, 64<<10), int(o.readLimit()))
	return newConn(&wtTransport{sess: sess, str: str, sc: sc}, o), nil
}

// Close ends the transport and the UDP sockets; close the connections
// first.
func (d *WTDialer) Close() {
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

// wtTransport carries frames on one bidirectional stream, one JSON
// object per line.
type wtTransport struct {
	sess *webtransport.Session
	str  *webtransport.Stream
	sc   *bufio.Scanner

	wmu  sync.Mutex
	wbuf []byte
}

func (w *wtTransport) read() ([]byte, error) {
	for w.sc.Scan() {
		line := bytes.TrimSuffix(w.sc.Bytes(), []byte{'\r'})
		if len(line) == 0 {
			continue
		}
		return bytes.Clone(line), nil
	}
	err := w.sc.Err()
	if err == nil {
		err = io.EOF
		// The node ended the stream: end ours, so that it closes the
		// session at once, with its code.
		w.wmu.Lock()
		_ = w.str.Close()
		w.wmu.Unlock()
	}
	return nil, err
}

func (w *wtTransport) write(ctx context.Context, b []byte, raw bool) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	done := onCancel(ctx, w.str.SetWriteDeadline)
	if raw {
		w.wbuf = append(w.wbuf[:0], b...)
	} else {
		w.wbuf = append(append(w.wbuf[:0], b...), '\n')
	}
	_, err := w.str.Write(w.wbuf)
	if done() && err != nil {
		return ctx.Err()
	}
	return err
}

func (w *wtTransport) writeBinary(context.Context, []byte) error {
	return errors.New("wt: no binary messages over WebTransport")
}

// close ends the stream (FIN) and closes the session with code.
func (w *wtTransport) close(code int, reason string) {
	w.wmu.Lock()
	_ = w.str.SetWriteDeadline(time.Now().Add(time.Second))
	_ = w.str.Close()
	w.wmu.Unlock()
	_ = w.sess.CloseWithError(webtransport.SessionErrorCode(code), reason)
}

func (w *wtTransport) closeNow() { _ = w.sess.CloseWithError(0, "") }

// closeCode waits for the session to close and returns its error code.
func (w *wtTransport) closeCode(ctx context.Context, _ error) (int, error) {
	select {
	case <-w.sess.Context().Done():
	case <-ctx.Done():
		return -1, fmt.Errorf("the node did not close the session: %w", ctx.Err())
	}
	_, err := w.sess.OpenStream() // returns why the session closed
	var se *webtransport.SessionError
	if !errors.As(err, &se) {
		return -1, fmt.Errorf("session closed with %v, not a session error", err)
	}
	return int(se.ErrorCode), nil
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
