package cluster

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
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
// The record is kept for requestWindow log entries, and only that long can a
// copy be recognised; so a copy is applied only within requestWindow entries
// of Base, the commit index the proposing node knew when it made the
// request. Every copy is appended after that index, so two copies that are
// both applied are less than requestWindow entries apart, and the second
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

// requestWindow is how many log entries a request's record is kept, and how
// far past its Base a request is still applied. It is part of the state
// machine's definition, like the command types: nodes with different
// windows would decide differently, so it never changes.
const requestWindow = 8192

var reRequestID = regexp.MustCompile(`^[A-Za-z0-9_-]{16,64}$`)

func checkRequestID(id string) error {
	if !reRequestID.MatchString(id) {
		return invalidf("request id %q: want 16 to 64 of A-Z a-z 0-9 _ -", id)
	}
	return nil
}

// newRequestID returns a fresh request ID: 128 random bits.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

func (Request) Type() CommandType { return TypeRequest }

func (r Request) Validate() error {
	if err := checkRequestID(r.ID); err != nil {
		return err
	}
	if r.Cmd == nil {
		return invalidf("request %s carries no command", r.ID)
	}
	if t := r.Cmd.Type(); t == TypeRequest || newCommand(t) == nil {
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
	return json.Marshal(requestJSON{ID: r.ID, Base: r.Base, Type: r.Cmd.Type(), Command: cmd})
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
	cmd := newCommand(j.Type)
	if cmd == nil || j.Type == TypeRequest {
		return invalidf("request %s: command type %d", j.ID, j.Type)
	}
	dec = json.NewDecoder(bytes.NewReader(j.Command))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cmd); err != nil {
		return invalidf("request %s: command type %d: %v", j.ID, j.Type, err)
	}
	if dec.More() {
		return invalidf("request %s: command type %d: trailing data", j.ID, j.Type)
	}
	r.ID, r.Base, r.Cmd = j.ID, j.Base, cmd
	return nil
}

// requestRecord is what the state keeps of an applied request: the index
// it was applied at and the answer it gave, its error as it crosses a
// forward (code and message).
type requestRecord struct {
	Index  uint64 `json:"index"`
	Result Result `json:"result"`
	Code   string `json:"code,omitempty"`
	Error  string `json:"error,omitempty"`
}

func (rec requestRecord) err() error {
	if rec.Code == "" {
		return nil
	}
	return errorFromCode(rec.Code, rec.Error)
}

// requestRef orders the records by the index they were applied at, oldest
// first, for expiry.
type requestRef struct {
	index uint64
	id    string
}

// rebuildRequestOrder derives the expiry order from the records. Callers
// hold mu or own s exclusively.
func (s *State) rebuildRequestOrder() {
	s.requestOrder = make([]requestRef, 0, len(s.d.Requests))
	for id, rec := range s.d.Requests {
		s.requestOrder = append(s.requestOrder, requestRef{index: rec.Index, id: id})
	}
	// Each entry applies at most one request, so indexes are distinct.
	slices.SortFunc(s.requestOrder, func(a, b requestRef) int {
		switch {
		case a.index < b.index:
			return -1
		case a.index > b.index:
			return 1
		}
		return 0
	})
}

// expireRequests forgets the records applied requestWindow or more entries
// before index.
func (s *State) expireRequests(index uint64) {
	n := 0
	for n < len(s.requestOrder) && s.requestOrder[n].index+requestWindow <= index {
		delete(s.d.Requests, s.requestOrder[n].id)
		n++
	}
	if n > 0 {
		s.requestOrder = slices.Delete(s.requestOrder, 0, n)
	}
}

// applyRequest applies the request at index through apply, once per ID.
// copyOf is the index of the first copy when this one only answers it.
func (s *State) applyRequest(index uint64, r *Request, apply func() (Result, error)) (res Result, copyOf uint64, err error) {
	s.expireRequests(index)
	if rec, ok := s.d.Requests[r.ID]; ok {
		return rec.Result, rec.Index, rec.err()
	}
	if r.Base >= index {
		// Base is a committed index the request was made after: a copy
		// cannot be appended at or before it.
		return Result{Index: index}, 0, invalidf("request %s: base %d is not before its index %d", r.ID, r.Base, index)
	}
	if index-r.Base > requestWindow {
		// A copy applied more than requestWindow entries ago would be
		// forgotten by now: whether one was cannot be told.
		return Result{Index: index}, 0, fmt.Errorf("%w: request %s made at index %d arrived at index %d, more than %d entries later: it may have been applied already",
			ErrUncertain, r.ID, r.Base, index, requestWindow)
	}
	res, err = apply()
	rec := requestRecord{Index: index, Result: res}
	if err != nil {
		rec.Code, rec.Error = ErrorCode(err), err.Error()
	}
	s.d.Requests[r.ID] = rec
	s.requestOrder = append(s.requestOrder, requestRef{index: index, id: r.ID})
	return res, 0, err
}
