package bench

import (
	"encoding/json"
	"hash/maphash"
	"time"

	"parley/bench/internal/jread"
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
func parseFrame(b []byte) frame { return parseFrameIn(b, nil) }

// parseFrameIn is parseFrame with the strings a connection sees again and
// again (conversation ids, node names) taken from names.
func parseFrameIn(b []byte, names interner) frame {
	var f frame
	if !fastFrame(b, &f, names) {
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
// body, edited stamp and deletion (equal states, equal hashes, in one
// run).
func messageState[B string | []byte](body B, ts crdt.Timestamp, edited *crdt.Timestamp, deleted bool) MsgState {
	var h maphash.Hash
	h.SetSeed(stateSeed)
	switch b := any(body).(type) {
	case string:
		h.WriteString(b)
	case []byte:
		h.Write(b)
	}
	h.WriteByte(0)
	if edited != nil {
		e, _ := json.Marshal(edited)
		h.Write(e)
	}
	if deleted {
		h.Write([]byte{0, 1})
	}
	return MsgState{TS: ts, Rest: h.Sum64(), Altered: edited != nil || deleted}
}

// stateSeed seeds the hashes of message states (messageState).
var stateSeed = maphash.MakeSeed()

// interner hands out one string for equal byte strings, up to a bound;
// nil: a new string each time.
type interner map[string]string

func (in interner) str(b []byte) string {
	if in == nil {
		return string(b)
	}
	if s, ok := in[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(in) < 4096 {
		in[s] = s
	}
	return s
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
func fastFrame(b []byte, f *frame, names interner) bool {
	p := jread.Reader{B: b}
	p.Space()
	if !p.Eat('{') {
		return false
	}
	p.Space()
	key, ok := p.Key()
	if !ok || string(key) != "type" {
		return false
	}
	p.Space()
	t, ok := p.Str()
	if !ok || t == nil {
		return false
	}
	f.Type = frameType(t)
	var seen fieldSet
	seen.add(fType)
	ok = p.Fields(false, func(key []byte) bool {
		// client.Frame's fields, in every frame.
		switch string(key) {
		case "ref":
			return seen.add(fRef) && p.StrField(&f.Ref)
		case "conversation":
			if !seen.add(fConversation) {
				return false
			}
			s, ok := p.Str()
			f.Conversation = names.str(s)
			return ok
		case "code":
			return seen.add(fCode) && p.StrField(&f.Code)
		}
		switch f.Type {
		case wire.TypeAck:
			switch string(key) {
			case "id":
				return seen.add(fID) && p.StrField(&f.ID)
			case "seq":
				return seen.add(fSeq) && p.UintField(&f.Seq, 64)
			case "dup":
				return seen.add(fDup) && p.BoolField(&f.Dup)
			case "ts":
				var ts crdt.Timestamp
				return seen.add(fTS) && readTimestamp(&p, &ts, nil, names)
			}
		case wire.TypeDeliver:
			switch string(key) {
			case "seq":
				return seen.add(fSeq) && p.UintField(&f.Seq, 64)
			case "at":
				var s string
				return seen.add(fAt) && p.StrField(&s)
			case "also":
				return seen.add(fAlso) && p.StrArray()
			case "message":
				return seen.add(fMessage) && readMessage(&p, f, names)
			}
		case wire.TypeResumed:
			switch string(key) {
			case "head":
				return seen.add(fHead) && p.UintField(&f.Head, 64)
			case "more":
				return seen.add(fMore) && p.BoolField(&f.More)
			}
		case wire.TypeError:
			switch string(key) {
			case "message":
				return seen.add(fMessage) && p.StrField(&f.Message)
			case "retry_ms":
				return seen.add(fRetry) && p.IntField(&f.RetryMS)
			}
		}
		return p.Skip(0)
	})
	if !ok {
		return false
	}
	p.Space()
	if p.I != len(b) {
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
func readMessage(p *jread.Reader, f *frame, names interner) bool {
	if !p.Eat('{') {
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
	ok := p.Fields(true, func(key []byte) bool {
		switch string(key) {
		case "id":
			return seen.add(fID) && p.StrField(&f.ID)
		case "body":
			if !seen.add(fBody) {
				return false
			}
			s, ok := p.Str()
			body = s
			return ok
		case "ts":
			return seen.add(fTS) && readTimestamp(p, &ts, nil, names)
		case "edited":
			return seen.add(fEdited) && readTimestamp(p, &edited, &hasEdit, names)
		case "deleted":
			return seen.add(fDeleted) && p.BoolField(&deleted)
		case "author":
			return seen.add(fAuthor) && p.StrField(&ignored)
		case "role":
			return seen.add(fRole) && p.StrField(&ignored)
		case "name":
			return seen.add(fName) && p.StrField(&ignored)
		case "kind":
			return seen.add(fKind) && p.StrField(&ignored)
		case "internal":
			return seen.add(fInternal) && p.BoolField(&ignoreB)
		}
		return p.Skip(0)
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
func readTimestamp(p *jread.Reader, ts *crdt.Timestamp, set *bool, names interner) bool {
	if p.Null() {
		return true
	}
	if !p.Eat('{') {
		return false
	}
	if set != nil {
		*set = true
	}
	var seen fieldSet
	return p.Fields(true, func(key []byte) bool {
		switch string(key) {
		case "w":
			return seen.add(fW) && p.IntField(&ts.Wall)
		case "l":
			var l uint64
			ok := seen.add(fL) && p.UintField(&l, 32)
			ts.Logical = uint32(l)
			return ok
		case "n":
			if !seen.add(fN) {
				return false
			}
			s, ok := p.Str()
			ts.Node = names.str(s)
			return ok
		}
		return p.Skip(0)
	})
}
