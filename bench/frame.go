package bench

import (
	"encoding/json"
	"hash/fnv"
	"math"
	"time"
	"unicode/utf8"

	"parley/crdt"
	"parley/gateway/client"
	"parley/gateway/wire"
)

// frame is one frame from the node as the harness reads it: the fields
// every client matches on (client.Frame's), and, for the frames every
// message costs, the few fields the harness uses.
//
// parseFrame fills it by a hand-written reader of exactly those frames
// (fastFrame) and, for any frame that reader does not take, by
// encoding/json as the harness always did (slowFrame): client.ParseFrame,
// then the frame's own wire struct. The two agree on every frame the fast
// reader takes (FuzzParseFrame).
type frame struct {
	// Type, Ref, Conversation and Code are client.ParseFrame's: all empty
	// when the frame is not a JSON object of the right field types.
	Type, Ref, Conversation, Code string
	// OK: the frame decoded into its own wire struct (wire.Ack,
	// wire.Deliver, wire.Resumed, wire.Error), so the fields below are
	// its. Not OK, the harness ignores an ack, a deliver or a resumed, as
	// it did when their decode failed.
	OK bool
	// ID: an ack's id, a deliver's message id.
	ID string
	// Seq: an ack's or a deliver's.
	Seq uint64
	// Dup: an ack's.
	Dup bool
	// State: a deliver's message state (message's).
	State MsgState
	// Head and More: a resumed's.
	Head uint64
	More bool
	// Message and RetryMS: an error's (what encoding/json filled, as
	// client.Frame.AsError took them, even when OK is false).
	Message string
	RetryMS int64
	// Raw is the frame's JSON.
	Raw []byte
}

// asError returns an error frame as the *client.Error client.Frame's
// AsError makes of it.
func (f *frame) asError() *client.Error {
	return &client.Error{Ref: f.Ref, Code: f.Code, Message: f.Message, Retry: time.Duration(f.RetryMS) * time.Millisecond}
}

// parseFrame reads b, one frame from the node; f keeps b as Raw.
func parseFrame(b []byte) frame {
	var f frame
	if !fastFrame(b, &f) {
		f = slowFrame(b)
	}
	f.Raw = b
	return f
}

// fromClient turns a frame a client.Conn parsed (WebTransport) into the
// harness's: its fields are client.ParseFrame's already.
func fromClient(cf client.Frame) frame { return parseFrame(cf.Raw) }

// slowFrame decodes b with encoding/json, exactly as the harness did
// before it had a reader of its own: client.ParseFrame, then the frame's
// wire struct.
func slowFrame(b []byte) frame {
	cf := client.ParseFrame(b)
	f := frame{Type: cf.Type, Ref: cf.Ref, Conversation: cf.Conversation, Code: cf.Code}
	switch cf.Type {
	case wire.TypeAck:
		var a wire.Ack
		if json.Unmarshal(b, &a) == nil {
			f.OK, f.ID, f.Seq, f.Dup = true, a.ID, a.Seq, a.Dup
		}
	case wire.TypeDeliver:
		var d wire.Deliver
		if json.Unmarshal(b, &d) == nil {
			f.OK, f.ID, f.Seq, f.State = true, d.Message.ID, d.Seq, messageState(d.Message.Body, d.Message.TS, d.Message.Edited, d.Message.Deleted)
		}
	case wire.TypeResumed:
		var r wire.Resumed
		if json.Unmarshal(b, &r) == nil {
			f.OK, f.Head, f.More = true, r.Head, r.More
		}
	case wire.TypeError:
		var e wire.Error
		f.OK = json.Unmarshal(b, &e) == nil
		f.Message, f.RetryMS = e.Message, e.RetryMS
	}
	return f
}

// messageState is a deliver frame's MsgState: its ts, and a hash of its
// body, edited stamp and deletion.
func messageState[B string | []byte](body B, ts crdt.Timestamp, edited *crdt.Timestamp, deleted bool) MsgState {
	h := fnv.New64a()
	h.Write([]byte(body))
	h.Write([]byte{0})
	if edited != nil {
		e, _ := json.Marshal(edited)
		h.Write(e)
	}
	if deleted {
		h.Write([]byte{0, 1})
	}
	return MsgState{TS: ts, Rest: h.Sum64(), Altered: edited != nil || deleted}
}

// The fast reader. It takes a frame only when it is sure encoding/json
// would read the same: a JSON object whose first key is "type" with a
// string value; every key written plainly (no escape, no upper-case
// letter, nothing outside ASCII: encoding/json matches keys without
// regard to case) and none of the fields it reads twice; each field the
// wire structs know of the type they say (or null); strings without
// escapes and valid UTF-8; numbers as the Go field's type parses them;
// and everything else valid JSON. Anything else: false, and slowFrame
// decides.

// fastFrame fills f from b and reports true, or reports false (f then
// unspecified).
func fastFrame(b []byte, f *frame) bool {
	p := jreader{b: b}
	p.space()
	if !p.eat('{') {
		return false
	}
	p.space()
	key, ok := p.key()
	if !ok || string(key) != "type" {
		return false
	}
	p.space()
	t, ok := p.str()
	if !ok || t == nil {
		return false
	}
	f.Type = frameType(t)
	var seen fieldSet
	seen.add(fType)
	ok = p.fields(false, func(key []byte) bool {
		// client.Frame's fields, in every frame.
		switch string(key) {
		case "ref":
			return seen.add(fRef) && p.strField(&f.Ref)
		case "conversation":
			return seen.add(fConversation) && p.strField(&f.Conversation)
		case "code":
			return seen.add(fCode) && p.strField(&f.Code)
		}
		switch f.Type {
		case wire.TypeAck:
			switch string(key) {
			case "id":
				return seen.add(fID) && p.strField(&f.ID)
			case "seq":
				return seen.add(fSeq) && p.uintField(&f.Seq, 64)
			case "dup":
				return seen.add(fDup) && p.boolField(&f.Dup)
			case "ts":
				var ts crdt.Timestamp
				return seen.add(fTS) && p.timestamp(&ts, nil)
			}
		case wire.TypeDeliver:
			switch string(key) {
			case "seq":
				return seen.add(fSeq) && p.uintField(&f.Seq, 64)
			case "at":
				var s string
				return seen.add(fAt) && p.strField(&s)
			case "also":
				return seen.add(fAlso) && p.strArray()
			case "message":
				return seen.add(fMessage) && p.message(f)
			}
		case wire.TypeResumed:
			switch string(key) {
			case "head":
				return seen.add(fHead) && p.uintField(&f.Head, 64)
			case "more":
				return seen.add(fMore) && p.boolField(&f.More)
			}
		case wire.TypeError:
			switch string(key) {
			case "message":
				return seen.add(fMessage) && p.strField(&f.Message)
			case "retry_ms":
				return seen.add(fRetry) && p.intField(&f.RetryMS)
			}
		}
		return p.skip(0)
	})
	if !ok {
		return false
	}
	p.space()
	if p.i != len(b) {
		return false
	}
	switch f.Type {
	case wire.TypeAck, wire.TypeResumed, wire.TypeError:
		f.OK = true
	case wire.TypeDeliver:
		// A deliver without a message object is left to encoding/json.
		f.OK = seen.has(fMessage)
		return f.OK
	}
	return true
}

// frameType returns the wire constant for the common types (no copy).
func frameType(t []byte) string {
	switch string(t) {
	case wire.TypeAck:
		return wire.TypeAck
	case wire.TypeDeliver:
		return wire.TypeDeliver
	case wire.TypeResumed:
		return wire.TypeResumed
	case wire.TypeError:
		return wire.TypeError
	}
	return string(t)
}

// fieldSet is the fields of one object already read: a second one is left
// to encoding/json.
type fieldSet uint32

const (
	fType = iota
	fRef
	fConversation
	fCode
	fID
	fSeq
	fDup
	fTS
	fAt
	fAlso
	fMessage
	fHead
	fMore
	fRetry
	fAuthor
	fRole
	fName
	fBody
	fEdited
	fDeleted
	fInternal
	fKind
	fW
	fL
	fN
)

// add marks field n read, false when it was already.
func (s *fieldSet) add(n int) bool {
	if *s&(1<<n) != 0 {
		return false
	}
	*s |= 1 << n
	return true
}

func (s fieldSet) has(n int) bool { return s&(1<<n) != 0 }

// message reads a deliver's message object into f.
func (p *jreader) message(f *frame) bool {
	if !p.eat('{') {
		return false
	}
	var (
		seen    fieldSet
		body    []byte
		ts      crdt.Timestamp
		edited  crdt.Timestamp
		hasEdit bool
		deleted bool
		ignored string
		ignoreB bool
	)
	ok := p.fields(true, func(key []byte) bool {
		switch string(key) {
		case "id":
			return seen.add(fID) && p.strField(&f.ID)
		case "body":
			if !seen.add(fBody) {
				return false
			}
			s, ok := p.str()
			body = s
			return ok
		case "ts":
			return seen.add(fTS) && p.timestamp(&ts, nil)
		case "edited":
			return seen.add(fEdited) && p.timestamp(&edited, &hasEdit)
		case "deleted":
			return seen.add(fDeleted) && p.boolField(&deleted)
		case "author":
			return seen.add(fAuthor) && p.strField(&ignored)
		case "role":
			return seen.add(fRole) && p.strField(&ignored)
		case "name":
			return seen.add(fName) && p.strField(&ignored)
		case "kind":
			return seen.add(fKind) && p.strField(&ignored)
		case "internal":
			return seen.add(fInternal) && p.boolField(&ignoreB)
		}
		return p.skip(0)
	})
	if !ok {
		return false
	}
	var e *crdt.Timestamp
	if hasEdit {
		e = &edited
	}
	f.State = messageState(body, ts, e, deleted)
	return true
}

// timestamp reads a crdt.Timestamp object, or null (leaving ts zero and
// *set false). set may be nil when null is not to be told apart.
func (p *jreader) timestamp(ts *crdt.Timestamp, set *bool) bool {
	if p.null() {
		return true
	}
	if !p.eat('{') {
		return false
	}
	if set != nil {
		*set = true
	}
	var seen fieldSet
	return p.fields(true, func(key []byte) bool {
		switch string(key) {
		case "w":
			return seen.add(fW) && p.intField(&ts.Wall)
		case "l":
			var l uint64
			ok := seen.add(fL) && p.uintField(&l, 32)
			ts.Logical = uint32(l)
			return ok
		case "n":
			if !seen.add(fN) {
				return false
			}
			s, ok := p.str()
			ts.Node = string(s)
			return ok
		}
		return p.skip(0)
	})
}

// jreader reads JSON from b at i.
type jreader struct {
	b []byte
	i int
}

func (p *jreader) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jreader) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *jreader) lit(s string) bool {
	if len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

func (p *jreader) null() bool { return p.lit("null") }

// fields reads the rest of an object, after its '{' (first) or after a
// key and its value, calling field with each key, positioned at its
// value, which field must read.
func (p *jreader) fields(first bool, field func(key []byte) bool) bool {
	p.space()
	if p.eat('}') {
		return true
	}
	for {
		if !first {
			if !p.eat(',') {
				return false
			}
			p.space()
		}
		first = false
		key, ok := p.key()
		if !ok {
			return false
		}
		p.space()
		if !field(key) {
			return false
		}
		p.space()
		if p.eat('}') {
			return true
		}
	}
}

// key reads a plain key and its colon: lower-case ASCII without escapes
// (any other could match a field encoding/json folds case for).
func (p *jreader) key() ([]byte, bool) {
	if !p.eat('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			key := p.b[start:p.i]
			p.i++
			p.space()
			return key, p.eat(':')
		case c < 0x20 || c == '\\' || c >= 0x80 || c >= 'A' && c <= 'Z':
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// str reads a string without escapes, valid UTF-8 (what encoding/json
// gives as it is), or null (nil, true).
func (p *jreader) str() ([]byte, bool) {
	if p.null() {
		return nil, true
	}
	if !p.eat('"') {
		return nil, false
	}
	start, ascii := p.i, true
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
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
		p.i++
	}
	return nil, false
}

func (p *jreader) strField(dst *string) bool {
	s, ok := p.str()
	if ok && len(s) > 0 {
		*dst = string(s)
	}
	return ok
}

func (p *jreader) boolField(dst *bool) bool {
	switch {
	case p.lit("true"):
		*dst = true
	case p.lit("false"), p.null():
	default:
		return false
	}
	return true
}

// digits reads [0-9]+ with no leading zero (JSON's integer part) and
// returns its value, false when it overflows a uint64 or is no integer
// (a fraction or exponent follows).
func (p *jreader) digits() (uint64, bool) {
	start := p.i
	var v uint64
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		d := uint64(p.b[p.i] - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
		p.i++
	}
	n := p.i - start
	if n == 0 || n > 1 && p.b[start] == '0' {
		return 0, false
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	return v, true
}

// uintField reads an unsigned integer of bits bits, or null.
func (p *jreader) uintField(dst *uint64, bits int) bool {
	if p.null() {
		return true
	}
	v, ok := p.digits()
	if !ok || bits < 64 && v>>bits != 0 {
		return false
	}
	*dst = v
	return true
}

// intField reads an int64, or null.
func (p *jreader) intField(dst *int64) bool {
	if p.null() {
		return true
	}
	neg := p.eat('-')
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

// strArray reads an array of strings (a []string), or null.
func (p *jreader) strArray() bool {
	if p.null() {
		return true
	}
	if !p.eat('[') {
		return false
	}
	p.space()
	if p.eat(']') {
		return true
	}
	for {
		if _, ok := p.str(); !ok {
			return false
		}
		p.space()
		if p.eat(']') {
			return true
		}
		if !p.eat(',') {
			return false
		}
		p.space()
	}
}

// maxDepth bounds the nesting of a skipped value.
const maxDepth = 64

// skip reads any JSON value, checking it is valid.
func (p *jreader) skip(depth int) bool {
	if p.i >= len(p.b) || depth > maxDepth {
		return false
	}
	switch c := p.b[p.i]; {
	case c == '"':
		return p.skipString()
	case c == '{':
		p.i++
		p.space()
		if p.eat('}') {
			return true
		}
		for {
			if !p.skipString() {
				return false
			}
			p.space()
			if !p.eat(':') {
				return false
			}
			p.space()
			if !p.skip(depth + 1) {
				return false
			}
			p.space()
			if p.eat('}') {
				return true
			}
			if !p.eat(',') {
				return false
			}
			p.space()
		}
	case c == '[':
		p.i++
		p.space()
		if p.eat(']') {
			return true
		}
		for {
			if !p.skip(depth + 1) {
				return false
			}
			p.space()
			if p.eat(']') {
				return true
			}
			if !p.eat(',') {
				return false
			}
			p.space()
		}
	case c == 't':
		return p.lit("true")
	case c == 'f':
		return p.lit("false")
	case c == 'n':
		return p.null()
	case c == '-' || c >= '0' && c <= '9':
		return p.skipNumber()
	}
	return false
}

// skipString reads any valid JSON string (escapes checked; encoding/json
// takes invalid UTF-8 in a string it does not keep).
func (p *jreader) skipString() bool {
	if !p.eat('"') {
		return false
	}
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if p.i+1 >= len(p.b) {
				return false
			}
			switch p.b[p.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i += 2
			case 'u':
				if len(p.b)-p.i < 6 {
					return false
				}
				for _, h := range p.b[p.i+2 : p.i+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return false
					}
				}
				p.i += 6
			default:
				return false
			}
			continue
		}
		p.i++
	}
	return false
}

// skipNumber reads a JSON number.
func (p *jreader) skipNumber() bool {
	p.eat('-')
	start := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	if n := p.i - start; n == 0 || n > 1 && p.b[start] == '0' {
		return false
	}
	if p.eat('.') {
		start = p.i
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
		}
		if p.i == start {
			return false
		}
	}
	if p.eat('e') || p.eat('E') {
		if !p.eat('+') {
			p.eat('-')
		}
		start = p.i
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
		}
		if p.i == start {
			return false
		}
	}
	return true
}
