package gateway

import (
	"context"
	"sync"
)

// IPConns counts the open connections of each client address against one
// cap. The gateway counts its WebSocket and WebTransport sessions in it; the
// node's listener shares the table and counts every TCP connection it
// accepts (plain HTTP, WebSocket alike), so that an address holds at most
// the cap across every kind. A WebSocket session on a connection the
// listener counted already (WithCountedConn) is not counted twice.
type IPConns struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

// NewIPConns returns a table capping every address at perIP connections;
// zero or less: 1000, as Config.MaxConnsPerIP.
func NewIPConns(perIP int) *IPConns {
	if perIP <= 0 {
		perIP = 1000
	}
	return &IPConns{max: perIP, n: map[string]int{}}
}

// Max is the cap per address.
func (c *IPConns) Max() int { return c.max }

// Acquire counts a connection from ip unless ip holds limit connections
// already, or the cap if that is lower; it reports whether it did.
func (c *IPConns) Acquire(ip string, limit int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[ip] >= min(limit, c.max) {
		return false
	}
	c.n[ip]++
	return true
}

// Release ends a connection Acquire counted.
func (c *IPConns) Release(ip string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[ip]--; c.n[ip] <= 0 {
		delete(c.n, ip)
	}
}

// Holds returns how many connections ip holds.
func (c *IPConns) Holds(ip string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[ip]
}

type countedKey struct{}

// WithCountedConn marks a connection's context (http.Server.ConnContext):
// the connection is counted in the shared IPConns under ip already.
func WithCountedConn(ctx context.Context, ip string) context.Context {
	return context.WithValue(ctx, countedKey{}, ip)
}

// counted reports whether the request's connection is counted under ip.
func counted(ctx context.Context, ip string) bool {
	got, ok := ctx.Value(countedKey{}).(string)
	return ok && got == ip
}
