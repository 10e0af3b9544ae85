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
		p := prefix(ws, conv)
		cur := tx.Bucket(bEvents).Cursor()
		msgs := tx.Bucket(bMsgs)
		var a cipher.AEAD
		for k, v := cur.Seek(seqKey(ws, conv, after+1)); k != nil && bytes.HasPrefix(k, p); k, v = cur.Next() {
			if len(out) == limit {
				more = true
				return nil
			}
			if a == nil {
				var err error
				if a, err = s.keys.key(tx, ws, conv, false); err != nil {
					return err
				}
			}
			m, err := decodeEvent(tx, a, ws, conv, k, v)
			if err != nil {
				return err
			}
			seq := u64(k[len(p):])
			change := Edit
			if rec, ok := decodeMsgRecord(msgs.Get(key(ws, conv, m.ID))); ok {
				switch {
				case rec.Seq == seq:
					change = Send
				case rec.Last == seq && m.IsDeleted():
					change = Delete
				}
			}
			out = append(out, LoggedEvent{
				Event:  Event{Kind: EventMessage, Workspace: ws, Conversation: conv, Seq: seq, Stamp: eventStamp(v), Message: m},
				Change: change,
			})
		}
		return nil
	})
	return out, more, err
}
