package edge

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Trusted is the set of proxies whose word on a client's address is taken.
// The zero value and nil trust none.
type Trusted struct {
	prefixes []netip.Prefix
}

// ParseTrusted reads CIDR prefixes ("10.0.0.0/8", "::1/128") or single
// addresses ("127.0.0.1"); an empty entry is skipped.
func ParseTrusted(list []string) (*Trusted, error) {
	t := &Trusted{}
	var errs []error
	for _, s := range list {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			t.prefixes = append(t.prefixes, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
			t.prefixes = append(t.prefixes, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		errs = append(errs, fmt.Errorf("%q is not a CIDR prefix or an IP address", s))
	}
	return t, errors.Join(errs...)
}

// Empty tells whether no proxy is trusted.
func (t *Trusted) Empty() bool { return t == nil || len(t.prefixes) == 0 }

// Contains tells whether a is a trusted proxy's address.
func (t *Trusted) Contains(a netip.Addr) bool {
	if t == nil {
		return false
	}
	a = a.Unmap()
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientAddr is the client's address of a request that came from peer
// with the X-Forwarded-For values xff: the rightmost address of the chain
// that is not a trusted proxy's (each proxy appends the address it was
// reached from, so what lies left of the first untrusted hop is the
// client's own say and proves nothing). A request from an untrusted peer
// keeps the peer's address whatever its header says; an entry that is not
// an address ends the walk at the last trusted hop.
func (t *Trusted) ClientAddr(peer netip.Addr, xff []string) netip.Addr {
	cur := peer.Unmap()
	if !t.Contains(cur) {
		return cur
	}
	for i := len(xff) - 1; i >= 0; i-- {
		hops := strings.Split(xff[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			a, ok := parseHop(hops[j])
			if !ok {
				return cur
			}
			cur = a
			if !t.Contains(a) {
				return cur
			}
		}
	}
	return cur
}

// parseHop reads one X-Forwarded-For entry: an address, bracketed or not,
// with or without a port.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		return parseHop(s[1 : len(s)-1])
	}
	return netip.Addr{}, false
}

// Handler sets each request's RemoteAddr to its client's address (see
// ClientAddr) before next sees it, so that everything counting per client
// address counts the client. The port of a derived address is 0.
func (t *Trusted) Handler(next http.Handler) http.Handler {
	if t.Empty() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		xff := r.Header.Values("X-Forwarded-For")
		if len(xff) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		peer, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			next.ServeHTTP(w, r)
			return
		}
		client := t.ClientAddr(peer.Addr(), xff)
		if client == peer.Addr().Unmap() {
			next.ServeHTTP(w, r)
			return
		}
		r2 := new(http.Request)
		*r2 = *r
		r2.RemoteAddr = netip.AddrPortFrom(client, 0).String()
		next.ServeHTTP(w, r2)
	})
}

// ListenerConfig configures NewListener.
type ListenerConfig struct {
	// Trusted are the proxies whose PROXY protocol headers are read.
	Trusted *Trusted
	// HeaderTimeout bounds the wait for a trusted proxy's first bytes.
	// Zero: 10s.
	HeaderTimeout time.Duration
	// Logger. Zero: slog.Default().
	Logger *slog.Logger
}

// NewListener returns a listener whose connections from trusted proxies
// may open with a PROXY protocol header (v1 or v2); such a connection's
// RemoteAddr is then the client's address the header names. The header is
// read when the connection is first read or asked its RemoteAddr, not in
// Accept, so a slow proxy holds up no other connection. A connection from
// a trusted proxy without a header is taken as the proxy's own. A
// malformed header closes the connection. From any other address nothing
// is read: a PROXY header there reaches the HTTP or TLS server as the
// request's first bytes, which refuses it as malformed.
func NewListener(ln net.Listener, cfg ListenerConfig) net.Listener {
	if cfg.Trusted.Empty() {
		return ln
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &listener{Listener: ln, cfg: cfg}
}

type listener struct {
	net.Listener
	cfg ListenerConfig
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if a, ok := addrOf(c.RemoteAddr()); !ok || !l.cfg.Trusted.Contains(a) {
		return c, nil
	}
	return &proxyConn{Conn: c, r: bufio.NewReader(c), cfg: &l.cfg}, nil
}

// proxyConn is a connection from a trusted proxy; its header, if any, is
// read once.
type proxyConn struct {
	net.Conn
	r    *bufio.Reader
	cfg  *ListenerConfig
	once sync.Once
	err  error
	src  net.Addr // the header's source; nil: the peer's own
}

func (c *proxyConn) init() {
	c.once.Do(func() {
		c.Conn.SetReadDeadline(time.Now().Add(c.cfg.HeaderTimeout))
		defer c.Conn.SetReadDeadline(time.Time{})
		ok, err := HasHeader(c.r)
		if err != nil || !ok {
			c.err = err // a failed peek is the connection's first read error
			return
		}
		h, err := ReadHeader(c.r)
		if err != nil {
			c.err = err
			c.cfg.Logger.Debug("proxy protocol", "remote", c.Conn.RemoteAddr().String(), "err", err)
			c.Conn.Close()
			return
		}
		if h.Source.IsValid() {
			c.src = net.TCPAddrFromAddrPort(h.Source)
		}
	})
}

func (c *proxyConn) Read(p []byte) (int, error) {
	c.init()
	if c.err != nil {
		return 0, c.err
	}
	return c.r.Read(p)
}

// RemoteAddr is the client's address from the PROXY header, or the
// proxy's own.
func (c *proxyConn) RemoteAddr() net.Addr {
	c.init()
	if c.src != nil {
		return c.src
	}
	return c.Conn.RemoteAddr()
}
