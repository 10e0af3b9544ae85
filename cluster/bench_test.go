package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// BenchmarkApply measures control-plane writes through a 3-node cluster on
// loopback TCP with bbolt (fsync on every batch): ReportUsage commands with
// unique idempotency keys, applied on the leader or forwarded from a
// follower, by one writer or 64 concurrent ones. It reports writes per
// second, the apply latency seen by the caller, and the CPU time the
// process (all three nodes) spent per write, a figure the other work of a
// shared machine disturbs less than the others. The last case comes
// after requestWindow more writes, untimed: with the request table full, as
// it is on a cluster that has made that many writes, each apply also
// forgets the oldest record.
func BenchmarkApply(b *testing.B) {
	tc := newTestCluster(b, 3, nil)
	leader := tc.leader()
	mustApply(b, leader, CreateWorkspace{ID: "acme", Name: "Acme", Plan: "business", Created: t0})
	var seq atomic.Int64
	write := func(ctx context.Context, target *Cluster) error {
		cmd := ReportUsage{NodeID: "n1", Workspace: "acme", Period: "2026-11", Messages: 1, IdempotencyKey: fmt.Sprintf("b%d", seq.Add(1))}
		_, err := target.Apply(ctx, cmd)
		return err
	}
	filled := false
	for _, bc := range []struct {
		via     string
		writers int
		full    bool
	}{{"leader", 1, false}, {"leader", 64, false}, {"follower", 64, false}, {"leader", 64, true}} {
		name := fmt.Sprintf("via=%s/writers=%d", bc.via, bc.writers)
		if bc.full {
			name += "/table=full"
		}
		b.Run(name, func(b *testing.B) {
			target := tc.leader()
			if bc.via == "follower" {
				target = tc.followers()[0]
			}
			ctx := testContext(b)
			if bc.full && !filled {
				var fill atomic.Int64
				var wg sync.WaitGroup
				for range 64 {
					wg.Go(func() {
						for fill.Add(1) <= requestWindow {
							if err := write(ctx, target); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				filled = true
			}
			var next atomic.Int64
			var mu sync.Mutex
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			start, cpu := time.Now(), cpuTime(b)
			var wg sync.WaitGroup
			for range bc.writers {
				wg.Go(func() {
					var mine []time.Duration
					for next.Add(1) <= int64(b.N) {
						t := time.Now()
						if err := write(ctx, target); err != nil {
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
			elapsed, cpu := time.Since(start), cpuTime(b)-cpu
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
			b.ReportMetric(float64(cpu.Microseconds())/float64(len(lat)), "cpu-us/write")
		})
	}
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// usageEntry is the log entry of a ReportUsage with key i, in a Request
// made at base when request is set, bare otherwise.
func usageEntry(b *testing.B, i int, request bool, base uint64) []byte {
	var cmd Command = ReportUsage{NodeID: "n1", Workspace: "acme", Period: "2026-11", Messages: 1, IdempotencyKey: fmt.Sprintf("k%d", i)}
	if request {
		cmd = Request{ID: fmt.Sprintf("%032x", i), Base: base, Cmd: cmd}
	}
	data, err := EncodeCommand(cmd)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// fullFSM returns an FSM with workspace acme and, when full, requestWindow
// requests applied (SetPlan, which leaves no other record behind): a
// request table as full as it gets. It returns the last index applied.
func fullFSM(b *testing.B, full bool) (*fsm, uint64) {
	f := newFSM(newState(func() time.Time { return t0 }), discardLogger())
	idx := uint64(0)
	apply := func(cmd Command) {
		data, err := EncodeCommand(cmd)
		if err != nil {
			b.Fatal(err)
		}
		idx++
		if r := f.Apply(&raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: data}).(*applyResult); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	apply(CreateWorkspace{ID: "acme", Name: "Acme", Plan: "business", Created: t0})
	if full {
		for i := range requestWindow {
			// Made at the index before its own.
			apply(Request{ID: fmt.Sprintf("fill%028d", i), Base: idx, Cmd: SetPlan{Plan: Plan{Name: "gold", Seats: 5}}})
		}
	}
	return f, idx
}

// BenchmarkFSMApply measures the state machine alone applying ReportUsage
// entries, as every node does for every write: bare (as before requests)
// and in a Request, with an empty request table and a full one (where each
// apply also forgets the oldest record).
func BenchmarkFSMApply(b *testing.B) {
	for _, bc := range []struct {
		name          string
		request, full bool
	}{{"bare", false, false}, {"request/table=empty", true, false}, {"request/table=full", true, true}} {
		b.Run(bc.name, func(b *testing.B) {
			f, idx := fullFSM(b, bc.full)
			// The empty table starts again every requestWindow-1 entries,
			// before the first record would be forgotten.
			restart := b.N
			if !bc.full {
				restart = requestWindow - 1
			}
			entries := make([][]byte, b.N)
			for i := range entries {
				// Made at the index before its own.
				entries[i] = usageEntry(b, i, bc.request, idx+uint64(i%restart))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i, data := range entries {
				if i > 0 && i%restart == 0 {
					b.StopTimer()
					f, idx = fullFSM(b, false)
					b.StartTimer()
				}
				idx++
				if r := f.Apply(&raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: data}).(*applyResult); r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		})
	}
}

// BenchmarkSnapshot measures a snapshot of a state of a few records and
// an empty or full request table, in its two parts: Snapshot, which raft
// calls on the goroutine that applies entries (they wait for it), and
// Persist, which it calls on another while they go on.
func BenchmarkSnapshot(b *testing.B) {
	for _, full := range []bool{false, true} {
		f, _ := fullFSM(b, full)
		table := map[bool]string{false: "empty", true: "full"}[full]
		b.Run("table="+table+"/part=snapshot", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s, err := f.Snapshot()
				if err != nil {
					b.Fatal(err)
				}
				s.Release()
			}
		})
		b.Run("table="+table+"/part=persist", func(b *testing.B) {
			s, err := f.Snapshot()
			if err != nil {
				b.Fatal(err)
			}
			defer s.Release()
			var sink memSink
			b.ReportAllocs()
			for b.Loop() {
				sink.Reset()
				if err := s.Persist(&sink); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
