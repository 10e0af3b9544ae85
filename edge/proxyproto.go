package edge

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// ErrProxyHeader is returned for a malformed PROXY protocol header.
var ErrProxyHeader = errors.New("malformed PROXY protocol header")

// Header is what a PROXY protocol header says of a connection. Source is
// invalid (the zero Addr) when the header carries no address: v1 UNKNOWN,
// v2 LOCAL (a proxy's own health check) or an address family other than
// TCP over IPv4 or IPv6; the connection's own peer address stands then.
type Header struct {
	Version int // 1 or 2
	Source  netip.AddrPort
	Dest    netip.AddrPort
}

const (
	v1Prefix = "PROXY "
	// v1MaxLen is the longest v1 line, CRLF included (the specification's
	// 107 bytes).
	v1MaxLen = 107
)

// v2Sig opens every v2 header.
var v2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// HasHeader tells, from the first bytes a connection sent, whether they
// may open a PROXY protocol header: it reads only as many bytes as it
// needs to tell (a plain HTTP request or a TLS ClientHello differs at the
// first byte).
func HasHeader(r *bufio.Reader) (bool, error) {
	b, err := r.Peek(1)
	if err != nil {
		return false, err
	}
	switch b[0] {
	case 'P':
		b, err = r.Peek(len(v1Prefix))
		if err != nil {
			return false, err
		}
		return string(b) == v1Prefix, nil
	case '\r':
		b, err = r.Peek(len(v2Sig))
		if err != nil {
			return false, err
		}
		return bytes.Equal(b, v2Sig), nil
	}
	return false, nil
}

// ReadHeader reads one PROXY protocol header, v1 or v2, from r, and
// nothing after it.
func ReadHeader(r *bufio.Reader) (Header, error) {
	b, err := r.Peek(1)
	if err != nil {
		return Header{}, err
	}
	if b[0] == 'P' {
		return readV1(r)
	}
	return readV2(r)
}

func readV1(r *bufio.Reader) (Header, error) {
	// Read up to the LF, at most v1MaxLen bytes.
	var line []byte
	for len(line) < v1MaxLen {
		c, err := r.ReadByte()
		if err != nil {
			return Header{}, fmt.Errorf("%w: v1: %w", ErrProxyHeader, noEOF(err))
		}
		line = append(line, c)
		if c == '\n' {
			break
		}
	}
	h, err := ParseV1(line)
	if err != nil {
		return Header{}, err
	}
	return h, nil
}

// ParseV1 parses a whole v1 line, CRLF included.
func ParseV1(line []byte) (Header, error) {
	h := Header{Version: 1}
	if len(line) > v1MaxLen || !bytes.HasSuffix(line, []byte("\r\n")) || !bytes.HasPrefix(line, []byte(v1Prefix)) {
		return h, fmt.Errorf("%w: v1: not a line of at most %d bytes ending in CRLF", ErrProxyHeader, v1MaxLen)
	}
	f := bytes.Split(line[len(v1Prefix):len(line)-2], []byte(" "))
	switch string(f[0]) {
	case "UNKNOWN":
		return h, nil // the rest of the line is to be ignored
	case "TCP4", "TCP6":
	default:
		return h, fmt.Errorf("%w: v1: protocol %q", ErrProxyHeader, f[0])
	}
	if len(f) != 5 {
		return h, fmt.Errorf("%w: v1: %d fields, want 5", ErrProxyHeader, len(f)+1)
	}
	src, err1 := netip.ParseAddr(string(f[1]))
	dst, err2 := netip.ParseAddr(string(f[2]))
	sp, err3 := v1Port(f[3])
	dp, err4 := v1Port(f[4])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return h, fmt.Errorf("%w: v1: %w", ErrProxyHeader, err)
	}
	if src.Zone() != "" || dst.Zone() != "" || src.Is4() != (string(f[0]) == "TCP4") || dst.Is4() != src.Is4() {
		return h, fmt.Errorf("%w: v1: addresses do not match %s", ErrProxyHeader, f[0])
	}
	h.Source, h.Dest = netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp)
	return h, nil
}

// v1Port parses a port: 0 to 65535 in decimal, no leading zero.
func v1Port(b []byte) (uint16, error) {
	if len(b) == 0 || len(b) > 5 || (len(b) > 1 && b[0] == '0') {
		return 0, fmt.Errorf("port %q", b)
	}
	p, err := strconv.ParseUint(string(b), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q", b)
	}
	return uint16(p), nil
}

func readV2(r *bufio.Reader) (Header, error) {
	var fixed [16]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return Header{Version: 2}, fmt.Errorf("%w: v2: %w", ErrProxyHeader, noEOF(err))
	}
	n := int(binary.BigEndian.Uint16(fixed[14:16]))
	buf := make([]byte, 16+n)
	copy(buf, fixed[:])
	if _, err := io.ReadFull(r, buf[16:]); err != nil {
		return Header{Version: 2}, fmt.Errorf("%w: v2: %w", ErrProxyHeader, noEOF(err))
	}
	return ParseV2(buf)
}

// ParseV2 parses a whole v2 header: signature, version and command,
// family, length and as many bytes as the length says. TLVs after the
// addresses are skipped.
func ParseV2(b []byte) (Header, error) {
	h := Header{Version: 2}
	if len(b) < 16 || !bytes.Equal(b[:12], v2Sig) {
		return h, fmt.Errorf("%w: v2: no signature", ErrProxyHeader)
	}
	if n := int(binary.BigEndian.Uint16(b[14:16])); len(b) != 16+n {
		return h, fmt.Errorf("%w: v2: length %d, have %d bytes", ErrProxyHeader, n, len(b)-16)
	}
	if b[12]>>4 != 2 {
		return h, fmt.Errorf("%w: v2: version %d", ErrProxyHeader, b[12]>>4)
	}
	body := b[16:]
	switch b[12] & 0xf {
	case 0: // LOCAL: the proxy's own connection
		return h, nil
	case 1: // PROXY
	default:
		return h, fmt.Errorf("%w: v2: command %d", ErrProxyHeader, b[12]&0xf)
	}
	fam, proto := b[13]>>4, b[13]&0xf
	switch {
	case fam == 1 && proto == 1: // TCP over IPv4
		if len(body) < 12 {
			return h, fmt.Errorf("%w: v2: %d address bytes for IPv4", ErrProxyHeader, len(body))
		}
		src, dst := netip.AddrFrom4([4]byte(body[0:4])), netip.AddrFrom4([4]byte(body[4:8]))
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:10]))
		h.Dest = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[10:12]))
	case fam == 2 && proto == 1: // TCP over IPv6
		if len(body) < 36 {
			return h, fmt.Errorf("%w: v2: %d address bytes for IPv6", ErrProxyHeader, len(body))
		}
		src, dst := netip.AddrFrom16([16]byte(body[0:16])), netip.AddrFrom16([16]byte(body[16:32]))
		h.Source = netip.AddrPortFrom(src.Unmap(), binary.BigEndian.Uint16(body[32:34]))
		h.Dest = netip.AddrPortFrom(dst.Unmap(), binary.BigEndian.Uint16(body[34:36]))
	case fam <= 3 && proto <= 2:
		// UNSPEC, UDP or unix sockets: no client address to take.
	default:
		return h, fmt.Errorf("%w: v2: family %d protocol %d", ErrProxyHeader, fam, proto)
	}
	return h, nil
}

// noEOF turns a clean end of stream inside a header into an unexpected one.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// AppendV1 appends the v1 header of a TCP connection from src to dst: for
// proxies and tests.
func AppendV1(b []byte, src, dst netip.AddrPort) []byte {
	proto := "TCP4"
	if !src.Addr().Is4() {
		proto = "TCP6"
	}
	return fmt.Appendf(b, "PROXY %s %s %s %d %d\r\n", proto, src.Addr(), dst.Addr(), src.Port(), dst.Port())
}

// AppendV2 appends the v2 header of a TCP connection from src to dst.
func AppendV2(b []byte, src, dst netip.AddrPort) []byte {
	b = append(b, v2Sig...)
	b = append(b, 0x21)
	if src.Addr().Is4() && dst.Addr().Is4() {
		b = append(b, 0x11, 0, 12)
		s, d := src.Addr().As4(), dst.Addr().As4()
		b = append(append(b, s[:]...), d[:]...)
	} else {
		b = append(b, 0x21, 0, 36)
		s, d := src.Addr().As16(), dst.Addr().As16()
		b = append(append(b, s[:]...), d[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// addrOf converts a net.Addr of a TCP or UDP socket to an address.
func addrOf(a net.Addr) (netip.Addr, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), ok
	case *net.UDPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), ok
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}
