package store

import (
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"
)

// op is one change waiting for a group commit.
type op struct {
	fn   func(*batch) error
	done chan error
	err  error
}

// batch is what the ops of one transaction share: the transaction, and the
// conversation records they touched, written back once per commit.
type batch struct {
	tx     *bolt.Tx
	now    time.Time
	epoch  uint64
	convs  map[string]*Conversation
	dirty  map[string]bool
	events []Event
}

// clean reports whether err is one an op returns before writing anything, so
// the other ops of its transaction may still commit.
func clean(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrForbidden) ||
		errors.Is(err, ErrExists) || errors.Is(err, ErrInvalid)
}

// writer is the store's only writing goroutine. It takes whatever changes are
// queued (at most MaxBatch), commits them in one fsynced transaction, publishes
// their events and only then answers their callers. While one commit is
// fsyncing, the next batch queues up: batches grow with the load by
// themselves, with no timer adding latency when the load is light.
func (s *Store) writer() {
	defer close(s.done)
	ops := make([]*op, 0, s.cfg.MaxBatch)
	for {
		ops = ops[:0]
		select {
		case o := <-s.reqs:
			ops = append(ops, o)
		case <-s.stop:
			s.drain()
			return
		}
	fill:
		for len(ops) < s.cfg.MaxBatch {
			select {
			case o := <-s.reqs:
				ops = append(ops, o)
			default:
				break fill
			}
		}
		s.commit(ops)
	}
}

// drain commits what was queued before Close, then refuses the rest.
func (s *Store) drain() {
	for {
		select {
		case o := <-s.reqs:
			s.commit([]*op{o})
		default:
			return
		}
	}
}

// commit runs ops in one transaction. An op failing with a clean error fails
// alone; any other error aborts the transaction, and the batch is retried
// without that op, so one bad change never takes its neighbours down.
//
// The events are published after the ops are applied and before the fsync:
// recipients see a message while its commit is still on its way to disk, and
// only the acknowledgement to its sender waits for durability. Should the
// commit then fail, or the node die before it ends, the published seqs are
// never reused: see epoch.
func (s *Store) commit(ops []*op) {
	start := time.Now()
	live := ops
	var err error
	for len(live) > 0 {
		var culprit *op
		culprit, err = s.commitOnce(live)
		if culprit == nil {
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
	if s.cfg.Observer != nil {
		s.cfg.Observer.ObserveCommit(time.Since(start), len(ops), err)
	}
	for _, o := range ops {
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

// commitOnce applies ops in one transaction and commits it. It returns the op
// whose failure aborted the transaction, if one did.
func (s *Store) commitOnce(ops []*op) (culprit *op, err error) {
	tx, err := s.db.Begin(true)
	if err != nil {
		return nil, err
	}
	b := &batch{tx: tx, now: s.cfg.Now(), epoch: s.epoch, convs: map[string]*Conversation{}, dirty: map[string]bool{}}
	for _, o := range ops {
		o.err = o.fn(b)
		if o.err != nil && !clean(o.err) {
			tx.Rollback()
			return o, o.err
		}
	}
	if err := b.flush(); err != nil {
		tx.Rollback()
		return nil, err
	}
	if s.epoch != s.savedEpoch {
		if err := tx.Bucket(bMeta).Put(epochKey, putU64(s.epoch)); err != nil {
			tx.Rollback()
			return nil, err
		}
	}
	// Published events are readable by Events from here on, through the
	// pending set until the commit makes them readable from the file.
	s.pending.add(b.events)
	defer s.pending.remove(b.events)
	if len(b.events) > 0 && s.cfg.OnCommit != nil {
		s.cfg.OnCommit(b.events)
	}
	if err := tx.Commit(); err != nil {
		// The events are out; their seqs must never be handed out again.
		s.epoch++
		return nil, err
	}
	s.savedEpoch = s.epoch
	return nil, nil
}

// conv loads a conversation record through the batch's cache.
func (b *batch) conv(ws, id string) (*Conversation, error) {
	k := string(key(ws, id))
	if c, ok := b.convs[k]; ok {
		return c, nil
	}
	c, err := getConversation(b.tx, ws, id)
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
		if err := bk.Put([]byte(k), v); err != nil {
			return err
		}
	}
	return nil
}
