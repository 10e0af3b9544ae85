package residency

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"parley/cluster"
	"parley/crdt"
	"parley/store"
)

type heldConvs map[string][]store.Conversation

func (h heldConvs) Conversations(ws, owner string) ([]store.Conversation, error) {
	return h[ws], nil
}

// TestRetentionErasesWhatIsPastIt: on a fake clock, a pass records the
// erasure of exactly the conversations of workspaces with a retention
// whose last message (or start, without one) is older than it; a
// workspace without retention keeps everything; a failed record ends the
// pass with an error and the next pass records it.
func TestRetentionErasesWhatIsPastIt(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	ms := func(ago time.Duration) int64 { return now.Add(-ago).UnixMilli() }
	msg := func(ago time.Duration) *crdt.Message {
		return &crdt.Message{ID: "m", Created: crdt.Timestamp{Wall: ms(ago)}}
	}
	held := heldConvs{
		"acme": {
			{ID: "c_old", Created: ms(40 * day), Last: msg(31 * day)},
			{ID: "c_recent_message", Created: ms(40 * day), Last: msg(29 * day)},
			{ID: "c_empty_old", Created: ms(31 * day)},
			{ID: "c_empty_new", Created: ms(day)},
		},
		"keep": {{ID: "c_keep", Created: ms(400 * day), Last: msg(400 * day)}},
	}
	workspaces := []cluster.Workspace{{ID: "acme", RetentionDays: 30}, {ID: "keep"}}
	var recorded []string
	fail := 1
	r := NewRetention(RetentionConfig{
		Workspaces: func() []cluster.Workspace { return workspaces },
		Store:      held,
		Record: func(_ context.Context, ws, conv string) error {
			if fail > 0 {
				fail--
				return errors.New("no leader")
			}
			recorded = append(recorded, ws+"/"+conv)
			return nil
		},
		Now:    func() time.Time { return now },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if _, err := r.Pass(context.Background()); err == nil {
		t.Fatal("a pass whose record failed reported no error")
	}
	n, err := r.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(recorded)
	if n != 2 || fmt.Sprint(recorded) != "[acme/c_empty_old acme/c_old]" {
		t.Fatalf("recorded %d: %v", n, recorded)
	}
	// A day later the conversation whose last message was 29 days ago is
	// past it too.
	now = now.Add(day + time.Minute)
	recorded = nil
	if _, err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(recorded, "acme/c_recent_message") || slices.Contains(recorded, "keep/c_keep") || slices.Contains(recorded, "acme/c_empty_new") {
		t.Fatalf("a day later recorded %v", recorded)
	}
}
