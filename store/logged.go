package store

import (
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
			// The event that created the message is its send; its
			// latest (the one that holds its state, not a reference),
			// if deleted, its deletion.
			change := Edit
			switch ent := it.entry(); {
			case ent.created:
				change = Send
			case !ent.ref && e.Message.IsDeleted():
				change = Delete
			}
			out = append(out, LoggedEvent{Event: e, Change: change})
		}
		return it.err
	})
	return out, more, err
}
