package store

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// op is one change waiting for a group commit.
type op struct {
	fn  func(*batch) error
	seq *write // a sequenced write (sequencer.go), instead of fn
	err error  // fn's or the write's own error
	// res is the op's outcome, set by the writer before wg.Done.
	res error
	wg  sync.WaitGroup
	// done is set with res, before wg.Done (Done).
	done atomic.Bool
}

// newOp is an op running fn, for wait.
func newOp(fn func(*batch) error) *op {
	o := &op{fn: fn}
	o.wg.Add(1)
	return o
}

// wait waits for the op's commit and returns its outcome.
func (o *op) wait() error {
	o.wg.Wait()
	return o.res
}

// Wait is wait, for Pending.
func (o *op) Wait() error { return o.wait() }

// Done says, without waiting, whether the op's commit is made (Wait
// returns at once).
func (o *op) Done() bool { return o.done.Load() }

func (o *op) run(b *batch) error {
	if o.seq != nil {
		return b.write(o.seq)
	}
	return o.fn(b)
}

// batch is what the ops of one transaction share: the transaction, the
// conversation records they touched, written back once per commit, and the
// origin frontiers they moved, also put once per commit.
type batch struct {
	tx    *bolt.Tx
	keys  *sealer
	now   time.Time
	convs map[convKey]*batchConv
	// cache is the writer's decoded conversation records as last
	// committed (Store.convCache): the batch reads through it and changes
	// copies, which replace the cached ones once the commit succeeds.
	cache   map[convKey]*Conversation
	origins map[originKey]uint64
	events  []Event
	// removal: an op of the batch deleted or overwrote data that must not
	// stay in the file's free pages (see scrub.go); set by removed.
	removal bool
	// kbuf holds the key being put (bbolt copies keys), abuf a record's
	// additional data and pbuf its plaintext; arena the values, which
	// bbolt keeps until the commit.
	kbuf, abuf, pbuf, hbuf []byte
	arena                  []byte
	// chunk is the chunk of events being built (chunk.go), put when the
	// run's next write is of another conversation, and at the run's end.
	chunk chunkBuild
	// tails counts, by conversation, the events not in the message
	// index (msgindex.go): the writer's, across commits (Store.tails).
	tails     map[convKey]int
	indexTail int
	bEvents   *bolt.Bucket
	bMsgs     *bolt.Bucket
	bByStamp  *bolt.Bucket
}

// kv is a key and value to put, both in the batch's arena.
type kv struct{ k, v []byte }

type batchConv struct {
	c     *Conversation
	dirty bool
	// ownInbox: c's inbox state is the batch's own (not the cached
	// record's), to fold messages into in place (foldInbox).
	ownInbox bool
}

// originKey names an origin of a conversation.
type originKey struct {
	convKey
	origin string
}

// maxConvCache bounds the writer's cache of conversation records: past it,
// the cache is emptied (records are read from the file again as used).
const maxConvCache = 1 << 14

func (s *Store) newBatch(tx *bolt.Tx) *batch {
	return &batch{tx: tx, keys: s.keys, now: s.cfg.Now(), convs: map[convKey]*batchConv{}, cache: s.convCache, tails: s.tails, indexTail: s.cfg.indexTail,
		bEvents: tx.Bucket(bEvents), bMsgs: tx.Bucket(bMsgs), bByStamp: tx.Bucket(bByStamp)}
}

// alloc returns n bytes of the batch's arena, for a value to put.
func (b *batch) alloc(n int) []byte {
	if cap(b.arena)-len(b.arena) < n {
		b.arena = make([]byte, 0, max(32<<10, n))
	}
	l := len(b.arena)
	b.arena = b.arena[:l+n]
	return b.arena[l : l+n : l+n]
}

// advance moves an origin's frontier in a conversation to st.OSeq if that
// is ahead, durably with the batch (flush).
func (b *batch) advance(ws, conv string, st Stamp) {
	if b.origins == nil {
		b.origins = map[originKey]uint64{}
	}
	k := originKey{convKey{ws, conv}, st.Origin}
	if b.origins[k] < st.OSeq {
		b.origins[k] = st.OSeq
	}
}

// forgetConv drops what the batch and the writer's cache hold of a
// conversation erased in the batch.
func (b *batch) forgetConv(k convKey) {
	delete(b.convs, k)
	delete(b.cache, k)
	delete(b.tails, k)
	for ok := range b.origins {
		if ok.convKey == k {
			delete(b.origins, ok)
		}
	}
}

// forget drops what the batch and the writer's cache hold of the
// conversations that keep reports true for: they were purged in it.
func (b *batch) forget(keep func(convKey) bool) {
	for k := range b.convs {
		if keep(k) {
			delete(b.convs, k)
		}
	}
	for k := range b.cache {
		if keep(k) {
			delete(b.cache, k)
		}
	}
	for k := range b.tails {
		if keep(k) {
			delete(b.tails, k)
		}
	}
	for k := range b.origins {
		if keep(k.convKey) {
			delete(b.origins, k)
		}
	}
}

// removed marks the batch as removing data: once it commits, the store
// scrubs its free pages within Config.ScrubAfter.
func (b *batch) removed() { b.removal = true }

// clean reports whether err is one an op returns before writing anything, so
// the other ops of its transaction may still commit.
func clean(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrForbidden) ||
		errors.Is(err, ErrExists) || errors.Is(err, ErrInvalid)
}

// opQueue is the writer's queue of ops, with the store's closed and broken
// states. Its mutex is held only to append or take ops: never across I/O,
// and never while a conversation's lock is waited for (the lock order is a
// conversation's lock, then the queue's).
type opQueue struct {
	mu  sync.Mutex
	ops []*op
	// reserved counts the places promised to sequencers that have not
	// pushed yet (reserve): a sequencer takes its place before its
	// conversation's lock, so it never waits for room while holding it.
	reserved int
	limit    int
	space    sync.Cond // signalled when the queue shrinks or the store stops
	notify   chan struct{}
	closed   bool
	broken   error
}

// enqueue queues o for the writer, waiting while the queue is full. It
// fails once the store is closed or broken.
func (s *Store) enqueue(o *op) error {
	if err := s.reserve(); err != nil {
		return err
	}
	s.push(o)
	return nil
}

// reserve waits until the queue has room and takes a place in it, for a
// push (which uses it) or an unreserve (which gives it back). It fails
// once the store is closed or broken.
func (s *Store) reserve() error {
	q := &s.queue
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.ops)+q.reserved >= q.limit && q.usable() == nil {
		q.space.Wait()
	}
	if err := q.usable(); err != nil {
		return err
	}
	q.reserved++
	return nil
}

// unreserve gives back a place taken by reserve and not used.
func (s *Store) unreserve() {
	q := &s.queue
	q.mu.Lock()
	q.reserved--
	q.space.Broadcast() // a place for reserve, or the last one for waitReserved
	q.mu.Unlock()
}

// push queues o in a place taken by reserve and wakes the writer.
func (s *Store) push(o *op) {
	q := &s.queue
	q.mu.Lock()
	q.reserved--
	q.ops = append(q.ops, o)
	if q.closed {
		q.space.Broadcast() // for waitReserved
	}
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// waitReserved waits, once the store is closed, until the queue is not
// empty or no place is reserved any more, and says whether ops are queued.
func (s *Store) waitReserved() bool {
	q := &s.queue
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.ops) == 0 && q.reserved > 0 {
		q.space.Wait()
	}
	return len(q.ops) > 0
}

// take moves up to n queued ops to buf[:0] and returns them.
func (s *Store) take(buf []*op, n int) []*op {
	q := &s.queue
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.ops) < n {
		n = len(q.ops)
	}
	ops := append(buf[:0], q.ops[:n]...)
	rest := copy(q.ops, q.ops[n:])
	clear(q.ops[rest:])
	q.ops = q.ops[:rest]
	q.space.Broadcast()
	return ops
}

// usable says why the store takes no more changes, if it does not. Caller
// holds q.mu.
func (q *opQueue) usable() error {
	switch {
	case q.broken != nil:
		return fmt.Errorf("%w: a commit failed: %v", ErrClosed, q.broken)
	case q.closed:
		return ErrClosed
	}
	return nil
}

// writer is the store's only writing goroutine. It takes whatever changes are
// queued (at most MaxBatch), commits them in one fsynced transaction and only
// then answers their callers. While one commit is fsyncing, the next batch
// queues up: batches grow with the load by themselves, with no timer adding
// latency when the load is light.
func (s *Store) writer() {
	defer close(s.done)
	var ops []*op
	for {
		select {
		case <-s.queue.notify:
		case <-s.stop:
			// Close refuses new changes first; commit what was queued
			// before, and what the places reserved before bring.
			for {
				for ops = s.take(ops, s.cfg.MaxBatch); len(ops) > 0; ops = s.take(ops, s.cfg.MaxBatch) {
					s.commit(ops)
				}
				if !s.waitReserved() {
					return
				}
			}
		}
		for ops = s.take(ops, s.cfg.MaxBatch); len(ops) > 0; ops = s.take(ops, s.cfg.MaxBatch) {
			s.commit(ops)
		}
	}
}

// commit runs ops in one transaction. An op failing with a clean error fails
// alone; any other error aborts the transaction, and the batch is retried
// without that op, so one bad change never takes its neighbours down.
//
// Sequenced message writes were published before they got here: their
// recipients do not wait for this fsync. If such a write cannot be made
// durable, the store breaks (every later change fails with ErrClosed) rather
// than go on with a published seq missing from its file; a restart after that
// is unclean and starts a new seq epoch, so no seen seq is ever reused.
func (s *Store) commit(ops []*op) {
	start := time.Now()
	live := ops
	var err error
	for len(live) > 0 {
		var culprit *op
		culprit, err = s.commitOnce(live)
		if culprit == nil || culprit.seq != nil {
			break
		}
		next := live[:0:0]
		for _, o := range live {
			if o != culprit {
				next = append(next, o)
			}
		}
		live = next
	}
	if err != nil && s.hasSequenced(ops) {
		s.queue.mu.Lock()
		s.queue.broken = err
		s.queue.space.Broadcast()
		s.queue.mu.Unlock()
	}
	if s.cfg.Observer != nil {
		s.cfg.Observer.ObserveCommit(time.Since(start), len(ops), err)
	}
	s.pending.remove(ops)
	for _, o := range ops {
		if o.seq != nil {
			s.written(o.seq)
		}
		switch {
		case o.err != nil:
			o.res = o.err
		case err != nil:
			o.res = err
		default:
			o.res = nil
		}
		o.done.Store(true)
		o.wg.Done()
	}
}

func (s *Store) hasSequenced(ops []*op) bool {
	for _, o := range ops {
		if o.seq != nil {
			return true
		}
	}
	return false
}

// commitOnce applies ops in one transaction and commits it. It returns the op
// whose failure aborted the transaction, if one did.
func (s *Store) commitOnce(ops []*op) (culprit *op, err error) {
	tx, err := s.db.write()
	if err != nil {
		return nil, err
	}
	b := s.newBatch(tx)
	sortSequenced(ops)
	for _, o := range ops {
		if o.seq == nil {
			// The run of sequenced writes before it is over: its
			// events and message records go in before fn reads the
			// file.
			if err := b.endRun(); err != nil {
				tx.Rollback()
				return nil, err
			}
		}
		o.err = o.run(b)
		if o.err != nil && (o.seq != nil || !clean(o.err)) {
			tx.Rollback()
			return o, o.err
		}
	}
	if err := b.endRun(); err != nil {
		tx.Rollback()
		return nil, err
	}
	if err := b.flush(); err != nil {
		tx.Rollback()
		return nil, err
	}
	// Read receipts are published before the fsync too; they carry no seq.
	if len(b.events) > 0 && s.cfg.OnCommit != nil {
		s.cfg.OnCommit(b.events)
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	b.committed()
	if b.removal {
		s.removed()
	}
	return nil, nil
}

// sortSequenced orders each run of sequenced writes in ops by conversation,
// keeping each conversation's writes in the order they were queued (their
// seq order): a batch's events then go into the B-tree in key order, each
// conversation's after the last, instead of hopping between conversations.
// Writes of different conversations touch different keys, so their order
// within a run does not matter; other ops keep their places.
func sortSequenced(ops []*op) {
	for i := 0; i < len(ops); {
		if ops[i].seq == nil {
			i++
			continue
		}
		j := i + 1
		for j < len(ops) && ops[j].seq != nil {
			j++
		}
		slices.SortStableFunc(ops[i:j], func(x, y *op) int {
			if c := strings.Compare(x.seq.ws, y.seq.ws); c != 0 {
				return c
			}
			return strings.Compare(x.seq.conv, y.seq.conv)
		})
		i = j
	}
}

// endRun puts what a run of sequenced writes left to put: the chunk of
// events being built.
func (b *batch) endRun() error { return b.putChunk() }

// conv loads a conversation record through the batch, and the writer's
// cache: what it returns is the batch's own copy, which touch marks to be
// written back.
func (b *batch) conv(ws, id string) (*Conversation, error) {
	e, err := b.convEntry(ws, id)
	if err != nil {
		return nil, err
	}
	return e.c, nil
}

// convEntry is conv's entry of the batch.
func (b *batch) convEntry(ws, id string) (*batchConv, error) {
	k := convKey{ws, id}
	if e, ok := b.convs[k]; ok {
		return e, nil
	}
	if c, ok := b.cache[k]; ok {
		cp := *c
		e := &batchConv{c: &cp}
		b.convs[k] = e
		return e, nil
	}
	c, err := getConversation(b.tx, b.keys, ws, id, true)
	if err != nil {
		return nil, err
	}
	e := &batchConv{c: c, ownInbox: true} // decoded: nothing shares it
	b.convs[k] = e
	return e, nil
}

func (b *batch) touch(c *Conversation) {
	k := convKey{c.Workspace, c.ID}
	e := b.convs[k]
	if e == nil {
		e = &batchConv{}
		b.convs[k] = e
	}
	if e.c != c {
		e.ownInbox = false // a record of the caller's
	}
	e.c, e.dirty = c, true
}

// flush writes back every conversation record the batch changed, once
// each, and the origin frontiers it moved.
func (b *batch) flush() error {
	bk := b.tx.Bucket(bConvs)
	for k, e := range b.convs {
		if !e.dirty {
			continue
		}
		v, err := marshal(e.c)
		if err != nil {
			return err
		}
		a, err := b.keys.key(b.tx, k.ws, k.conv, true)
		if err != nil {
			return err
		}
		kk := appendKey(b.kbuf[:0], k.ws, k.conv)
		b.kbuf = kk
		if err := bk.Put(kk, b.seal(a, bConvs, kk, v)); err != nil {
			return err
		}
	}
	origins := b.tx.Bucket(bOrigins)
	for k, oseq := range b.origins {
		kk := appendKey(b.kbuf[:0], k.ws, k.conv, k.origin)
		b.kbuf = kk
		if u64(origins.Get(kk)) >= oseq {
			continue
		}
		if err := origins.Put(kk, binary.BigEndian.AppendUint64(b.alloc(8)[:0], oseq)); err != nil {
			return err
		}
	}
	return nil
}

// committed makes the batch's conversation records the writer's cache.
func (b *batch) committed() {
	if len(b.cache)+len(b.convs) > maxConvCache {
		clear(b.cache)
	}
	for k, e := range b.convs {
		b.cache[k] = e.c
	}
}

// sealStamped is the value of an event at k: its stamp, then its state
// sealed under a, in the batch's arena.
func (b *batch) sealStamped(a cipher.AEAD, k []byte, st Stamp, plain []byte) []byte {
	b.abuf = append(append(append(b.abuf[:0], bEvents...), '/'), k...)
	n := stampedLen(st)
	v := appendStamped(b.alloc(n + 1 + nonceLen + len(plain) + a.Overhead())[:0], st)
	return v[:n+len(sealTo(v[n:n], a, b.abuf, plain))]
}

// seal seals a record's value under a into the batch's arena.
func (b *batch) seal(a cipher.AEAD, bucket, k, plain []byte) []byte {
	b.abuf = append(append(append(b.abuf[:0], bucket...), '/'), k...)
	return sealTo(b.alloc(1 + nonceLen + len(plain) + a.Overhead())[:0], a, b.abuf, plain)
}
