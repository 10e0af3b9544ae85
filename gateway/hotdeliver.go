package gateway

import (
	"strconv"
	"unicode/utf8"

	"parley/crdt"
	"parley/gateway/wire"
	"parley/store"
)

// The frames every message costs each of its recipients, deliver and
// read, are written here without reflection: the same bytes as
// encoding/json's from the same value (FuzzEncodeDeliver, FuzzEncodeRead),
// into one buffer sized for them, each event's once for all its
// recipients (hub.publish). TestHotFramesKnowEveryField fails when a
// field is added to wire.Deliver, wire.Message, wire.Read or
// crdt.Timestamp that these do not write.

// deliverFrame is an event's deliver frame as hub.publish sends it live:
// encode(wire.Deliver{... At: stampString(e.Stamp), Message: toWire(e.Message)})
// without the stamp's string or the reflection.
func deliverFrame(e store.Event) []byte {
	d := wire.Deliver{Type: wire.TypeDeliver, Conversation: e.Conversation, Seq: e.Seq, Message: toWire(e.Message)}
	return appendDeliver(make([]byte, 0, deliverSize(&d, e.Stamp)), &d, e.Stamp)
}

// encodeDeliver is encode(d).
func encodeDeliver(d wire.Deliver) []byte {
	return appendDeliver(make([]byte, 0, deliverSize(&d, store.Stamp{})), &d, store.Stamp{})
}

// deliverSize is what appendDeliver writes when no string needs an escape.
func deliverSize(d *wire.Deliver, at store.Stamp) int {
	n := 200 + len(d.Type) + len(d.Conversation) + len(d.At) + len(at.Origin) +
		len(d.Message.ID) + len(d.Message.Author) + len(d.Message.Role) + len(d.Message.Name) +
		len(d.Message.Body) + len(d.Message.TS.Node) + len(d.Message.Kind)
	for _, s := range d.Also {
		n += len(s) + 3
	}
	if d.Message.Edited != nil {
		n += 48 + len(d.Message.Edited.Node)
	}
	return n
}

// appendDeliver appends d as encoding/json writes it, its at taken from
// stamp (as stampString writes it) when d.At is empty.
func appendDeliver(b []byte, d *wire.Deliver, stamp store.Stamp) []byte {
	b = append(b, `{"type":`...)
	b = appendJSONString(b, d.Type)
	b = append(b, `,"conversation":`...)
	b = appendJSONString(b, d.Conversation)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, d.Seq, 10)
	switch {
	case d.At != "":
		b = append(b, `,"at":`...)
		b = appendJSONString(b, d.At)
	case stamp.Origin != "":
		// stampString's "origin.oseq", escaped as one string: the dot
		// and the digits never need an escape, so the origin's closing
		// quote is moved past them.
		b = append(b, `,"at":`...)
		b = appendJSONString(b, stamp.Origin)
		b = b[:len(b)-1]
		b = append(b, '.')
		b = strconv.AppendUint(b, stamp.OSeq, 10)
		b = append(b, '"')
	}
	if len(d.Also) > 0 {
		b = append(b, `,"also":[`...)
		for i, s := range d.Also {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, s)
		}
		b = append(b, ']')
	}
	m := &d.Message
	b = append(b, `,"message":{"id":`...)
	b = appendJSONString(b, m.ID)
	b = append(b, `,"author":`...)
	b = appendJSONString(b, m.Author)
	b = append(b, `,"role":`...)
	b = appendJSONString(b, string(m.Role))
	if m.Name != "" {
		b = append(b, `,"name":`...)
		b = appendJSONString(b, m.Name)
	}
	b = append(b, `,"body":`...)
	b = appendJSONString(b, m.Body)
	b = append(b, `,"ts":`...)
	b = appendTimestamp(b, m.TS)
	b = append(b, `,"edited":`...)
	if m.Edited != nil {
		b = appendTimestamp(b, *m.Edited)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"deleted":`...)
	b = strconv.AppendBool(b, m.Deleted)
	if m.Internal {
		b = append(b, `,"internal":true`...)
	}
	if m.Kind != "" {
		b = append(b, `,"kind":`...)
		b = appendJSONString(b, m.Kind)
	}
	return append(b, "}}"...)
}

func appendTimestamp(b []byte, t crdt.Timestamp) []byte {
	b = append(b, `{"w":`...)
	b = strconv.AppendInt(b, t.Wall, 10)
	b = append(b, `,"l":`...)
	b = strconv.AppendUint(b, uint64(t.Logical), 10)
	b = append(b, `,"n":`...)
	b = appendJSONString(b, t.Node)
	return append(b, '}')
}

// encodeRead is encode(r).
func encodeRead(r wire.Read) []byte {
	b := make([]byte, 0, 96+len(r.Type)+len(r.Conversation)+len(r.Participant)+len(r.Role))
	b = append(b, `{"type":`...)
	b = appendJSONString(b, r.Type)
	b = append(b, `,"conversation":`...)
	b = appendJSONString(b, r.Conversation)
	b = append(b, `,"participant":`...)
	b = appendJSONString(b, r.Participant)
	b = append(b, `,"role":`...)
	b = appendJSONString(b, string(r.Role))
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	return append(b, '}')
}

// appendJSONString appends s quoted as encoding/json writes a string
// (HTML-safe: <, > and & escaped, U+2028 and U+2029 too, each invalid
// UTF-8 byte as \ufffd).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// jsonSafe holds the ASCII bytes encoding/json writes in a string as they
// are (its htmlSafeSet): not a control character, a quote, a backslash,
// <, > or &.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()
