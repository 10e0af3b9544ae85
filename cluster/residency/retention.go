package residency

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"parley/cluster"
	"parley/store"
)

// RetentionConfig configures NewRetention. Workspaces, Store and Record are
// required.
type RetentionConfig struct {
	// Workspaces lists the control plane's workspaces, with their
	// retention (*cluster.Cluster).
	Workspaces func() []cluster.Workspace
	// Store lists the conversations held here (*store.Store).
	Store interface {
		Conversations(ws, owner string) ([]store.Conversation, error)
	}
	// Record records a conversation's erasure in the control plane (an
	// EraseConversation): every node then erases it (Erasures).
	Record func(ctx context.Context, ws, conv string) error
	// Day is the unit of a workspace's RetentionDays. Zero: 24 hours.
	Day time.Duration
	// Every is how often a pass looks for expired conversations. Zero: a
	// minute, or Day when it is shorter.
	Every time.Duration
	// Now is the clock. Zero: time.Now.
	Now func() time.Time
	// Logger. Zero: slog.Default().
	Logger *slog.Logger
}

// Retention erases the conversations held here of workspaces with a
// retention, once their last message is older than it: it records their
// erasure in the control plane, which every node applies.
type Retention struct {
	cfg RetentionConfig
}

// NewRetention returns a Retention; Run makes its passes.
func NewRetention(cfg RetentionConfig) *Retention {
	if cfg.Day <= 0 {
		cfg.Day = 24 * time.Hour
	}
	if cfg.Every <= 0 {
		cfg.Every = min(time.Minute, cfg.Day)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Retention{cfg: cfg}
}

// Run makes a pass every cfg.Every until ctx ends; a failed pass is logged
// and the next one tries again.
func (r *Retention) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if n, err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("retention: pass incomplete; the next one retries", "erased", n, "err", err)
		}
	}
}

// Pass records the erasure of every expired conversation held here and
// returns how many it recorded.
func (r *Retention) Pass(ctx context.Context) (int, error) {
	now := r.cfg.Now()
	n := 0
	for _, w := range r.cfg.Workspaces() {
		if w.RetentionDays <= 0 {
			continue
		}
		cutoff := now.Add(-time.Duration(w.RetentionDays) * r.cfg.Day).UnixMilli()
		convs, err := r.cfg.Store.Conversations(w.ID, "")
		if err != nil {
			return n, fmt.Errorf("retention of %s: %w", w.ID, err)
		}
		erased := 0
		for _, c := range convs {
			if lastMessage(c) >= cutoff {
				continue
			}
			if err := r.cfg.Record(ctx, w.ID, c.ID); err != nil {
				return n, fmt.Errorf("retention of %s: %w", w.ID, err)
			}
			erased++
			n++
		}
		if erased > 0 {
			r.cfg.Logger.Info("retention: conversations past their workspace's retention erased", "workspace", w.ID, "conversations", erased)
		}
	}
	return n, nil
}

// lastMessage is when a conversation's last message was written (unix
// ms), or when it started if it has none.
func lastMessage(c store.Conversation) int64 {
	if c.Last != nil {
		return max(c.Created, c.Last.Created.Wall)
	}
	return c.Created
}
