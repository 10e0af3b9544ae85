package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Scrubbing: bbolt never overwrites a page it frees. A deleted value stays
// in the file, in the freed page that held it, until bbolt happens to reuse
// that page, which may be never. After a removal (an erased conversation, a
// deleted saved reply, an edited or deleted message) the store therefore
// overwrites with zeros every free page of its file that is not all zeros
// already, within Config.ScrubAfter, and again at every Open.
//
// It does so in place, through a file handle of its own, while it holds
// bbolt's writer lock (an empty write transaction that it rolls back), so
// that no commit allocates a page under it. A free page may still be read by
// a read transaction begun before the commit that freed it; every read of
// the store goes through storeDB, which records the transaction ID of each
// reader, and a scrub proceeds only once no reader is older than the last
// commit, whose tree reaches no free page. Zeroing pages that no meta page of
// the last commit reaches is crash-safe: the freelist is not stored
// (NoFreelistSync) but rebuilt from the tree at open, and a killed scrub
// leaves only some free pages zeroed.

// storeDB is the store's bbolt handle. Reads go through View or read, which
// register the reader for the scrubber; Begin is hidden so that a read
// transaction cannot be begun around the registry by mistake.
type storeDB struct {
	*bolt.DB
	readers readers
}

// directBegin cannot be built outside this file: a call of Begin does not
// compile. Use View or read for reads, write for the writer.
type directBegin struct{}

// Begin hides bolt.DB.Begin; see directBegin.
func (*storeDB) Begin(directBegin) {}

// View runs fn in a registered read transaction.
func (d *storeDB) View(fn func(*bolt.Tx) error) error {
	tx, err := d.read()
	if err != nil {
		return err
	}
	defer d.done(tx)
	return fn(tx)
}

// read begins a registered read transaction; done ends it.
func (d *storeDB) read() (*bolt.Tx, error) {
	r := &d.readers
	r.mu.Lock()
	defer r.mu.Unlock()
	// Begun under r.mu: the scrubber, holding the writer lock, sees every
	// reader begun before it looked.
	tx, err := d.DB.Begin(false)
	if err != nil {
		return nil, err
	}
	r.add(uint64(tx.ID()))
	return tx, nil
}

// done rolls back a transaction from read and forgets it.
func (d *storeDB) done(tx *bolt.Tx) {
	id := uint64(tx.ID())
	tx.Rollback()
	r := &d.readers
	r.mu.Lock()
	r.remove(id)
	if r.gone != nil && id < r.below && !r.anyBelow(r.below) {
		close(r.gone)
		r.gone = nil
	}
	r.mu.Unlock()
}

// write begins the writer's transaction.
func (d *storeDB) write() (*bolt.Tx, error) { return d.DB.Begin(true) }

// readers counts the open read transactions by transaction ID. Readers
// begun between the same two commits share an ID: open holds few entries.
type readers struct {
	mu   sync.Mutex
	open []readersOf
	// gone is closed when the last reader with an ID below below ends.
	below uint64
	gone  chan struct{}
}

type readersOf struct {
	id uint64
	n  int
}

func (r *readers) add(id uint64) {
	for i := range r.open {
		if r.open[i].id == id {
			r.open[i].n++
			return
		}
	}
	r.open = append(r.open, readersOf{id, 1})
}

func (r *readers) remove(id uint64) {
	for i := range r.open {
		if r.open[i].id == id {
			if r.open[i].n--; r.open[i].n == 0 {
				last := len(r.open) - 1
				r.open[i] = r.open[last]
				r.open = r.open[:last]
			}
			return
		}
	}
}

func (r *readers) anyBelow(id uint64) bool {
	for _, o := range r.open {
		if o.id < id {
			return true
		}
	}
	return false
}

// olderGone returns nil if no reader older than id is open, or else a
// channel closed when the last of them ends.
func (r *readers) olderGone(id uint64) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.anyBelow(id) {
		return nil
	}
	if r.gone == nil || r.below != id {
		if r.gone != nil {
			close(r.gone) // a waiter for another ID looks again
		}
		r.below, r.gone = id, make(chan struct{})
	}
	return r.gone
}

// ScrubObserver, if the Config's Observer implements it, receives each
// scrub's measurements: how long the writer was held (pause), the whole
// scrub with its waits for old readers (total), and the pages zeroed.
type ScrubObserver interface {
	ObserveScrub(pause, total time.Duration, pages int, err error)
}

// scrubState is the scrubber's bookkeeping.
type scrubState struct {
	file *os.File // the bbolt file, opened again for writing free pages
	mu   sync.Mutex
	// removals counts the commits with a removal; scrubbed is its value
	// at the start of the last successful scrub.
	removals, scrubbed uint64
	// run serializes scrubs.
	run  sync.Mutex
	kick chan struct{}
	// ctx ends the background scrub at Close; done is closed when the
	// scrubber has stopped.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// removed records a committed removal and wakes the scrubber.
func (s *Store) removed() {
	s.scrub.mu.Lock()
	s.scrub.removals++
	s.scrub.mu.Unlock()
	select {
	case s.scrub.kick <- struct{}{}:
	default:
	}
}

func (s *Store) scrubDirty() bool {
	s.scrub.mu.Lock()
	defer s.scrub.mu.Unlock()
	return s.scrub.removals != s.scrub.scrubbed
}

// scrubber scrubs ScrubAfter after the first removal not yet scrubbed;
// removals within that delay share one scrub. It stops with the store.
func (s *Store) scrubber() {
	defer close(s.scrub.done)
	for {
		select {
		case <-s.scrub.kick:
		case <-s.scrub.ctx.Done():
			return
		}
		if !s.scrubDirty() {
			continue
		}
		t := time.NewTimer(s.cfg.ScrubAfter)
		select {
		case <-t.C:
		case <-s.scrub.ctx.Done():
			t.Stop()
			return
		}
		if err := s.Scrub(s.scrub.ctx); err != nil && s.scrub.ctx.Err() == nil {
			// Tried again after another ScrubAfter; also at Close and at
			// the next Open.
			s.kickLater()
		}
	}
}

// kickLater makes the scrubber try again after another ScrubAfter.
func (s *Store) kickLater() {
	select {
	case s.scrub.kick <- struct{}{}:
	default:
	}
}

// Scrub overwrites with zeros every free page of the file that is not zero
// already, so that no byte of data removed before the call stays in the
// file. It waits for read transactions older than the last commit to end
// (they may still read those pages), and pauses the writer while it writes
// and syncs the pages. The store calls it by itself ScrubAfter after a
// removal, at Open and at Close; tests and operators may force it.
func (s *Store) Scrub(ctx context.Context) error {
	s.scrub.run.Lock()
	defer s.scrub.run.Unlock()
	s.scrub.mu.Lock()
	gen := s.scrub.removals
	s.scrub.mu.Unlock()
	start := time.Now()
	pause, pages, err := s.scrubOnce(ctx)
	if so, ok := s.cfg.Observer.(ScrubObserver); ok {
		so.ObserveScrub(pause, time.Since(start), pages, err)
	}
	if err != nil {
		return fmt.Errorf("store: scrub: %w", err)
	}
	s.scrub.mu.Lock()
	s.scrub.scrubbed = gen
	s.scrub.mu.Unlock()
	return nil
}

// readerGrace is how long a scrub holding the writer waits for the readers
// older than the last commit, which are most often about to end, before it
// lets the writer go and waits for them without it.
const readerGrace = 50 * time.Millisecond

func (s *Store) scrubOnce(ctx context.Context) (pause time.Duration, pages int, err error) {
	for {
		if err := ctx.Err(); err != nil {
			return pause, 0, err
		}
		tx, err := s.db.write()
		if err != nil {
			return pause, 0, err
		}
		held := time.Now()
		// A writable transaction's ID is the last commit's plus one;
		// readers of the last commit see no free page.
		last := uint64(tx.ID()) - 1
		err = s.waitReaders(ctx, last, readerGrace)
		if err == nil {
			pages, err = zeroFreePages(tx, s.scrub.file)
			tx.Rollback()
			return pause + time.Since(held), pages, err
		}
		tx.Rollback()
		pause += time.Since(held)
		if ctx.Err() != nil {
			return pause, 0, ctx.Err()
		}
		// Older readers are still open: wait for them without holding the
		// writer, then start over (by then there may be newer commits and
		// newer readers, most often short ones).
		if err := s.waitReaders(ctx, last, 0); err != nil {
			return pause, 0, err
		}
	}
}

// errReadersOpen: readers older than a commit were still open at the end of
// a wait.
var errReadersOpen = errors.New("readers older than the last commit are open")

// waitReaders waits until no reader older than id is open, at most d (zero:
// until ctx ends).
func (s *Store) waitReaders(ctx context.Context, id uint64, d time.Duration) error {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	for gone := s.db.readers.olderGone(id); gone != nil; gone = s.db.readers.olderGone(id) {
		select {
		case <-gone:
		case <-timeout:
			return errReadersOpen
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// zeroFreePages writes zeros over every free page of tx's file that is not
// all zeros, and syncs the file if it wrote any. tx must be the writer's,
// with no reader older than the last commit.
func zeroFreePages(tx *bolt.Tx, f *os.File) (int, error) {
	ps := tx.DB().Info().PageSize
	hwm := int(tx.Size()) / ps
	buf := make([]byte, ps)
	zero := make([]byte, ps)
	n := 0
	// Pages 0 and 1 are the meta pages. A page that is not free starts a
	// node of 1+OverflowCount pages; a page after a free one starts a node
	// or is free, since the pages of a node are never free.
	for id := 2; id < hwm; {
		info, err := tx.Page(id)
		if err != nil {
			return n, err
		}
		if info == nil {
			break
		}
		if info.Type != "free" {
			id += 1 + info.OverflowCount
			continue
		}
		off := int64(id) * int64(ps)
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return n, fmt.Errorf("read page %d: %w", id, err)
		}
		if !bytes.Equal(buf, zero) {
			if _, err := f.WriteAt(zero, off); err != nil {
				return n, fmt.Errorf("zero page %d: %w", id, err)
			}
			n++
		}
		id++
	}
	if n > 0 {
		if err := f.Sync(); err != nil {
			return n, fmt.Errorf("sync: %w", err)
		}
	}
	return n, nil
}
