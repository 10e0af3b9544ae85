package node

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"parley/gateway"
)

// TestGuardedListener accepts real TCP connections from several loopback
// addresses: an address gets no more than its cap until one of its
// connections closes; in the descriptor reserve an address holding a few
// connections still gets in and one holding more does not, in its last
// quarter no client does, while a cluster node's address always does.
func TestGuardedListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := gateway.NewIPConns(6)
	l := newGuardedListener(ln, slog.New(slog.NewTextHandler(io.Discard, nil)), conns,
		func(ip string) bool { return ip == "127.0.0.9" }, 0)
	accepted := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for c := range accepted {
			c.Close()
		}
	})

	// dial connects from ip and reports whether the listener let the
	// connection in: a refused one is closed at once, and the next
	// accepted connection (dialled after it) proves it was not let in.
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	dial := func(ip string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			select {
			case sc := <-accepted:
				return sc
			case <-time.After(50 * time.Millisecond):
			}
			c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); err == io.EOF {
				return nil
			}
		}
		t.Fatalf("a connection from %s neither refused nor accepted", ip)
		return nil
	}
	count := func(ip string, n int) (in []net.Conn) {
		for range n {
			if sc := dial(ip); sc != nil {
				in = append(in, sc)
			}
		}
		return in
	}

	in := count("127.0.0.2", 8)
	if len(in) != 6 {
		t.Fatalf("127.0.0.2: %d of 8 connections in, want the cap of 6", len(in))
	}
	in[0].Close()
	if sc := dial("127.0.0.2"); sc == nil {
		t.Fatal("a closed connection did not free its place")
	}
	if got := len(count("127.0.0.3", 2)); got != 2 {
		t.Fatalf("another address: %d of 2 in", got)
	}

	// The descriptors now in use are the reserve's edge.
	open, err := openDescriptors()
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	l.mu.Lock()
	l.nofile, l.reserve, l.counted = open+100, 100, time.Time{}
	l.mu.Unlock()
	if got := len(count("127.0.0.3", 4)); got != reserveShare-2 {
		t.Fatalf("in the reserve, an address holding 2: %d of 4 more in, want %d", got, reserveShare-2)
	}
	if sc := dial("127.0.0.2"); sc != nil {
		t.Fatal("in the reserve, an address holding 6 got in")
	}
	if got := len(count("127.0.0.4", 1)); got != 1 {
		t.Fatal("in the reserve, a new address did not get in")
	}
	if got := len(count("127.0.0.9", 10)); got != 10 {
		t.Fatalf("in the reserve, a cluster node: %d of 10 in", got)
	}

	// In the reserve's last quarter, only cluster nodes.
	if open, err = openDescriptors(); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	l.nofile, l.reserve, l.counted = open+20, 100, time.Time{}
	l.mu.Unlock()
	if sc := dial("127.0.0.5"); sc != nil {
		t.Fatal("in the reserve's last quarter, a new address got in")
	}
	if sc := dial("127.0.0.9"); sc == nil {
		t.Fatal("in the reserve's last quarter, a cluster node was refused")
	}
}
