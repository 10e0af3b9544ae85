package gateway

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"parley/gateway/wire"
)

// The WebSocket protocol (RFC 6455) as far as the gateway speaks it: the
// server side of the handshake, client frames parsed incrementally from
// whatever bytes arrived (so that a connection between frames holds no
// buffer), and unmasked server frames. No extension (permessage-deflate
// included) and no subprotocol is negotiated.

const (
	wsOpContinuation = 0x0
	wsOpText         = 0x1
	wsOpBinary       = 0x2
	wsOpClose        = 0x8
	wsOpPing         = 0x9
	wsOpPong         = 0xA
)

// Close codes of the protocol itself.
const (
	wsCloseNormal   = 1000
	wsCloseProtocol = 1002
	wsCloseNoStatus = 1005
	wsCloseInternal = 1011
)

// errWSHandshake is returned by wsAccept for a request that is not a valid
// WebSocket upgrade; it has been answered already.
var errWSHandshake = errors.New("websocket: bad handshake")

// wsAcceptKey is the Sec-WebSocket-Accept value for a client's key.
func wsAcceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte("258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// wsCheckUpgrade validates an upgrade request and answers a bad one; it
// returns the client's key.
func wsCheckUpgrade(w http.ResponseWriter, r *http.Request) (string, error) {
	fail := func(code int, msg string) (string, error) {
		if code == http.StatusUpgradeRequired {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		http.Error(w, msg, code)
		return "", fmt.Errorf("%w: %s", errWSHandshake, msg)
	}
	if r.Method != http.MethodGet {
		return fail(http.StatusMethodNotAllowed, "websocket: method not GET")
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		return fail(http.StatusUpgradeRequired, "websocket: not an upgrade request")
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return fail(http.StatusBadRequest, "websocket: unsupported protocol version")
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		return fail(http.StatusBadRequest, "websocket: invalid Sec-WebSocket-Key")
	}
	return key, nil
}

// appendWSHeader appends the header of an unmasked, final server frame.
func appendWSHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
}

// wsClosePayload is a close frame's payload: code and reason (cut to fit
// the 125 bytes of a control frame).
func wsClosePayload(code int, reason string) []byte {
	if code == wsCloseNoStatus {
		return nil
	}
	if len(reason) > 123 {
		reason = reason[:123]
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

// wsProtocolError ends a connection whose client broke the protocol, with
// the close code to say so.
type wsProtocolError struct {
	code   int
	reason string
}

func (e *wsProtocolError) Error() string {
	return fmt.Sprintf("websocket: %s (close %d)", e.reason, e.code)
}

// wsParser turns the bytes a client sends into messages. Between frames it
// holds nothing; a frame cut by the end of a read keeps its bytes so far
// (partial), and a fragmented message its fragments (msg), until complete.
type wsParser struct {
	partial []byte
	msg     []byte
	msgOp   byte // the opcode of the fragmented message under way, 0: none
	limit   int  // the most bytes one message may have
}

// wsEmit receives a parsed message or control frame: op is wsOpText,
// wsOpBinary, wsOpPing, wsOpPong or wsOpClose; data is the caller's to keep.
type wsEmit func(op byte, data []byte)

// feed parses b (which it does not keep) and emits every complete message
// and control frame in order. An error is a protocol violation: the
// connection must close with its code.
func (p *wsParser) feed(b []byte, emit wsEmit) error {
	held := len(p.partial) > 0
	if held {
		p.partial = append(p.partial, b...)
		b = p.partial
	}
	for {
		n, err := p.frame(b, emit)
		if err != nil {
			p.partial = nil
			return err
		}
		if n == 0 {
			break
		}
		b = b[n:]
	}
	switch {
	case len(b) == 0:
		p.partial = nil
	case held:
		// A tail of partial itself: move it to the front.
		p.partial = append(p.partial[:0], b...)
	default:
		p.partial = append(make([]byte, 0, len(b)), b...)
	}
	return nil
}

// frame parses one frame at the start of b; n is 0 when b does not hold
// all of it yet.
func (p *wsParser) frame(b []byte, emit wsEmit) (n int, err error) {
	if len(b) < 2 {
		return 0, nil
	}
	fin, rsv, op := b[0]&0x80 != 0, b[0]&0x70, b[0]&0x0F
	masked, l7 := b[1]&0x80 != 0, int(b[1]&0x7F)
	if rsv != 0 {
		return 0, &wsProtocolError{wsCloseProtocol, "reserved bits set"}
	}
	if !masked {
		return 0, &wsProtocolError{wsCloseProtocol, "client frame not masked"}
	}
	hdr := 2
	var length uint64
	switch l7 {
	case 126:
		hdr += 2
		if len(b) < hdr {
			return 0, nil
		}
		length = uint64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		hdr += 8
		if len(b) < hdr {
			return 0, nil
		}
		length = binary.BigEndian.Uint64(b[2:])
	default:
		length = uint64(l7)
	}
	control := op >= wsOpClose
	switch {
	case control && (!fin || length > 125):
		return 0, &wsProtocolError{wsCloseProtocol, "invalid control frame"}
	case op > wsOpBinary && !control, op > wsOpPong:
		return 0, &wsProtocolError{wsCloseProtocol, fmt.Sprintf("unknown opcode %d", op)}
	case op == wsOpContinuation && p.msgOp == 0:
		return 0, &wsProtocolError{wsCloseProtocol, "continuation without a message"}
	case (op == wsOpText || op == wsOpBinary) && p.msgOp != 0:
		return 0, &wsProtocolError{wsCloseProtocol, "new message inside a fragmented one"}
	}
	if !control && length+uint64(len(p.msg)) > uint64(p.limit) {
		return 0, &wsProtocolError{wire.CloseTooLarge, fmt.Sprintf("read limited at %d bytes", p.limit)}
	}
	hdr += 4
	if uint64(len(b)) < uint64(hdr)+length {
		return 0, nil
	}
	key := b[hdr-4 : hdr]
	payload := b[hdr : hdr+int(length)]
	var data []byte
	if !control && op == wsOpContinuation {
		data = append(p.msg, payload...)
		wsUnmask(data[len(p.msg):], key)
	} else if !control && !fin {
		data = append(make([]byte, 0, 2*len(payload)), payload...)
		wsUnmask(data, key)
	} else {
		data = make([]byte, len(payload))
		copy(data, payload)
		wsUnmask(data, key)
	}
	switch {
	case control:
		emit(op, data)
	case !fin:
		p.msg = data
		if op != wsOpContinuation {
			p.msgOp = op
		}
	default:
		if op == wsOpContinuation {
			op = p.msgOp
		}
		p.msg, p.msgOp = nil, 0
		emit(op, data)
	}
	return hdr + int(length), nil
}

func wsUnmask(b, key []byte) {
	for i := range b {
		b[i] ^= key[i&3]
	}
}
