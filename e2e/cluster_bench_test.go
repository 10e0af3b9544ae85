package e2e

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkClusterAdminWrites measures control-plane writes end to end on 3
// node processes (built without the race detector) on loopback: billing
// events posted to the admin API of the leader or of a follower (which
// forwards to the leader over the signed internal API), by 1 or 16
// concurrent writers. Each is acknowledged once applied on the leader (Raft
// log fsynced on a quorum) and on the node that took it. Reported: writes/s
// and the latency the caller sees.
//
//	go test -run '^$' -bench ClusterAdminWrites -benchtime 2000x ./e2e/
func BenchmarkClusterAdminWrites(b *testing.B) {
	bin, err := benchBinary()
	if err != nil {
		b.Fatal(err)
	}
	tc := startClusterBin(b, bin, 3, "-log-level", "warn")
	mustAPI(b, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "business"}, nil)
	var seq atomic.Int64
	for _, via := range []string{"leader", "follower"} {
		for _, writers := range []int{1, 16} {
			b.Run(fmt.Sprintf("via=%s/writers=%d", via, writers), func(b *testing.B) {
				target := tc.leader(b)
				if via == "follower" {
					for _, nd := range tc.nodes {
						if nd != target {
							target = nd
							break
						}
					}
				}
				var next atomic.Int64
				var mu sync.Mutex
				var lat []time.Duration
				b.ResetTimer()
				start := time.Now()
				var wg sync.WaitGroup
				for range writers {
					wg.Go(func() {
						var mine []time.Duration
						for next.Add(1) <= int64(b.N) {
							t0 := time.Now()
							if st, code := api(target, "POST", "/v1/admin/workspaces/acme/billing", tc.root,
								map[string]any{"idempotency_key": fmt.Sprintf("b-%d", seq.Add(1)), "kind": "charge", "amount": 1}, nil); st != 200 {
								b.Errorf("write: %d %s", st, code)
								return
							}
							mine = append(mine, time.Since(t0))
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
				ms := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
				b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "writes/s")
				b.ReportMetric(ms(0.5), "p50-ms")
				b.ReportMetric(ms(0.99), "p99-ms")
			})
		}
	}
}
