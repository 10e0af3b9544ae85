package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"parley/crdt"
	"parley/ident"

	bolt "go.etcd.io/bbolt"
)

// Conversation is the record of one conversation.
type Conversation struct {
	Workspace string        `json:"ws"`
	ID        string        `json:"id"`
	Owner     string        `json:"owner"` // the visitor participant who started it
	OwnerName string        `json:"owner_name,omitempty"`
	Created   int64         `json:"created"`        // unix ms
	Updated   int64         `json:"updated"`        // unix ms of the last event
	Head      uint64        `json:"head"`           // seq of the last event
	Last      *crdt.Message `json:"last,omitempty"` // the last message that is not internal
	// Inbox is the conversation's inbox state (status, tags, the
	// visitor's context), folded from its log's messages as they are
	// written, on every replica alike; nil until one says anything of it.
	Inbox *crdt.Inbox `json:"inbox,omitempty"`
}

// InboxState is the conversation's inbox state (the zero state when none
// was set).
func (c *Conversation) InboxState() *crdt.Inbox {
	if c.Inbox == nil {
		return &crdt.Inbox{}
	}
	return c.Inbox
}

// foldInbox folds message m into c's inbox state: in place when own says
// the batch's record has an inbox state of its own already, else on a copy
// (the record may be the writer's cached one, which only a commit
// replaces), which the batch's record then owns.
func foldInbox(c *Conversation, m *crdt.Message, own *bool) {
	if m.Kind == "" && (m.Internal || m.Role != ident.Visitor) {
		return
	}
	if *own && c.Inbox != nil {
		c.Inbox.Fold(*m)
		return
	}
	x := c.InboxState().Clone()
	if x.Fold(*m) {
		c.Inbox, *own = x, true
	}
}

// EventKind says what an Event carries.
type EventKind uint8

const (
	// EventMessage carries a message's state after a send, edit or delete.
	EventMessage EventKind = iota + 1
	// EventRead carries a participant's read receipt.
	EventRead
)

// Event is one committed change of a conversation, as published to OnCommit.
type Event struct {
	Kind         EventKind
	Workspace    string
	Conversation string
	Seq          uint64       // EventMessage: position in this node's log of the conversation
	Stamp        Stamp        // EventMessage: the event's name on every replica
	Message      crdt.Message // EventMessage
	Participant  string       // EventRead: the reader
	ReadSeq      uint64       // EventRead
	Start        time.Time    // when the change reached the node, for latency
	// Trace is the context of the span its change was made under (its
	// Change's or Remote's Trace), for the spans of its fan-out and
	// replication (package tracing); nil when not traced.
	Trace context.Context `json:"-"`
}

// ChangeKind is a kind of message change.
type ChangeKind uint8

const (
	Send ChangeKind = iota + 1
	Edit
	Delete
)

// Change is one message change submitted by a participant.
type Change struct {
	Kind         ChangeKind
	Workspace    string
	Conversation string
	Participant  string
	// Message is the new message for Send. For Edit and Delete only its ID
	// counts: the store derives the delta from the stored state, Body and TS,
	// so a client can never alter a message's immutable fields.
	Message crdt.Message
	Body    string         // Edit: the new text
	TS      crdt.Timestamp // Edit, Delete: when the change was made
	Start   time.Time
	// Trace is the context of the span the change is made under (package
	// tracing), handed on in its Event; nil when not traced. The store
	// only carries it.
	Trace context.Context `json:"-"`
}

// Result is what a durable Change did.
type Result struct {
	Seq     uint64       // the event's seq; for a duplicate send, the original's
	Dup     bool         // a send whose message ID was already stored, or an edit or delete made already (the text unchanged, the message deleted)
	Changed bool         // false: the change was already contained in the state
	Message crdt.Message // the message's state after the change
	// Displaced, for another replica's event (ApplyRemote): the creation
	// stamp of the message as this store held it, when the event's earlier
	// creation of the same ID replaced it (two nodes accepted one send);
	// zero otherwise. The node that accepted the displaced creation
	// counted a message that the cluster holds once.
	Displaced crdt.Timestamp
}

// msgRecord says where a message sits in its conversation's log: the event
// that created it, and the latest event, whose value is its current state.
// Kept apart from the state so that the dedup index costs 16 bytes a message.
type msgRecord struct {
	Seq  uint64 // the send event
	Last uint64 // the latest event
}

// appendTo appends the record's value to b.
func (r msgRecord) appendTo(b []byte) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(b, r.Seq), r.Last)
}

func decodeMsgRecord(v []byte) (msgRecord, bool) {
	if len(v) != 16 {
		return msgRecord{}, false
	}
	return msgRecord{Seq: u64(v[:8]), Last: u64(v[8:])}, true
}

func marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Only a message's latest event holds its state: when a message changes,
// the value of its previous latest event becomes a reference to the
// message, a byte that no state's JSON starts with followed by the
// message's ID, and reads of that event return the current state. So the
// text a message was edited away from, or deleted with, leaves the store's
// records with the change that replaced it, and no replay, resume or
// anti-entropy range carries it (docs/protocol.md); an event read that way
// still covers its own change, which the current state includes. A change
// costs one extra write whatever the message's number of changes.
const eventRef = 0

func refValue(id string) []byte { return append([]byte{eventRef}, id...) }

// CreateConversation durably creates c; ErrExists if its ID is taken.
func (s *Store) CreateConversation(ctx context.Context, c Conversation) error {
	if c.Workspace == "" || c.ID == "" || c.Owner == "" {
		return fmt.Errorf("create conversation: workspace, id and owner required: %w", ErrInvalid)
	}
	return s.submit(ctx, func(b *batch) error {
		if _, err := b.conv(c.Workspace, c.ID); err == nil {
			return fmt.Errorf("conversation %s: %w", c.ID, ErrExists)
		}
		if b.tx.Bucket(bErased).Get(key(c.Workspace, c.ID)) != nil {
			return fmt.Errorf("conversation %s was erased: %w", c.ID, ErrExists)
		}
		if _, err := getWorkspace(b.tx, c.Workspace); err != nil {
			return err
		}
		c := c
		c.Created = b.now.UnixMilli()
		c.Updated = c.Created
		c.Head, c.Last = 0, nil
		if _, err := b.keys.create(b.tx, c.Workspace, c.ID); err != nil {
			return err
		}
		if err := b.tx.Bucket(bOwners).Put(key(c.Workspace, c.Owner, c.ID), nil); err != nil {
			return err
		}
		b.touch(&c)
		return nil
	})
}

// Apply durably applies a message change and returns once it is fsynced.
func (s *Store) Apply(ctx context.Context, ch Change) (Result, error) {
	res, p, err := s.ApplyAsync(ctx, ch)
	if err != nil || p == nil {
		return res, err
	}
	// Once queued, the change may commit: wait for its fate even if ctx
	// ends, so that no caller reports failure for something stored.
	if err := p.Wait(); err != nil {
		return Result{}, err
	}
	return res, nil
}

// Pending is a change ApplyAsync decided and published whose answer
// waits for a commit.
type Pending interface {
	// Wait waits until the commit is durable and returns its outcome:
	// an error says that what the change's Result reports may not be
	// stored. It may be called more than once.
	Wait() error
	// Done says, without waiting, that Wait would return at once; false
	// when it cannot tell.
	Done() bool
}

// ApplyAsync is Apply that returns once the change is decided and its
// event published (OnCommit), on the caller's goroutine and without
// starting one: its Result is final, and its Pending, nil when there is
// nothing to wait for, says when that is durable. A change that writes
// something waits for its own commit; one that writes nothing (a
// duplicate, a change made already) waits for the commit of its
// message's latest write still in flight, if there is one, so that what
// its Result reports is durable too when Wait returns. Commits are made
// in the order changes are queued: of one caller's changes, each Pending
// completes no later than the next one's. An error here is final (the
// change was not stored).
func (s *Store) ApplyAsync(ctx context.Context, ch Change) (Result, Pending, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, nil, err
	}
	var res Result
	o, err := s.sequence(&ch, &res)
	if err != nil || o == nil {
		return res, nil, err
	}
	return res, o, nil
}

// MarkRead durably moves participant's read receipt in a conversation forward
// to seq (a max register: a lower seq changes nothing). seq beyond the
// conversation's head is ErrInvalid.
func (s *Store) MarkRead(ctx context.Context, ws, conv, participant string, seq uint64, start time.Time) (changed bool, err error) {
	// The head is the sequencer's: a client may read an event that was
	// delivered to it and is still on its way to the disk.
	head, err := s.head(ws, conv)
	if err != nil {
		return false, err
	}
	if seq > head {
		return false, fmt.Errorf("read seq %d beyond head %d: %w", seq, head, ErrInvalid)
	}
	err = s.submit(ctx, func(b *batch) error {
		// An erasure may have committed since the head was read: no receipt
		// of a conversation that is gone.
		if _, err := b.conv(ws, conv); err != nil {
			return err
		}
		reads := b.tx.Bucket(bReads)
		k := key(ws, conv, participant)
		if u64(reads.Get(k)) >= seq {
			changed = false
			return nil
		}
		if err := reads.Put(k, putU64(seq)); err != nil {
			return err
		}
		changed = true
		b.events = append(b.events, Event{
			Kind: EventRead, Workspace: ws, Conversation: conv,
			Participant: participant, ReadSeq: seq, Start: start,
		})
		return nil
	})
	return changed, err
}

// getConversation reads and unseals a conversation record; writer says tx
// is the writer's (see sealer.key).
func getConversation(tx *bolt.Tx, keys *sealer, ws, id string, writer bool) (*Conversation, error) {
	k := key(ws, id)
	v := tx.Bucket(bConvs).Get(k)
	if v == nil {
		return nil, fmt.Errorf("conversation %s: %w", id, ErrNotFound)
	}
	return decodeConversation(tx, keys, ws, id, k, v, writer)
}

func decodeConversation(tx *bolt.Tx, keys *sealer, ws, id string, k, v []byte, writer bool) (*Conversation, error) {
	a, err := keys.key(tx, ws, id, writer)
	if err != nil {
		return nil, err
	}
	plain, err := unseal(a, bConvs, k, v)
	if err != nil {
		return nil, fmt.Errorf("conversation %s: %w", id, err)
	}
	var c Conversation
	if err := json.Unmarshal(plain, &c); err != nil {
		return nil, fmt.Errorf("decode conversation %s: %w", id, err)
	}
	return &c, nil
}

// hasConversation reports whether a conversation's record is stored,
// without unsealing it.
func hasConversation(tx *bolt.Tx, ws, id string) error {
	if tx.Bucket(bConvs).Get(key(ws, id)) == nil {
		return fmt.Errorf("conversation %s: %w", id, ErrNotFound)
	}
	return nil
}

// Conversation returns one conversation of workspace ws.
func (s *Store) Conversation(ws, id string) (Conversation, error) {
	var c *Conversation
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		c, err = getConversation(tx, s.keys, ws, id, false)
		return err
	})
	if err != nil {
		return Conversation{}, err
	}
	return *c, nil
}

// Conversations lists the conversations of ws; with owner set, only those
// that participant started.
func (s *Store) Conversations(ws, owner string) ([]Conversation, error) {
	var out []Conversation
	err := s.db.View(func(tx *bolt.Tx) error {
		if owner != "" {
			p := prefix(ws, owner)
			cur := tx.Bucket(bOwners).Cursor()
			for k, _ := cur.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = cur.Next() {
				c, err := getConversation(tx, s.keys, ws, string(k[len(p):]), false)
				if err != nil {
					return err
				}
				out = append(out, *c)
			}
			return nil
		}
		p := prefix(ws)
		cur := tx.Bucket(bConvs).Cursor()
		for k, v := cur.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = cur.Next() {
			c, err := decodeConversation(tx, s.keys, ws, string(k[len(p):]), k, v, false)
			if err != nil {
				return err
			}
			out = append(out, *c)
		}
		return nil
	})
	return out, err
}

// Events returns up to limit events of a conversation with seq > after, in
// seq order, and whether more follow.
func (s *Store) Events(ws, conv string, after uint64, limit int) ([]Event, bool, error) {
	// The pending events first, the file second: an event that leaves the
	// pending set has been committed before, so the file then has it.
	pending := s.pending.after(ws, conv, after)
	var out []Event
	more := false
	err := s.db.View(func(tx *bolt.Tx) error {
		it := newEvIter(tx, s.keys, ws, conv)
		for ok := it.seek(after + 1); ok; ok = it.next() {
			if len(out) == limit {
				more = true
				return nil
			}
			e, err := it.event()
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return it.err
	})
	if err != nil || len(pending) == 0 {
		return out, more, err
	}
	merged, cut := mergeEvents(out, pending, limit)
	return merged, more || cut, nil
}

// Reads returns every participant's read receipt in a conversation.
func (s *Store) Reads(ws, conv string) (map[string]uint64, error) {
	out := map[string]uint64{}
	err := s.db.View(func(tx *bolt.Tx) error {
		p := prefix(ws, conv)
		cur := tx.Bucket(bReads).Cursor()
		for k, v := cur.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = cur.Next() {
			out[string(k[len(p):])] = u64(v)
		}
		return nil
	})
	return out, err
}

// Unread counts, up to max, the messages of conv after seq `after` written by
// someone other than participant; internal ones (notes, inbox changes)
// never count.
func (s *Store) Unread(ws, conv, participant string, after uint64, max int) (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		it := newEvIter(tx, s.keys, ws, conv)
		seen := map[string]bool{}
		for ok := it.seek(after + 1); ok && n < max; ok = it.next() {
			m, err := it.message()
			if err != nil {
				return err
			}
			if m.Author == participant || m.IsDeleted() || m.Internal || seen[m.ID] {
				continue
			}
			seen[m.ID] = true
			// An edit of a message read before is not a new unread
			// message: its first event after `after` did not create it.
			if !it.entry().created {
				continue
			}
			n++
		}
		return it.err
	})
	return n, err
}
