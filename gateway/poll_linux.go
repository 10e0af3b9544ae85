package gateway

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A poller watches the sockets of idle WebSocket connections with an epoll
// instance of its own, next to the runtime's (which keeps handling their
// writes and deadlines): a connection costs no goroutine and no read buffer
// until bytes arrive. The poller's goroutine reads what arrived on a plain
// connection into its own buffer, parses it and hands whole messages to
// the connection, whose frames then run on a goroutine of the connection
// started for them; a TLS connection's bytes it leaves to a goroutine of
// the connection's, which reads them through crypto/tls (wstls.go).
//
// A Server owns its pollers (pollers): started on its first WebSocket,
// stopped by Shutdown.
type poller struct {
	epfd int
	wake int // an eventfd, registration 0: written to stop the loop
	mu   sync.Mutex
	next uint64
	regs map[uint64]pollable
	buf  []byte // the read buffer, the poller goroutine's alone
}

// pollable is a connection a poller watches.
type pollable interface {
	// readable reads and handles what arrived, without blocking, and says
	// whether to keep watching (false: paused, or ended).
	readable(buf []byte) bool
}

// pollReadBuffer is a poller's read buffer: what one read may take.
const pollReadBuffer = 64 << 10

// errPollersClosed: the server is shutting down; the connection is read
// by its own goroutine until it ends.
var errPollersClosed = errors.New("pollers stopped")

// pollers are a server's pollers: at most pollerCount, started on first
// use, stopped by close.
type pollers struct {
	mu     sync.Mutex
	ps     []*poller
	next   uint64
	closed bool
	wg     sync.WaitGroup // the pollers' loops
}

// pick returns a poller, round robin, starting them on first use.
func (g *pollers) pick() (*poller, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, errPollersClosed
	}
	if g.ps == nil {
		n := max(1, runtime.GOMAXPROCS(0)/4)
		for range n {
			p, err := newPoller()
			if err != nil {
				for _, p := range g.ps {
					p.stop()
				}
				g.wg.Wait()
				g.ps = nil
				return nil, err
			}
			g.ps = append(g.ps, p)
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				p.loop()
			}()
		}
	}
	g.next++
	return g.ps[g.next%uint64(len(g.ps))], nil
}

// close stops the pollers and waits for their loops to end: connections
// still registered are read no more (Shutdown has asked them to end).
func (g *pollers) close() {
	g.mu.Lock()
	g.closed = true
	ps := g.ps
	g.ps = nil
	g.mu.Unlock()
	for _, p := range ps {
		p.stop()
	}
	g.wg.Wait()
	for _, p := range ps {
		unix.Close(p.epfd)
		unix.Close(p.wake)
	}
}

func newPoller() (*poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	// Registration 0 is the wake-up; connections' start at 1.
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if err := unix.EpollCtl(fd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(fd)
		unix.Close(wake)
		return nil, fmt.Errorf("epoll_ctl eventfd: %w", err)
	}
	return &poller{epfd: fd, wake: wake, regs: map[uint64]pollable{}, buf: make([]byte, pollReadBuffer)}, nil
}

// stop ends the poller's loop.
func (p *poller) stop() {
	var one [8]byte
	one[0] = 1
	unix.Write(p.wake, one[:])
}

const pollEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// add starts watching rc's socket for c; it returns the registration's id.
// Watching is one-shot: after each readiness, arm enables it again.
func (p *poller) add(rc syscall.RawConn, c pollable) (uint64, error) {
	p.mu.Lock()
	p.next++
	id := p.next
	p.regs[id] = c
	p.mu.Unlock()
	if err := p.ctl(rc, unix.EPOLL_CTL_ADD, id); err != nil {
		p.remove(id)
		return 0, err
	}
	return id, nil
}

// arm watches the socket again after a readiness was handled.
func (p *poller) arm(rc syscall.RawConn, id uint64) error {
	return p.ctl(rc, unix.EPOLL_CTL_MOD, id)
}

func (p *poller) ctl(rc syscall.RawConn, op int, id uint64) error {
	c := sysCalls.Get().(*sysCall)
	c.epfd, c.op = p.epfd, op
	c.ev = unix.EpollEvent{Events: pollEvents, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	err := rc.Control(c.ctlFn)
	if err == nil {
		err = c.err
	}
	c.err = nil
	sysCalls.Put(c)
	if err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// sysCall is one rc.Control (epoll_ctl) or rc.Read (read) call's
// arguments and results, with the functions handed to them made once: a
// closure made per call goes to the heap (RawConn is an interface), an
// allocation for every read and every re-arm. From a pool, since any
// goroutine may arm (resumeReading) or read (a TLS connection's).
type sysCall struct {
	epfd, op int
	ev       unix.EpollEvent
	buf      []byte
	n        int
	err      error
	ctlFn    func(fd uintptr)
	readFn   func(fd uintptr) bool
}

var sysCalls = sync.Pool{New: func() any {
	c := &sysCall{}
	c.ctlFn, c.readFn = c.ctl, c.read
	return c
}}

func (c *sysCall) ctl(fd uintptr) {
	c.err = unix.EpollCtl(c.epfd, c.op, int(fd), &c.ev)
}

func (c *sysCall) read(fd uintptr) bool {
	c.n, c.err = unix.Read(int(fd), c.buf)
	return true
}

// remove forgets a registration: an event still pending for it finds
// nothing. The kernel drops the socket from the epoll set when it closes.
func (p *poller) remove(id uint64) {
	p.mu.Lock()
	delete(p.regs, id)
	p.mu.Unlock()
}

func (p *poller) loop() {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			// Nothing but a bad epfd fails here; the process is broken.
			panic(fmt.Sprintf("gateway: epoll_wait: %v", err))
		}
		for i := range n {
			id := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
			if id == 0 {
				return
			}
			p.mu.Lock()
			c := p.regs[id]
			p.mu.Unlock()
			if c != nil {
				c.readable(p.buf)
			}
		}
	}
}

// readNonblock reads what is there without waiting: 0, nil when nothing
// is; io.EOF-like (0, errEOF) at the end of the stream.
func readNonblock(rc syscall.RawConn, buf []byte) (int, error) {
	c := sysCalls.Get().(*sysCall)
	c.buf = buf
	err := rc.Read(c.readFn)
	n, rerr := c.n, c.err
	c.buf, c.n, c.err = nil, 0, nil
	sysCalls.Put(c)
	switch {
	case err != nil:
		return 0, err
	case errors.Is(rerr, unix.EAGAIN), errors.Is(rerr, unix.EINTR):
		return 0, nil
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, errEOF
	}
	return n, nil
}

// writevAll writes b.rest with writev, as many at a time as the kernel
// takes (IOV_MAX); it waits for the socket to drain through the runtime's
// poller and nc's write deadline, which it moves on by timeout each time
// bytes moved: it fails only when none could be written for timeout.
func (b *wsWriteBuf) writevAll(rc syscall.RawConn, nc net.Conn, timeout time.Duration) error {
	if b.fn == nil {
		b.fn = b.writev
	}
	defer func() { b.rest = nil }()
	last := time.Now()
	for len(b.rest) > 0 {
		b.n, b.werr = 0, nil
		if err := rc.Write(b.fn); err != nil {
			return err
		}
		if b.werr != nil && !errors.Is(b.werr, unix.EINTR) {
			return b.werr
		}
		if b.n > 0 && timeout > 0 {
			if now := time.Now(); now.Sub(last) > timeout/8 {
				last = now
				nc.SetWriteDeadline(now.Add(timeout))
			}
		}
		b.advance(b.n)
	}
	return nil
}

// writevOnce is one writev of b.rest that does not wait: what the socket
// did not take stays in b.rest. The socket's write deadline, which may
// have passed since the last wait, plays no part.
func (b *wsWriteBuf) writevOnce(rc syscall.RawConn) error {
	if b.ctl == nil {
		b.ctl = b.writevNow
	}
	b.n, b.werr = 0, nil
	err := rc.Control(b.ctl)
	switch {
	case err != nil:
		return err
	case errors.Is(b.werr, unix.EAGAIN), errors.Is(b.werr, unix.EINTR):
		return nil
	case b.werr != nil:
		return b.werr
	}
	b.advance(b.n)
	return nil
}

// writevNow is rc.Control's: one writev of what is left.
func (b *wsWriteBuf) writevNow(fd uintptr) { b.writev(fd) }

// advance drops the n bytes written from the front of b.rest.
func (b *wsWriteBuf) advance(n int) {
	for n > 0 {
		if n < len(b.rest[0]) {
			b.rest[0] = b.rest[0][n:]
			break
		}
		n -= len(b.rest[0])
		b.rest = b.rest[1:]
	}
	for len(b.rest) > 0 && len(b.rest[0]) == 0 {
		b.rest = b.rest[1:]
	}
}

// writev is rc.Write's: one writev of what is left.
func (b *wsWriteBuf) writev(fd uintptr) bool {
	iov := b.rest
	if len(iov) > 1024 {
		iov = iov[:1024]
	}
	// unix.Writev would allocate its iovecs past 8 buffers on every call:
	// b.vecs is kept with b (and cleared, not to hold the frames).
	b.vecs = b.vecs[:0]
	for _, p := range iov {
		if len(p) == 0 {
			continue
		}
		v := unix.Iovec{Base: &p[0]}
		v.SetLen(len(p))
		b.vecs = append(b.vecs, v)
	}
	b.n, b.werr = 0, nil
	if len(b.vecs) > 0 {
		n, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&b.vecs[0])), uintptr(len(b.vecs)))
		if e != 0 {
			b.werr = e
		} else {
			b.n = int(n)
		}
	}
	clear(b.vecs)
	return !errors.Is(b.werr, unix.EAGAIN)
}

const canPoll = true

// iovec is writev's: one buffer.
type iovec = unix.Iovec
