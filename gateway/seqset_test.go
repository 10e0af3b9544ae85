package gateway

import (
	"testing"

	"pgregory.net/rapid"
)

// TestSeqSetMatchesAMap checks the range set against a plain set.
func TestSeqSetMatchesAMap(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		var s seqSet
		ref := map[uint64]bool{}
		for _, q := range rapid.SliceOf(rapid.Uint64Range(1, 40)).Draw(t, "adds") {
			s.add(q)
			ref[q] = true
		}
		for q := uint64(0); q <= 41; q++ {
			if s.has(q) != ref[q] {
				t.Fatalf("has(%d) = %v, want %v; ranges %v", q, s.has(q), ref[q], s.r)
			}
		}
		for i := 1; i < len(s.r); i++ {
			if s.r[i-1][1]+1 >= s.r[i][0] {
				t.Fatalf("ranges not disjoint and merged: %v", s.r)
			}
		}
	})
}
