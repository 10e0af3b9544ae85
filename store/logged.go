package store

import (
	"bytes"
	"crypto/cipher"

	bolt "go.etcd.io/bbolt"
)

// LoggedEvent is a durable event of a conversation's log with the change
// it made: Send for the event that created its message, Delete for a
// tombstone's latest event, Edit otherwise. Its Message is the message's
// current state, as every read of the log gives it (see eventRef): text
// edited away or deleted is not in it.
type LoggedEvent struct {
	Event
	Change ChangeKind
}

// Logged returns up to limit durable events of a conversation with seq >
// after, in seq order, and whether more follow. Unlike Events it leaves
// out the events decided but not yet committed: what it returns survives
// a crash of this node. ErrNotFound: the conversation is not held here.
func (s *Store) Logged(ws, conv string, after uint64, limit int) ([]LoggedEvent, bool, error) {
	var out []LoggedEvent
	more := false
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := hasConversation(tx, ws, conv); err != nil {
			return err
		}
		r := s.eventReader(tx, ws, conv)
		cur := tx.Bucket(bEvents).Cursor()
		msgs := tx.Bucket(bMsgs)
		for k, v := cur.Seek(seqKey(ws, conv, after+1)); k != nil && bytes.HasPrefix(k, r.p); k, v = cur.Next() {
			if len(out) == limit {
				more = true
				return nil
			}
			e, err := r.event(k, v)
			if err != nil {
				return err
			}
			change := Edit
			if rec, ok := decodeMsgRecord(msgs.Get(key(ws, conv, e.Message.ID))); ok {
				switch {
				case rec.Seq == e.Seq:
					change = Send
				case rec.Last == e.Seq && e.Message.IsDeleted():
					change = Delete
				}
			}
			out = append(out, LoggedEvent{Event: e, Change: change})
		}
		return nil
	})
	return out, more, err
}

// eventReader decodes the events of one conversation in a read
// transaction, opening the conversation's key at the first.
type eventReader struct {
	s        *Store
	tx       *bolt.Tx
	ws, conv string
	p        []byte // the conversation's key prefix
	a        cipher.AEAD
}

func (s *Store) eventReader(tx *bolt.Tx, ws, conv string) *eventReader {
	return &eventReader{s: s, tx: tx, ws: ws, conv: conv, p: prefix(ws, conv)}
}

// event decodes the event stored at k with value v.
func (r *eventReader) event(k, v []byte) (Event, error) {
	if r.a == nil {
		var err error
		if r.a, err = r.s.keys.key(r.tx, r.ws, r.conv, false); err != nil {
			return Event{}, err
		}
	}
	m, err := decodeEvent(r.tx, r.a, r.ws, r.conv, k, v)
	if err != nil {
		return Event{}, err
	}
	return Event{Kind: EventMessage, Workspace: r.ws, Conversation: r.conv, Seq: u64(k[len(r.p):]), Stamp: eventStamp(v), Message: m}, nil
}
