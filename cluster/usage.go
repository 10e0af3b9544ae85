package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// UsageReporter counts the conversations and messages a node stored per
// workspace and month, and reports them to the control plane (ReportUsage)
// every interval. Each report carries an idempotency key, so a report
// retried after an uncertain outcome (a leader lost mid-apply) is counted
// once. Counts not yet reported when the process is killed are lost: usage
// is then under-counted by at most one interval of the node's traffic,
// never double-counted.
type UsageReporter struct {
	cfg  UsageConfig
	boot string // makes keys unique across restarts of the node

	mu      sync.Mutex
	pending map[usageKey]*usageCount
	n       uint64
	// inflight are reports sent with an uncertain outcome: retried with the
	// same key until the control plane answers.
	inflight []ReportUsage
}

type usageKey struct{ workspace, period string }

type usageCount struct{ conversations, messages int64 }

// UsageConfig configures NewUsageReporter. Node and Apply are required.
type UsageConfig struct {
	// Node is the reporting node's ID.
	Node string
	// Apply applies a command to the control plane (Cluster.Apply).
	Apply func(context.Context, Command) (Result, error)
	// Interval is the time between reports. Zero: 10s.
	Interval time.Duration
	// Logger. Zero: slog.Default().
	Logger *slog.Logger
	// Now is the clock that dates counts. Zero: time.Now.
	Now func() time.Time
}

// NewUsageReporter returns a UsageReporter; Run reports.
func NewUsageReporter(cfg UsageConfig) *UsageReporter {
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b := make([]byte, 6)
	rand.Read(b)
	return &UsageReporter{cfg: cfg, boot: hex.EncodeToString(b), pending: map[usageKey]*usageCount{}}
}

// Count counts usage (gateway.Meter). A negative count of messages takes
// back what was counted before (replication.Replicator.uncount): it nets
// against the counts not yet reported, and goes in the next report
// otherwise.
func (u *UsageReporter) Count(workspace string, conversations, messages int64) {
	k := usageKey{workspace, Period(u.cfg.Now())}
	u.mu.Lock()
	defer u.mu.Unlock()
	c := u.pending[k]
	if c == nil {
		c = &usageCount{}
		u.pending[k] = c
	}
	c.conversations += conversations
	c.messages += messages
}

// Period is the billing period of t: its UTC month, as "2006-01". Every
// message stored asks it (Count, and the plan's check before), so the
// last month's string is kept: the same month costs no allocation.
func Period(t time.Time) string {
	t = t.UTC()
	y, m, _ := t.Date()
	if p := lastPeriod.Load(); p != nil && p.year == y && p.month == m {
		return p.s
	}
	p := &periodName{year: y, month: m, s: t.Format("2006-01")}
	lastPeriod.Store(p)
	return p.s
}

// periodName is a month and its Period.
type periodName struct {
	year  int
	month time.Month
	s     string
}

var lastPeriod atomic.Pointer[periodName]

// Run reports every interval until ctx ends, then makes a last report.
func (u *UsageReporter) Run(ctx context.Context) error {
	t := time.NewTicker(u.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			u.flush(fctx)
			return nil
		case <-t.C:
			u.flush(ctx)
		}
	}
}

// flush turns the pending counts into reports and applies every report not
// yet acknowledged.
func (u *UsageReporter) flush(ctx context.Context) {
	u.mu.Lock()
	for k, c := range u.pending {
		delete(u.pending, k)
		if *c == (usageCount{}) {
			continue // what was counted was taken back
		}
		u.n++
		u.inflight = append(u.inflight, ReportUsage{
			NodeID: u.cfg.Node, Workspace: k.workspace, Period: k.period,
			Conversations: c.conversations, Messages: c.messages,
			IdempotencyKey: fmt.Sprintf("usage-%s-%s-%d", u.cfg.Node, u.boot, u.n),
		})
	}
	reports := u.inflight
	u.inflight = nil
	u.mu.Unlock()

	var retry []ReportUsage
	for _, r := range reports {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := u.cfg.Apply(actx, r)
		cancel()
		switch {
		case err == nil:
		case errors.Is(err, ErrUncertain), errors.Is(err, ErrNotLeader), errors.Is(err, ErrClosed):
			retry = append(retry, r)
		default:
			// The workspace was deleted, or the report is refused: nothing
			// to bill any more.
			u.cfg.Logger.Warn("usage report dropped", "workspace", r.Workspace, "period", r.Period, "err", err)
		}
	}
	if len(retry) > 0 {
		u.cfg.Logger.Warn("usage reports not acknowledged, will retry", "reports", len(retry))
		u.mu.Lock()
		u.inflight = append(retry, u.inflight...)
		u.mu.Unlock()
	}
}
