package replication

import (
	"context"
	"sync"
	"time"
)

// Delayed wraps a Conn so that every message it writes leaves d later,
// without holding up the writes behind it: a one-way network delay for
// benchmarks and fault tests (the kernel here has no netem). Order is kept.
func Delayed(c Conn, d time.Duration) Conn {
	if d <= 0 {
		return c
	}
	dc := &delayedConn{Conn: c, d: d, q: make(chan delayed, 4096), done: make(chan struct{})}
	go dc.pump()
	return dc
}

type delayed struct {
	due time.Time
	b   []byte
}

type delayedConn struct {
	Conn
	d    time.Duration
	q    chan delayed
	done chan struct{}
	once sync.Once
	mu   sync.Mutex
	err  error
}

func (c *delayedConn) Write(ctx context.Context, b []byte) error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case c.q <- delayed{due: time.Now().Add(c.d), b: append([]byte(nil), b...)}:
		return nil
	case <-c.done:
		return ErrLinkDown
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pump writes each message when it is due, in order.
func (c *delayedConn) pump() {
	for {
		select {
		case m := <-c.q:
			if w := time.Until(m.due); w > 0 {
				select {
				case <-time.After(w):
				case <-c.done:
					return
				}
			}
			if err := c.Conn.Write(context.Background(), m.b); err != nil {
				c.mu.Lock()
				c.err = err
				c.mu.Unlock()
				return
			}
		case <-c.done:
			return
		}
	}
}

func (c *delayedConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}
