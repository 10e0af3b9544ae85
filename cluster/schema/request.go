package schema

import (
	"bytes"
	"encoding/json"
	"strconv"

	"parley/ident"
)

// Request is the envelope Apply puts around every command it proposes, so
// that the command can be sent again without being applied twice.
//
// Apply gives each call one ID and sends the same entry every time it tries:
// to the leader it forwarded to first, and again to the next leader when the
// first one stalls or is replaced before answering. The old leader may have
// appended the first copy and a new one may commit it, so two copies of a
// request can reach the log. The FSM applies the first copy it meets and
// records its Result (error included) under the ID; a later copy changes
// nothing and answers that first Result, so whichever copy the caller hears
// from, it hears the same answer.
//
// The record is kept for a fixed number of log entries (cluster's requestWindow), and only that long can a
// copy be recognised; so a copy is applied only within that many entries
// of Base, the commit index the proposing node knew when it made the
// request. Every copy is appended after that index, so two copies that are
// both applied are less than that many entries apart, and the second
// finds the first's record. A copy that arrives later than that is refused
// with ErrUncertain instead of being applied a second time (if it was the
// only copy Apply sent, nothing was applied, and Apply makes the request
// anew with the refused entry's index as Base: that is how a node far
// behind, as just after a restart, gets its writes through). All of it is a
// function of the log, never of a clock, so every node decides the same;
// the records are part of the state and travel in its snapshots.
//
// Commands in the log without an envelope (written before requests existed,
// or proposed by an older node) apply as they always did.
type Request struct {
	// ID names the request: 16 to 64 of A-Z a-z 0-9 _ - (Apply uses 32 hex
	// digits of crypto/rand).
	ID string
	// Base is a log index that every copy of the request is appended after:
	// the proposing node's commit index when it made the request.
	Base uint64
	// Cmd is the command, any type but another Request.
	Cmd Command
}

// CheckRequestID checks a request ID's grammar: 16 to 64 of A-Z a-z 0-9 _ -
// ([A-Za-z0-9_-]{16,64}), the alphabet and the longest of a conversation
// reference. Every node checks it at every entry it applies.
func CheckRequestID(id string) error {
	if len(id) < 16 || !ident.ValidConversationRef(id) {
		return invalidf("request id %q: want 16 to 64 of A-Z a-z 0-9 _ -", id)
	}
	return nil
}

func (Request) Type() CommandType { return TypeRequest }

func (r Request) Validate() error {
	if err := CheckRequestID(r.ID); err != nil {
		return err
	}
	if r.Cmd == nil {
		return invalidf("request %s carries no command", r.ID)
	}
	if t := r.Cmd.Type(); t == TypeRequest || !known(t) {
		return invalidf("request %s carries a command of type %d", r.ID, t)
	}
	return r.Cmd.Validate()
}

// requestJSON is Request on the wire: the inner command's type and its JSON
// as EncodeCommand writes them, beside the ID and the base.
type requestJSON struct {
	ID      string          `json:"id"`
	Base    uint64          `json:"base"`
	Type    CommandType     `json:"type"`
	Command json.RawMessage `json:"command"`
}

// MarshalJSON writes the envelope; with an ID of the request ID alphabet
// (as every valid one is) without encoding/json, into the bytes it would
// write (TestRequestEncodingAsEncodingJSON).
func (r Request) MarshalJSON() ([]byte, error) {
	if r.Cmd == nil {
		return nil, invalidf("request %s carries no command", r.ID)
	}
	cmd, err := json.Marshal(r.Cmd)
	if err != nil {
		return nil, err
	}
	t := r.Cmd.Type()
	if commands[t].skippable {
		t |= SkippableFlag
	}
	if !allIDBytes(r.ID) {
		return json.Marshal(requestJSON{ID: r.ID, Base: r.Base, Type: t, Command: cmd})
	}
	b := make([]byte, 0, len(r.ID)+len(cmd)+64)
	b = append(append(append(b, `{"id":"`...), r.ID...), `","base":`...)
	b = append(strconv.AppendUint(b, r.Base, 10), `,"type":`...)
	b = append(strconv.AppendUint(b, uint64(t), 10), `,"command":`...)
	return append(append(b, cmd...), '}'), nil
}

// idByte says whether c is of the request ID alphabet, A-Z a-z 0-9 _ -,
// none of which JSON escapes.
func idByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func allIDBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		if !idByte(s[i]) {
			return false
		}
	}
	return true
}

// UnmarshalJSON decodes as strictly as DecodeCommand: unknown fields and
// unknown or nested types are refused.
func (r *Request) UnmarshalJSON(b []byte) error { return r.decode(b) }

// decode is UnmarshalJSON, which DecodeCommand calls directly: through
// encoding/json, the whole entry would be read twice more before it. Every
// node decodes every entry, so the envelope as MarshalJSON writes it is read
// by readEnvelope, and only any other spelling by encoding/json.
func (r *Request) decode(b []byte) error {
	j, ok := readEnvelope(b)
	if !ok {
		if err := decodeStrict(b, &j); err != nil {
			return invalidf("request: %v", err)
		}
	}
	cmd, err := decodeWrapped("request "+j.ID, j.Type, j.Command, TypeRequest)
	if err != nil {
		return err
	}
	r.ID, r.Base, r.Cmd = j.ID, j.Base, cmd
	return nil
}

// readEnvelope reads b if it is spelt exactly as MarshalJSON (then
// EncodeCommand) writes an envelope, ok false otherwise:
//
//	{"id":"<A-Za-z0-9_->","base":<digits>,"type":<digits>,"command":<JSON value>}
//
// then only JSON whitespace. What it reads, encoding/json reads the same
// (the command as one valid JSON value, as a json.RawMessage holds it), so
// falling back to encoding/json for anything else keeps the decoding as
// strict as it was (TestReadEnvelopeAsEncodingJSON). It saves reading the
// whole entry twice with encoding/json before its command is read again.
func readEnvelope(b []byte) (j requestJSON, ok bool) {
	b = bytes.TrimRight(b, " \t\r\n")
	field := func(name string) bool {
		if !bytes.HasPrefix(b, []byte(name)) {
			return false
		}
		b = b[len(name):]
		return true
	}
	number := func(bits int) (uint64, bool) {
		n := 0
		for n < len(b) && b[n] >= '0' && b[n] <= '9' {
			n++
		}
		if n == 0 || n > 1 && b[0] == '0' {
			return 0, false
		}
		v, err := strconv.ParseUint(string(b[:n]), 10, bits)
		b = b[n:]
		return v, err == nil
	}
	if !field(`{"id":"`) {
		return j, false
	}
	n := 0
	for n < len(b) && idByte(b[n]) {
		n++
	}
	j.ID, b = string(b[:n]), b[n:]
	if !field(`","base":`) {
		return j, false
	}
	if j.Base, ok = number(64); !ok || !field(`,"type":`) {
		return j, false
	}
	t, ok := number(8)
	if !ok || !field(`,"command":`) || len(b) == 0 || b[len(b)-1] != '}' {
		return j, false
	}
	j.Type, j.Command = CommandType(t), b[:len(b)-1]
	return j, json.Valid(j.Command)
}
