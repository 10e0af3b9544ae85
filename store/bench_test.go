package store

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkApply measures durable sends per second through the group commit
// with many concurrent senders (as many connections would be), spread over
// 64 conversations, against the same store forced to one fsync per message.
func BenchmarkApply(b *testing.B) {
	for _, bc := range []struct {
		name     string
		maxBatch int
		par      int
	}{
		{"group-commit/senders=512", 0, 256},
		{"group-commit/senders=2048", 0, 1024},
		{"one-fsync-per-message/senders=512", 1, 256},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var commits, ops, nanos atomic.Int64
			s := openTest(b, Config{MaxBatch: bc.maxBatch, Observer: observerFunc(func(d time.Duration, n int, _ error) {
				commits.Add(1)
				ops.Add(int64(n))
				nanos.Add(int64(d))
			})})
			ctx := context.Background()
			const convs = 64
			for i := range convs {
				if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: fmt.Sprintf("c%02d", i), Owner: "v:a"}); err != nil {
					b.Fatal(err)
				}
			}
			body := strings.Repeat("x", 120)
			var n atomic.Int64
			b.SetParallelism(bc.par) // GOMAXPROCS × par goroutines
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					ch := Change{Kind: Send, Workspace: "ws1", Conversation: fmt.Sprintf("c%02d", i%convs), Participant: "v:a",
						Message: msg(fmt.Sprintf("m-%012d", i), "v:a", body, i)}
					if _, err := s.Apply(ctx, ch); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			if c := commits.Load(); c > 0 {
				b.ReportMetric(float64(ops.Load())/float64(c), "ops/commit")
				b.ReportMetric(float64(nanos.Load())/float64(c)/1e6, "ms/commit")
			}
		})
	}
}
