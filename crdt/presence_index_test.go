package crdt

import (
	"testing"

	"pgregory.net/rapid"
)

// TestPresenceIndexMatchesAScan checks the participant index against a scan
// of every lease, through applies, merges, prunes and forgets.
func TestPresenceIndexMatchesAScan(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		lease := rapid.Custom(func(t *rapid.T) Lease {
			return Lease{
				ID:          rapid.SampledFrom([]string{"l1", "l2", "l3", "l4"}).Draw(t, "id"),
				Participant: rapid.SampledFrom([]string{"v:a", "v:b", "a:s"}).Draw(t, "p"),
				TS:          Timestamp{Wall: rapid.Int64Range(1, 6).Draw(t, "w")},
				Expires:     rapid.SampledFrom([]int64{0, 5, 10, 20}).Draw(t, "exp"),
			}
		})
		p := NewPresence()
		for range rapid.IntRange(1, 30).Draw(t, "steps") {
			switch rapid.IntRange(0, 3).Draw(t, "op") {
			case 0:
				p.Apply(lease.Draw(t, "lease"))
			case 1:
				o := NewPresence()
				o.Apply(lease.Draw(t, "other"))
				p.Merge(o)
			case 2:
				p.Prune(rapid.Int64Range(0, 30).Draw(t, "now"), 0)
			case 3:
				p.Forget(rapid.SampledFrom([]string{"l1", "l2", "l3", "l4"}).Draw(t, "forget"))
			}
			c := p.Clone()
			for _, part := range []string{"v:a", "v:b", "a:s"} {
				for _, now := range []int64{0, 7, 15} {
					want := false
					for _, l := range p.leases {
						if l.Participant == part && l.Live(now) {
							want = true
						}
					}
					if p.IsOnline(part, now) != want || c.IsOnline(part, now) != want {
						t.Fatalf("IsOnline(%s, %d) = %v, clone %v, want %v; leases %v", part, now, p.IsOnline(part, now), c.IsOnline(part, now), want, p.leases)
					}
				}
			}
		}
	})
}
