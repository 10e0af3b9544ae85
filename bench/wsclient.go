package bench

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

// rawWS is the harness's own WebSocket client (RFC 6455) for ws://
// nodes: text frames in, text frames out, nothing else the protocol
// needs (no extension, no subprotocol). It is what lets a virtual client
// write the sends that are ready at one moment with one write(2)
// (queue, then flush) and read what the node wrote in one read(2)
// (a 64 KiB buffer), with no lock, channel or context per frame; a
// library connection (coder/websocket) writes each message with a write
// of its own. wss:// nodes go through coder/websocket (wsConn).
type rawWS struct {
	nc net.Conn
	br *bufio.Reader

	wmu  sync.Mutex
	out  []byte // frames queued, not yet written
	werr error  // the first write error: every later write fails with it

	in     []byte   // the message being read
	names  interner // conversation ids and node names read
	closed chan struct{}
	once   sync.Once
}

const (
	wsOpCont  = 0x0
	wsOpText  = 0x1
	wsOpBin   = 0x2
	wsOpClose = 0x8
	wsOpPing  = 0x9
	wsOpPong  = 0xa

	wsReadLimit = 1 << 20
	wsGUID      = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
)

// dialRawWS opens a WebSocket to base (http://host:port) at /v1/ws; a
// refused handshake is a *client.HandshakeError, as client.DialWS's.
func dialRawWS(ctx context.Context, base string, local net.Addr) (*rawWS, error) {
	u, err := url.Parse(client.WSURL(base))
	if err != nil || u.Scheme != "ws" {
		return nil, fmt.Errorf("raw websocket: %q is not a ws:// node", base)
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
	w, err := handshake(nc, u)
	if !stop() {
		nc.Close()
		return nil, fmt.Errorf("websocket handshake with %s: %w", u, ctx.Err())
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return w, nil
}

func handshake(nc net.Conn, u *url.URL) (*rawWS, error) {
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return nil, fmt.Errorf("websocket handshake with %s: %w", u, err)
	}
	br := bufio.NewReaderSize(nc, 64<<10)
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
	return &rawWS{nc: nc, br: br, in: make([]byte, 0, 1024), names: interner{}, closed: make(chan struct{})}, nil
}

// appendFrame appends a masked frame (clients mask every frame).
func appendFrame(b []byte, op byte, payload []byte) []byte {
	b = append(b, 0x80|op)
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

// queue adds a text frame to those to write with the next flush.
func (w *rawWS) queue(b []byte) error { return w.put(wsOpText, b, false) }

// write writes a text frame at once (with what is queued before it).
func (w *rawWS) write(b []byte) error { return w.put(wsOpText, b, true) }

// control writes a control frame at once (with what is queued before it).
func (w *rawWS) control(op byte, payload []byte) error { return w.put(op, payload, true) }

// flush writes the frames queued, in one write.
func (w *rawWS) flush() error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return w.flushLocked()
}

// put queues a frame, and with now writes what is queued.
func (w *rawWS) put(op byte, payload []byte, now bool) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.werr != nil {
		return w.werr
	}
	w.out = appendFrame(w.out, op, payload)
	if !now {
		return nil
	}
	return w.flushLocked()
}

func (w *rawWS) flushLocked() error {
	if w.werr != nil {
		return w.werr
	}
	if len(w.out) == 0 {
		return nil
	}
	_, err := w.nc.Write(w.out)
	w.out = w.out[:0]
	if err != nil {
		w.werr = fmt.Errorf("failed to write frame: %w", err)
	}
	return w.werr
}

// next reads the next text message; control frames are handled on the
// way: a ping is answered, a close is answered and ends the connection
// with a websocket.CloseError (as coder/websocket's).
func (w *rawWS) next() (frame, error) {
	msg := w.in[:0]
	first := true
	for {
		var h [14]byte
		if _, err := io.ReadFull(w.br, h[:2]); err != nil {
			return frame{}, w.fail(err)
		}
		fin, op := h[0]&0x80 != 0, h[0]&0x0f
		if h[0]&0x70 != 0 || h[1]&0x80 != 0 {
			return frame{}, w.fail(errors.New("protocol error: reserved bits or a masked frame from the server"))
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(w.br, h[2:4]); err != nil {
				return frame{}, w.fail(err)
			}
			n = uint64(binary.BigEndian.Uint16(h[2:4]))
		case 127:
			if _, err := io.ReadFull(w.br, h[2:10]); err != nil {
				return frame{}, w.fail(err)
			}
			n = binary.BigEndian.Uint64(h[2:10])
		}
		if op >= wsOpClose {
			if n > 125 || !fin {
				return frame{}, w.fail(errors.New("protocol error: bad control frame"))
			}
			var p [125]byte
			if _, err := io.ReadFull(w.br, p[:n]); err != nil {
				return frame{}, w.fail(err)
			}
			switch op {
			case wsOpPing:
				if err := w.control(wsOpPong, p[:n]); err != nil {
					return frame{}, w.fail(err)
				}
			case wsOpClose:
				ce := websocket.CloseError{Code: websocket.StatusNoStatusRcvd}
				if n >= 2 {
					ce.Code = websocket.StatusCode(binary.BigEndian.Uint16(p[:2]))
					ce.Reason = string(p[2:n])
				}
				_ = w.control(wsOpClose, p[:min(n, 2)])
				return frame{}, w.fail(fmt.Errorf("received close frame: %w", ce))
			}
			continue
		}
		switch {
		case first && op != wsOpText && op != wsOpBin, !first && op != wsOpCont:
			return frame{}, w.fail(fmt.Errorf("protocol error: opcode %d", op))
		case uint64(len(msg))+n > wsReadLimit:
			return frame{}, w.fail(fmt.Errorf("read limited at %d bytes", wsReadLimit))
		}
		first = false
		start := len(msg)
		msg = append(msg, make([]byte, n)...)
		if _, err := io.ReadFull(w.br, msg[start:]); err != nil {
			return frame{}, w.fail(err)
		}
		if fin {
			w.in = msg
			return parseFrameIn(msg, w.names), nil
		}
	}
}

// fail ends the connection after a read error and returns it.
func (w *rawWS) fail(err error) error {
	w.closeNow()
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return fmt.Errorf("failed to read frame: %w", err)
}

// close says goodbye with the normal close code and waits (at most 2 s)
// for the reader to see the node's answer, then closes.
func (w *rawWS) close() {
	var p [2]byte
	binary.BigEndian.PutUint16(p[:], uint16(websocket.StatusNormalClosure))
	if w.control(wsOpClose, p[:]) == nil {
		t := time.NewTimer(2 * time.Second)
		select {
		case <-w.closed:
		case <-t.C:
		}
		t.Stop()
	}
	w.closeNow()
}

func (w *rawWS) closeNow() {
	w.once.Do(func() {
		close(w.closed)
		w.nc.Close()
	})
}
