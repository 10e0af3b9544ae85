package embedder

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
)

// Cosine is the cosine similarity of a and b, in [-1, 1]; 0 when either is
// the zero vector. a and b must have the same length (it panics otherwise).
// For unit vectors, as Embed returns, it equals their dot product.
func Cosine(a, b []float32) float32 {
	if len(a) != len(b) {
		panic(fmt.Sprintf("embedder.Cosine: lengths %d and %d differ", len(a), len(b)))
	}
	if len(a) == 0 {
		return 0
	}
	ab, aa, bb := dot(a, b), dot(a, a), dot(b, b)
	if aa == 0 || bb == 0 {
		return 0
	}
	c := float64(ab) / math.Sqrt(float64(aa)*float64(bb))
	return float32(max(-1, min(1, c)))
}

// dotGo is the portable inner product of a and b[:len(a)], with eight
// independent sums so the loop is not one long dependency chain.
func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		x, y := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += x[0] * y[0]
		s1 += x[1] * y[1]
		s2 += x[2] * y[2]
		s3 += x[3] * y[3]
		s4 += x[4] * y[4]
		s5 += x[5] * y[5]
		s6 += x[6] * y[6]
		s7 += x[7] * y[7]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

// Hit is one search result: an ID and its cosine similarity to the query.
type Hit struct {
	ID    string
	Score float32
}

// Index is an in-memory exact top-k cosine index over fixed-size vectors,
// meant for one workspace (up to ~100,000 vectors). Vectors are stored
// normalised in one contiguous []float32, so a search is a linear scan of
// SIMD dot products (AVX2/FMA on amd64) feeding a bounded min-heap, split
// across cores for large indexes. An Index is safe for concurrent use.
type Index struct {
	mu   sync.RWMutex
	dim  int
	ids  []string
	vecs []float32 // len(ids)*dim
	pos  map[string]int
}

// NewIndex returns an empty index of dim-dimensional vectors.
func NewIndex(dim int) *Index {
	if dim <= 0 {
		panic("embedder.NewIndex: dim must be positive")
	}
	return &Index{dim: dim, pos: make(map[string]int)}
}

// Dim is the vector size.
func (x *Index) Dim() int { return x.dim }

// Len is the number of vectors held.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.ids)
}

// Add stores a normalised copy of vec under id, replacing any vector the id
// had. It fails when len(vec) is not Dim.
func (x *Index) Add(id string, vec []float32) error {
	if len(vec) != x.dim {
		return fmt.Errorf("embedder.Index: vector of %d dimensions, index has %d", len(vec), x.dim)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	i, ok := x.pos[id]
	if !ok {
		i = len(x.ids)
		x.ids = append(x.ids, id)
		x.vecs = append(x.vecs, vec...)
		x.pos[id] = i
	} else {
		copy(x.vecs[i*x.dim:(i+1)*x.dim], vec)
	}
	normalize(x.vecs[i*x.dim : (i+1)*x.dim])
	return nil
}

// Remove deletes id's vector (moving the last vector into its slot) and
// reports whether it was there.
func (x *Index) Remove(id string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	i, ok := x.pos[id]
	if !ok {
		return false
	}
	last := len(x.ids) - 1
	if i != last {
		x.ids[i] = x.ids[last]
		copy(x.vecs[i*x.dim:(i+1)*x.dim], x.vecs[last*x.dim:])
		x.pos[x.ids[i]] = i
	}
	x.ids[last] = ""
	x.ids = x.ids[:last]
	x.vecs = x.vecs[:last*x.dim]
	delete(x.pos, id)
	return true
}

// Vector returns a copy of id's stored (normalised) vector.
func (x *Index) Vector(id string) ([]float32, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, ok := x.pos[id]
	if !ok {
		return nil, false
	}
	return slices.Clone(x.vecs[i*x.dim : (i+1)*x.dim]), true
}

// searchChunk is the fewest vectors worth a goroutine of their own.
const searchChunk = 8192

// Search returns the k stored vectors most similar to q, best first (ties
// by ID). It returns nil when len(q) is not Dim or k < 1.
func (x *Index) Search(q []float32, k int) []Hit {
	if len(q) != x.dim || k < 1 {
		return nil
	}
	qn := slices.Clone(q)
	normalize(qn)
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := len(x.ids)
	k = min(k, n)
	if k == 0 {
		return []Hit{}
	}
	parts := min(runtime.GOMAXPROCS(0), n/searchChunk)
	var top topK
	if parts <= 1 {
		top = topK{k: k, h: make([]cand, 0, k)}
		top.scan(qn, x.vecs, x.dim, 0)
	} else {
		tops := make([]topK, parts)
		var wg sync.WaitGroup
		per := (n + parts - 1) / parts
		for p := range tops {
			lo, hi := p*per, min((p+1)*per, n)
			tops[p] = topK{k: k, h: make([]cand, 0, k)}
			wg.Go(func() { tops[p].scan(qn, x.vecs[lo*x.dim:hi*x.dim], x.dim, lo) })
		}
		wg.Wait()
		top = tops[0]
		for _, t := range tops[1:] {
			for _, c := range t.h {
				top.push(c)
			}
		}
	}
	hits := make([]Hit, len(top.h))
	for i, c := range top.h {
		hits[i] = Hit{ID: x.ids[c.i], Score: c.score}
	}
	slices.SortFunc(hits, func(a, b Hit) int {
		if a.Score != b.Score {
			if a.Score > b.Score {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	return hits
}

type cand struct {
	score float32
	i     int32
}

// topK keeps the k best candidates in a min-heap on score.
type topK struct {
	k int
	h []cand
}

func (t *topK) scan(q, vecs []float32, dim, base int) {
	n := len(vecs) / dim
	for j := range n {
		s := dot(q, vecs[j*dim:(j+1)*dim])
		if len(t.h) < t.k || s > t.h[0].score {
			t.push(cand{s, int32(base + j)})
		}
	}
}

func (t *topK) push(c cand) {
	h := t.h
	if len(h) < t.k {
		h = append(h, c)
		for i := len(h) - 1; i > 0; { // sift up
			p := (i - 1) / 2
			if h[p].score <= h[i].score {
				break
			}
			h[p], h[i] = h[i], h[p]
			i = p
		}
		t.h = h
		return
	}
	if c.score <= h[0].score {
		return
	}
	h[0] = c
	for i := 0; ; { // sift down
		l, m := 2*i+1, i
		if l < len(h) && h[l].score < h[m].score {
			m = l
		}
		if r := l + 1; r < len(h) && h[r].score < h[m].score {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
