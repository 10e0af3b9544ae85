// Package store keeps a node's durable state in one bbolt file: workspaces,
// conversations with their message CRDTs and event logs, and read receipts.
// Every key starts with the workspace ID, and every write goes through one
// group-committing writer, so a change is acknowledged only once it is fsynced
// while thousands of concurrent changes share each fsync. Data removed from it
// also leaves the file: free pages are overwritten with zeros shortly after a
// removal (scrub.go).
package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Sentinel errors callers branch on.
var (
	ErrNotFound  = errors.New("not found")
	ErrForbidden = errors.New("forbidden")
	ErrExists    = errors.New("already exists")
	ErrClosed    = errors.New("store closed")
	ErrInvalid   = errors.New("invalid")
	// ErrNewerSchema: the file was written by a newer build, whose schema
	// this one does not know (a rollback past a migration): Open refuses
	// it rather than guess.
	ErrNewerSchema = errors.New("store schema newer than this build")
)

// Observer receives the store's commit measurements; the node feeds them to
// its metrics.
type Observer interface {
	ObserveCommit(d time.Duration, ops int, err error)
}

// Config configures Open. The zero value of each field is a usable default.
type Config struct {
	// Path of the bbolt file. Zero: "parley.db" in the working directory.
	Path string
	// MaxBatch caps how many changes share one transaction. Zero: 4096.
	MaxBatch int
	// OnCommit receives every event as soon as it is decided, before it is
	// durable: message events in seq order per conversation, read receipts
	// before their commit's fsync. No change's caller is answered before
	// the fsync. It is called from many goroutines at once: a message
	// event under its conversation's lock only (the next change of that
	// conversation waits for it to return; other conversations' changes
	// and read receipts do not), so it must be safe for concurrent use and
	// should not block. Zero: events are dropped.
	OnCommit func([]Event)
	// Observer receives commit timings. Zero: none.
	Observer Observer
	// Now gives the wall clock for conversation timestamps. Zero: time.Now.
	Now func() time.Time
	// Origin names this node in the stamps of the events it originates
	// (the node ID, [a-z0-9_-]). Zero: "local".
	Origin string
	// ScrubAfter bounds how long the bytes of removed data (an erased
	// conversation, a deleted saved reply, an edited or deleted message)
	// stay in the file's free pages: the store overwrites them with zeros
	// this long after the first removal not yet scrubbed, removals in
	// between sharing the pass (scrub.go). Zero: 5s. Negative: only at Open,
	// at Close and by Scrub.
	ScrubAfter time.Duration
	// indexTail: how many of a conversation's events may be outside the
	// message index before the writer merges them into it (msgindex.go).
	// Zero: 4096. For tests.
	indexTail int
	// KEK is the key-encryption key, KEKSize bytes, that seals the
	// conversations' own keys in the file (seal.go); the node derives it
	// from the cluster key, so that it is in no file of the store. A file
	// sealed under another KEK is refused at Open. Zero: a random key kept
	// in the file Path+".kek", created at the first Open: for tests and
	// tools, since whoever has that file and the store can read it.
	KEK []byte
	// PreviousKEKs are KEKs the file may still be sealed under (the cluster
	// key was rotated): Open then seals every conversation key again under
	// KEK, and the old sealed keys leave the file with Open's scrub. Zero:
	// none.
	PreviousKEKs [][]byte
}

// Store is a node's bbolt store. Its methods are safe for concurrent use.
type Store struct {
	db  *storeDB
	cfg Config
	// seq decides and publishes message changes (sequencer.go).
	seq sequencer
	// queue is what the writer commits next (commit.go).
	queue opQueue

	pending pendingEvents
	// convCache holds conversation records as last committed, decoded:
	// the writer's alone (commit.go).
	convCache map[convKey]*Conversation
	// tails counts the writer's conversations' events outside the
	// message index (msgindex.go); only the writer uses it.
	tails map[convKey]int
	scrub scrubState
	keys  *sealer

	stop     chan struct{}
	done     chan struct{}
	closeOne sync.Once
}

// Open opens or creates the store at cfg.Path, runs any pending schema
// migrations and starts the group-commit writer; Close stops it.
func Open(cfg Config) (*Store, error) {
	if cfg.Path == "" {
		cfg.Path = "parley.db"
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 4096
	}
	if cfg.indexTail <= 0 {
		cfg.indexTail = defaultIndexTail
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Origin == "" {
		cfg.Origin = "local"
	}
	if cfg.ScrubAfter == 0 {
		cfg.ScrubAfter = 5 * time.Second
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, fmt.Errorf("store: create directory: %w", err)
	}
	kek, err := loadKEK(cfg)
	if err != nil {
		return nil, err
	}
	keys, err := newSealer(kek)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{
		Timeout: 2 * time.Second,
		// The freelist is rebuilt on open instead of written on every commit:
		// fewer pages per fsync on the hot path.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		// Remapping a growing file blocks every reader and the writer; a large
		// initial mapping (address space only) makes it rare.
		InitialMmapSize: 1 << 30,
	})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", cfg.Path, err)
	}
	if err := migrate(db, migrations, migrationEnv{origin: cfg.Origin, keys: keys}); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", cfg.Path, err)
	}
	if err := keys.checkKEK(db, cfg.PreviousKEKs); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", cfg.Path, err)
	}
	epoch, err := startEpoch(db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	file, err := os.OpenFile(cfg.Path, os.O_RDWR, 0)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s for scrubbing: %w", cfg.Path, err)
	}
	s := &Store{
		db:        &storeDB{DB: db},
		cfg:       cfg,
		keys:      keys,
		convCache: map[convKey]*Conversation{},
		tails:     map[convKey]int{},
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	s.queue.notify = make(chan struct{}, 1)
	s.queue.limit = cfg.MaxBatch * 4
	s.queue.space.L = &s.queue.mu
	s.scrub.file = file
	s.scrub.kick = make(chan struct{}, 1)
	s.scrub.done = make(chan struct{})
	s.scrub.ctx, s.scrub.cancel = context.WithCancel(context.Background())
	// A node stopped before its last scrub left removed data in free pages.
	if err := s.Scrub(context.Background()); err != nil {
		file.Close()
		db.Close()
		return nil, err
	}
	s.seq.epoch = epoch
	s.seq.origin = originName(cfg.Origin, epoch)
	s.seq.init()
	go s.writer()
	if cfg.ScrubAfter > 0 {
		go s.scrubber()
	} else {
		close(s.scrub.done)
	}
	return s, nil
}

// Close stops the writer after the changes already queued are committed, and
// closes the file. Changes submitted afterwards fail with ErrClosed.
func (s *Store) Close() error {
	var err error
	s.closeOne.Do(func() {
		s.queue.mu.Lock()
		s.queue.closed = true
		s.queue.space.Broadcast()
		s.queue.mu.Unlock()
		close(s.stop)
		<-s.done
		s.scrub.cancel()
		<-s.scrub.done
		// Every published event was committed: the next start needs no new
		// epoch.
		err = s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bMeta).Put(cleanKey, []byte{1})
		})
		if s.scrubDirty() {
			// Readers still open may hold it up; the next Open scrubs
			// anyway.
			ctx, cancel := context.WithTimeout(context.Background(), closeScrubWait)
			err = errors.Join(err, s.Scrub(ctx))
			cancel()
		}
		err = errors.Join(err, s.db.Close(), s.scrub.file.Close())
	})
	return err
}

// SchemaVersion returns the schema version stored in the file.
func (s *Store) SchemaVersion() (int, error) {
	var v int
	err := s.db.View(func(tx *bolt.Tx) error {
		v = schemaVersion(tx)
		return nil
	})
	return v, err
}

// submit queues fn for the next group commit and waits until it is durable.
func (s *Store) submit(ctx context.Context, fn func(*batch) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o := newOp(fn)
	if err := s.enqueue(o); err != nil {
		return err
	}
	// Once queued, the change may commit; wait for its fate even if ctx ends,
	// so that a caller never reports failure for something stored.
	return o.wait()
}

// closeScrubWait bounds how long Close waits for old readers to scrub.
const closeScrubWait = 5 * time.Second

var (
	epochKey = []byte("epoch")
	cleanKey = []byte("clean")
)

// startEpoch reads the seq epoch and starts a new one if the last stop was
// not clean: a killed node may have published seqs it never made durable.
// A new file starts at epoch 0.
func startEpoch(db *bolt.DB) (uint64, error) {
	var epoch uint64
	err := db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		stored := meta.Get(epochKey)
		epoch = u64(stored)
		if stored != nil && meta.Get(cleanKey) == nil {
			epoch++
		}
		if err := meta.Delete(cleanKey); err != nil {
			return err
		}
		return meta.Put(epochKey, putU64(epoch))
	})
	return epoch, err
}

// Origin is the name this store stamps its own events with.
func (s *Store) Origin() string { return s.seq.origin }

// Epoch returns the current seq epoch.
func (s *Store) Epoch() uint64 {
	var e uint64
	s.db.View(func(tx *bolt.Tx) error { e = u64(tx.Bucket(bMeta).Get(epochKey)); return nil })
	return e
}

// nextSeq is the seq after head in epoch: seqs of an epoch start at
// epoch<<32 + 1, so a new epoch's seqs are above every seq of the ones before
// it, durable or not. Seqs stay below 2^53, exact in JavaScript.
func nextSeq(head, epoch uint64) uint64 {
	if head>>32 < epoch {
		return epoch<<32 | 1
	}
	return head + 1
}

// Err says why the store takes no more changes (closed, or broken by a failed
// commit), or nil while it does; readiness checks use it.
func (s *Store) Err() error {
	s.queue.mu.Lock()
	defer s.queue.mu.Unlock()
	return s.queue.usable()
}
