package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
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
//
// Changes are ordered per conversation, not store-wide: each conversation
// has its own lock (convState.mu), held while one change of it is decided,
// published and queued, so changes of different conversations are decided
// and published in parallel. The shards' mutexes guard only the map from
// conversation to state, and are never held across I/O or a publication.
type sequencer struct {
	epoch  uint64 // see nextSeq; fixed for the life of the Store
	origin string // see originName; fixed for the life of the Store
	shards [seqShards]seqShard
}

// seqShards spreads the conversations' states over maps with their own
// mutexes, so that looking one up does not contend with the others.
const seqShards = 64

type seqShard struct {
	mu    sync.Mutex
	convs map[convKey]*convState
	// filters caches conversations' message IDs (idfilter.go), and
	// filterBytes counts their memory.
	filters     map[convKey]*idFilter
	filterBytes int
	_           [24]byte // keeps two shards' mutexes off one cache line
}

// convKey names a conversation in maps, without building a string.
type convKey struct{ ws, conv string }

func (q *sequencer) init() {
	for i := range q.shards {
		q.shards[i].convs = map[convKey]*convState{}
		q.shards[i].filters = map[convKey]*idFilter{}
	}
}

func (q *sequencer) shard(k convKey) *seqShard {
	h := maphash.Comparable(shardSeed, k)
	return &q.shards[h%seqShards]
}

var shardSeed = maphash.MakeSeed()

// convState is a conversation being changed, or with writes in flight.
type convState struct {
	key convKey
	// refs counts, under the shard's mutex, the callers holding or waiting
	// for mu, the writes in flight and the erasures under way: the state
	// leaves the shard's map when none is left.
	refs int
	// mu orders the conversation's changes; it guards the fields below.
	mu       sync.Mutex
	erasing  int                  // erasures queued and not yet over
	head     uint64               // the last seq handed out
	oseq     uint64               // the last oseq of this store's origin handed out
	remote   map[string]uint64    // other origins' last oseq in flight (remote.go)
	msgs     map[string]*msgState // messages with writes in flight
	inflight int                  // writes not yet committed
}

type msgState struct {
	msg      *crdt.Message // the state of its latest write (write.ev)
	rec      msgRecord
	inflight int
	// last is its latest write: a change that writes nothing to the
	// message (a duplicate) is answered once that is durable.
	last *write
}

// write is one sequenced change, for the writer to make durable: a message
// event, or (advance) only the move of a remote origin's frontier. It is
// its own op, so that a change costs one allocation for both.
type write struct {
	op
	cs      *convState
	ws      string
	conv    string
	stamp   Stamp
	rec     msgRecord
	send    bool
	advance bool   // no event: only stamp's origin frontier moves
	prev    uint64 // the message's latest event before this one; 0 for its first
	// ev is the event, with the message's state at rec.Last (msg).
	ev [1]Event
	// ms is the message's state in flight when this write is its first
	// (convState.msgs points to it): no allocation of its own.
	ms msgState
}

// acquire returns the state of a conversation with its lock held, for
// release (or for a write in flight, which keeps the reference until
// written).
func (q *sequencer) acquire(ws, conv string) *convState {
	k := convKey{ws, conv}
	sh := q.shard(k)
	sh.mu.Lock()
	cs := sh.convs[k]
	if cs == nil {
		cs = &convState{key: k}
		sh.convs[k] = cs
	}
	cs.refs++
	sh.mu.Unlock()
	cs.mu.Lock()
	return cs
}

// release unlocks a state from acquire and drops its reference.
func (q *sequencer) release(cs *convState) {
	cs.mu.Unlock()
	q.unref(cs)
}

// unref drops one reference to cs; the last one removes it from the map.
func (q *sequencer) unref(cs *convState) {
	sh := q.shard(cs.key)
	sh.mu.Lock()
	if cs.refs--; cs.refs == 0 {
		delete(sh.convs, cs.key)
	}
	sh.mu.Unlock()
}

// load makes cs the conversation's current state: with no write of it in
// flight, its head is read from the file. Caller holds cs.mu.
func (q *sequencer) load(tx *bolt.Tx, keys *sealer, cs *convState) error {
	if cs.erasing > 0 {
		return fmt.Errorf("conversation %s is being erased: %w", cs.key.conv, ErrNotFound)
	}
	if cs.inflight > 0 {
		return nil
	}
	cs.remote = nil
	clear(cs.msgs)
	c, err := getConversation(tx, keys, cs.key.ws, cs.key.conv, false)
	if err != nil {
		return err
	}
	cs.head, cs.oseq = c.Head, originHead(tx, cs.key.ws, cs.key.conv, q.origin)
	return nil
}

// current returns a message's latest state: in flight, or in the file.
// It keeps its frames small: it runs on the caller's goroutine, down into
// bbolt, and a deep stack there is a stack to grow for every change.
func (q *sequencer) current(tx *bolt.Tx, keys *sealer, cs *convState, ws, conv, id string, cur *crdt.Message) (msgRecord, bool, error) {
	if ms, ok := cs.msgs[id]; ok {
		*cur = *ms.msg
		return ms.rec, true, nil
	}
	if f := q.filterFor(tx, cs); !f.mayHave(idHash(id)) {
		return msgRecord{}, false, nil
	}
	rec, found, err := msgRecordOf(tx, ws, conv, id)
	if err != nil || !found {
		return msgRecord{}, false, err
	}
	return rec, true, storedMessage(tx, keys, ws, conv, id, rec, cur)
}

// msgRecordOf reads a message's record from the file (msgindex.go).
//
//go:noinline
func msgRecordOf(tx *bolt.Tx, ws, conv, id string) (msgRecord, bool, error) {
	return msgLookup(tx, ws, conv, id)
}

// storedMessage reads a message's state at rec.Last from the file into m.
//
//go:noinline
func storedMessage(tx *bolt.Tx, keys *sealer, ws, conv, id string, rec msgRecord, m *crdt.Message) error {
	a, err := keys.key(tx, ws, conv, false)
	if err != nil {
		return err
	}
	if *m, err = stateAt(tx, a, ws, conv, rec.Last); err != nil {
		return fmt.Errorf("decode message %s: %w", id, err)
	}
	return nil
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
		if cur.Kind != "" {
			return cur, Result{}, false, fmt.Errorf("message %s is an inbox change, which stays as made: %w", ch.Message.ID, ErrInvalid)
		}
		// A change made already (a resend of a delete, or an edit to the
		// text the message has) changes nothing: it answers like a resent
		// send, with the message's latest event, so that a client retrying
		// after a lost answer never stores it twice.
		if (ch.Kind == Delete && cur.IsDeleted()) || (ch.Kind == Edit && !cur.IsDeleted() && cur.Body == ch.Body) {
			return cur, Result{Seq: rec.Last, Dup: true, Message: cur}, false, nil
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
// it as in flight, publishes its event and queues its write, all under the
// conversation's lock so that each conversation's events are published and
// queued in seq order. It returns the op whose commit answers the change:
// its own write's, or for a change that writes nothing the latest write
// of its message still in flight; nil when none is.
func (s *Store) sequence(ch *Change, res *Result) (*op, error) {
	q := &s.seq
	// Room first, before the conversation's lock: once its event is
	// published, a write must be queued.
	if err := s.reserve(); err != nil {
		return nil, err
	}
	cs := q.acquire(ch.Workspace, ch.Conversation)
	w, err := s.decideLocked(cs, ch, res)
	if w == nil {
		var after *op
		if ms := cs.msgs[ch.Message.ID]; err == nil && ms != nil {
			// What the answer reports is not durable yet.
			after = &ms.last.op
		}
		q.release(cs)
		s.unreserve()
		return after, err
	}
	// The reference stays with the write in flight, until written.
	cs.mu.Unlock()
	return &w.op, nil
}

// decideLocked is sequence with the conversation's lock held.
func (s *Store) decideLocked(cs *convState, ch *Change, res *Result) (*write, error) {
	q := &s.seq
	if q.hotSend(cs, ch) {
		// A new message: nothing to read.
		return s.decideWrite(cs, ch, &crdt.Message{}, msgRecord{}, false, res)
	}
	tx, err := s.db.read()
	if err != nil {
		return nil, err
	}
	err = q.load(tx, s.keys, cs)
	var cur crdt.Message
	var rec msgRecord
	var found bool
	if err == nil {
		rec, found, err = q.current(tx, s.keys, cs, ch.Workspace, ch.Conversation, ch.Message.ID, &cur)
	}
	// The file is read: the transaction ends before the event is
	// published.
	s.db.done(tx)
	if err != nil {
		return nil, err
	}
	return s.decideWrite(cs, ch, &cur, rec, found, res)
}

// decideWrite is decideLocked once the message's current state is known.
func (s *Store) decideWrite(cs *convState, ch *Change, cur *crdt.Message, rec msgRecord, found bool, res *Result) (*write, error) {
	merged, r, writes, err := decide(*ch, *cur, rec, found)
	if err != nil || !writes {
		*res = r
		return nil, err
	}
	cs.oseq++
	w, r := s.appendEvent(cs, merged, rec, found,
		Stamp{Origin: s.seq.origin, OSeq: cs.oseq}, ch.Kind == Send, ch.Start, ch.Trace)
	*res = r
	return w, nil
}

// appendEvent gives a message's new state the conversation's next seq,
// records it as in flight, publishes its event and queues its write. Caller
// holds cs.mu and a place in the queue (reserve).
func (s *Store) appendEvent(cs *convState, merged crdt.Message, rec msgRecord, found bool, stamp Stamp, send bool, start time.Time, trace context.Context) (*write, Result) {
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
	w := &write{cs: cs, ws: cs.key.ws, conv: cs.key.conv, stamp: stamp, rec: rec, send: send, prev: prev}
	w.ev[0] = Event{Kind: EventMessage, Workspace: w.ws, Conversation: w.conv, Seq: seq, Stamp: stamp, Message: merged, Start: start, Trace: trace}
	if cs.msgs == nil {
		cs.msgs = map[string]*msgState{}
	}
	ms := cs.msgs[merged.ID]
	if ms == nil {
		ms = &w.ms
		cs.msgs[merged.ID] = ms
	}
	ms.msg, ms.rec, ms.last = w.msg(), rec, w
	ms.inflight++
	cs.inflight++
	if !found {
		q.added(cs, merged.ID)
	}
	w.op.seq = w
	w.op.wg.Add(1)
	s.pending.add(&w.ev[0])
	if s.cfg.OnCommit != nil {
		s.cfg.OnCommit(w.ev[:])
	}
	// Queued under cs.mu: the writer sees each conversation's writes in
	// seq order.
	s.push(&w.op)
	return w, Result{Seq: seq, Changed: true, Message: merged}
}

// msg is the message's state at the write's event.
func (w *write) msg() *crdt.Message { return &w.ev[0].Message }

// written is called by the writer once w's commit is durable (or failed:
// then the store is broken and the state is dropped all the same).
func (s *Store) written(w *write) {
	cs := w.cs
	cs.mu.Lock()
	if !w.advance {
		if ms := cs.msgs[w.msg().ID]; ms != nil {
			if ms.inflight--; ms.inflight == 0 {
				delete(cs.msgs, w.msg().ID)
			}
		}
	}
	if cs.inflight--; cs.inflight == 0 {
		// The file is the truth again.
		cs.remote = nil
		clear(cs.msgs)
	}
	cs.mu.Unlock()
	s.seq.unref(cs)
}

// head returns the last seq handed out in a conversation.
func (s *Store) head(ws, conv string) (uint64, error) {
	q := &s.seq
	cs := q.acquire(ws, conv)
	defer q.release(cs)
	if cs.erasing > 0 {
		return 0, fmt.Errorf("conversation %s is being erased: %w", conv, ErrNotFound)
	}
	if cs.inflight > 0 {
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

// write makes a sequenced change durable: the event, its stamp, the
// message's record (put with the rest of its run, in key order: putMsgs),
// the origin's frontier and the conversation's head, last message and time
// (the last two written back once per commit, by flush).
func (b *batch) write(w *write) error {
	if w.advance {
		b.advance(w.ws, w.conv, w.stamp)
		return nil
	}
	e, err := b.convEntry(w.ws, w.conv)
	if err != nil {
		return err
	}
	c := e.c
	a, err := b.keys.key(b.tx, w.ws, w.conv, true)
	if err != nil {
		return err
	}
	// Events are appended in seq order within each conversation: full pages
	// mean fewer pages to write per commit.
	b.bEvents.FillPercent = 0.9
	// The event goes into its conversation's chunk of this commit
	// (chunk.go), put once the run's writes of the conversation are in.
	if err := b.addEvent(a, w); err != nil {
		return err
	}
	// Every stampEvery-th oseq, the event of the stamp.
	if w.stamp.OSeq%stampEvery == 1 {
		k := binary.BigEndian.AppendUint64(append(appendKey(b.kbuf[:0], w.ws, w.conv, w.stamp.Origin), sep), w.stamp.OSeq)
		b.kbuf = k
		if err := b.bByStamp.Put(k, binary.BigEndian.AppendUint64(b.alloc(8)[:0], w.rec.Last)); err != nil {
			return err
		}
	}
	b.advance(w.ws, w.conv, w.stamp)
	// The previous latest event's state goes (see eventRef); the ones
	// before it went with the changes that followed them.
	if w.prev != 0 {
		if err := b.refEvent(a, w.ws, w.conv, w.prev, w.rec.Last); err != nil {
			return err
		}
	}
	if w.rec.Last > c.Head {
		c.Head = w.rec.Last
	}
	c.Updated = b.now.UnixMilli()
	// An internal message (a note, an inbox change) is never the record's
	// last message, which visitors read in their list.
	if m := w.msg(); !m.Internal && (c.Last == nil || c.Last.ID == m.ID || w.send) {
		c.Last = m // never changed once sequenced
	}
	foldInbox(c, w.msg(), &e.ownInbox)
	if !w.send {
		// An edit or a deletion replaces the message's text in the
		// conversation record: the old record's page is freed.
		b.removed()
	}
	b.touch(c)
	return nil
}
