package cluster

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkApply measures control-plane writes through a 3-node cluster on
// loopback TCP with bbolt (fsync on every batch): ReportUsage commands with
// unique idempotency keys, applied on the leader or forwarded from a
// follower, by one writer or 64 concurrent ones. It reports writes per
// second and the apply latency seen by the caller.
func BenchmarkApply(b *testing.B) {
	tc := newTestCluster(b, 3, nil)
	leader := tc.leader()
	mustApply(b, leader, CreateWorkspace{ID: "acme", Name: "Acme", Plan: "business", Created: t0})
	var seq atomic.Int64
	for _, bc := range []struct {
		via     string
		writers int
	}{{"leader", 1}, {"leader", 64}, {"follower", 64}} {
		b.Run(fmt.Sprintf("via=%s/writers=%d", bc.via, bc.writers), func(b *testing.B) {
			target := tc.leader()
			if bc.via == "follower" {
				target = tc.followers()[0]
			}
			ctx := testContext(b)
			var next atomic.Int64
			var mu sync.Mutex
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range bc.writers {
				wg.Go(func() {
					var mine []time.Duration
					for next.Add(1) <= int64(b.N) {
						cmd := ReportUsage{NodeID: "n1", Workspace: "acme", Period: "2026-11", Messages: 1, IdempotencyKey: fmt.Sprintf("b%d", seq.Add(1))}
						t := time.Now()
						if _, err := target.Apply(ctx, cmd); err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, time.Since(t))
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if len(lat) == 0 {
				return
			}
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
			}
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "writes/s")
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
		})
	}
}
