package membership

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
)

// Replicas places a key (a conversation) on rf of the members by rendezvous
// (highest random weight) hashing: each member scores hash(member, key) and
// the rf highest win. Only members of region hold the key when region is
// set (a pinned workspace); all members when it is empty. Every node with
// the same view computes the same list, the first of which is the key's
// preferred replica; when a member dies only the keys it held move, each to
// the next member in its own order.
func Replicas(members []Member, key, region string, rf int) []Member {
	type scored struct {
		m     Member
		score uint64
	}
	var cand []scored
	for _, m := range members {
		if region != "" && m.Region != region {
			continue
		}
		cand = append(cand, scored{m, weight(m.ID, key)})
	}
	slices.SortFunc(cand, func(a, b scored) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return cmpString(a.m.ID, b.m.ID)
	})
	if len(cand) > rf {
		cand = cand[:rf]
	}
	out := make([]Member, len(cand))
	for i, c := range cand {
		out[i] = c.m
	}
	return out
}

// weight is a member's score for a key. SHA-256 is more than needed, but
// fast enough for a handful of members and free of bias between them.
func weight(member, key string) uint64 {
	h := sha256.New()
	h.Write([]byte(member))
	h.Write([]byte{0})
	h.Write([]byte(key))
	var sum [32]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}
