package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"parley/crdt"
	"parley/ident"
)

// Message states are stored (sealed) in a compact binary form from schema
// 8, instead of JSON: encoding and decoding them was a good part of the
// work per message. The form is messageV1, then the fields in the order of
// crdt.Message: strings as a uvarint length and the bytes, timestamps as
// a zigzag varint wall time, a uvarint logical counter and the node's
// string. No JSON value starts with messageV1.
const messageV1 = 0xB1

// messageV2 is messageV1's form followed by a flags byte (1: Internal)
// and the Kind as a string: an internal message or an inbox change
// (issue 18). A message with neither is written as messageV1, as before.
const messageV2 = 0xB2

// errMessage marks a message record that does not decode.
var errMessage = errors.New("bad message record")

// messageSize bounds the size of m's encoding.
func messageSize(m *crdt.Message) int {
	n := 2 + len(m.Kind) + binary.MaxVarintLen32 + len(m.ID) + len(m.Author) + len(m.Role) + len(m.Name) + len(m.Body) + 5*binary.MaxVarintLen32
	for _, ts := range [3]*crdt.Timestamp{&m.Created, &m.BodyTS, &m.Deleted} {
		n += binary.MaxVarintLen64 + binary.MaxVarintLen32 + binary.MaxVarintLen32 + len(ts.Node)
	}
	return n
}

// appendMessage appends the encoding of m to dst.
func appendMessage(dst []byte, m *crdt.Message) []byte {
	v2 := m.Internal || m.Kind != ""
	if v2 {
		dst = append(dst, messageV2)
	} else {
		dst = append(dst, messageV1)
	}
	dst = appendString(dst, m.ID)
	dst = appendString(dst, m.Author)
	dst = appendString(dst, string(m.Role))
	dst = appendString(dst, m.Name)
	dst = appendTimestamp(dst, m.Created)
	dst = appendString(dst, m.Body)
	dst = appendTimestamp(dst, m.BodyTS)
	dst = appendTimestamp(dst, m.Deleted)
	if !v2 {
		return dst
	}
	var flags byte
	if m.Internal {
		flags = 1
	}
	return appendString(append(dst, flags), m.Kind)
}

// encodeMessage is m's encoding in a buffer of its own.
func encodeMessage(m *crdt.Message) []byte {
	return appendMessage(make([]byte, 0, messageSize(m)), m)
}

func appendString(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

func appendTimestamp(dst []byte, ts crdt.Timestamp) []byte {
	dst = binary.AppendVarint(dst, ts.Wall)
	dst = binary.AppendUvarint(dst, uint64(ts.Logical))
	return appendString(dst, ts.Node)
}

// decodeMessage is the inverse of appendMessage; it refuses trailing bytes.
func decodeMessage(b []byte) (crdt.Message, error) {
	if len(b) == 0 || (b[0] != messageV1 && b[0] != messageV2) {
		return crdt.Message{}, fmt.Errorf("%w: not a message", errMessage)
	}
	d := msgDecoder{b: b[1:]}
	var m crdt.Message
	m.ID = d.string()
	m.Author = d.string()
	m.Role = ident.Role(d.string())
	m.Name = d.string()
	m.Created = d.timestamp()
	m.Body = d.string()
	m.BodyTS = d.timestamp()
	m.Deleted = d.timestamp()
	if b[0] == messageV2 {
		switch {
		case len(d.b) == 0 || d.b[0] > 1:
			d.bad = true
		default:
			m.Internal = d.b[0] == 1
			d.b = d.b[1:]
			m.Kind = d.string()
		}
	}
	if d.bad || len(d.b) != 0 {
		return crdt.Message{}, fmt.Errorf("%w: %d bytes", errMessage, len(b))
	}
	return m, nil
}

type msgDecoder struct {
	b   []byte
	bad bool
}

func (d *msgDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

// byte and bytes read a byte, and a length and that many bytes (in the
// decoded value: no copy), for chunks (chunk.go).
func (d *msgDecoder) byte() byte {
	if len(d.b) == 0 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *msgDecoder) bytes() []byte {
	l := d.uvarint()
	if d.bad || l > uint64(len(d.b)) {
		d.bad, d.b = true, nil
		return nil
	}
	s := d.b[:l]
	d.b = d.b[l:]
	return s
}

func (d *msgDecoder) string() string {
	l := d.uvarint()
	if d.bad || l > uint64(len(d.b)) {
		d.bad, d.b = true, nil
		return ""
	}
	s := string(d.b[:l])
	d.b = d.b[l:]
	return s
}

func (d *msgDecoder) timestamp() crdt.Timestamp {
	w, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return crdt.Timestamp{}
	}
	d.b = d.b[n:]
	l := d.uvarint()
	if l > math.MaxUint32 {
		d.bad = true
	}
	return crdt.Timestamp{Wall: w, Logical: uint32(l), Node: d.string()}
}
