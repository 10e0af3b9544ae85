package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"parley/cluster"
)

// usageReporter counts the conversations and messages this node stored per
// workspace and month, and reports them to the control plane every interval.
// Each report carries an idempotency key, so a report retried after an
// uncertain outcome (a leader lost mid-apply) is counted once. Counts not
// yet reported when the process is killed are lost: usage is then
// under-counted by at most one interval of this node's traffic, never
// double-counted.
type usageReporter struct {
	node     string
	boot     string // makes keys unique across restarts of the node
	apply    func(context.Context, cluster.Command) (cluster.Result, error)
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	pending map[usageKey]*usageCount
	n       uint64
	// inflight are reports sent with an uncertain outcome: retried with the
	// same key until the control plane answers.
	inflight []cluster.ReportUsage
}

type usageKey struct{ workspace, period string }

type usageCount struct{ conversations, messages int64 }

func newUsageReporter(node string, apply func(context.Context, cluster.Command) (cluster.Result, error), log *slog.Logger, interval time.Duration) *usageReporter {
	b := make([]byte, 6)
	rand.Read(b)
	return &usageReporter{node: node, boot: hex.EncodeToString(b), apply: apply, log: log, interval: interval,
		now: time.Now, pending: map[usageKey]*usageCount{}}
}

// Count implements gateway.Meter. A negative count of messages takes back
// what was counted before (replication.Replicator.uncount): it nets against the counts
// not yet reported, and goes in the next report otherwise.
func (u *usageReporter) Count(workspace string, conversations, messages int64) {
	k := usageKey{workspace, period(u.now())}
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

// run reports every interval until ctx ends, then makes a last report.
func (u *usageReporter) run(ctx context.Context) error {
	t := time.NewTicker(u.interval)
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
func (u *usageReporter) flush(ctx context.Context) {
	u.mu.Lock()
	for k, c := range u.pending {
		delete(u.pending, k)
		if *c == (usageCount{}) {
			continue // what was counted was taken back
		}
		u.n++
		u.inflight = append(u.inflight, cluster.ReportUsage{
			NodeID: u.node, Workspace: k.workspace, Period: k.period,
			Conversations: c.conversations, Messages: c.messages,
			IdempotencyKey: fmt.Sprintf("usage-%s-%s-%d", u.node, u.boot, u.n),
		})
	}
	reports := u.inflight
	u.inflight = nil
	u.mu.Unlock()

	var retry []cluster.ReportUsage
	for _, r := range reports {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := u.apply(actx, r)
		cancel()
		switch {
		case err == nil:
		case errors.Is(err, cluster.ErrUncertain), errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrClosed):
			retry = append(retry, r)
		default:
			// The workspace was deleted, or the report is refused: nothing
			// to bill any more.
			u.log.Warn("usage report dropped", "workspace", r.Workspace, "period", r.Period, "err", err)
		}
	}
	if len(retry) > 0 {
		u.log.Warn("usage reports not acknowledged, will retry", "reports", len(retry))
		u.mu.Lock()
		u.inflight = append(retry, u.inflight...)
		u.mu.Unlock()
	}
}
