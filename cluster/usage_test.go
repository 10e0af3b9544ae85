package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"
)

func TestUsageReportsOnceEach(t *testing.T) {
	t.Parallel()
	var tried, applied []ReportUsage
	var fail error
	apply := func(_ context.Context, c Command) (Result, error) {
		r := c.(ReportUsage)
		tried = append(tried, r)
		if fail != nil {
			return Result{}, fail
		}
		applied = append(applied, r)
		return Result{}, nil
	}
	u := NewUsageReporter(UsageConfig{Node: "n1", Apply: apply, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Interval: time.Hour,
		Now: func() time.Time { return time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC) }})
	ctx := context.Background()

	u.Count("acme", 1, 0)
	u.Count("acme", 0, 3)
	fail = fmt.Errorf("%w: leader lost", ErrUncertain)
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
	fail = fmt.Errorf("workspace: %w", ErrNotFound)
	u.flush(ctx)
	fail = nil
	n := len(tried)
	u.flush(ctx)
	if len(tried) != n {
		t.Fatalf("a refused report was retried: %+v", tried[n:])
	}
}

// TestUsageTakesBackAMessageCountedTwice: a message two nodes accepted is
// taken back by the one whose copy lost (replication.Replicator.uncount): netted
// against counts not yet reported, or reported as a negative count.
func TestUsageTakesBackAMessageCountedTwice(t *testing.T) {
	t.Parallel()
	var applied []ReportUsage
	apply := func(_ context.Context, c Command) (Result, error) {
		if err := c.Validate(); err != nil {
			return Result{}, err
		}
		applied = append(applied, c.(ReportUsage))
		return Result{}, nil
	}
	u := NewUsageReporter(UsageConfig{Node: "n1", Apply: apply, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Interval: time.Hour,
		Now: func() time.Time { return time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC) }})
	ctx := context.Background()
	total := func() (msgs int64) {
		for _, a := range applied {
			msgs += a.Messages
		}
		return msgs
	}
	u.Count("acme", 1, 3)
	u.Count("acme", 0, -1) // before the report: nets
	u.flush(ctx)
	if got := total(); got != 2 || len(applied) != 1 {
		t.Fatalf("reported %+v, want 2 messages in one report", applied)
	}
	u.Count("acme", 0, -2) // after it: a report of its own
	u.flush(ctx)
	if got := total(); got != 0 || len(applied) != 2 || applied[1].Messages != -2 || applied[1].Conversations != 0 {
		t.Fatalf("reported %+v, want a second report of -2 messages", applied)
	}
	u.flush(ctx)
	if len(applied) != 2 {
		t.Fatalf("an empty report was sent: %+v", applied[2:])
	}
}

// TestPeriodIsTheUTCMonth: Period is t's UTC month as time.Format writes
// it, across month and year ends in other zones, and a month asked again
// costs no allocation (each message stored asks it twice).
func TestPeriodIsTheUTCMonth(t *testing.T) {
	east, west := time.FixedZone("east", 14*3600), time.FixedZone("west", -12*3600)
	for _, tt := range []time.Time{
		time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC),
		time.Date(2027, 1, 1, 2, 0, 0, 0, east),    // still December in UTC
		time.Date(2026, 12, 31, 13, 0, 0, 0, west), // already January in UTC
		time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC), // back again
		time.Date(987, 3, 1, 0, 0, 0, 0, time.UTC),
	} {
		if got, want := Period(tt), tt.UTC().Format("2006-01"); got != want {
			t.Errorf("Period(%v) = %q, want %q", tt, got, want)
		}
	}
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	Period(now)
	if allocs := testing.AllocsPerRun(100, func() { Period(now) }); allocs != 0 {
		t.Errorf("%.1f allocations per Period of the same month, want 0", allocs)
	}
}
