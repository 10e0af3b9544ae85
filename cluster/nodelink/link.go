// Package nodelink is the only way Parley nodes talk to each other apart
// from gossip: TLS 1.3 with a certificate at both ends, issued by a cluster
// certificate authority whose key is derived from the cluster key. One TCP
// listener (the node's -raft-addr) carries every protocol between nodes,
// told apart by ALPN: Raft, and HTTP for the internal API, replication
// links, relayed client connections and relayed API requests. A process
// without the cluster key cannot complete a handshake, so it gets no byte
// through and reads none.
package nodelink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Protocols carried by a link, negotiated by ALPN. A new one is appended;
// a node refuses a protocol it does not know.
const (
	ProtoRaft = "parley-raft/1"
	ProtoHTTP = "parley-http/1"
)

var protocols = []string{ProtoRaft, ProtoHTTP}

// handshakeTimeout bounds a TLS handshake, so a peer that connects and says
// nothing holds no goroutine for long.
const handshakeTimeout = 10 * time.Second

// Handshakes under way are bounded, in all and per remote address, so that
// strangers who connect and say nothing cannot hold the node's descriptors
// or goroutines: a connection over a bound is closed at once. Members open
// a few connections each and keep them (Raft pools 3, HTTP keeps idle ones),
// so they are far below either bound, and known members pass them anyway
// (Config.Member).
const (
	maxHandshakes      = 128
	maxHandshakesPerIP = 16
)

// ErrClosed is returned by Accept once the link is closed.
var ErrClosed = net.ErrClosed

// Config configures Listen. Seed, NodeID and Bind are required.
type Config struct {
	// Seed (at least MinSeed bytes) derives the cluster CA's key. Every
	// node of a cluster must have the same one: derive it from the cluster
	// key under a label of its own.
	Seed []byte
	// NodeID goes into this node's certificate (its common name), so a peer
	// can tell who it talks to.
	NodeID string
	// Bind is the TCP address to listen on.
	Bind string
	// Advertise is the address peers dial. Zero: the address bound.
	Advertise string
	// Dial opens the TCP connection under a link. Zero: a net.Dialer with a
	// 3 s timeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives refused handshakes (at debug: anybody can knock).
	// Zero: slog.Default().
	Logger *slog.Logger
	// Now is the clock of certificate validity. Zero: time.Now.
	Now func() time.Time
	// Member says whether a remote address is a known member's: its
	// handshakes are not held to the bounds on handshakes under way, so
	// strangers flooding the port from many addresses cannot lock members
	// out. Called with the link's lock held: it must be quick. Zero: no
	// address is known.
	Member func(ip string) bool
	// Version is the protocol version this node speaks and MinVersion the
	// oldest it works beside (version.go): both go into its certificate,
	// and a link with a peer that cannot work with this node is refused at
	// both ends. Zero: version 1 advertised by no extension, as the first
	// release did; a zero MinVersion is Version.
	Version, MinVersion int
}

// Link is a node's end of the links to the other nodes: a listener that
// hands out verified connections by protocol, and a dialler.
type Link struct {
	cfg    Config
	leaf   *leafSource
	ca     *ca
	ln     net.Listener
	adv    net.Addr
	protos map[string]*protoListener

	refused  atomic.Uint64
	incompat refusals

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // handshaking
	perIP  map[string]int        // handshaking, by remote address
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

// Listen opens the link's listener and starts accepting; Close stops it.
func Listen(cfg Config) (*Link, error) {
	if cfg.NodeID == "" || cfg.Bind == "" {
		return nil, errors.New("nodelink: NodeID and Bind are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{Timeout: 3 * time.Second}).DialContext
	}
	if cfg.MinVersion <= 0 || cfg.MinVersion > cfg.Version {
		cfg.MinVersion = cfg.Version
	}
	a, err := newCA(cfg.Seed)
	if err != nil {
		return nil, err
	}
	ext, err := versionExtension(versions{Version: cfg.Version, Min: cfg.MinVersion})
	if err != nil {
		return nil, err
	}
	l := &Link{cfg: cfg, ca: a, leaf: &leafSource{ca: a, nodeID: cfg.NodeID, now: cfg.Now, ext: ext},
		protos: map[string]*protoListener{}, conns: map[net.Conn]struct{}{}, perIP: map[string]int{}, done: make(chan struct{})}
	if _, err := l.leaf.get(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("nodelink: %w", err)
	}
	l.ln = ln
	l.adv = ln.Addr()
	if cfg.Advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("nodelink: advertise address: %w", err)
		}
		l.adv = a
	}
	for _, p := range protocols {
		l.protos[p] = &protoListener{link: l, ch: make(chan net.Conn), done: make(chan struct{})}
	}
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// Addr is the address peers dial.
func (l *Link) Addr() net.Addr { return l.adv }

// Refused counts connections whose handshake failed: peers without the
// cluster key, scanners, or nodes of another cluster.
func (l *Link) Refused() uint64 { return l.refused.Load() }

// Listener returns the connections of one protocol, verified. Its Close
// stops that protocol only; the link's Close ends them all.
func (l *Link) Listener(proto string) net.Listener {
	p, ok := l.protos[proto]
	if !ok {
		panic("nodelink: unknown protocol " + proto)
	}
	return p
}

func (l *Link) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return l.leaf.get()
		},
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  l.ca.pool,
		NextProtos: protocols,
		Time:       l.cfg.Now,
	}
}

func (l *Link) clientConfig(proto string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return l.leaf.get()
		},
		RootCAs:    l.ca.pool,
		ServerName: ServerName,
		NextProtos: []string{proto},
		Time:       l.cfg.Now,
	}
}

func (l *Link) accept() {
	defer l.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.isClosed() {
				return
			}
			// Out of descriptors or similar: wait rather than spin.
			l.cfg.Logger.Warn("nodelink: accept", "err", err)
			select {
			case <-l.done:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		ok, closed := l.track(c)
		if closed {
			c.Close()
			return
		}
		if !ok {
			l.refused.Add(1)
			c.Close()
			continue
		}
		l.wg.Add(1)
		go l.handshake(c)
	}
}

// handshake verifies an accepted connection and hands it to the listener of
// its protocol.
func (l *Link) handshake(raw net.Conn) {
	defer l.wg.Done()
	tc := tls.Server(raw, l.serverConfig())
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	l.untrack(raw)
	if err != nil {
		l.refused.Add(1)
		l.cfg.Logger.Debug("nodelink: handshake refused", "remote", raw.RemoteAddr().String(), "err", err)
		raw.Close()
		return
	}
	p, ok := l.protos[tc.ConnectionState().NegotiatedProtocol]
	if !ok {
		l.refused.Add(1)
		tc.Close()
		return
	}
	if err := l.checkPeer(tc.ConnectionState()); err != nil {
		l.refused.Add(1)
		l.incompat.log(l, "accepted", err)
		tc.Close()
		return
	}
	select {
	case p.ch <- &Conn{Conn: tc, state: tc.ConnectionState()}:
	case <-p.done:
		tc.Close()
	case <-l.done:
		tc.Close()
	}
}

// track counts a connection whose handshake starts; ok is false when a
// bound refuses it.
func (l *Link) track(c net.Conn) (ok, closed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false, true
	}
	ip := remoteIP(c)
	if (len(l.conns) >= maxHandshakes || l.perIP[ip] >= maxHandshakesPerIP) && (l.cfg.Member == nil || !l.cfg.Member(ip)) {
		return false, false
	}
	l.conns[c] = struct{}{}
	l.perIP[ip]++
	return true, false
}

func (l *Link) untrack(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.conns[c]; !ok {
		return
	}
	delete(l.conns, c)
	ip := remoteIP(c)
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

// Handshaking returns how many handshakes are under way.
func (l *Link) Handshaking() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return c.RemoteAddr().String()
}

func (l *Link) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Close stops accepting, ends handshakes under way and waits for the
// link's goroutines. Connections already handed out belong to their
// protocol's server, which closes them.
func (l *Link) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	err := l.ln.Close()
	for c := range conns {
		c.Close()
	}
	l.wg.Wait()
	return err
}

// Dial opens a verified connection of proto to the node at addr, over a
// TCP connection from dial (nil: the link's Config.Dial).
func (l *Link) Dial(ctx context.Context, addr, proto string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*tls.Conn, error) {
	if !slices.Contains(protocols, proto) {
		return nil, fmt.Errorf("nodelink: unknown protocol %q", proto)
	}
	if dial == nil {
		dial = l.cfg.Dial
	}
	raw, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, l.clientConfig(proto))
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("nodelink: handshake with %s: %w", addr, err)
	}
	if got := tc.ConnectionState().NegotiatedProtocol; got != proto {
		tc.Close()
		return nil, fmt.Errorf("nodelink: %s speaks %q, not %q", addr, got, proto)
	}
	if err := l.checkPeer(tc.ConnectionState()); err != nil {
		l.incompat.log(l, "dialled "+addr, err)
		tc.Close()
		return nil, err
	}
	return tc, nil
}

// HTTPTransport carries HTTP between nodes over links: URLs are
// https://<peer link address>/...; dial, when not nil, opens the TCP
// connections under them (fault injection in tests).
func (l *Link) HTTPTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	return &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return l.Dial(ctx, addr, ProtoHTTP, dial)
		},
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     time.Minute,
	}
}

// Conn is an accepted, verified connection. It is not a *tls.Conn on
// purpose: net/http serves a *tls.Conn by its ALPN protocol and drops one
// it does not know, and a link's HTTP is HTTP/1.1 under its own name.
type Conn struct {
	net.Conn
	state tls.ConnectionState
}

// ConnectionState is the TLS state of the connection: the peer's verified
// certificate among it.
func (c *Conn) ConnectionState() tls.ConnectionState { return c.state }

// protoListener is the net.Listener of one protocol's verified connections.
type protoListener struct {
	link *Link
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func (p *protoListener) Accept() (net.Conn, error) {
	select {
	case c := <-p.ch:
		return c, nil
	case <-p.done:
		return nil, ErrClosed
	case <-p.link.done:
		return nil, ErrClosed
	}
}

// Close stops this protocol's Accept; connections of the protocol that
// arrive later are closed after their handshake.
func (p *protoListener) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

func (p *protoListener) Addr() net.Addr { return p.link.adv }

// Stream is one protocol's end of the link as a listener and a dialler
// with a timeout: the shape of Raft's stream layer (cluster.StreamLayer).
type Stream struct {
	net.Listener
	link  *Link
	proto string
}

// Stream returns proto's listener and dialler.
func (l *Link) Stream(proto string) *Stream {
	return &Stream{Listener: l.Listener(proto), link: l, proto: proto}
}

// Dial opens a verified connection of the stream's protocol to addr.
func (s *Stream) Dial(addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := s.link.Dial(ctx, addr, s.proto, nil)
	if err != nil {
		return nil, err
	}
	return c, nil
}
