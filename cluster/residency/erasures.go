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
		// Conversations lists the conversations held here of one owner.
		Conversations(ws, owner string) ([]store.Conversation, error)
	}
	// Erase erases a conversation here, if held, leaving its tombstone
	// (the embeddings follow).
	Erase func(ctx context.Context, ws, conv string) error
	// Record records the erasure of one conversation of an erased visitor
	// in the control plane (an EraseConversation), so that every node keeps
	// its tombstone, also one that gets a copy later. Zero: not recorded;
	// only the nodes that hold a copy when they apply the visitor's erasure
	// erase it.
	Record func(ctx context.Context, ws, conv string) error
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
// the store; a visitor's erasure, each of the visitor's conversations held
// here.
func (e *Erasures) apply(ctx context.Context, x cluster.Erasure) error {
	if x.Visitor != "" {
		return e.applyVisitor(ctx, x)
	}
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

// applyVisitor erases every conversation of a visitor held here, each
// recorded in the control plane first, so that a failure to record leaves
// it held here and tried again.
func (e *Erasures) applyVisitor(ctx context.Context, x cluster.Erasure) error {
	convs, err := e.cfg.Store.Conversations(x.Workspace, x.Visitor)
	if err != nil {
		return fmt.Errorf("conversations of the erased visitor: %w", err)
	}
	for _, c := range convs {
		if e.cfg.Record != nil {
			if err := e.cfg.Record(ctx, x.Workspace, c.ID); err != nil {
				return fmt.Errorf("record the erasure of %s: %w", c.ID, err)
			}
		}
		e.cfg.Forget(x.Workspace, c.ID)
		if err := e.cfg.Erase(ctx, x.Workspace, c.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	e.cfg.Logger.Info("visitor erased here", "workspace", x.Workspace, "conversations", len(convs), "index", x.Index)
	return nil
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
