package store

import (
	"fmt"
	"sync"
	"time"

	"parley/crdt"

	bolt "go.etcd.io/bbolt"
)

// sequencer decides, in memory and at once, what a message change does:
// whether it is a duplicate, the message's merged state and the event's seq.
// It publishes the event right away and hands the writer only the work of
// making that decision durable, so that recipients never wait for an fsync
// (the sender's ack does). It keeps the state of a conversation only while
// writes of it are in flight: otherwise the file is the truth.
type sequencer struct {
	mu     sync.Mutex
	epoch  uint64 // see nextSeq; fixed for the life of the Store
	origin string // see originName; fixed for the life of the Store
	convs  map[string]*convState
	// erasing counts the erasures queued per conversation (pendingKey):
	// changes of such a conversation are refused until the erasure is
	// durable, after which the file refuses them.
	erasing map[string]int
}

// convState is a conversation with writes in flight.
type convState struct {
	head     uint64               // the last seq handed out
	oseq     uint64               // the last oseq of this store's origin handed out
	remote   map[string]uint64    // other origins' last oseq in flight (remote.go)
	msgs     map[string]*msgState // messages with writes in flight
	inflight int                  // writes not yet committed
}

type msgState struct {
	msg      crdt.Message
	rec      msgRecord
	inflight int
}

// write is one sequenced message change, for the writer to make durable.
type write struct {
	ws, conv string
	stamp    Stamp
	rec      msgRecord
	enc      []byte // the message state at rec.Last, encoded
	msg      crdt.Message
	send     bool
	prev     uint64 // the message's latest event before this one; 0 for its first
}

// state returns the conversation's in-memory state, loading its head from
// the file if no write of it is in flight. Caller holds mu.
func (q *sequencer) state(tx *bolt.Tx, keys *sealer, ws, conv string) (*convState, error) {
	k := pendingKey(ws, conv)
	if q.erasing[k] > 0 {
		return nil, fmt.Errorf("conversation %s is being erased: %w", conv, ErrNotFound)
	}
	if cs, ok := q.convs[k]; ok {
		return cs, nil
	}
	c, err := getConversation(tx, keys, ws, conv, false)
	if err != nil {
		return nil, err
	}
	cs := &convState{head: c.Head, oseq: originHead(tx, ws, conv, q.origin), msgs: map[string]*msgState{}}
	q.convs[k] = cs
	return cs, nil
}

// current returns a message's latest state: in flight, or in the file.
func (q *sequencer) current(tx *bolt.Tx, keys *sealer, cs *convState, ws, conv, id string) (crdt.Message, msgRecord, bool, error) {
	if ms, ok := cs.msgs[id]; ok {
		return ms.msg, ms.rec, true, nil
	}
	rec, found := decodeMsgRecord(tx.Bucket(bMsgs).Get(key(ws, conv, id)))
	if !found {
		return crdt.Message{}, msgRecord{}, false, nil
	}
	a, err := keys.key(tx, ws, conv, false)
	if err != nil {
		return crdt.Message{}, msgRecord{}, false, err
	}
	k := seqKey(ws, conv, rec.Last)
	m, err := decodeEvent(tx, a, ws, conv, k, tx.Bucket(bEvents).Get(k))
	if err != nil {
		return crdt.Message{}, msgRecord{}, false, fmt.Errorf("decode message %s: %w", id, err)
	}
	return m, rec, true, nil
}

// decide is what a change does to a message's current state: a result
// without a write (a duplicate or a change already contained), or the merged
// state to write.
func decide(ch Change, cur crdt.Message, rec msgRecord, found bool) (merged crdt.Message, res Result, write bool, err error) {
	switch ch.Kind {
	case Send:
		if found {
			return cur, Result{Seq: rec.Seq, Dup: true, Message: cur}, false, nil
		}
		return ch.Message, Result{}, true, nil
	case Edit, Delete:
		if !found {
			return cur, Result{}, false, fmt.Errorf("message %s: %w", ch.Message.ID, ErrNotFound)
		}
		if cur.Author != ch.Participant {
			return cur, Result{}, false, fmt.Errorf("message %s belongs to another participant: %w", ch.Message.ID, ErrForbidden)
		}
		if cur.IsDeleted() {
			return cur, Result{}, false, fmt.Errorf("message %s is deleted: %w", ch.Message.ID, ErrInvalid)
		}
		delta := cur.Edit(ch.Body, ch.TS)
		if ch.Kind == Delete {
			delta = cur.Delete(ch.TS)
		}
		merged = crdt.MergeMessage(cur, delta)
		if merged.Equal(cur) {
			return cur, Result{Seq: rec.Last, Message: cur}, false, nil
		}
		return merged, Result{}, true, nil
	}
	return cur, Result{}, false, fmt.Errorf("change kind %d: %w", ch.Kind, ErrInvalid)
}

// sequence decides ch, and for a change that writes, takes its seq, records
// it as in flight, publishes its event and queues its write, all under mu so
// that each conversation's events are published and queued in seq order.
func (s *Store) sequence(ch Change, enc []byte) (Result, *op, error) {
	q := &s.seq
	q.mu.Lock()
	defer q.mu.Unlock()
	// Room first: once its event is published, a write must be queued.
	if err := s.waitSpace(); err != nil {
		return Result{}, nil, err
	}
	tx, err := s.db.read()
	if err != nil {
		return Result{}, nil, err
	}
	defer s.db.done(tx)
	cs, err := q.state(tx, s.keys, ch.Workspace, ch.Conversation)
	if err != nil {
		return Result{}, nil, err
	}
	cur, rec, found, err := q.current(tx, s.keys, cs, ch.Workspace, ch.Conversation, ch.Message.ID)
	if err != nil {
		return Result{}, nil, err
	}
	merged, res, writes, err := decide(ch, cur, rec, found)
	if err != nil || !writes {
		q.release(ch.Workspace, ch.Conversation, cs)
		return res, nil, err
	}
	if ch.Kind != Send {
		if enc, err = marshal(merged); err != nil {
			q.release(ch.Workspace, ch.Conversation, cs)
			return Result{}, nil, err
		}
	}
	cs.oseq++
	o, res := s.appendEvent(cs, ch.Workspace, ch.Conversation, merged, rec, found, enc,
		Stamp{Origin: q.origin, OSeq: cs.oseq}, ch.Kind == Send, ch.Start)
	return res, o, nil
}

// appendEvent gives a message's new state the conversation's next seq,
// records it as in flight, publishes its event and queues its write. Caller
// holds q.mu, with room in the queue.
func (s *Store) appendEvent(cs *convState, ws, conv string, merged crdt.Message, rec msgRecord, found bool, enc []byte, stamp Stamp, send bool, start time.Time) (*op, Result) {
	q := &s.seq
	seq := nextSeq(cs.head, q.epoch)
	cs.head = seq
	prev := uint64(0)
	if found {
		prev = rec.Last
	}
	rec.Last = seq
	if !found {
		rec.Seq = seq
	}
	ms := cs.msgs[merged.ID]
	if ms == nil {
		ms = &msgState{}
		cs.msgs[merged.ID] = ms
	}
	ms.msg, ms.rec = merged, rec
	ms.inflight++
	cs.inflight++
	w := write{ws: ws, conv: conv, stamp: stamp, rec: rec, enc: enc, msg: merged, send: send, prev: prev}
	ev := Event{Kind: EventMessage, Workspace: ws, Conversation: conv, Seq: seq, Stamp: stamp, Message: merged, Start: start}
	s.pending.add([]Event{ev})
	if s.cfg.OnCommit != nil {
		s.cfg.OnCommit([]Event{ev})
	}
	o := &op{done: make(chan error, 1), fn: func(b *batch) error { return b.write(w) }, after: func() { s.written(w, ev) }}
	// Queued under mu: the writer sees each conversation's writes in seq order.
	s.push(o)
	return o, Result{Seq: seq, Changed: true, Message: merged}
}

// release forgets a conversation state that was loaded for nothing.
func (q *sequencer) release(ws, conv string, cs *convState) {
	if cs.inflight == 0 {
		delete(q.convs, pendingKey(ws, conv))
	}
}

// written is called by the writer once w's commit is durable (or failed:
// then the store is broken and the state is dropped all the same).
func (s *Store) written(w write, ev Event) {
	q := &s.seq
	q.mu.Lock()
	defer q.mu.Unlock()
	s.pending.remove([]Event{ev})
	k := pendingKey(w.ws, w.conv)
	cs := q.convs[k]
	if cs == nil {
		return
	}
	if ms := cs.msgs[w.msg.ID]; ms != nil {
		if ms.inflight--; ms.inflight == 0 {
			delete(cs.msgs, w.msg.ID)
		}
	}
	if cs.inflight--; cs.inflight == 0 {
		delete(q.convs, k)
	}
}

// head returns the last seq handed out in a conversation.
func (s *Store) head(ws, conv string) (uint64, error) {
	q := &s.seq
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.erasing[pendingKey(ws, conv)] > 0 {
		return 0, fmt.Errorf("conversation %s is being erased: %w", conv, ErrNotFound)
	}
	if cs, ok := q.convs[pendingKey(ws, conv)]; ok {
		return cs.head, nil
	}
	var h uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		c, err := getConversation(tx, s.keys, ws, conv, false)
		if err == nil {
			h = c.Head
		}
		return err
	})
	return h, err
}

// write makes a sequenced change durable: the event, the message's record
// and the conversation's head, last message and time.
func (b *batch) write(w write) error {
	c, err := b.conv(w.ws, w.conv)
	if err != nil {
		return err
	}
	a, err := b.keys.key(b.tx, w.ws, w.conv, true)
	if err != nil {
		return err
	}
	events := b.tx.Bucket(bEvents)
	// Events are appended in seq order within each conversation: full pages
	// mean fewer pages to write per commit.
	events.FillPercent = 0.9
	k := seqKey(w.ws, w.conv, w.rec.Last)
	if err := events.Put(k, seal(a, bEvents, k, w.enc)); err != nil {
		return err
	}
	// The previous latest event's state goes (see eventRef); the ones
	// before it went with the changes that followed them.
	if w.prev != 0 && events.Get(seqKey(w.ws, w.conv, w.prev)) != nil {
		if err := events.Put(seqKey(w.ws, w.conv, w.prev), refValue(w.msg.ID)); err != nil {
			return err
		}
	}
	if err := b.tx.Bucket(bMsgs).Put(key(w.ws, w.conv, w.msg.ID), w.rec.encode()); err != nil {
		return err
	}
	if err := putStamp(b.tx, w.ws, w.conv, w.rec.Last, w.stamp); err != nil {
		return err
	}
	if w.rec.Last > c.Head {
		c.Head = w.rec.Last
	}
	c.Updated = b.now.UnixMilli()
	if c.Last == nil || c.Last.ID == w.msg.ID || w.send {
		m := w.msg
		c.Last = &m
	}
	if !w.send {
		// An edit or a deletion replaces the message's text in the
		// conversation record: the old record's page is freed.
		b.removed()
	}
	b.touch(c)
	return nil
}
