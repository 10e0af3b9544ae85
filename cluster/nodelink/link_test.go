package nodelink

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"testing"
	"time"

	"parley/internal/eventually"
)

func seed(b byte) []byte { return bytes.Repeat([]byte{b}, MinSeed) }

func listen(t *testing.T, s []byte, id string) *Link {
	t.Helper()
	l, err := Listen(Config{Seed: s, NodeID: id, Bind: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// acceptor collects what a link's listeners accept, one goroutine per
// protocol, ended by the link's Close.
type acceptor map[string]chan net.Conn

func acceptAll(l *Link) acceptor {
	a := acceptor{}
	for _, p := range protocols {
		ch := make(chan net.Conn, 16)
		a[p] = ch
		go func() {
			for {
				c, err := l.Listener(p).Accept()
				if err != nil {
					return
				}
				ch <- c
			}
		}()
	}
	return a
}

// accepted returns the next connection of proto, or nil if none comes
// within d.
func (a acceptor) accepted(proto string, d time.Duration) net.Conn {
	ch := a[proto]
	select {
	case c := <-ch:
		return c
	case <-time.After(d):
		return nil
	}
}

// refusedAtLeast holds once l has refused n connections.
func refusedAtLeast(l *Link, n uint64) func() error {
	return func() error {
		if got := l.Refused(); got < n {
			return fmt.Errorf("%d refused, want %d", got, n)
		}
		return nil
	}
}

func TestLinkCarriesEachProtocol(t *testing.T) {
	a, b := listen(t, seed(1), "n1"), listen(t, seed(1), "n2")
	acc := acceptAll(b)
	for _, proto := range []string{ProtoRaft, ProtoHTTP} {
		c, err := a.Dial(context.Background(), b.Addr().String(), proto, nil)
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		if peer, _ := PeerNode(c.ConnectionState()); peer != "n2" {
			t.Fatalf("%s: dialler sees %q", proto, peer)
		}
		c.Write([]byte("ping " + proto))
		in := acc.accepted(proto, 5*time.Second)
		if in == nil {
			t.Fatalf("%s: nothing accepted", proto)
		}
		buf := make([]byte, 64)
		n, _ := in.Read(buf)
		if string(buf[:n]) != "ping "+proto {
			t.Fatalf("%s: read %q", proto, buf[:n])
		}
		if peer, _ := PeerNode(in.(*Conn).ConnectionState()); peer != "n1" {
			t.Fatalf("%s: listener sees %q", proto, peer)
		}
		c.Close()
		in.Close()
	}
}

// TestLinkRefusesOutsiders replays what a process without the cluster key
// can do: speak plain TCP (Raft's own transport), TLS without a
// certificate, with a self-signed one, or with one from another cluster's
// CA. None gets a connection accepted, and none reads a byte back.
func TestLinkRefusesOutsiders(t *testing.T) {
	b := listen(t, seed(1), "n2")
	acc := acceptAll(b)
	other := listen(t, seed(2), "x1")
	selfSigned := selfSignedCert(t)
	cases := []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"plain tcp", func() (net.Conn, error) {
			c, err := net.Dial("tcp", b.Addr().String())
			if err == nil {
				// What raft's NetworkTransport sends first: an RPC type byte
				// and a msgpack body.
				c.Write([]byte{0, 0x85, 0xa4, 'T', 'e', 'r', 'm', 0xcd, 0x13, 0x89})
			}
			return c, err
		}},
		{"tls without certificate", func() (net.Conn, error) {
			return tls.Dial("tcp", b.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{ProtoRaft}})
		}},
		{"tls with a self-signed certificate", func() (net.Conn, error) {
			return tls.Dial("tcp", b.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{ProtoRaft}, Certificates: []tls.Certificate{selfSigned}})
		}},
		{"another cluster's node", func() (net.Conn, error) {
			return other.Dial(context.Background(), b.Addr().String(), ProtoRaft, nil)
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.dial()
			if err == nil {
				// TLS 1.3 clients finish before the server checked their
				// certificate: the refusal arrives on the first read.
				c.Write([]byte("AppendEntries"))
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, rerr := io.ReadFull(c, make([]byte, 1))
				if tc.name == "plain tcp" {
					// A TLS server answers a non-TLS client with at most an
					// alert record, never application data; then it closes.
					io.Copy(io.Discard, c)
				} else if rerr == nil || n > 0 {
					t.Fatalf("read %d bytes back", n)
				}
				c.Close()
			}
			eventually.Holds(t, 10*time.Second, "the refusal counted", refusedAtLeast(b, uint64(i+1)))
			for _, p := range protocols {
				if in := acc.accepted(p, 100*time.Millisecond); in != nil {
					t.Fatalf("%s accepted a connection", p)
				}
			}
		})
	}
	// The link still serves members afterwards.
	a := listen(t, seed(1), "n1")
	if _, err := a.Dial(context.Background(), b.Addr().String(), ProtoHTTP, nil); err != nil {
		t.Fatal(err)
	}
	if acc.accepted(ProtoHTTP, 5*time.Second) == nil {
		t.Fatal("a member was not accepted after the refusals")
	}
}

// A member cannot be fooled into talking to an impostor listening at a
// member's address either.
func TestDiallerRefusesImpostor(t *testing.T) {
	a, impostor := listen(t, seed(1), "n1"), listen(t, seed(3), "n2")
	if _, err := a.Dial(context.Background(), impostor.Addr().String(), ProtoRaft, nil); err == nil {
		t.Fatal("dialled a node of another cluster")
	}
}

func TestUnknownProtocolRefused(t *testing.T) {
	a := listen(t, seed(1), "n1")
	if _, err := a.Dial(context.Background(), a.Addr().String(), "parley-gossip/9", nil); err == nil {
		t.Fatal("dialled an unknown protocol")
	}
	leaf, _ := a.leaf.get()
	cfg := a.clientConfig(ProtoRaft)
	cfg.NextProtos = []string{"parley-gossip/9"}
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return leaf, nil }
	c, err := tls.Dial("tcp", a.Addr().String(), cfg)
	if err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil || n > 0 {
			t.Fatal("a connection without a known protocol was served")
		}
	}
}

func TestLeafRenewed(t *testing.T) {
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	a, err := newCA(seed(1))
	if err != nil {
		t.Fatal(err)
	}
	s := &leafSource{ca: a, nodeID: "n1", now: func() time.Time { return now }}
	first, _ := s.get()
	if again, _ := s.get(); again != first {
		t.Fatal("renewed at once")
	}
	now = now.Add(leafLifetime/2 + time.Minute)
	next, _ := s.get()
	if next == first {
		t.Fatal("not renewed after half its life")
	}
	if _, err := next.Leaf.Verify(x509.VerifyOptions{Roots: a.pool, DNSName: ServerName, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
}

func TestSameSeedSameCA(t *testing.T) {
	a, _ := newCA(seed(7))
	b, _ := newCA(seed(7))
	c, _ := newCA(seed(8))
	if !bytes.Equal(a.cert.Raw, b.cert.Raw) {
		t.Fatal("one seed gave two CAs")
	}
	if bytes.Equal(a.cert.RawSubjectPublicKeyInfo, c.cert.RawSubjectPublicKeyInfo) {
		t.Fatal("two seeds gave one CA key")
	}
	if _, err := newCA(seed(1)[:16]); err == nil {
		t.Fatal("short seed accepted")
	}
}

func selfSignedCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "n9"},
		DNSNames: []string{ServerName}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestSilentStrangersAreBounded: strangers who connect to the link and say
// nothing, from one address and from many, hold at most the bounds of
// handshakes under way (each connection past them is closed at once),
// while a known member still gets through.
func TestSilentStrangersAreBounded(t *testing.T) {
	b, err := Listen(Config{Seed: seed(1), NodeID: "n2", Bind: "127.0.0.1:0",
		Member: func(ip string) bool { return ip == "127.0.0.1" }})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	acc := acceptAll(b)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	silent := func(from string, n int) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		for range n {
			c, err := d.Dial("tcp", b.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
	}
	// One address: no more than its share.
	silent("127.0.0.9", 3*maxHandshakesPerIP)
	eventually.Holds(t, 10*time.Second, "one address's surplus refused", refusedAtLeast(b, 2*maxHandshakesPerIP))
	if got := b.Handshaking(); got > maxHandshakesPerIP {
		t.Fatalf("%d handshakes under way from one address, bound %d", got, maxHandshakesPerIP)
	}
	// Many addresses: no more than the bound in all.
	for i := range 2 * maxHandshakes / maxHandshakesPerIP {
		silent(fmt.Sprintf("127.0.1.%d", i+1), maxHandshakesPerIP)
	}
	eventually.Holds(t, 10*time.Second, "the surplus of many addresses refused", refusedAtLeast(b, 2*maxHandshakesPerIP+uint64(maxHandshakes)))
	if got := b.Handshaking(); got > maxHandshakes {
		t.Fatalf("%d handshakes under way, bound %d", got, maxHandshakes)
	}
	// A stranger from yet another address finds the link full...
	stranger := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.200")}}
	if c, err := stranger.Dial("tcp", b.Addr().String()); err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("a stranger's connection was kept while the link is full")
		}
		c.Close()
	}
	// ...a member does not.
	a := listen(t, seed(1), "n1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.Dial(ctx, b.Addr().String(), ProtoRaft, nil); err != nil {
		t.Fatalf("a member while strangers fill the link: %v", err)
	}
	if acc.accepted(ProtoRaft, 5*time.Second) == nil {
		t.Fatal("the member's connection was not accepted")
	}
}
