package edge

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseV1(t *testing.T) {
	for _, c := range []struct {
		in   string
		src  string
		fail bool
	}{
		{"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", "192.0.2.1:56324", false},
		{"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", "[2001:db8::1]:1", false},
		{"PROXY UNKNOWN\r\n", "", false},
		{"PROXY UNKNOWN ff:: ff:: 1 2\r\n", "", false},
		{"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n", "", true},
		{"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n", "", true},
		{"PROXY TCP6 192.0.2.1 198.51.100.2 1 2\r\n", "", true},
		{"PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n", "", true},
		{"PROXY TCP4 192.0.2.1 198.51.100.2 0443 443\r\n", "", true},
		{"PROXY TCP4 192.0.2.1  198.51.100.2 1 443\r\n", "", true},
		{"PROXY UDP4 192.0.2.1 198.51.100.2 1 443\r\n", "", true},
		{"PROXY TCP4 fe80::1%eth0 198.51.100.2 1 443\r\n", "", true},
		{"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n", "", true},
	} {
		h, err := ParseV1([]byte(c.in))
		if (err != nil) != c.fail {
			t.Errorf("%q: err %v", c.in, err)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrProxyHeader) {
				t.Errorf("%q: %v is not ErrProxyHeader", c.in, err)
			}
			continue
		}
		if got := ""; h.Source.IsValid() {
			got = h.Source.String()
			if got != c.src {
				t.Errorf("%q: source %s, want %s", c.in, got, c.src)
			}
		} else if c.src != "" {
			t.Errorf("%q: no source, want %s", c.in, c.src)
		}
	}
}

func TestV2RoundTripAndRejects(t *testing.T) {
	for _, src := range []string{"192.0.2.1:4000", "[2001:db8::7]:65000"} {
		s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort("[2001:db8::9]:443")
		if s.Addr().Is4() {
			d = netip.MustParseAddrPort("198.51.100.2:443")
		}
		b := AppendV2(nil, s, d)
		b = append(b, "GET / HTTP/1.1\r\n"...)
		r := bufio.NewReader(bytes.NewReader(b))
		if ok, err := HasHeader(r); !ok || err != nil {
			t.Fatalf("HasHeader %v %v", ok, err)
		}
		h, err := ReadHeader(r)
		if err != nil || h.Source != s || h.Dest != d || h.Version != 2 {
			t.Fatalf("%s: %+v %v", src, h, err)
		}
		if rest, _ := io.ReadAll(r); string(rest) != "GET / HTTP/1.1\r\n" {
			t.Fatalf("read past the header: %q", rest)
		}
	}
	good := AppendV2(nil, netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2"))
	local := append([]byte{}, good...)
	local[12] = 0x20
	if h, err := ParseV2(local); err != nil || h.Source.IsValid() {
		t.Errorf("LOCAL: %+v %v", h, err)
	}
	for name, mut := range map[string]func(b []byte) []byte{
		"version 1":   func(b []byte) []byte { b[12] = 0x11; return b },
		"command 2":   func(b []byte) []byte { b[12] = 0x22; return b },
		"family 4":    func(b []byte) []byte { b[13] = 0x41; return b },
		"short":       func(b []byte) []byte { b[15] = 4; return b[:20] },
		"length":      func(b []byte) []byte { return b[:len(b)-1] },
		"signature":   func(b []byte) []byte { b[3] = 'x'; return b },
		"v6 as v4 12": func(b []byte) []byte { b[13] = 0x21; return b },
	} {
		b := mut(append([]byte{}, good...))
		if _, err := ParseV2(b); !errors.Is(err, ErrProxyHeader) {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

func TestHasHeaderReadsNoMoreThanNeeded(t *testing.T) {
	// A client that sent one byte and waits must not be held for more.
	for _, first := range []string{"G", "\x16"} {
		r := bufio.NewReader(strings.NewReader(first))
		if ok, err := HasHeader(r); ok || err != nil {
			t.Errorf("%q: %v %v", first, ok, err)
		}
	}
}

func TestClientAddr(t *testing.T) {
	tr, err := ParseTrusted([]string{"127.0.0.1", "10.0.0.0/8", " ", "::1/128"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseTrusted([]string{"10.0.0.0/33"}); err == nil {
		t.Error("a bad prefix parsed")
	}
	a := netip.MustParseAddr
	for _, c := range []struct {
		peer string
		xff  []string
		want string
	}{
		{"127.0.0.1", []string{"203.0.113.5"}, "203.0.113.5"},
		{"127.0.0.1", []string{"198.51.100.1, 203.0.113.5"}, "203.0.113.5"},
		{"127.0.0.1", []string{"198.51.100.1, 203.0.113.5, 10.1.2.3"}, "203.0.113.5"},
		{"127.0.0.1", []string{"198.51.100.1", "203.0.113.5", "10.1.2.3"}, "203.0.113.5"},
		{"127.0.0.1", []string{"10.9.9.9, 10.1.2.3"}, "10.9.9.9"},
		{"127.0.0.1", []string{"junk, 10.1.2.3"}, "10.1.2.3"},
		{"127.0.0.1", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"127.0.0.1", []string{"203.0.113.5:8080"}, "203.0.113.5"},
		{"127.0.0.1", nil, "127.0.0.1"},
		{"::ffff:127.0.0.1", []string{"203.0.113.5"}, "203.0.113.5"},
		{"127.0.0.4", []string{"203.0.113.5"}, "127.0.0.4"},
		{"::1", []string{"2001:db8::1"}, "2001:db8::1"},
	} {
		if got := tr.ClientAddr(a(c.peer), c.xff); got != a(c.want) {
			t.Errorf("%s %q: %s, want %s", c.peer, c.xff, got, c.want)
		}
	}
	var none *Trusted
	if got := none.ClientAddr(a("127.0.0.1"), []string{"203.0.113.5"}); got != a("127.0.0.1") {
		t.Errorf("nil Trusted took the header: %s", got)
	}
}

// TestListener: over real sockets, a trusted peer's v1 and v2 headers set
// RemoteAddr and are not passed on; a trusted peer without a header keeps
// its own address; an untrusted peer's header is passed on untouched.
func TestListener(t *testing.T) {
	tr, _ := ParseTrusted([]string{"127.0.0.1/32"})
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(raw, ListenerConfig{Trusted: tr, HeaderTimeout: 5 * time.Second})
	defer ln.Close()
	src := netip.MustParseAddrPort("203.0.113.9:5555")
	dst := netip.MustParseAddrPort("127.0.0.1:443")
	for _, c := range []struct {
		from, send, wantAddr, wantData string
	}{
		{"127.0.0.1", string(AppendV1(nil, src, dst)) + "hello", "203.0.113.9:5555", "hello"},
		{"127.0.0.1", string(AppendV2(nil, src, dst)) + "hello", "203.0.113.9:5555", "hello"},
		{"127.0.0.1", "hello", "127.0.0.1", "hello"},
		{"127.0.0.4", string(AppendV1(nil, src, dst)) + "hello", "127.0.0.4", string(AppendV1(nil, src, dst)) + "hello"},
	} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.from)}}
		cc, err := d.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		cc.Write([]byte(c.send))
		cc.(*net.TCPConn).CloseWrite()
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		got := sc.RemoteAddr().String()
		if c.wantAddr != "203.0.113.9:5555" {
			got, _, _ = net.SplitHostPort(got)
		}
		data, _ := io.ReadAll(sc)
		if got != c.wantAddr || string(data) != c.wantData {
			t.Errorf("from %s: addr %s data %q, want %s %q", c.from, got, data, c.wantAddr, c.wantData)
		}
		sc.Close()
		cc.Close()
	}
	// A malformed header from a trusted peer closes the connection.
	cc, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cc.Write([]byte("PROXY TCP4 nonsense\r\nhello"))
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Read(make([]byte, 10)); !errors.Is(err, ErrProxyHeader) {
		t.Errorf("read after a malformed header: %v", err)
	}
}

// FuzzProxyHeader: any bytes give a header or an ErrProxyHeader, never a
// panic, never a read past the header, and a header written by AppendV1 or
// AppendV2 reads back.
func FuzzProxyHeader(f *testing.F) {
	s, d := netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("[2001:db8::1]:2")
	f.Add(AppendV1(nil, s, netip.MustParseAddrPort("192.0.2.2:3")))
	f.Add(AppendV1(nil, netip.MustParseAddrPort("[2001:db8::2]:5"), d))
	f.Add(AppendV2(nil, s, netip.MustParseAddrPort("192.0.2.2:3")))
	f.Add(AppendV2(nil, netip.MustParseAddrPort("[2001:db8::2]:5"), d))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := append(append([]byte{}, b...), "TAIL"...) // b is the fuzzer's: not to be written
		r := bufio.NewReader(bytes.NewReader(in))
		ok, err := HasHeader(r)
		if err != nil || !ok {
			return
		}
		h, err := ReadHeader(r)
		if err != nil {
			if !errors.Is(err, ErrProxyHeader) {
				t.Fatalf("error %v is not ErrProxyHeader", err)
			}
			return
		}
		rest, _ := io.ReadAll(r)
		want := 0 // the header's own length
		if h.Version == 1 {
			want = bytes.IndexByte(in, '\n') + 1
		} else {
			want = 16 + int(binary.BigEndian.Uint16(in[14:16]))
		}
		if len(in)-len(rest) != want {
			t.Fatalf("read %d bytes of a %d-byte header", len(in)-len(rest), want)
		}
		if h.Source.IsValid() {
			var again []byte
			if h.Version == 1 {
				again = AppendV1(nil, h.Source, h.Dest)
			} else {
				again = AppendV2(nil, h.Source, h.Dest)
			}
			h2, err := ReadHeader(bufio.NewReader(bytes.NewReader(again)))
			if err != nil || h2 != h {
				t.Fatalf("%+v wrote %q, read back %+v %v", h, again, h2, err)
			}
		}
	})
}

func BenchmarkClientAddr(b *testing.B) {
	tr, _ := ParseTrusted([]string{"10.0.0.0/8", "127.0.0.1"})
	peer := netip.MustParseAddr("127.0.0.1")
	xff := []string{"198.51.100.1, 203.0.113.5, 10.1.2.3"}
	for b.Loop() {
		tr.ClientAddr(peer, xff)
	}
}

func BenchmarkReadHeaderV2(b *testing.B) {
	hdr := AppendV2(nil, netip.MustParseAddrPort("203.0.113.5:4000"), netip.MustParseAddrPort("127.0.0.1:443"))
	r := bufio.NewReader(nil)
	for b.Loop() {
		r.Reset(bytes.NewReader(hdr))
		if _, err := ReadHeader(r); err != nil {
			b.Fatal(err)
		}
	}
}
