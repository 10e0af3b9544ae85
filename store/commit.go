package store

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// op is one change waiting for a group commit.
type op struct {
	fn    func(*batch) error
	after func() // for sequenced writes: called once the commit is over
	done  chan error
	err   error
}

// batch is what the ops of one transaction share: the transaction, and the
// conversation records they touched, written back once per commit.
type batch struct {
	tx     *bolt.Tx
	keys   *sealer
	now    time.Time
	convs  map[string]*Conversation
	dirty  map[string]bool
	events []Event
	// removal: an op of the batch deleted or overwrote data that must not
	// stay in the file's free pages (see scrub.go); set by removed.
	removal bool
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

// enqueue queues o for the writer, waiting while the queue is full. It
// fails once the store is closed or broken. Caller holds s.seq.mu.
func (s *Store) enqueue(o *op) error {
	if err := s.waitSpace(); err != nil {
		return err
	}
	s.push(o)
	return nil
}

// waitSpace waits until the queue has room. The wait releases s.seq.mu, so
// the writer is never blocked behind a full queue. Caller holds s.seq.mu.
func (s *Store) waitSpace() error {
	for len(s.queue) >= s.cfg.MaxBatch*4 && s.usable() == nil {
		s.space.Wait()
	}
	return s.usable()
}

// push queues o and wakes the writer. Caller holds s.seq.mu.
func (s *Store) push(o *op) {
	s.queue = append(s.queue, o)
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// take removes up to n queued ops.
func (s *Store) take(n int) []*op {
	s.seq.mu.Lock()
	defer s.seq.mu.Unlock()
	if len(s.queue) < n {
		n = len(s.queue)
	}
	ops := append([]*op(nil), s.queue[:n]...)
	s.queue = append(s.queue[:0], s.queue[n:]...)
	s.space.Broadcast()
	return ops
}

// usable says why the store takes no more changes, if it does not. Caller
// holds s.seq.mu.
func (s *Store) usable() error {
	switch {
	case s.broken != nil:
		return fmt.Errorf("%w: a commit failed: %v", ErrClosed, s.broken)
	case s.closed:
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
	for {
		select {
		case <-s.notify:
		case <-s.stop:
			// Close refuses new changes first; commit what was queued before.
			for ops := s.take(s.cfg.MaxBatch); len(ops) > 0; ops = s.take(s.cfg.MaxBatch) {
				s.commit(ops)
			}
			return
		}
		for ops := s.take(s.cfg.MaxBatch); len(ops) > 0; ops = s.take(s.cfg.MaxBatch) {
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
		if culprit == nil || culprit.after != nil {
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
		s.seq.mu.Lock()
		s.broken = err
		s.space.Broadcast()
		s.seq.mu.Unlock()
	}
	if s.cfg.Observer != nil {
		s.cfg.Observer.ObserveCommit(time.Since(start), len(ops), err)
	}
	for _, o := range ops {
		if o.after != nil {
			o.after()
		}
		switch {
		case o.err != nil:
			o.done <- o.err
		case err != nil:
			o.done <- err
		default:
			o.done <- nil
		}
	}
}

func (s *Store) hasSequenced(ops []*op) bool {
	for _, o := range ops {
		if o.after != nil {
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
	b := &batch{tx: tx, keys: s.keys, now: s.cfg.Now(), convs: map[string]*Conversation{}, dirty: map[string]bool{}}
	for _, o := range ops {
		o.err = o.fn(b)
		if o.err != nil && (o.after != nil || !clean(o.err)) {
			tx.Rollback()
			return o, o.err
		}
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
	if b.removal {
		s.removed()
	}
	return nil, nil
}

// conv loads a conversation record through the batch's cache.
func (b *batch) conv(ws, id string) (*Conversation, error) {
	k := string(key(ws, id))
	if c, ok := b.convs[k]; ok {
		return c, nil
	}
	c, err := getConversation(b.tx, b.keys, ws, id, true)
	if err != nil {
		return nil, err
	}
	b.convs[k] = c
	return c, nil
}

func (b *batch) touch(c *Conversation) {
	k := string(key(c.Workspace, c.ID))
	b.convs[k] = c
	b.dirty[k] = true
}

// flush writes back every conversation record the batch changed.
func (b *batch) flush() error {
	bk := b.tx.Bucket(bConvs)
	for k := range b.dirty {
		c := b.convs[k]
		v, err := marshal(c)
		if err != nil {
			return err
		}
		a, err := b.keys.key(b.tx, c.Workspace, c.ID, true)
		if err != nil {
			return err
		}
		if err := bk.Put([]byte(k), seal(a, bConvs, []byte(k), v)); err != nil {
			return err
		}
	}
	return nil
}
