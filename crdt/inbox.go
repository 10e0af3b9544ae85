package crdt

import (
	"cmp"
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"parley/ident"
)

// The inbox state of one conversation (issue 18, items 2 and 3): its
// status, its tags and the visitor's context, replicated like the rest of
// a conversation and merged the same on every replica. Each change is an
// internal message of the conversation's log (Message.Kind names it,
// Message.Body holds it as JSON, an InboxOp or a VisitorContext), so it
// is stored, replicated, acknowledged by a second replica, repaired by
// anti-entropy and erased exactly as messages are; the store folds the
// log's changes into an Inbox kept with the conversation's record.

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

// The kinds of internal messages that change a conversation's inbox state
// (Message.Kind). A message without a kind is a chat message, or, when
// Internal, an agents' note.
const (
	KindStatus  = "status"  // Body: an InboxOp with Status (and Until)
	KindTag     = "tag"     // Body: an InboxOp with Tag and On
	KindContext = "context" // Body: a VisitorContext
)

// InboxOp is the body of a status or tag change.
type InboxOp struct {
	Status Status `json:"status,omitempty"`
	Until  int64  `json:"until,omitempty"` // unix ms, for snoozed
	Tag    string `json:"tag,omitempty"`
	On     bool   `json:"on,omitempty"`
}

// VisitorContext is what the widget tells of the visitor's page
// (validated by the gateway before it is stored). Personal data: erased
// with the conversation, in the visitor's export.
type VisitorContext struct {
	URL      string            `json:"url,omitempty"`
	Referrer string            `json:"referrer,omitempty"`
	Language string            `json:"language,omitempty"`
	Attrs    map[string]string `json:"attrs,omitempty"`
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

// ContextSet is one report of the visitor's context, last writer wins;
// on a tie the larger encoding.
type ContextSet struct {
	Context VisitorContext `json:"c"`
	TS      Timestamp      `json:"ts"`
}

func compareContext(a, b ContextSet) int {
	if c := a.TS.Compare(b.TS); c != 0 {
		return c
	}
	ea, _ := json.Marshal(a.Context) // map keys sorted: canonical
	eb, _ := json.Marshal(b.Context)
	return strings.Compare(string(ea), string(eb))
}

// Inbox is a conversation's inbox state. The zero value is an open
// conversation without tags; not safe for concurrent use.
type Inbox struct {
	status  StatusSet
	tags    map[string]TagSet
	context ContextSet
	// visitor is the creation stamp of the visitor's latest message (a
	// max register): a message after the status was set reopens it.
	visitor Timestamp
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

// SetContext joins one report of the visitor's context in.
func (x *Inbox) SetContext(c ContextSet) (changed bool) {
	if compareContext(c, x.context) <= 0 {
		return false
	}
	x.context = c
	return true
}

// VisitorWrote joins the creation stamp of a visitor's message in.
func (x *Inbox) VisitorWrote(ts Timestamp) (changed bool) {
	if !ts.After(x.visitor) {
		return false
	}
	x.visitor = ts
	return true
}

// Fold joins what message m says of the inbox state in: a status, tag or
// context change, or a visitor's message (which may reopen the
// conversation). A message that says nothing of it, or a change whose
// body does not decode, changes nothing.
func (x *Inbox) Fold(m Message) (changed bool) {
	switch m.Kind {
	case "":
		if !m.Internal && m.Role == ident.Visitor {
			return x.VisitorWrote(m.Created)
		}
	case KindStatus, KindTag:
		var op InboxOp
		if json.Unmarshal([]byte(m.Body), &op) != nil {
			return false
		}
		if m.Kind == KindTag {
			if op.Tag == "" {
				return false
			}
			return x.SetTag(TagSet{Tag: op.Tag, On: op.On, TS: m.Created})
		}
		if !op.Status.Valid() {
			return false
		}
		return x.SetStatus(StatusSet{Status: op.Status, Until: op.Until, By: m.Author, TS: m.Created})
	case KindContext:
		var c VisitorContext
		if json.Unmarshal([]byte(m.Body), &c) != nil {
			return false
		}
		return x.SetContext(ContextSet{Context: c, TS: m.Created})
	}
	return false
}

// Merge joins o into x.
func (x *Inbox) Merge(o *Inbox) {
	x.SetStatus(o.status)
	for _, t := range o.tags {
		x.SetTag(t)
	}
	x.SetContext(o.context)
	x.VisitorWrote(o.visitor)
}

// Clone returns a copy of x.
func (x *Inbox) Clone() *Inbox {
	c := *x
	c.tags = maps.Clone(x.tags)
	c.context.Context.Attrs = maps.Clone(x.context.Context.Attrs)
	return &c
}

// Equal reports whether x and o hold the same state.
func (x *Inbox) Equal(o *Inbox) bool {
	return x.status == o.status && maps.Equal(x.tags, o.tags) && x.visitor == o.visitor &&
		compareContext(x.context, o.context) == 0
}

// Status is the conversation's status at nowMS: the last one set, except
// that a visitor's message after it reopens the conversation, and a
// snooze that has run out is open again.
func (x *Inbox) Status(nowMS int64) Status {
	s := x.status
	if s.Status == "" || s.Status == StatusOpen {
		return StatusOpen
	}
	if x.visitor.Compare(s.TS) > 0 {
		return StatusOpen
	}
	if s.Status == StatusSnoozed && nowMS >= s.Until {
		return StatusOpen
	}
	return s.Status
}

// StatusSetting is the last status setting, whatever happened since (zero
// when none was set).
func (x *Inbox) StatusSetting() StatusSet { return x.status }

// Until is when the snooze in force at nowMS runs out, 0 when the
// conversation is not snoozed.
func (x *Inbox) Until(nowMS int64) int64 {
	if x.Status(nowMS) != StatusSnoozed {
		return 0
	}
	return x.status.Until
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

// HasTag says whether tag is on.
func (x *Inbox) HasTag(tag string) bool { return x.tags[tag].On }

// Context is the visitor's context last reported (zero when none).
func (x *Inbox) Context() VisitorContext { return x.context.Context }

// inboxJSON is an Inbox as the store keeps it, with in every conversation
// record: what was never set is left out.
type inboxJSON struct {
	Status  *StatusSet  `json:"status,omitempty"`
	Tags    []TagSet    `json:"tags,omitempty"`
	Context *ContextSet `json:"context,omitempty"`
	Visitor *Timestamp  `json:"visitor,omitempty"`
}

// MarshalJSON encodes the whole state (every tag setting, off ones too).
func (x *Inbox) MarshalJSON() ([]byte, error) {
	var j inboxJSON
	if x.status != (StatusSet{}) {
		j.Status = &x.status
	}
	if !x.context.TS.IsZero() {
		j.Context = &x.context
	}
	if !x.visitor.IsZero() {
		j.Visitor = &x.visitor
	}
	for _, t := range x.tags {
		j.Tags = append(j.Tags, t)
	}
	slices.SortFunc(j.Tags, func(a, b TagSet) int { return strings.Compare(a.Tag, b.Tag) })
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON encoded.
func (x *Inbox) UnmarshalJSON(b []byte) error {
	var j inboxJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*x = Inbox{}
	if j.Status != nil {
		x.status = *j.Status
	}
	if j.Context != nil {
		x.context = *j.Context
	}
	if j.Visitor != nil {
		x.visitor = *j.Visitor
	}
	for _, t := range j.Tags {
		x.SetTag(t)
	}
	return nil
}
