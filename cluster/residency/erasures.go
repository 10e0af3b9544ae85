package residency

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"parley/cluster"
	"parley/store"
)

// ErasureConfig configures NewErasures. Log, Store and Erase are required.
type ErasureConfig struct {
	// Log is the control plane's log of erasures (*cluster.Cluster).
	Log ErasureLog
	// Store says which erasures this node's store already holds the
	// tombstone of (*store.Store).
	Store interface {
		Erased(ws, conv string) (bool, error)
	}
	// Erase erases a conversation here, if held, leaving its tombstone
	// (the embeddings follow).
	Erase func(ctx context.Context, ws, conv string) error
	// Forget drops what is cached of a conversation about to be erased
	// (replication.Replicator.Forget). Zero: nothing is cached.
	Forget func(ws, conv string)
	// Logger. Zero: slog.Default().
	Logger *slog.Logger
}

// ErasureLog is the control plane's log of erasures.
type ErasureLog interface {
	// ErasedAfter lists the erasures applied after index, and the index
	// they run to.
	ErasedAfter(index uint64) ([]cluster.Erasure, uint64)
	// WaitApplied returns once the control plane here applied index.
	WaitApplied(ctx context.Context, index uint64) error
}

// Erasures applies the control plane's erasure records to this node's
// store, in index order, and tells who waits how far it got.
type Erasures struct {
	cfg ErasureConfig

	mu    sync.Mutex
	done  uint64        // every erasure up to this index is applied here
	moved chan struct{} // closed and replaced when done moves
}

// NewErasures returns Erasures; Run applies them.
func NewErasures(cfg ErasureConfig) *Erasures {
	if cfg.Forget == nil {
		cfg.Forget = func(string, string) {}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Erasures{cfg: cfg, moved: make(chan struct{})}
}

// eraseRetry is how long Run waits after a failed erasure before it tries
// again.
const eraseRetry = time.Second

// Run applies erasure records until ctx ends: first every record the
// control plane holds (those already applied here cost a read), then each
// new one as it is applied.
func (e *Erasures) Run(ctx context.Context) error {
	var after uint64
	for {
		list, idx := e.cfg.Log.ErasedAfter(after)
		ok := true
		for _, x := range list {
			if err := e.apply(ctx, x); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				e.cfg.Logger.Warn("erasure not applied here yet; retrying", "workspace", x.Workspace, "conversation", x.Conversation, "err", err)
				ok = false
				break
			}
		}
		wait := func() error { return e.cfg.Log.WaitApplied(ctx, idx+1) }
		if ok {
			after = idx
			e.advance(idx)
		} else {
			wait = func() error {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(eraseRetry):
					return nil
				}
			}
		}
		if err := wait(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, cluster.ErrClosed) {
				return nil
			}
			return fmt.Errorf("erasures: %w", err)
		}
	}
}

// apply erases one conversation here unless its tombstone is already in
// the store.
func (e *Erasures) apply(ctx context.Context, x cluster.Erasure) error {
	if done, err := e.cfg.Store.Erased(x.Workspace, x.Conversation); err != nil || done {
		return err
	}
	e.cfg.Forget(x.Workspace, x.Conversation)
	err := e.cfg.Erase(ctx, x.Workspace, x.Conversation)
	if errors.Is(err, store.ErrNotFound) {
		return nil // not held here: the tombstone is all there is to keep
	}
	if err == nil {
		e.cfg.Logger.Info("conversation erased here", "workspace", x.Workspace, "conversation", x.Conversation, "index", x.Index)
	}
	return err
}

func (e *Erasures) advance(idx uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if idx > e.done {
		e.done = idx
		close(e.moved)
		e.moved = make(chan struct{})
	}
}

// Wait returns once every erasure up to index is applied here.
func (e *Erasures) Wait(ctx context.Context, index uint64) error {
	for {
		e.mu.Lock()
		done, moved := e.done, e.moved
		e.mu.Unlock()
		if done >= index {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return fmt.Errorf("waiting for erasures up to index %d (at %d): %w", index, done, ctx.Err())
		}
	}
}
