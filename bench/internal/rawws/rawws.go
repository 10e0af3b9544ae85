// Package rawws is the harness's own WebSocket client (RFC 6455) for
// ws:// servers, used by the bench runner's virtual clients and by the
// peer drivers' subscribers and publishers alike, so that every server
// the harness measures is read and written by the same client. It
// speaks what those need and nothing more: text and binary messages,
// pings answered, the close handshake, no extension and no subprotocol.
//
// What it is for is the harness's CPU, which the server it measures
// shares: a connection's reader reads the socket itself through one
// buffer and hands out each message in a buffer it reuses (no lock,
// context, timer or allocation per message read, where coder/websocket
// takes a lock, watches the call's context, swaps a read timeout and
// allocates the message), and a writer may queue the frames ready at one
// moment and write them with one write(2).
//
// A Conn is read by one goroutine (Next) and may be written by any
// (Queue, Write, Flush, Close, CloseNow).
package rawws

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"parley/gateway/client"

	"github.com/coder/websocket"
)

// Op is a message's opcode.
type Op byte

// The opcodes of RFC 6455 section 5.2.
const (
	OpText   Op = 0x1
	OpBinary Op = 0x2

	opCont  Op = 0x0
	opClose Op = 0x8
	opPing  Op = 0x9
	opPong  Op = 0xa
)

// ReadLimit is the largest message Next accepts.
const ReadLimit = 1 << 20

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Conn is one WebSocket connection.
type Conn struct {
	nc net.Conn
	br *bufio.Reader

	wmu  sync.Mutex
	out  []byte // frames queued, not yet written
	werr error  // the first write error: every later write fails with it

	in     []byte // the message being read; reused by the next
	closed chan struct{}
	once   sync.Once
}

// Dial opens a WebSocket to rawURL (ws://host[:port]/path), from local
// when it is not nil, reading through a buffer of readBuf bytes (4 KiB
// when 0). A refused handshake is a *client.HandshakeError with the
// server's status, as client.DialWS's; ctx bounds the dial and the
// handshake only.
func Dial(ctx context.Context, rawURL string, local net.Addr, readBuf int) (*Conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "ws" {
		return nil, fmt.Errorf("raw websocket: %q is not a ws:// URL", rawURL)
	}
	if readBuf <= 0 {
		readBuf = 4 << 10
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	nd := net.Dialer{Timeout: 10 * time.Second, LocalAddr: local}
	nc, err := nd.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", u, err)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	c, err := handshake(nc, u, readBuf)
	if !stop() {
		nc.Close()
		return nil, fmt.Errorf("websocket handshake with %s: %w", u, ctx.Err())
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func handshake(nc net.Conn, u *url.URL, readBuf int) (*Conn, error) {
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return nil, fmt.Errorf("websocket handshake with %s: %w", u, err)
	}
	br := bufio.NewReaderSize(nc, readBuf)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet, URL: u})
	if err != nil {
		return nil, fmt.Errorf("websocket handshake with %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
		return nil, &client.HandshakeError{Status: resp.StatusCode, Err: fmt.Errorf("expected handshake response status code 101 but got %d", resp.StatusCode)}
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != base64.StdEncoding.EncodeToString(sum[:]) {
		return nil, fmt.Errorf("websocket handshake with %s: Sec-WebSocket-Accept %q does not answer the key", u, got)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") || resp.Header.Get("Sec-WebSocket-Extensions") != "" {
		return nil, fmt.Errorf("websocket handshake with %s: unexpected upgrade %q, extensions %q", u, resp.Header.Get("Upgrade"), resp.Header.Get("Sec-WebSocket-Extensions"))
	}
	return &Conn{nc: nc, br: br, in: make([]byte, 0, 1024), closed: make(chan struct{})}, nil
}

// appendFrame appends a masked frame (clients mask every frame).
func appendFrame(b []byte, op Op, payload []byte) []byte {
	b = append(b, 0x80|byte(op))
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	key := mrand.Uint32()
	b = binary.BigEndian.AppendUint32(b, key)
	start := len(b)
	b = append(b, payload...)
	mask(b[start:], key)
	return b
}

// mask XORs p with the 4-byte key (big-endian, as written), eight bytes
// at a time.
func mask(p []byte, key uint32) {
	k8 := uint64(key)<<32 | uint64(key)
	for len(p) >= 8 {
		v := binary.BigEndian.Uint64(p)
		binary.BigEndian.PutUint64(p, v^k8)
		p = p[8:]
	}
	for i := range p {
		p[i] ^= byte(bits.RotateLeft32(key, 8*(i+1)))
	}
}

// Queue adds a message to those to write with the next Flush (or Write).
func (c *Conn) Queue(op Op, payload []byte) error { return c.put(op, payload, false) }

// Write writes a message at once, with what is queued before it, in one
// write.
func (c *Conn) Write(op Op, payload []byte) error { return c.put(op, payload, true) }

// Flush writes the messages queued, in one write.
func (c *Conn) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

func (c *Conn) put(op Op, payload []byte, now bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	c.out = appendFrame(c.out, op, payload)
	if !now {
		return nil
	}
	return c.flushLocked()
}

func (c *Conn) flushLocked() error {
	if c.werr != nil {
		return c.werr
	}
	if len(c.out) == 0 {
		return nil
	}
	_, err := c.nc.Write(c.out)
	c.out = c.out[:0]
	if err != nil {
		c.werr = fmt.Errorf("failed to write frame: %w", err)
	}
	return c.werr
}

// Next reads the next message, text or binary, and returns it in a
// buffer valid until the next call. Control frames are handled on the
// way: a ping is answered; a close is answered and ends the connection
// with a websocket.CloseError (as coder/websocket's). After an error the
// connection is closed and every later call fails.
func (c *Conn) Next() (Op, []byte, error) {
	msg := c.in[:0]
	var first Op
	for {
		var h [14]byte
		if _, err := io.ReadFull(c.br, h[:2]); err != nil {
			return 0, nil, c.fail(err)
		}
		fin, op := h[0]&0x80 != 0, Op(h[0]&0x0f)
		if h[0]&0x70 != 0 || h[1]&0x80 != 0 {
			return 0, nil, c.fail(errors.New("protocol error: reserved bits or a masked frame from the server"))
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(c.br, h[2:4]); err != nil {
				return 0, nil, c.fail(err)
			}
			n = uint64(binary.BigEndian.Uint16(h[2:4]))
		case 127:
			if _, err := io.ReadFull(c.br, h[2:10]); err != nil {
				return 0, nil, c.fail(err)
			}
			n = binary.BigEndian.Uint64(h[2:10])
		}
		if op >= opClose {
			if n > 125 || !fin {
				return 0, nil, c.fail(errors.New("protocol error: bad control frame"))
			}
			var p [125]byte
			if _, err := io.ReadFull(c.br, p[:n]); err != nil {
				return 0, nil, c.fail(err)
			}
			switch op {
			case opPing:
				if err := c.put(opPong, p[:n], true); err != nil {
					return 0, nil, c.fail(err)
				}
			case opClose:
				ce := websocket.CloseError{Code: websocket.StatusNoStatusRcvd}
				if n >= 2 {
					ce.Code = websocket.StatusCode(binary.BigEndian.Uint16(p[:2]))
					ce.Reason = string(p[2:n])
				}
				_ = c.put(opClose, p[:min(n, 2)], true)
				return 0, nil, c.fail(fmt.Errorf("received close frame: %w", ce))
			}
			continue
		}
		switch {
		case first == 0 && op != OpText && op != OpBinary, first != 0 && op != opCont:
			return 0, nil, c.fail(fmt.Errorf("protocol error: opcode %d", op))
		case uint64(len(msg))+n > ReadLimit:
			return 0, nil, c.fail(fmt.Errorf("read limited at %d bytes", ReadLimit))
		}
		if first == 0 {
			first = op
		}
		start := len(msg)
		msg = append(msg, make([]byte, n)...)
		if _, err := io.ReadFull(c.br, msg[start:]); err != nil {
			return 0, nil, c.fail(err)
		}
		if fin {
			c.in = msg
			return first, msg, nil
		}
	}
}

// fail ends the connection after a read error and returns it.
func (c *Conn) fail(err error) error {
	c.CloseNow()
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return fmt.Errorf("failed to read frame: %w", err)
}

// Close says goodbye with the normal close code and waits (at most 2 s)
// for the reader to see the server's answer, then closes. A write under
// way when it is called (to a server that stopped reading) fails within
// those 2 s rather than holding Close up.
func (c *Conn) Close() {
	_ = c.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	var p [2]byte
	binary.BigEndian.PutUint16(p[:], uint16(websocket.StatusNormalClosure))
	if c.put(opClose, p[:], true) == nil {
		t := time.NewTimer(2 * time.Second)
		select {
		case <-c.closed:
		case <-t.C:
		}
		t.Stop()
	}
	c.CloseNow()
}

// CloseNow closes the socket: a Next under way returns an error.
func (c *Conn) CloseNow() {
	c.once.Do(func() {
		close(c.closed)
		c.nc.Close()
	})
}
