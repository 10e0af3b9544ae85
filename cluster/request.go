package cluster

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
)

// requestWindow is how many log entries a request's record is kept, and how
// far past its Base a request is still applied. It is part of the state
// machine's definition, like the command types: nodes with different
// windows would decide differently, so it never changes.
const requestWindow = 8192

// newRequestID returns a fresh request ID: 128 random bits.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
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

// requestEntry is a record in the expiry queue, under its ID.
type requestEntry struct {
	id  string
	rec requestRecord
}

// rebuildRequestOrder derives the expiry queue from the records. Callers
// hold mu or own s exclusively.
func (s *State) rebuildRequestOrder() {
	s.requestOrder = make([]requestEntry, 0, len(s.d.Requests))
	for id, rec := range s.d.Requests {
		s.requestOrder = append(s.requestOrder, requestEntry{id: id, rec: rec})
	}
	// Each entry applies at most one request, so indexes are distinct.
	slices.SortFunc(s.requestOrder, func(a, b requestEntry) int { return cmp.Compare(a.rec.Index, b.rec.Index) })
}

// expireRequests forgets the records applied requestWindow or more entries
// before index. The queue only moves its start: O(1) per record forgotten,
// where shifting the queue down cost a copy of the whole table at every
// apply once it was full. The slots before the start are left as they are
// (requestsSnapshot relies on it) until append moves the queue to a new
// array, which happens once every few thousand records.
func (s *State) expireRequests(index uint64) {
	n := 0
	for n < len(s.requestOrder) && s.requestOrder[n].rec.Index+requestWindow <= index {
		delete(s.d.Requests, s.requestOrder[n].id)
		n++
	}
	s.requestOrder = s.requestOrder[n:]
}

// requestsSnapshot returns the records oldest first, for a snapshot to
// encode after mu is released: an entry of the queue is never written once
// appended (expiry moves the start, append writes past the end, a restore
// makes a new queue), so the slice stays as it is. Callers hold mu.
func (s *State) requestsSnapshot() []requestEntry {
	return slices.Clip(s.requestOrder)
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
	s.requestOrder = append(s.requestOrder, requestEntry{id: r.ID, rec: rec})
	return res, 0, err
}
