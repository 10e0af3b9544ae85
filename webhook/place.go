package webhook

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"parley/cluster/membership"
)

// Pieces the webhook dispatcher shares with the other senders of a
// conversation's events to the outside world (package email): who sends,
// how long to wait after a failure.

// Placement says which node sends what: the first live replica of a key
// by rendezvous over the live members, in the workspace's region when it
// is pinned, as the data plane places conversations. When it dies the
// next replica is first.
type Placement struct {
	Self    string
	Members Members
	// Region is the region a workspace is pinned to, "" when unpinned.
	Region func(ws string) string
	// Replicas is how many nodes hold a conversation.
	Replicas int
}

// Sends says whether this node is the first live of key's n replicas.
func (p Placement) Sends(ws, key string, n int) bool {
	reps := membership.Replicas(p.Members.Members(), key, p.Region(ws), n)
	return len(reps) > 0 && reps[0].ID == p.Self
}

// Sender says whether this node sends a conversation's events.
func (p Placement) Sender(ws, conv string) bool { return p.Sends(ws, conv, p.Replicas) }

// Others are the other live nodes that hold a conversation.
func (p Placement) Others(ws, conv string) []membership.Member {
	var out []membership.Member
	for _, m := range membership.Replicas(p.Members.Members(), conv, p.Region(ws), p.Replicas) {
		if m.ID != p.Self {
			out = append(out, m)
		}
	}
	return out
}

// View names the live members, to tell when they change (a takeover may
// be due).
func (p Placement) View() string {
	var ids []string
	for _, m := range p.Members.Members() {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

// Backoff is the wait after the nth failure: lo doubled n-1 times, at most
// hi, of which a random half (jitter).
func Backoff(n int, lo, hi time.Duration) time.Duration {
	b := lo
	for i := 1; i < n && b < hi; i++ {
		b *= 2
	}
	b = min(b, hi)
	return b/2 + rand.N(b/2+1)
}

// Sleep waits d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
