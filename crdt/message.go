package crdt

import (
	"crypto/sha256"
	"encoding/binary"
	"maps"
	"slices"
	"strings"

	"parley/ident"
)

// Message is the replicated state of one chat message and also its delta.
//
// A message is its ID: the same ID sent twice, through two nodes (a client
// resending to another node while the first one stalls, a partition, a
// restart), is one message, however many origins accepted it. The state is
// a product of three lattices over everything ever said of the ID: the
// identity fields (Created, Author, Role, Name, Internal, Kind) of the earliest creation,
// "smallest wins" in that field order; the body, a last-writer-wins register
// over the edits, or, while there is no edit, the earliest creation's text;
// and the Deleted tombstone under max. An edit is a state whose BodyTS is
// after its Created: a creation that lost to an earlier one never counts as
// an edit, so a message accepted twice never shows as edited. A valid state
// never has BodyTS before Created and never keeps text once Deleted is set.
type Message struct {
	ID      string     `json:"id"`     // client-generated, unique per conversation
	Author  string     `json:"author"` // participant, e.g. "v:abc", "a:sam"
	Role    ident.Role `json:"role"`
	Name    string     `json:"name,omitempty"`
	Created Timestamp  `json:"ts"`      // immutable; the total order is (Created, ID)
	Body    string     `json:"body"`    // "" once deleted
	BodyTS  Timestamp  `json:"body_ts"` // LWW timestamp of Body; equals Created until edited
	Deleted Timestamp  `json:"del"`     // zero = live; otherwise the tombstone's timestamp
	// Internal: for agents only, never sent to a visitor (nor in the
	// visitor's export, webhooks' payloads or e-mails): an agents' note,
	// or, with a Kind, a change of the conversation's inbox state.
	Internal bool `json:"internal,omitempty"`
	// Kind is "" for a chat message or a note, else which inbox change
	// the message is (KindStatus, KindTag, KindContext; inbox.go).
	Kind string `json:"kind,omitempty"`
}

// NewMessage returns the first state of a message, which is also the delta
// announcing it.
func NewMessage(id, author string, role ident.Role, name, body string, ts Timestamp) Message {
	return Message{ID: id, Author: author, Role: role, Name: name, Created: ts, Body: body, BodyTS: ts}
}

// Edit returns the delta replacing the body as of ts. It only wins where ts is
// the latest BodyTS. Editing a tombstone returns m unchanged: deleted text
// must stay erased, and re-sending the state is a harmless no-op.
func (m Message) Edit(body string, ts Timestamp) Message {
	if m.IsDeleted() {
		return m
	}
	m.Body, m.BodyTS = body, ts
	return m
}

// Delete returns the tombstone delta as of ts. It carries no text so that
// propagating it never re-spreads what was deleted.
func (m Message) Delete(ts Timestamp) Message {
	if ts.After(m.Deleted) {
		m.Deleted = ts
	}
	return m.normalize()
}

// IsDeleted reports whether m is a tombstone.
func (m Message) IsDeleted() bool { return !m.Deleted.IsZero() }

// Edited reports whether the body was replaced after the message was created.
func (m Message) Edited() bool { return m.BodyTS.After(m.Created) }

// Less is the display order of a conversation: by Created, then ID. IDs are
// unique per conversation, so the order is total among a Log's elements.
func (m Message) Less(o Message) bool { return compareOrder(m, o) < 0 }

// Equal reports whether m and o are the same state.
func (m Message) Equal(o Message) bool { return m == o }

// latest is the newest timestamp the state carries. For valid states it bounds
// every delta folded into the state, which is what DeltaSince relies on.
func (m Message) latest() Timestamp {
	t := m.Created
	if m.BodyTS.After(t) {
		t = m.BodyTS
	}
	if m.Deleted.After(t) {
		t = m.Deleted
	}
	return t
}

func (m Message) normalize() Message {
	if m.IsDeleted() {
		m.Body = ""
	}
	return m
}

func compareOrder(a, b Message) int {
	if c := a.Created.Compare(b.Created); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// compareIdentity orders the immutable fields, so that two writers forging the
// same ID still converge on one author.
func compareIdentity(a, b Message) int {
	if c := a.Created.Compare(b.Created); c != 0 {
		return c
	}
	if c := strings.Compare(a.Author, b.Author); c != 0 {
		return c
	}
	if c := strings.Compare(string(a.Role), string(b.Role)); c != 0 {
		return c
	}
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	if a.Internal != b.Internal { // a forged pair: internal wins, the safe side
		if a.Internal {
			return -1
		}
		return 1
	}
	return strings.Compare(a.Kind, b.Kind)
}

// MergeMessage joins two states of the same message. Callers pass equal IDs;
// for differing IDs the state with the smaller ID is returned so that the
// result still does not depend on argument order.
//
// Which creation wins does not depend on which node saw which first: the
// smallest (Created, Author, Role, Name) wins, Created being a hybrid
// logical clock stamp that names its node, so two origins' creations of one
// ID never tie. The body is the latest edit's when either state has one,
// otherwise the winning creation's, with BodyTS equal to its Created.
func MergeMessage(a, b Message) Message {
	if a.ID != b.ID {
		if b.ID < a.ID {
			a = b
		}
		return a.normalize()
	}
	ident := compareIdentity(b, a)
	out := a
	if ident < 0 {
		out.Author, out.Role, out.Name, out.Created = b.Author, b.Role, b.Name, b.Created
		out.Internal, out.Kind = b.Internal, b.Kind
	}
	switch ea, eb := a.Edited(), b.Edited(); {
	case ea && eb:
		// The body string breaks BodyTS ties so that equal stamps, which
		// only a misbehaving writer produces, still resolve the same way
		// everywhere.
		if c := b.BodyTS.Compare(a.BodyTS); c > 0 || (c == 0 && b.Body > a.Body) {
			out.Body, out.BodyTS = b.Body, b.BodyTS
		}
	case eb:
		out.Body, out.BodyTS = b.Body, b.BodyTS
	case ea:
	default:
		// Two creations: the winner's text (on identical identities, which
		// only a misbehaving writer produces, the larger text).
		if ident < 0 || (ident == 0 && b.Body > a.Body) {
			out.Body = b.Body
		}
		out.BodyTS = out.Created
	}
	if b.Deleted.After(a.Deleted) {
		out.Deleted = b.Deleted
	}
	return out.normalize()
}

// Log is the set of messages of one conversation, keyed by ID, each element
// joined with MergeMessage. The zero value is an empty log. A Log is not safe
// for concurrent use; its owner serialises access.
type Log struct {
	msgs map[string]Message
}

// NewLog returns an empty log.
func NewLog() *Log { return &Log{msgs: make(map[string]Message)} }

// Apply joins one delta element into l. changed reports whether the state
// moved, which tells the caller whether the delta is news worth forwarding.
func (l *Log) Apply(d Message) (merged Message, changed bool) {
	cur, ok := l.msgs[d.ID]
	if !ok {
		merged = d.normalize()
	} else {
		merged = MergeMessage(cur, d)
		if merged == cur {
			return cur, false
		}
	}
	if l.msgs == nil {
		l.msgs = make(map[string]Message)
	}
	l.msgs[d.ID] = merged
	return merged, true
}

// Merge joins every element of o into l.
func (l *Log) Merge(o *Log) {
	if o == nil {
		return
	}
	for _, m := range o.msgs {
		l.Apply(m)
	}
}

// Get returns the state of message id.
func (l *Log) Get(id string) (Message, bool) {
	if l == nil {
		return Message{}, false
	}
	m, ok := l.msgs[id]
	return m, ok
}

// Len returns the number of messages, tombstones included.
func (l *Log) Len() int {
	if l == nil {
		return 0
	}
	return len(l.msgs)
}

// Messages returns every element, tombstones included, in the total order
// (Created, ID).
func (l *Log) Messages() []Message {
	if l == nil {
		return nil
	}
	out := slices.AppendSeq(make([]Message, 0, len(l.msgs)), maps.Values(l.msgs))
	slices.SortFunc(out, compareOrder)
	return out
}

// DeltaSince returns, in total order, every element whose latest timestamp is
// after t. Applying it to a replica that has seen every update stamped up to t
// brings that replica level with l. The zero t means "from scratch" and
// returns everything.
func (l *Log) DeltaSince(t Timestamp) []Message {
	if l == nil {
		return nil
	}
	var out []Message
	for _, m := range l.msgs {
		if t.IsZero() || m.latest().After(t) {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, compareOrder)
	return out
}

// Clone returns an independent copy of l.
func (l *Log) Clone() *Log {
	if l == nil {
		return NewLog()
	}
	c := &Log{msgs: maps.Clone(l.msgs)}
	if c.msgs == nil {
		c.msgs = make(map[string]Message)
	}
	return c
}

// Equal reports whether l and o hold the same state. A nil Log equals an
// empty one.
func (l *Log) Equal(o *Log) bool {
	if l.Len() != o.Len() {
		return false
	}
	if l.Len() == 0 {
		return true
	}
	return maps.Equal(l.msgs, o.msgs)
}

// Digest is a SHA-256 fingerprint of the state, cheap to exchange so replicas
// can tell whether they need to sync at all. The encoding is length-prefixed
// and fixed-width, so equal states give equal digests on every platform.
func (l *Log) Digest() [32]byte {
	h := sha256.New()
	buf := make([]byte, 0, 256)
	buf = append(buf, "parley/crdt.Log/v1"...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(l.Len()))
	h.Write(buf)
	for _, m := range l.Messages() {
		buf = buf[:0]
		buf = appendString(buf, m.ID)
		buf = appendString(buf, m.Author)
		buf = appendString(buf, string(m.Role))
		buf = appendString(buf, m.Name)
		buf = appendTimestamp(buf, m.Created)
		buf = appendString(buf, m.Body)
		buf = appendTimestamp(buf, m.BodyTS)
		buf = appendTimestamp(buf, m.Deleted)
		if m.Internal || m.Kind != "" { // so a log without them digests as before
			internal := byte(0)
			if m.Internal {
				internal = 1
			}
			buf = appendString(append(buf, 1, internal), m.Kind)
		}
		h.Write(buf)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

func appendTimestamp(b []byte, t Timestamp) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(t.Wall))
	b = binary.BigEndian.AppendUint32(b, t.Logical)
	return appendString(b, t.Node)
}
