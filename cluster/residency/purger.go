package residency

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"parley/cluster/replication"
	"parley/store"

	"golang.org/x/sync/errgroup"
)

// PurgeConfig configures NewPurger. Control, Store and Data are required.
type PurgeConfig struct {
	// Control is what the purger reads of the control plane.
	Control Control
	// Store is this node's store (*store.Store).
	Store Store
	// Data hands a workspace over to its region and forgets what it
	// caches of a conversation (*replication.Replicator).
	Data Data
	// Erase erases a conversation here, leaving its tombstone (the
	// embeddings follow). Zero: Store.EraseConversation.
	Erase func(ctx context.Context, ws, conv string) error
	// DropWorkspace drops a purged workspace from the node's in-memory
	// indexes (embeddings, sessions). Zero: nothing to drop.
	DropWorkspace func(ws string)
	// Expel closes a deleted workspace's connections and says how many
	// (gateway.Server.ExpelWorkspace). Zero: none are closed.
	Expel func(ws string) int
	// Logger. Zero: slog.Default().
	Logger *slog.Logger
}

// Control is what the purger reads of the control plane.
type Control interface {
	// Serves is nil when this node may hold ws's data, and otherwise says
	// why not (replication.Control.Serves).
	Serves(ws string) error
	// Region is the region ws is pinned to: "" when unpinned or unknown.
	Region(ws string) string
	// Ready says whether this node is a registered member with a leader.
	Ready() bool
	// Index is the last index applied here.
	Index() uint64
	// WaitApplied returns once index is applied here.
	WaitApplied(ctx context.Context, index uint64) error
}

// Store is what the purger reads and removes of this node's store.
type Store interface {
	HeldWorkspaces() ([]string, error)
	Holds(ws string) (bool, error)
	Conversations(ws, owner string) ([]store.Conversation, error)
	EraseConversation(ctx context.Context, ws, conv string) error
	PurgeWorkspace(ctx context.Context, ws string) (int, error)
}

// Data is the data plane as the purger uses it.
type Data interface {
	// Handover makes sure the nodes of region hold everything this node
	// holds of ws, and says how many conversations and saved replies.
	Handover(ctx context.Context, ws, region string) (convs, replies int, err error)
	// Forget drops what is cached of a conversation.
	Forget(ws, conv string)
}

// purgeEvery is the period of the purger's passes besides those the
// control plane's changes trigger: a pass that could not hand a workspace
// over (no node of its region reachable) is retried then.
const purgeEvery = 15 * time.Second

// Purger purges what this node must not hold (see the package doc). It runs
// on every change of the control plane's state and every purgeEvery, so a
// node that was down at the time purges when it comes back (its store
// still lists the workspace), and a node that joins later refuses the data
// from the start.
type Purger struct {
	cfg PurgeConfig
	log *slog.Logger
	// mu runs one pass or one workspace's reconciliation at a time.
	mu sync.Mutex
}

// NewPurger returns a Purger; Run runs its passes.
func NewPurger(cfg PurgeConfig) *Purger {
	if cfg.Erase == nil {
		cfg.Erase = cfg.Store.EraseConversation
	}
	if cfg.DropWorkspace == nil {
		cfg.DropWorkspace = func(string) {}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Purger{cfg: cfg, log: cfg.Logger}
}

// Run reconciles every workspace the store lists whenever the control
// plane's state changes and every purgeEvery, until ctx ends.
func (p *Purger) Run(ctx context.Context) error {
	changed := make(chan struct{}, 1)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		for {
			if err := p.cfg.Control.WaitApplied(ctx, p.cfg.Control.Index()+1); err != nil {
				return nil
			}
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	})
	g.Go(func() error {
		p.passes(ctx, changed)
		return nil
	})
	return g.Wait()
}

func (p *Purger) passes(ctx context.Context, changed <-chan struct{}) {
	t := time.NewTicker(purgeEvery)
	defer t.Stop()
	// retryAt holds back a workspace whose pass failed (no node of its
	// region to hand it over to, say) until purgeEvery later, rather than
	// at every change of the control plane.
	retryAt := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-t.C:
		}
		if !p.cfg.Control.Ready() {
			continue
		}
		wss, err := p.cfg.Store.HeldWorkspaces()
		if err != nil {
			p.log.Warn("purge: listing workspaces", "err", err)
			continue
		}
		now := time.Now()
		for _, ws := range wss {
			if now.Before(retryAt[ws]) {
				continue
			}
			delete(retryAt, ws)
			if err := p.reconcile(ctx, ws); err != nil && ctx.Err() == nil {
				p.log.Warn("purge: workspace not purged yet", "workspace", ws, "err", err)
				retryAt[ws] = now.Add(purgeEvery - time.Second)
			}
		}
	}
}

// reconcile purges ws here if this node must not hold it, handing it over
// first to its region when it is pinned elsewhere. A workspace unknown
// here is left alone: this node may not have applied its creation yet.
func (p *Purger) reconcile(ctx context.Context, ws string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.cfg.Control.Serves(ws)
	if err == nil || errors.Is(err, replication.ErrWorkspaceUnknown) {
		return nil
	}
	held, herr := p.cfg.Store.Holds(ws)
	if herr != nil || !held {
		return herr
	}
	if errors.Is(err, replication.ErrPinnedElsewhere) {
		region := p.cfg.Control.Region(ws)
		if err := p.handover(ctx, ws, region); err != nil {
			return fmt.Errorf("hand over to region %s: %w", region, err)
		}
	}
	return p.purge(ctx, ws, err)
}

// purge erases every conversation of ws here (their writes in flight
// commit first, later ones are refused), then everything else under its
// prefix, and drops it from the in-memory indexes.
func (p *Purger) purge(ctx context.Context, ws string, why error) error {
	if errors.Is(why, replication.ErrWorkspaceDeleted) && p.cfg.Expel != nil {
		if n := p.cfg.Expel(ws); n > 0 {
			p.log.Info("purge: connections of a deleted workspace closed", "workspace", ws, "connections", n)
		}
	}
	convs, err := p.cfg.Store.Conversations(ws, "")
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	for _, c := range convs {
		p.cfg.Data.Forget(ws, c.ID)
		if err := p.cfg.Erase(ctx, ws, c.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("erase %s: %w", c.ID, err)
		}
	}
	p.cfg.DropWorkspace(ws)
	n, err := p.cfg.Store.PurgeWorkspace(ctx, ws)
	if err != nil {
		return err
	}
	p.log.Info("purge: workspace's data removed from this node", "workspace", ws, "conversations", len(convs), "keys", n, "reason", why)
	return nil
}

// handover makes sure the nodes of region hold everything this node holds
// of ws. An error leaves the data here, for the next pass.
func (p *Purger) handover(ctx context.Context, ws, region string) error {
	convs, replies, err := p.cfg.Data.Handover(ctx, ws, region)
	if err != nil {
		return err
	}
	if convs > 0 || replies > 0 {
		p.log.Info("purge: workspace handed over to its region", "workspace", ws, "region", region, "conversations", convs, "replies", replies)
	}
	return nil
}

// Purged applies index, reconciles ws, and says whether this node now
// holds nothing of it it must not hold: what a deletion or a pin asks of
// each node.
func (p *Purger) Purged(ctx context.Context, ws string, index uint64) error {
	if err := p.cfg.Control.WaitApplied(ctx, index); err != nil {
		return fmt.Errorf("apply index %d: %w", index, err)
	}
	if err := p.reconcile(ctx, ws); err != nil {
		return err
	}
	if p.cfg.Control.Serves(ws) == nil {
		return nil // its data belongs here
	}
	held, err := p.cfg.Store.Holds(ws)
	if err != nil {
		return err
	}
	if held {
		return fmt.Errorf("workspace %s: data still held", ws)
	}
	return nil
}
