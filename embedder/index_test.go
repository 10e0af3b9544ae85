package embedder

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

func randVec(r *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func dot64(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func TestDotMatchesScalar(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 200 {
		a, b := randVec(r, n), randVec(r, n+3)
		want := dot64(a, b)
		for name, got := range map[string]float32{"dot": dot(a, b), "dotGo": dotGo(a, b)} {
			if math.Abs(float64(got)-want) > 1e-4*(1+math.Abs(want)) {
				t.Fatalf("n=%d %s = %v, want %v", n, name, got, want)
			}
		}
	}
}

func TestCosine(t *testing.T) {
	for _, c := range []struct {
		a, b []float32
		want float32
	}{
		{[]float32{1, 0}, []float32{1, 0}, 1},
		{[]float32{1, 0}, []float32{0, 3}, 0},
		{[]float32{1, 1}, []float32{-2, -2}, -1},
		{[]float32{3, 4}, []float32{4, 3}, 24.0 / 25},
		{[]float32{0, 0}, []float32{1, 2}, 0},
		{nil, nil, 0},
	} {
		if got := Cosine(c.a, c.b); math.Abs(float64(got-c.want)) > 1e-6 {
			t.Errorf("Cosine(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("Cosine of different lengths did not panic")
		}
	}()
	Cosine([]float32{1}, []float32{1, 2})
}

// bruteForce is the reference top-k: float64 cosine, sorted, ties by ID.
func bruteForce(ids []string, vecs [][]float32, q []float32, k int) []Hit {
	hits := make([]Hit, len(ids))
	qn := math.Sqrt(dot64(q, q))
	for i, v := range vecs {
		hits[i] = Hit{ids[i], float32(dot64(q, v) / (qn * math.Sqrt(dot64(v, v))))}
	}
	slices.SortFunc(hits, func(a, b Hit) int {
		if a.Score != b.Score {
			return cmp.Compare(b.Score, a.Score)
		}
		return strings.Compare(a.ID, b.ID)
	})
	return hits[:min(k, len(hits))]
}

func checkTopK(t *testing.T, got, want []Hit) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d hits, want %d", len(got), len(want))
	}
	for i := range want {
		// The same IDs in the same order; scores agree to float32 rounding.
		if got[i].ID != want[i].ID && math.Abs(float64(got[i].Score-want[i].Score)) > 1e-6 {
			t.Fatalf("hit %d: got %v, want %v", i, got[i], want[i])
		}
		if math.Abs(float64(got[i].Score-want[i].Score)) > 1e-5 {
			t.Fatalf("hit %d score %v, want %v", i, got[i].Score, want[i].Score)
		}
	}
}

func TestIndexMatchesBruteForce(t *testing.T) {
	for _, c := range []struct{ n, dim int }{{1, 384}, {100, 7}, {5000, 384}, {2*searchChunk + 100, 384}, {2 * searchChunk, 37}} {
		t.Run(fmt.Sprintf("n=%d,dim=%d", c.n, c.dim), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(c.n), uint64(c.dim)))
			x := NewIndex(c.dim)
			ids := make([]string, c.n)
			vecs := make([][]float32, c.n)
			for i := range ids {
				ids[i], vecs[i] = fmt.Sprintf("conv-%d", i), randVec(r, c.dim)
				if err := x.Add(ids[i], vecs[i]); err != nil {
					t.Fatal(err)
				}
			}
			if x.Len() != c.n {
				t.Fatalf("Len = %d", x.Len())
			}
			ks := []int{1, 10, 100}
			if c.n <= 5000 {
				ks = append(ks, c.n+5) // more than stored: all of them, ranked
			}
			for _, k := range ks {
				for range 2 {
					q := randVec(r, c.dim)
					checkTopK(t, x.Search(q, k), bruteForce(ids, vecs, q, k))
				}
			}
			// A stored vector finds itself first.
			if h := x.Search(vecs[c.n/2], 1); h[0].ID != ids[c.n/2] || h[0].Score < 0.9999 {
				t.Fatalf("self search: %v", h)
			}
		})
	}
}

func TestIndexAddReplaceRemove(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	const dim = 16
	x := NewIndex(dim)
	if err := x.Add("bad", make([]float32, dim+1)); err == nil {
		t.Fatal("Add of a wrong-size vector succeeded")
	}
	if h := x.Search(randVec(r, dim), 5); len(h) != 0 {
		t.Fatalf("empty index returned %v", h)
	}
	if x.Search(randVec(r, dim+1), 5) != nil || x.Search(randVec(r, dim), 0) != nil {
		t.Fatal("invalid query returned hits")
	}
	live := map[string][]float32{}
	for step := range 3000 {
		id := fmt.Sprintf("c%d", r.IntN(300))
		switch r.IntN(3) {
		case 0:
			if x.Remove(id) != (live[id] != nil) {
				t.Fatalf("step %d: Remove(%s) disagrees", step, id)
			}
			delete(live, id)
		default:
			v := randVec(r, dim)
			if err := x.Add(id, v); err != nil {
				t.Fatal(err)
			}
			live[id] = v
		}
	}
	if x.Len() != len(live) {
		t.Fatalf("Len = %d, want %d", x.Len(), len(live))
	}
	ids := make([]string, 0, len(live))
	for id := range live {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	vecs := make([][]float32, len(ids))
	for i, id := range ids {
		vecs[i] = live[id]
		got, ok := x.Vector(id)
		if !ok || Cosine(got, live[id]) < 0.99999 {
			t.Fatalf("Vector(%s) = %v, %v", id, got, ok)
		}
	}
	q := randVec(r, dim)
	checkTopK(t, x.Search(q, 20), bruteForce(ids, vecs, q, 20))
}

func TestIndexConcurrent(t *testing.T) {
	x := NewIndex(32)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range 500 {
				id := fmt.Sprintf("w%d-%d", w, i%50)
				if i%5 == 4 {
					x.Remove(id)
				} else {
					x.Add(id, randVec(r, 32))
				}
				x.Search(randVec(r, 32), 5)
			}
		})
	}
	wg.Wait()
}

func benchIndex(b *testing.B, n int) {
	r := rand.New(rand.NewPCG(42, uint64(n)))
	x := NewIndex(384)
	for i := range n {
		x.Add(fmt.Sprintf("conv-%d", i), randVec(r, 384))
	}
	q := randVec(r, 384)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if h := x.Search(q, 10); len(h) != 10 {
			b.Fatal(len(h))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/search")
}

func BenchmarkIndexSearchTop10(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) { benchIndex(b, n) })
	}
}
