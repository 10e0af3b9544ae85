package webhook

import (
	"encoding/json"
	"fmt"
	"time"

	"parley/cluster/schema"
	"parley/crdt"
	"parley/store"
)

// Version is the payload format's version, in every payload's "version".
// A change a receiver could misread gets the next one.
const Version = 1

// Payload is the JSON body of a delivery (docs/api.md).
type Payload struct {
	Version      int       `json:"version"`
	ID           string    `json:"id"`
	Type         string    `json:"type"`
	Created      time.Time `json:"created"`
	Workspace    string    `json:"workspace"`
	Conversation string    `json:"conversation,omitempty"`
	Data         Data      `json:"data"`
}

// Data is what an event carries: the conversation for
// conversation.created, the message for the message events.
type Data struct {
	Conversation *Conversation `json:"conversation,omitempty"`
	Message      *Message      `json:"message,omitempty"`
	Visitor      *Visitor      `json:"visitor,omitempty"`
	Assignment   *Assignment   `json:"assignment,omitempty"`
	Status       *StatusChange `json:"status,omitempty"`
}

// StatusChange is conversation.status_changed's data: the status set, when
// a snooze ends (unix ms, for snoozed), and the agent who set it. Never
// a note's text: notes are no event's.
type StatusChange struct {
	Status string `json:"status"`
	Until  int64  `json:"until,omitempty"`
	By     string `json:"by"`
}

// Visitor is visitor.identified's and visitor.erased's data: the
// participant ("u:<user_id>" verified, "v:<visitor_id>" anonymous).
type Visitor struct {
	ID string `json:"id"`
}

// Assignment is conversation.assigned's data: the operator ("" when the
// conversation was unassigned) and the assignment's version.
type Assignment struct {
	Operator string `json:"operator"`
	Version  uint64 `json:"version"`
}

// Conversation is a conversation.created's data.
type Conversation struct {
	ID      string    `json:"id"`
	Visitor string    `json:"visitor"`
	Created time.Time `json:"created"`
}

// Message is a message as a payload carries it: its state when the event
// is sent (an edited message's current text; a deleted one's none).
type Message struct {
	ID      string     `json:"id"`
	Author  string     `json:"author"`
	Role    string     `json:"role"`
	Name    string     `json:"name,omitempty"`
	Body    string     `json:"body"`
	Created time.Time  `json:"created"`
	Edited  *time.Time `json:"edited,omitempty"`
	Deleted *time.Time `json:"deleted,omitempty"`
}

func wall(t crdt.Timestamp) time.Time { return time.UnixMilli(t.Wall).UTC() }

func message(m crdt.Message) *Message {
	out := &Message{ID: m.ID, Author: m.Author, Role: string(m.Role), Name: m.Name, Body: m.Body, Created: wall(m.Created)}
	if m.BodyTS.After(m.Created) {
		t := wall(m.BodyTS)
		out.Edited = &t
	}
	if m.IsDeleted() {
		t := wall(m.Deleted)
		out.Deleted = &t
		out.Body = ""
	}
	return out
}

// event is one event of a conversation to deliver: its payload, encoded
// once, and its place in the log.
type event struct {
	id, typ string
	// conv is the event's conversation, visitor visitor.erased's.
	conv, visitor string
	// seq is the event's place in this node's log; 0 for
	// conversation.created, which comes before the log's first event.
	seq    uint64
	origin string
	oseq   uint64
	// at is when the change was made: retries end RetryFor after it.
	at   time.Time
	body []byte
}

// typeOf is the event type of a logged change; "" for one no endpoint
// is sent: an internal message (a note, a tag, the visitor's context),
// or a change of one, except the setting of a status.
func typeOf(e store.LoggedEvent) string {
	if e.Message.Internal {
		if e.Message.Kind == crdt.KindStatus && e.Change == store.Send {
			return schema.EventConversationStatusChanged
		}
		return ""
	}
	switch e.Change {
	case store.Send:
		return schema.EventMessageCreated
	case store.Delete:
		return schema.EventMessageDeleted
	}
	return schema.EventMessageEdited
}

// changeTime is when a logged change was made.
func changeTime(e store.LoggedEvent) time.Time {
	m := e.Message
	switch e.Change {
	case store.Send:
		return wall(m.Created)
	case store.Delete:
		return wall(m.Deleted)
	}
	return wall(m.BodyTS)
}

func messageEvent(e store.LoggedEvent, typ string) (event, error) {
	ev := event{
		id:  EventID(e.Workspace, e.Conversation, e.Stamp.Origin, e.Stamp.OSeq),
		typ: typ, conv: e.Conversation, seq: e.Seq, origin: e.Stamp.Origin, oseq: e.Stamp.OSeq, at: changeTime(e),
	}
	data := Data{Message: message(e.Message)}
	if typ == schema.EventConversationStatusChanged {
		var op crdt.InboxOp
		if err := json.Unmarshal([]byte(e.Message.Body), &op); err != nil {
			return ev, fmt.Errorf("status change %s: %w", e.Message.ID, err)
		}
		data = Data{Status: &StatusChange{Status: string(op.Status), Until: op.Until, By: e.Message.Author}}
	}
	var err error
	ev.body, err = json.Marshal(Payload{Version: Version, ID: ev.id, Type: typ, Created: ev.at,
		Workspace: e.Workspace, Conversation: e.Conversation, Data: data})
	return ev, err
}

func conversationEvent(c store.Conversation) (event, error) {
	ev := event{id: EventID(c.Workspace, c.ID, "", 0), typ: schema.EventConversationCreated, conv: c.ID, at: time.UnixMilli(c.Created).UTC()}
	var err error
	ev.body, err = json.Marshal(Payload{Version: Version, ID: ev.id, Type: ev.typ, Created: ev.at,
		Workspace: c.Workspace, Conversation: c.ID,
		Data: Data{Conversation: &Conversation{ID: c.ID, Visitor: c.Owner, Created: ev.at}}})
	return ev, err
}

// identifiedEvent is visitor.identified of a conversation started by a
// verified visitor.
func identifiedEvent(c store.Conversation) (event, error) {
	ev := event{id: EventID(c.Workspace, c.ID, schema.EventVisitorIdentified, 0), typ: schema.EventVisitorIdentified, conv: c.ID, at: time.UnixMilli(c.Created).UTC()}
	var err error
	ev.body, err = json.Marshal(Payload{Version: Version, ID: ev.id, Type: ev.typ, Created: ev.at,
		Workspace: c.Workspace, Conversation: c.ID, Data: Data{Visitor: &Visitor{ID: c.Owner}}})
	return ev, err
}

// outboxEvent is a control-plane event of an endpoint's outbox.
func outboxEvent(ws string, e schema.OutboxEntry) (event, error) {
	ev := event{id: schema.EventID(ws, e.Conversation+e.Visitor, schema.OutboxOrigin, e.Index), typ: e.Type,
		conv: e.Conversation, visitor: e.Visitor, origin: schema.OutboxOrigin, oseq: e.Index, at: e.At}
	p := Payload{Version: Version, ID: ev.id, Type: ev.typ, Created: ev.at, Workspace: ws, Conversation: e.Conversation}
	switch e.Type {
	case schema.EventConversationAssigned:
		p.Data.Assignment = &Assignment{Operator: e.Operator, Version: e.Version}
	case schema.EventVisitorErased:
		p.Data.Visitor = &Visitor{ID: e.Visitor}
	}
	var err error
	ev.body, err = json.Marshal(p)
	return ev, err
}
