package crdt

import (
	"cmp"
	"maps"
	"slices"
	"strings"
)

// The inbox state of one conversation (issue 18, item 2): its status and
// its tags, replicated like the rest of a conversation and merged the same
// on every replica. Work in progress: not yet stored, replicated or served.

// Status is where a conversation is in the support team's workflow.
type Status string

// The statuses. A conversation with no status set is open.
const (
	StatusOpen     Status = "open"
	StatusPending  Status = "pending"  // waiting for the visitor
	StatusSnoozed  Status = "snoozed"  // out of the way until a time
	StatusResolved Status = "resolved" // done
)

// Valid reports whether s is one of the statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusOpen, StatusPending, StatusSnoozed, StatusResolved:
		return true
	}
	return false
}

// StatusSet is one setting of a conversation's status: a last-writer-wins
// register by TS; By (the agent) and the value break ties so that every
// replica picks the same winner.
type StatusSet struct {
	Status Status    `json:"s"`
	Until  int64     `json:"until,omitempty"` // unix ms, for snoozed
	By     string    `json:"by"`
	TS     Timestamp `json:"ts"`
}

func compareStatus(a, b StatusSet) int {
	return cmp.Or(a.TS.Compare(b.TS), strings.Compare(a.By, b.By),
		strings.Compare(string(a.Status), string(b.Status)), cmp.Compare(a.Until, b.Until))
}

// TagSet is one setting of a tag: on or off, last writer wins per tag.
type TagSet struct {
	Tag string    `json:"tag"`
	On  bool      `json:"on"`
	TS  Timestamp `json:"ts"`
}

func compareTag(a, b TagSet) int {
	if c := a.TS.Compare(b.TS); c != 0 {
		return c
	}
	if a.On != b.On { // on a tie, off wins: the safe guess
		if a.On {
			return -1
		}
		return 1
	}
	return 0
}

// Inbox is a conversation's inbox state. The zero value is an open
// conversation without tags; not safe for concurrent use.
type Inbox struct {
	status StatusSet
	tags   map[string]TagSet
}

// SetStatus joins one status setting in, keeping the later.
func (x *Inbox) SetStatus(s StatusSet) (changed bool) {
	if compareStatus(s, x.status) <= 0 {
		return false
	}
	x.status = s
	return true
}

// SetTag joins one tag setting in, keeping the later per tag.
func (x *Inbox) SetTag(t TagSet) (changed bool) {
	if cur, ok := x.tags[t.Tag]; ok && compareTag(t, cur) <= 0 {
		return false
	}
	if x.tags == nil {
		x.tags = map[string]TagSet{}
	}
	x.tags[t.Tag] = t
	return true
}

// Merge joins o into x.
func (x *Inbox) Merge(o *Inbox) {
	x.SetStatus(o.status)
	for _, t := range o.tags {
		x.SetTag(t)
	}
}

// Clone returns a copy of x.
func (x *Inbox) Clone() *Inbox {
	return &Inbox{status: x.status, tags: maps.Clone(x.tags)}
}

// Equal reports whether x and o hold the same state.
func (x *Inbox) Equal(o *Inbox) bool {
	return x.status == o.status && maps.Equal(x.tags, o.tags)
}

// Status is the conversation's status at nowMS: the last one set, except
// that a visitor's message after it reopens the conversation (lastVisitor
// is the stamp of the visitor's last message, zero without one), and a
// snooze that has run out is open again.
func (x *Inbox) Status(nowMS int64, lastVisitor Timestamp) Status {
	s := x.status
	if s.Status == "" || s.Status == StatusOpen {
		return StatusOpen
	}
	if lastVisitor.Compare(s.TS) > 0 {
		return StatusOpen
	}
	if s.Status == StatusSnoozed && nowMS >= s.Until {
		return StatusOpen
	}
	return s.Status
}

// Tags are the tags that are on, sorted.
func (x *Inbox) Tags() []string {
	var out []string
	for tag, t := range x.tags {
		if t.On {
			out = append(out, tag)
		}
	}
	slices.Sort(out)
	return out
}
