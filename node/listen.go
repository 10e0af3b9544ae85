package node

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"parley/gateway"
)

// reserveShare is how many connections an address may hold and still open
// another while the node is in its descriptor reserve: a health check, an
// agent's console or a new visitor gets in, an address holding many does
// not.
const reserveShare = 4

// guardedListener is the public HTTP listener's guard against running out
// of connections or file descriptors. Every TCP connection it accepts
// counts against its address's cap (the table the gateway counts its
// WebSocket and WebTransport sessions in), except those node reports: on a
// node, the -trusted-proxies, whose connections carry many clients, each
// counted by the gateway under the address the proxy gives. (Other nodes
// come in over the node link, which this guard does not cover.) And the last descriptors below RLIMIT_NOFILE are a reserve:
// once the open descriptors reach it, only addresses holding fewer than
// reserveShare connections get in, and in its last quarter none, so that
// accept does not fail for want of a descriptor, /healthz and agents are
// still served while clients from many addresses sit at their caps, and the
// node link keeps descriptors for other nodes. A refused connection is
// closed at once.
type guardedListener struct {
	net.Listener
	log   *slog.Logger
	conns *gateway.IPConns
	// node reports whether an address is exempt from caps and reserve
	// (trusted proxies); nil: none is.
	node func(ip string) bool
	open atomic.Int64 // connections accepted and not closed

	mu sync.Mutex
	// nofile is RLIMIT_NOFILE; reserve the descriptors kept below it. Zero
	// nofile: unknown, no reserve.
	nofile, reserve int64
	other           int64     // descriptors not accepted here, at the last count
	counted         time.Time // of the last count
	logged          time.Time // of the last refusal logged
	refused         uint64    // refusals since
}

// descriptorReserve picks the reserve for a limit of nofile descriptors
// when none is configured: an eighth, between 16 and 1024.
func descriptorReserve(nofile int64) int64 {
	return min(max(nofile/8, 16), 1024)
}

func newGuardedListener(ln net.Listener, log *slog.Logger, conns *gateway.IPConns, node func(string) bool, reserve int) *guardedListener {
	l := &guardedListener{Listener: ln, log: log, conns: conns, node: node}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < 1<<40 {
		l.nofile = int64(rl.Cur)
		l.reserve = int64(reserve)
		if reserve <= 0 {
			l.reserve = descriptorReserve(l.nofile)
		}
	}
	return l
}

// Accept returns the next connection that gets in. An error of accept
// itself (EMFILE too, should other descriptors fill the reserve) is
// returned: http.Server retries after a pause that grows to a second.
func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c.RemoteAddr())
		if l.node != nil && l.node(ip) {
			l.open.Add(1)
			return &guardedConn{Conn: c, l: l}, nil
		}
		limit := l.conns.Max()
		free, reserve := l.free()
		tight := free <= reserve
		switch {
		case free <= reserve/4:
			limit = 0
		case tight:
			limit = reserveShare
		}
		if !l.conns.Acquire(ip, limit) {
			c.Close()
			l.refuse(ip, tight)
			continue
		}
		l.open.Add(1)
		return &guardedConn{Conn: c, l: l, ip: ip}, nil
	}
}

// free returns how many descriptors are left below RLIMIT_NOFILE, the
// one just accepted counted as used (the most an int64 holds when the limit
// is unknown), and the reserve. It counts /proc/self/fd at most every second, and every 50 ms
// near the reserve; in between, the connections accepted and closed here
// keep the estimate.
func (l *guardedListener) free() (free, reserve int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.nofile == 0 {
		return math.MaxInt64, 0
	}
	open := l.open.Load() + 1
	since := time.Since(l.counted)
	if since > time.Second || (l.nofile-l.other-open <= 2*l.reserve && since > 50*time.Millisecond) {
		if n, err := openDescriptors(); err == nil {
			l.other, l.counted = n-open, time.Now()
		}
	}
	return l.nofile - l.other - open, l.reserve
}

// refuse logs refusals, at most one line a second.
func (l *guardedListener) refuse(ip string, tight bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refused++
	if time.Since(l.logged) < time.Second {
		return
	}
	l.log.Warn("connections refused", "last_from", ip, "refused", l.refused, "descriptor_reserve", tight,
		"open", l.open.Load(), "max_conns_per_ip", l.conns.Max())
	l.logged, l.refused = time.Now(), 0
}

// openDescriptors counts this process's open file descriptors.
func openDescriptors() (int64, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	// The directory's own descriptor is in the list.
	return int64(len(names)) - 1, err
}

// guardedConn releases its count when closed.
type guardedConn struct {
	net.Conn
	l    *guardedListener
	ip   string // "": not counted per address (a cluster node)
	once sync.Once
}

// SyscallConn gives the gateway's poller the socket of a WebSocket
// connection (gateway.ServeHTTP reads idle connections without a goroutine).
func (c *guardedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errNoSyscallConn
	}
	return sc.SyscallConn()
}

var errNoSyscallConn = errors.New("connection has no socket of its own")

func (c *guardedConn) Close() error {
	c.once.Do(func() {
		c.l.open.Add(-1)
		if c.ip != "" {
			c.l.conns.Release(c.ip)
		}
	})
	return c.Conn.Close()
}

// connContext marks a request's context with the address its connection
// is counted under, for the gateway (http.Server.ConnContext); the
// connection may be wrapped in TLS.
func connContext(ctx context.Context, c net.Conn) context.Context {
	for range 4 {
		if gc, ok := c.(*guardedConn); ok {
			if gc.ip != "" {
				return gateway.WithCountedConn(ctx, gc.ip)
			}
			return ctx
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return ctx
		}
		c = w.NetConn()
	}
	return ctx
}

func remoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
