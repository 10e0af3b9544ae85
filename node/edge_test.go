package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"parley/gateway/client"
	"parley/internal/eventually"

	"parley/cluster"
	"parley/edge"

	"github.com/quic-go/quic-go/http3"
)

// clientFrom is an HTTP client whose connections leave from ip, trusting
// roots for HTTPS (nil: the system's). HTTP/1.1 only, as WebSocket needs.
func clientFrom(ip string, roots *x509.CertPool) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext:     d.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}, Timeout: 10 * time.Second}
}

// dialWS opens a WebSocket to base (http or https) with hc; it returns
// the HTTP status of a refusal.
func dialWS(t *testing.T, hc *http.Client, base string, hdr http.Header) (*client.Conn, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.DialWS(ctx, client.WSURL(base), client.Options{HTTPClient: hc, Header: hdr})
	if err != nil {
		if st := handshakeStatus(err); st != 0 {
			return nil, st
		}
		t.Fatalf("dial %s: %v", base, err)
	}
	t.Cleanup(c.CloseNow)
	return c, http.StatusSwitchingProtocols
}

// refusedWS tries a WebSocket and reports whether the node refused it: a
// 429, or the connection closed before any answer.
func refusedWS(hc *http.Client, base string, hdr http.Header) (bool, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.DialWS(ctx, client.WSURL(base), client.Options{HTTPClient: hc, Header: hdr})
	if err == nil {
		c.CloseNow()
		return false, http.StatusSwitchingProtocols
	}
	if st := handshakeStatus(err); st != 0 {
		return st == http.StatusTooManyRequests, st
	}
	return true, 0
}

func leafOf(t *testing.T, addr string, cfg *tls.Config) []byte {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Raw
}

// TestHTTPSOnTheTCPListener: with -tls-cert and -tls-key the TCP listener
// serves HTTPS (HTTP/2 and HTTP/1.1, HSTS on every response), WebSocket
// works over wss://, plain HTTP is refused, and replacing the files puts
// the new certificate in new handshakes.
func TestHTTPSOnTheTCPListener(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile, pool := writeTestCert(t, dir)
	r := runNode(t, Config{DataDir: t.TempDir(), AgentToken: "0123456789abcdef-token", TLSCert: certFile, TLSKey: keyFile, TLSReload: 50 * time.Millisecond})
	if !strings.HasPrefix(r.base, "https://") {
		t.Fatalf("base %s", r.base)
	}
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	for _, path := range []string{"/demo", "/widget.js", "/healthz", "/nonexistent"} {
		resp, err := h2.Get(r.base + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Errorf("%s: %s, want HTTP/2", path, resp.Proto)
		}
		if got := resp.Header.Get("Strict-Transport-Security"); got != hsts {
			t.Errorf("%s: HSTS %q", path, got)
		}
	}
	// TLS 1.2 is still served; older is not.
	for v, ok := range map[uint16]bool{tls.VersionTLS12: true, tls.VersionTLS11: false} {
		c, err := tls.Dial("tcp", r.n.Addr(), &tls.Config{RootCAs: pool, MinVersion: v, MaxVersion: v})
		if (err == nil) != ok {
			t.Errorf("TLS version %x: err %v", v, err)
		}
		if c != nil {
			c.Close()
		}
	}
	if _, code := dialWS(t, clientFrom("127.0.0.1", pool), r.base, nil); code != http.StatusSwitchingProtocols {
		t.Fatalf("wss: %d", code)
	}
	if resp, err := http.Get("http://" + r.n.Addr() + "/demo"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP served on the HTTPS listener")
		}
	}

	// Reload: new files, and new handshakes get the new certificate.
	old := leafOf(t, r.n.Addr(), &tls.Config{RootCAs: pool})
	dir2 := t.TempDir()
	c2, k2, pool2 := writeTestCert(t, dir2)
	for _, f := range [][2]string{{c2, certFile}, {k2, keyFile}} {
		b, _ := os.ReadFile(f[0])
		tmp := f[1] + ".new"
		os.WriteFile(tmp, b, 0o600)
		if err := os.Rename(tmp, f[1]); err != nil {
			t.Fatal(err)
		}
	}
	eventually.Holds(t, 10*time.Second, "new certificate served", holds(func() bool {
		return !bytes.Equal(leafOf(t, r.n.Addr(), &tls.Config{InsecureSkipVerify: true}), old)
	}))
	if _, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool2}}}).Get(r.base + "/healthz"); err != nil {
		t.Errorf("after reload: %v", err)
	}
	// HTTP/3 shares the source: its new handshakes get the new one too.
	h3 := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: pool2}}
	defer h3.Close()
	resp, err := (&http.Client{Transport: h3, Timeout: 10 * time.Second}).Get("https://" + r.n.H3Addr() + "/healthz")
	if err != nil {
		t.Fatalf("HTTP/3 after reload: %v", err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Strict-Transport-Security"); got != hsts {
		t.Errorf("HTTP/3: HSTS %q", got)
	}
}

// reverseProxy is an HTTP proxy on 127.0.0.1 in front of target, adding
// X-Forwarded-For as proxies do; it dials the node from 127.0.0.1.
func reverseProxy(t *testing.T, target string) string {
	t.Helper()
	u, _ := url.Parse(target)
	p := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(u)
		pr.SetXForwarded()
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestTrustedProxyForwardedFor: behind a proxy on 127.0.0.1 listed in
// -trusted-proxies, clients at 127.0.0.2 and 127.0.0.3 each get their own
// per-IP connection limit and their own sign-in limit; the same header
// sent straight from 127.0.0.4, not trusted, is ignored.
func TestTrustedProxyForwardedFor(t *testing.T) {
	t.Parallel()
	r := runNode(t, Config{DataDir: t.TempDir(), AgentToken: "0123456789abcdef-token", MaxConnsPerIP: 1, TrustedProxies: []string{"127.0.0.1/32"}, passwordIterations: cluster.MinPasswordIterations})
	proxy := reverseProxy(t, r.base)
	a, b := clientFrom("127.0.0.2", nil), clientFrom("127.0.0.3", nil)
	if _, code := dialWS(t, a, proxy, nil); code != http.StatusSwitchingProtocols {
		t.Fatalf("first client: %d", code)
	}
	if _, code := dialWS(t, b, proxy, nil); code != http.StatusSwitchingProtocols {
		t.Fatalf("second client, other address, same proxy: %d (counted as the proxy?)", code)
	}
	if _, code := dialWS(t, a, proxy, nil); code != http.StatusTooManyRequests {
		t.Fatalf("first client's second connection: %d, want 429", code)
	}

	// A forged X-Forwarded-For from an untrusted address counts that
	// address, whatever it names.
	d := clientFrom("127.0.0.4", nil)
	if _, code := dialWS(t, d, r.base, http.Header{"X-Forwarded-For": {"198.51.100.1"}}); code != http.StatusSwitchingProtocols {
		t.Fatalf("direct client: %d", code)
	}
	// Over its cap, the listener closes the connection without a reply.
	if refused, code := refusedWS(d, r.base, http.Header{"X-Forwarded-For": {"198.51.100.2"}}); !refused {
		t.Fatalf("direct client with a forged header: %d, want refused", code)
	}

	// Sign-in attempts: 127.0.0.2 runs out, 127.0.0.3 still has its own.
	login := func(c *http.Client) int {
		// A body that does not parse: refused at once (400) after the
		// limit counted it, without a password check's second.
		resp, err := c.Post(proxy+"/v1/login", "application/json", strings.NewReader(`{`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	limited := false
	for range 30 {
		if login(a) == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("30 sign-ins from one client never limited")
	}
	if code := login(b); code == http.StatusTooManyRequests {
		t.Fatalf("the other client's sign-in limited with the first's")
	}
}

// proxyProto is a TCP proxy on 127.0.0.1 in front of target that opens
// each connection with a PROXY protocol header (v1 for even connections,
// v2 for odd) naming the client, then passes bytes through, TLS included.
func proxyProto(t *testing.T, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			src := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			dst := netip.MustParseAddrPort(target)
			hdr := edge.AppendV1(nil, src, dst)
			if i%2 == 1 {
				hdr = edge.AppendV2(nil, src, dst)
			}
			up.Write(hdr)
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(up, c); up.Close() }()
			go func() { defer wg.Done(); io.Copy(c, up); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// TestTrustedProxyProtocol: a TCP proxy on 127.0.0.1 passing TLS through
// with PROXY protocol headers: clients at 127.0.0.2 and 127.0.0.3 each get
// their own per-IP limit over wss://. A PROXY header sent straight from an
// untrusted 127.0.0.4 is refused as a malformed request.
func TestTrustedProxyProtocol(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := writeTestCert(t, t.TempDir())
	r := runNode(t, Config{DataDir: t.TempDir(), AgentToken: "0123456789abcdef-token", MaxConnsPerIP: 1,
		TLSCert: certFile, TLSKey: keyFile, TrustedProxies: []string{"127.0.0.1/32"}})
	proxy := "https://" + proxyProto(t, r.n.Addr())
	a, b := clientFrom("127.0.0.2", pool), clientFrom("127.0.0.3", pool)
	if _, code := dialWS(t, a, proxy, nil); code != http.StatusSwitchingProtocols {
		t.Fatalf("first client: %d", code)
	}
	if _, code := dialWS(t, b, proxy, nil); code != http.StatusSwitchingProtocols {
		t.Fatalf("second client, other address, same proxy: %d (counted as the proxy?)", code)
	}
	if _, code := dialWS(t, a, proxy, nil); code != http.StatusTooManyRequests {
		t.Fatalf("first client's second connection: %d, want 429", code)
	}
	// From 127.0.0.1 without a header: the proxy's own connection, counted
	// as 127.0.0.1.
	if _, code := dialWS(t, clientFrom("127.0.0.1", pool), r.base, nil); code != http.StatusSwitchingProtocols {
		t.Fatalf("trusted address without a header: %d", code)
	}

	// Untrusted: the header is not read, and the TLS server refuses it.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.4")}}
	c, err := d.Dial("tcp", r.n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(edge.AppendV1(nil, netip.MustParseAddrPort("198.51.100.7:1234"), netip.MustParseAddrPort(r.n.Addr())))
	tc := tls.Client(c, &tls.Config{RootCAs: pool})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Fatal("a PROXY header from an untrusted address was skipped")
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the node waited instead of refusing")
	}
	// The node keeps serving.
	if _, code := dialWS(t, clientFrom("127.0.0.5", pool), r.base, nil); code != http.StatusSwitchingProtocols {
		t.Fatalf("after the refused header: %d", code)
	}
}

func TestEdgeFlags(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"-trusted-proxies", "127.0.0.1/32, 10.0.0.0/8,::1"}, true},
		{[]string{"-trusted-proxies", "10.0.0.0/33"}, false},
		{[]string{"-trusted-proxies", "proxy.example"}, false},
		{[]string{"-acme-domains", "chat.example.com,shop.example.com", "-acme-email", "ops@example.com"}, true},
		{[]string{"-acme-domains", "localhost"}, false},
		{[]string{"-acme-domains", "127.0.0.1"}, false},
		{[]string{"-acme-dir", "https://acme.example/dir"}, false},
		{[]string{"-acme-domains", "chat.example.com", "-tls-cert", "c.pem", "-tls-key", "k.pem"}, false},
		{[]string{"-tls-reload", "-1s"}, false},
	} {
		if _, err := ParseFlags(c.args); (err == nil) != c.ok {
			t.Errorf("%v: err %v", c.args, err)
		}
	}
	cfg, err := ParseFlags([]string{"-trusted-proxies", " 127.0.0.1/32 ,, ::1 ", "-acme-domains", "a.example.com"})
	if err != nil || len(cfg.TrustedProxies) != 2 || len(cfg.ACMEDomains) != 1 {
		t.Errorf("lists: %q %q %v", cfg.TrustedProxies, cfg.ACMEDomains, err)
	}
}
