package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
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

var reRequestID = regexp.MustCompile(`^[A-Za-z0-9_-]{16,64}$`)

// CheckRequestID checks a request ID's grammar.
func CheckRequestID(id string) error {
	if !reRequestID.MatchString(id) {
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
	if t := r.Cmd.Type(); t == TypeRequest || NewCommand(t) == nil {
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
	return json.Marshal(requestJSON{ID: r.ID, Base: r.Base, Type: t, Command: cmd})
}

// UnmarshalJSON decodes as strictly as DecodeCommand: unknown fields and
// unknown or nested types are refused.
func (r *Request) UnmarshalJSON(b []byte) error {
	var j requestJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return invalidf("request: %v", err)
	}
	t := j.Type &^ SkippableFlag
	if t == TypeRequest {
		return invalidf("request %s: command type %d", j.ID, j.Type)
	}
	cmd := NewCommand(t)
	if cmd == nil {
		return &UnknownCommandError{Type: t, Skippable: j.Type&SkippableFlag != 0}
	}
	if (j.Type&SkippableFlag != 0) != commands[t].skippable {
		return invalidf("request %s: command type %d: skippable flag does not match the table", j.ID, t)
	}
	dec = json.NewDecoder(bytes.NewReader(j.Command))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cmd); err != nil {
		if unknown := (*UnknownCommandError)(nil); errors.As(err, &unknown) {
			return unknown // inside an Audited: stops the node as at the top
		}
		return invalidf("request %s: command type %d: %v", j.ID, j.Type, err)
	}
	if dec.More() {
		return invalidf("request %s: command type %d: trailing data", j.ID, j.Type)
	}
	r.ID, r.Base, r.Cmd = j.ID, j.Base, cmd
	return nil
}
