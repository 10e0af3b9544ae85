package crdt

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"parley/ident"
)

// Vector is how far each origin's events of one conversation have got: for
// every origin node, the highest oseq such that all of its events up to it
// are present. Zero for an origin means none. It is a version vector:
// Merge is its join. Nodes compare and repair replicas by it, and clients
// carry its String form to resume where they were (docs/protocol.md).
type Vector map[string]uint64

// Covers says whether the event (origin, oseq) is within v.
func (v Vector) Covers(origin string, oseq uint64) bool { return v[origin] >= oseq }

// Merge raises v to w where w is ahead.
func (v Vector) Merge(w Vector) {
	for o, n := range w {
		if n > v[o] {
			v[o] = n
		}
	}
}

// Clone copies v.
func (v Vector) Clone() Vector { return maps.Clone(v) }

// Behind lists, for each origin where v is behind w, the first oseq v
// lacks: what to send to the holder of v.
func (v Vector) Behind(w Vector) map[string]uint64 {
	out := map[string]uint64{}
	for o, n := range w {
		if v[o] < n {
			out[o] = v[o] + 1
		}
	}
	return out
}

// Equal says whether v and w cover the same events.
func (v Vector) Equal(w Vector) bool {
	for o, n := range v {
		if w[o] != n {
			return false
		}
	}
	for o, n := range w {
		if v[o] != n {
			return false
		}
	}
	return true
}

// maxOrigins bounds a vector: origins are nodes, and a conversation sees
// few of them.
const maxOrigins = 256

// String encodes v compactly and canonically ("n1.17,n2.5", origins sorted,
// zero entries left out), as clients carry it.
func (v Vector) String() string {
	origins := slices.Sorted(maps.Keys(v))
	var b strings.Builder
	for _, o := range origins {
		if v[o] == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(o)
		b.WriteByte('.')
		b.WriteString(strconv.FormatUint(v[o], 10))
	}
	return b.String()
}

// ErrBadVector is returned for a vector that does not parse.
var ErrBadVector = errors.New("bad vector")

// ParseVector decodes String's form. Origins are node IDs, with "~" and an
// incarnation after a crash (ident.ValidOrigin); each appears once; the
// empty string is the empty vector.
func ParseVector(s string) (Vector, error) {
	v := Vector{}
	if s == "" {
		return v, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > maxOrigins {
		return nil, fmt.Errorf("%w: more than %d origins", ErrBadVector, maxOrigins)
	}
	for _, p := range parts {
		o, n, ok := strings.Cut(p, ".")
		if !ok || !ident.ValidOrigin(o) {
			return nil, fmt.Errorf("%w: %q", ErrBadVector, p)
		}
		x, err := strconv.ParseUint(n, 10, 64)
		if err != nil || x == 0 || n[0] == '0' {
			return nil, fmt.Errorf("%w: %q", ErrBadVector, p)
		}
		if _, dup := v[o]; dup {
			return nil, fmt.Errorf("%w: origin %q twice", ErrBadVector, o)
		}
		v[o] = x
	}
	return v, nil
}
