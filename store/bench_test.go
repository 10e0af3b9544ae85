package store

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkApply measures durable sends per second through the group commit
// with many concurrent senders (as many connections would be), spread over
// 64 conversations, against the same store forced to one fsync per message.
// msgs/s is what the senders got; writer-msgs/s is the writer's own
// ceiling: changes committed per second of commits (the writer busy from
// taking a batch to its fsync), whatever the senders and the machine's
// other work left it. The harness builds each change with one allocation
// (its ID), so allocs/op is the store's.
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
			names := make([]string, convs)
			for i := range convs {
				names[i] = fmt.Sprintf("c%02d", i)
				if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: names[i], Owner: "v:a"}); err != nil {
					b.Fatal(err)
				}
			}
			base := msg("m-000000000000", "v:a", strings.Repeat("x", 120), 1)
			var n atomic.Int64
			commits.Store(0)
			ops.Store(0)
			nanos.Store(0)
			b.SetParallelism(bc.par) // GOMAXPROCS × par goroutines
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var id [24]byte
				for pb.Next() {
					i := n.Add(1)
					m := base
					m.ID = string(strconv.AppendInt(append(id[:0], "m-"...), i, 10))
					m.Created.Wall, m.BodyTS.Wall = i, i
					ch := Change{Kind: Send, Workspace: "ws1", Conversation: names[i%convs], Participant: "v:a", Message: m}
					if _, err := s.Apply(ctx, ch); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(cpuTime()-cpu0)/1e3/float64(b.N), "cpu-µs/msg")
			if c := commits.Load(); c > 0 {
				b.ReportMetric(float64(ops.Load())/float64(c), "ops/commit")
				b.ReportMetric(float64(nanos.Load())/float64(c)/1e6, "ms/commit")
				b.ReportMetric(float64(ops.Load())/(float64(nanos.Load())/1e9), "writer-msgs/s")
			}
		})
	}
}

// cpuTime is the CPU time (user and system) the process has used: per
// message, a measure of the work that the machine's other load does not
// change as much as it changes the wall clock.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEvents measures reads of a conversation's events by many
// concurrent readers (every read registers its transaction for the
// scrubber).
func BenchmarkEvents(b *testing.B) {
	s := openTest(b, Config{})
	const convs = 64
	for i := range convs {
		if err := fill(s, "ws1", fmt.Sprintf("c%02d", i), "body", 20); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	b.SetParallelism(64)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, _, err := s.Events("ws1", fmt.Sprintf("c%02d", i%convs), 0, 20); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkScrub measures a scrub after one conversation of a store of
// many is erased: how long the writer is held (pause-ms), against the size
// of the file. "idle" scrubs with nothing to zero: the scan alone, as at
// every Open.
func BenchmarkScrub(b *testing.B) {
	for _, convs := range []int{10_000, 100_000} {
		for _, erase := range []bool{true, false} {
			name := fmt.Sprintf("convs=%d/erase-one", convs)
			if !erase {
				name = fmt.Sprintf("convs=%d/idle", convs)
			}
			b.Run(name, func(b *testing.B) {
				rec := &scrubRecorder{}
				s := openTest(b, Config{ScrubAfter: -1, Observer: rec})
				fillMany(b, s, convs)
				if err := s.Scrub(context.Background()); err != nil {
					b.Fatal(err)
				}
				rec.reset()
				b.ResetTimer()
				for i := range b.N {
					if erase {
						b.StopTimer()
						if err := s.EraseConversation(context.Background(), "ws1", fmt.Sprintf("c%07d", i%convs)); err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
					}
					if err := s.Scrub(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				st, err := os.Stat(s.cfg.Path)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(st.Size())/(1<<20), "file-MB")
				b.ReportMetric(rec.pauseMillis()/float64(b.N), "pause-ms")
				b.ReportMetric(float64(rec.zeroed())/float64(b.N), "pages/op")
			})
		}
	}
}

// fillMany creates convs conversations of ws1 with 4 messages each, from
// 256 concurrent writers.
func fillMany(b *testing.B, s *Store, convs int) {
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 256)
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(convs) {
					return
				}
				conv := fmt.Sprintf("c%07d", i)
				if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: conv, Owner: fmt.Sprintf("v:%d", i)}); err != nil {
					errc <- err
					return
				}
				for m := range 4 {
					body := fmt.Sprintf("message %d of %s %s", m, conv, strings.Repeat("y", 80))
					if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: conv, Participant: fmt.Sprintf("v:%d", i),
						Message: msg(fmt.Sprintf("m%d", m), fmt.Sprintf("v:%d", i), body, int64(m+1))}); err != nil {
						errc <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		b.Fatal(err)
	}
}

// BenchmarkSmallRead measures the smallest read (one key of the meta
// bucket) from concurrent readers: the cost of a read transaction.
func BenchmarkSmallRead(b *testing.B) {
	s := openTest(b, Config{})
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Epoch()
		}
	})
}

// BenchmarkSeal measures what sealing adds per record (seal.go): sealing
// and opening one message event of a 120-byte body, and unsealing a
// conversation's key from the file as a read does when the writer has not
// cached it.
func BenchmarkSeal(b *testing.B) {
	k, err := newSealer(make([]byte, KEKSize))
	if err != nil {
		b.Fatal(err)
	}
	a, err := newAEAD(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	enc, _ := marshal(msg("m-000000000001", "v:a", strings.Repeat("x", 120), 1))
	kk := seqKey("ws1", "c01", 1)
	b.Run("seal-event", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		for range b.N {
			seal(a, bEvents, kk, enc)
		}
	})
	sealed := seal(a, bEvents, kk, enc)
	b.Run("open-event", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		for range b.N {
			if _, err := unseal(a, bEvents, kk, sealed); err != nil {
				b.Fatal(err)
			}
		}
	})
	sealedKey := sealWith(k.kek, aad(bKeys, key("ws1", "c01")), make([]byte, 32))
	b.Run("unseal-key", func(b *testing.B) {
		for range b.N {
			raw, err := openWith(k.kek, aad(bKeys, key("ws1", "c01")), sealedKey)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := newAEAD(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}
