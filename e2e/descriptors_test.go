package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"parley/gateway/client"
	"parley/gateway/wire"
	"parley/ident"
)

// from returns a dialer whose connections come from the loopback address
// ip (any of 127.0.0.0/8 reaches the node on 127.0.0.1).
func from(ip string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
}

// idleConns opens n HTTP keep-alive connections from ip to nd, makes one
// request on each and leaves it open and idle. It returns the connections
// (closed at the test's end) and how many were served; a connection the
// node closed, or did not answer within 3s, is not.
func idleConns(t *testing.T, nd *nodeProc, ip string, n int) (served int) {
	t.Helper()
	var ok atomic.Int64
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	work := make(chan struct{})
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range work {
				c, err := from(ip).Dial("tcp", nd.Addr)
				if err != nil {
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				c.SetDeadline(time.Now().Add(3 * time.Second))
				if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n"); err != nil {
					continue
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				}
				c.SetDeadline(time.Time{})
			}
		})
	}
	for range n {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	return int(ok.Load())
}

// TestDescriptorsLastUnderIdleConnections runs a node with 1024 file
// descriptors and a cap of 300 connections per address. One address opens
// 1,100 idle keep-alive connections and four more open 300 each: no address
// holds more than the cap, the node never runs out of descriptors, and
// meanwhile /healthz from another address answers and an agent connects.
func TestDescriptorsLastUnderIdleConnections(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skipf("prlimit (util-linux) is not installed: %v", err)
	}
	const perIP = 300
	nd := startNodeAt(t, parleyBin, []string{"prlimit", "--nofile=1024:1024", "--"}, freeAddr(t),
		filepath.Join(t.TempDir(), "n1"), "-h3", "off", "-max-conns-per-ip", fmt.Sprint(perIP))

	reachable := func(what string) {
		t.Helper()
		c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: from("127.0.0.3").DialContext}}
		resp, err := c.Get(nd.URL + "/healthz")
		if err != nil {
			t.Fatalf("%s: /healthz from another address: %v", what, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: /healthz: %s", what, resp.Status)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ws, err := client.DialWS(ctx, "ws://"+nd.Addr+"/v1/ws", client.Options{
			HTTPClient: &http.Client{Transport: &http.Transport{DialContext: from("127.0.0.4").DialContext}},
		})
		if err != nil {
			t.Fatalf("%s: agent's WebSocket from another address: %v", what, err)
		}
		defer ws.Close()
		if _, err := ws.Hello(ctx, wire.Hello{Workspace: "demo", Role: ident.Agent, Token: nd.Token}, nil); err != nil {
			t.Fatalf("%s: agent's hello: %v", what, err)
		}
	}

	one := idleConns(t, nd, "127.0.0.2", 1100)
	reachable("one address with 1,100 idle connections")
	var many [4]int
	var wg sync.WaitGroup
	for i := range many {
		wg.Go(func() { many[i] = idleConns(t, nd, fmt.Sprintf("127.0.0.%d", 10+i), perIP) })
	}
	wg.Wait()
	reachable("five addresses at their cap")
	t.Logf("served idle connections: 127.0.0.2 %d of 1100; four more addresses %v of %d each", one, many, perIP)
	if one > perIP {
		t.Errorf("one address holds %d connections, over the cap of %d", one, perIP)
	}
	if log := nd.Logs(); strings.Contains(log, "too many open files") {
		t.Errorf("the node ran out of descriptors:\n%s", log)
	}
}

// TestHTTPClosesIdleAndSlowConnections: a keep-alive connection left idle
// is closed after -http-idle-timeout, and one whose request takes longer
// than -http-read-timeout is closed too.
func TestHTTPClosesIdleAndSlowConnections(t *testing.T) {
	nd := startNode(t, t.TempDir(), "-h3", "off", "-http-idle-timeout", "1s", "-http-read-timeout", "2s")
	closedWithin := func(c net.Conn, d time.Duration) error {
		c.SetReadDeadline(time.Now().Add(d))
		_, err := io.Copy(io.Discard, c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return fmt.Errorf("still open after %s", d)
		}
		return nil
	}

	idle, err := net.Dial("tcp", nd.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := closedWithin(idle, 10*time.Second); err != nil {
		t.Errorf("idle keep-alive connection: %v", err)
	}

	slow, err := net.Dial("tcp", nd.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	// Headers at once, then a body that never comes.
	io.WriteString(slow, "POST /v1/login HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
	if err := closedWithin(slow, 10*time.Second); err != nil {
		t.Errorf("request whose body never ends: %v", err)
	}
}
