package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"parley/cluster"
)

func TestUsageReportsOnceEach(t *testing.T) {
	t.Parallel()
	var tried, applied []cluster.ReportUsage
	var fail error
	apply := func(_ context.Context, c cluster.Command) (cluster.Result, error) {
		r := c.(cluster.ReportUsage)
		tried = append(tried, r)
		if fail != nil {
			return cluster.Result{}, fail
		}
		applied = append(applied, r)
		return cluster.Result{}, nil
	}
	u := newUsageReporter("n1", apply, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Hour)
	u.now = func() time.Time { return time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC) }
	ctx := context.Background()

	u.Count("acme", 1, 0)
	u.Count("acme", 0, 3)
	fail = fmt.Errorf("%w: leader lost", cluster.ErrUncertain)
	u.flush(ctx)
	fail = nil
	u.Count("acme", 0, 1)
	u.flush(ctx)
	// The uncertain report went again with its key, first; the new count
	// under a key of its own.
	if len(applied) != 2 || applied[0] != tried[0] || applied[1].IdempotencyKey == applied[0].IdempotencyKey {
		t.Fatalf("tried %+v, applied %+v", tried, applied)
	}
	if a := applied[0]; a.Workspace != "acme" || a.Period != "2026-11" || a.Conversations != 1 || a.Messages != 3 || a.NodeID != "n1" {
		t.Fatalf("first report %+v", a)
	}
	if applied[1].Messages != 1 || applied[1].Conversations != 0 {
		t.Fatalf("second report %+v", applied[1])
	}
	// A report refused for good (the workspace is gone) is not retried.
	u.Count("globex", 0, 1)
	fail = fmt.Errorf("workspace: %w", cluster.ErrNotFound)
	u.flush(ctx)
	fail = nil
	n := len(tried)
	u.flush(ctx)
	if len(tried) != n {
		t.Fatalf("a refused report was retried: %+v", tried[n:])
	}
}

// TestUsageTakesBackAMessageCountedTwice: a message two nodes accepted is
// taken back by the one whose copy lost (replicator.uncount); reports only
// add, so what is taken back nets against counts not yet reported, and a
// debt waits for the period's next counts.
func TestUsageTakesBackAMessageCountedTwice(t *testing.T) {
	t.Parallel()
	var applied []cluster.ReportUsage
	apply := func(_ context.Context, c cluster.Command) (cluster.Result, error) {
		applied = append(applied, c.(cluster.ReportUsage))
		return cluster.Result{}, nil
	}
	u := newUsageReporter("n1", apply, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Hour)
	month := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	u.now = func() time.Time { return month }
	ctx := context.Background()
	total := func() (msgs int64) {
		for _, a := range applied {
			if a.Conversations < 0 || a.Messages < 0 {
				t.Fatalf("a report subtracts: %+v", a)
			}
			msgs += a.Messages
		}
		return msgs
	}

	u.Count("acme", 0, 3)
	u.Count("acme", 0, -1) // before the report: nets
	u.flush(ctx)
	if got := total(); got != 2 {
		t.Fatalf("reported %d messages, want 2", got)
	}
	u.Count("acme", 0, -2) // after it: a debt, no report
	u.flush(ctx)
	if got := total(); got != 2 || len(applied) != 1 {
		t.Fatalf("a debt was reported: %+v", applied)
	}
	u.Count("acme", 0, 5)
	u.flush(ctx)
	if got := total(); got != 5 {
		t.Fatalf("reported %d messages in all, want 5 (2 + 5 - 2)", got)
	}
	// A debt does not outlive its month.
	u.Count("acme", 0, -4)
	u.flush(ctx)
	month = month.AddDate(0, 1, 0)
	u.flush(ctx)
	u.Count("acme", 0, 1)
	u.flush(ctx)
	if last := applied[len(applied)-1]; last.Messages != 1 || last.Period != "2026-12" {
		t.Fatalf("next month's report %+v", last)
	}
}
