package crdt_test

import (
	"fmt"
	"testing"

	"parley/crdt"
)

var sizes = []int{1_000, 10_000}

// benchLog returns a log of n messages and, separately, a replica that saw
// the same messages, edited every other one and added n/10 new ones, so that
// merging it moves about half the state.
func benchLog(n int) (base, other *crdt.Log) {
	base, other = crdt.NewLog(), crdt.NewLog()
	for i := range n {
		m := crdt.NewMessage(fmt.Sprintf("m%06d", i), "v:a", "visitor", "Ada", "hello there", ts(int64(1000+i), 0, "a"))
		base.Apply(m)
		if i%2 == 0 {
			m = m.Edit("edited", ts(int64(1_000_000+i), 0, "b"))
		}
		other.Apply(m)
	}
	for i := range n / 10 {
		other.Apply(crdt.NewMessage(fmt.Sprintf("n%06d", i), "a:s", "agent", "Sam", "new", ts(int64(2_000_000+i), 0, "b")))
	}
	return base, other
}

func BenchmarkLogApply(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			l, _ := benchLog(n)
			msgs := l.Messages()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// Each delta is a fresh edit, so every Apply moves the state.
				m := msgs[i%n]
				if _, changed := l.Apply(m.Edit("edit", ts(int64(5_000_000+i), 0, "c"))); !changed {
					b.Fatal("edit did not apply")
				}
			}
		})
	}
}

func BenchmarkLogMerge(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			base, other := benchLog(n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				l := base.Clone()
				b.StartTimer()
				l.Merge(other)
			}
		})
	}
}

func BenchmarkMergeMessage(b *testing.B) {
	base := crdt.NewMessage("m1", "v:a", "visitor", "Ada", "hello", ts(1000, 0, "a"))
	x := base.Edit("left", ts(2000, 0, "a"))
	y := base.Edit("right", ts(2000, 0, "b")).Delete(ts(2500, 0, "b"))
	b.ReportAllocs()
	var sink crdt.Message
	for b.Loop() {
		sink = crdt.MergeMessage(x, y)
	}
	if !sink.IsDeleted() {
		b.Fatal("unexpected merge result")
	}
}
