// Package jread reads JSON by hand, for the harness's exact readers of
// the few fields it needs of frames it reads by the hundred thousand
// (bench/frame.go, the peers' subscribers): each method reads one value
// at the reader's position and reports false for anything it does not
// take exactly as encoding/json would (the caller then leaves the whole
// input to encoding/json). Keys are taken only written plainly: no
// escape, no upper-case letter, nothing outside ASCII (encoding/json
// matches a struct's fields without regard to case).
package jread

import (
	"encoding/binary"
	"math"
	"unicode/utf8"
)

// Reader reads JSON from B at I.
type Reader struct {
	B []byte
	I int
}

// Space skips JSON whitespace.
func (p *Reader) Space() {
	for p.I < len(p.B) {
		switch p.B[p.I] {
		case ' ', '\t', '\n', '\r':
			p.I++
		default:
			return
		}
	}
}

// Eat takes byte c, if it is next.
func (p *Reader) Eat(c byte) bool {
	if p.I < len(p.B) && p.B[p.I] == c {
		p.I++
		return true
	}
	return false
}

// Lit takes s, if it is next.
func (p *Reader) Lit(s string) bool {
	if len(p.B)-p.I >= len(s) && string(p.B[p.I:p.I+len(s)]) == s {
		p.I += len(s)
		return true
	}
	return false
}

// Null takes a null, if it is next.
func (p *Reader) Null() bool { return p.Lit("null") }

// Fields reads the rest of an object, after its '{' (first) or after a
// key and its value, calling field with each key, positioned at its
// value, which field must read.
func (p *Reader) Fields(first bool, field func(key []byte) bool) bool {
	p.Space()
	if p.Eat('}') {
		return true
	}
	for {
		if !first {
			if !p.Eat(',') {
				return false
			}
			p.Space()
		}
		first = false
		key, ok := p.Key()
		if !ok {
			return false
		}
		p.Space()
		if !field(key) {
			return false
		}
		p.Space()
		if p.Eat('}') {
			return true
		}
	}
}

// Key reads a plain key and its colon: lower-case ASCII without escapes
// (any other could match a field encoding/json folds case for).
func (p *Reader) Key() ([]byte, bool) {
	if !p.Eat('"') {
		return nil, false
	}
	start := p.I
	for p.I < len(p.B) {
		c := p.B[p.I]
		switch {
		case c == '"':
			key := p.B[start:p.I]
			p.I++
			p.Space()
			return key, p.Eat(':')
		case c < 0x20 || c == '\\' || c >= 0x80 || c >= 'A' && c <= 'Z':
			return nil, false
		}
		p.I++
	}
	return nil, false
}

// Str reads a string without escapes, valid UTF-8 (what encoding/json
// gives as it is), or null (nil, true).
func (p *Reader) Str() ([]byte, bool) {
	if p.Null() {
		return nil, true
	}
	if !p.Eat('"') {
		return nil, false
	}
	start, ascii := p.I, true
	// Eight plain ASCII bytes at a time: none a quote, a backslash, a
	// control character or outside ASCII.
	for len(p.B)-p.I >= 8 && plain8(binary.LittleEndian.Uint64(p.B[p.I:])) {
		p.I += 8
	}
	for p.I < len(p.B) {
		c := p.B[p.I]
		switch {
		case c == '"':
			s := p.B[start:p.I]
			p.I++
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			if s == nil {
				s = []byte{}
			}
			return s, true
		case c < 0x20 || c == '\\':
			return nil, false
		case c >= 0x80:
			ascii = false
		}
		p.I++
	}
	return nil, false
}

// plain8 reports whether none of the eight bytes of x is a quote, a
// backslash, below 0x20 or at or above 0x80.
func plain8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	zero := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	return (x&highs)|zero(x^(ones*'"'))|zero(x^(ones*'\\'))|((x-ones*0x20) & ^x & highs) == 0
}

// StrField reads a string (Str) into dst, which a null leaves as it is.
func (p *Reader) StrField(dst *string) bool {
	s, ok := p.Str()
	if ok && len(s) > 0 {
		*dst = string(s)
	}
	return ok
}

// BoolField reads a boolean into dst, which a null leaves as it is.
func (p *Reader) BoolField(dst *bool) bool {
	switch {
	case p.Lit("true"):
		*dst = true
	case p.Lit("false"), p.Null():
	default:
		return false
	}
	return true
}

// digits reads [0-9]+ with no leading zero (JSON's integer part) and
// returns its value, false when it overflows a uint64 or is no integer
// (a fraction or exponent follows).
func (p *Reader) digits() (uint64, bool) {
	start := p.I
	var v uint64
	for p.I < len(p.B) && p.B[p.I] >= '0' && p.B[p.I] <= '9' {
		d := uint64(p.B[p.I] - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
		p.I++
	}
	n := p.I - start
	if n == 0 || n > 1 && p.B[start] == '0' {
		return 0, false
	}
	if p.I < len(p.B) {
		switch p.B[p.I] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	return v, true
}

// UintField reads an unsigned integer of bits bits, or null.
func (p *Reader) UintField(dst *uint64, bits int) bool {
	if p.Null() {
		return true
	}
	v, ok := p.digits()
	if !ok || bits < 64 && v>>bits != 0 {
		return false
	}
	*dst = v
	return true
}

// IntField reads an int64, or null.
func (p *Reader) IntField(dst *int64) bool {
	if p.Null() {
		return true
	}
	neg := p.Eat('-')
	v, ok := p.digits()
	switch {
	case !ok:
		return false
	case neg && v <= 1<<63:
		*dst = int64(-v)
	case !neg && v < 1<<63:
		*dst = int64(v)
	default:
		return false
	}
	return true
}

// StrArray reads an array of strings (a []string), or null.
func (p *Reader) StrArray() bool {
	if p.Null() {
		return true
	}
	if !p.Eat('[') {
		return false
	}
	return p.list(']', func() bool { _, ok := p.Str(); return ok })
}

// list reads the elements of an array or object after its opening
// bracket, up to end: elem reads one, at its first byte.
func (p *Reader) list(end byte, elem func() bool) bool {
	p.Space()
	if p.Eat(end) {
		return true
	}
	for {
		if !elem() {
			return false
		}
		p.Space()
		if p.Eat(end) {
			return true
		}
		if !p.Eat(',') {
			return false
		}
		p.Space()
	}
}

// maxDepth bounds the nesting of a skipped value.
const maxDepth = 64

// Skip reads any JSON value, checking it is valid.
func (p *Reader) Skip(depth int) bool {
	if p.I >= len(p.B) || depth > maxDepth {
		return false
	}
	switch c := p.B[p.I]; {
	case c == '"':
		return p.SkipString()
	case c == '{':
		p.I++
		return p.list('}', func() bool {
			if !p.SkipString() {
				return false
			}
			p.Space()
			if !p.Eat(':') {
				return false
			}
			p.Space()
			return p.Skip(depth + 1)
		})
	case c == '[':
		p.I++
		return p.list(']', func() bool { return p.Skip(depth + 1) })
	case c == 't':
		return p.Lit("true")
	case c == 'f':
		return p.Lit("false")
	case c == 'n':
		return p.Null()
	case c == '-' || c >= '0' && c <= '9':
		return p.skipNumber()
	}
	return false
}

// SkipString reads any valid JSON string (escapes checked; encoding/json
// takes invalid UTF-8 in a string it does not keep).
func (p *Reader) SkipString() bool {
	if !p.Eat('"') {
		return false
	}
	for p.I < len(p.B) {
		c := p.B[p.I]
		switch {
		case c == '"':
			p.I++
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if p.I+1 >= len(p.B) {
				return false
			}
			switch p.B[p.I+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.I += 2
			case 'u':
				if len(p.B)-p.I < 6 {
					return false
				}
				for _, h := range p.B[p.I+2 : p.I+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return false
					}
				}
				p.I += 6
			default:
				return false
			}
			continue
		}
		p.I++
	}
	return false
}

// skipNumber reads a JSON number.
func (p *Reader) skipNumber() bool {
	p.Eat('-')
	start := p.I
	for p.I < len(p.B) && p.B[p.I] >= '0' && p.B[p.I] <= '9' {
		p.I++
	}
	if n := p.I - start; n == 0 || n > 1 && p.B[start] == '0' {
		return false
	}
	if p.Eat('.') {
		start = p.I
		for p.I < len(p.B) && p.B[p.I] >= '0' && p.B[p.I] <= '9' {
			p.I++
		}
		if p.I == start {
			return false
		}
	}
	if p.Eat('e') || p.Eat('E') {
		if !p.Eat('+') {
			p.Eat('-')
		}
		start = p.I
		for p.I < len(p.B) && p.B[p.I] >= '0' && p.B[p.I] <= '9' {
			p.I++
		}
		if p.I == start {
			return false
		}
	}
	return true
}
