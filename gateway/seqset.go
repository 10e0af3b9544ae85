package gateway

// seqSet is the set of seqs of one conversation already written to a
// connection, as sorted disjoint ranges: a connection usually holds one
// range, or two while a resume fills the history below live events.
type seqSet struct{ r [][2]uint64 }

func (s *seqSet) has(q uint64) bool {
	for _, r := range s.r {
		if q >= r[0] && q <= r[1] {
			return true
		}
	}
	return false
}

func (s *seqSet) add(q uint64) {
	for i := range s.r {
		switch {
		case q >= s.r[i][0] && q <= s.r[i][1]:
			return
		case q+1 == s.r[i][0]:
			s.r[i][0] = q
			s.merge(i - 1)
			return
		case q == s.r[i][1]+1:
			s.r[i][1] = q
			s.merge(i)
			return
		case q < s.r[i][0]:
			s.r = append(s.r, [2]uint64{})
			copy(s.r[i+1:], s.r[i:])
			s.r[i] = [2]uint64{q, q}
			return
		}
	}
	s.r = append(s.r, [2]uint64{q, q})
}

// merge joins range i with range i+1 when they touch.
func (s *seqSet) merge(i int) {
	if i < 0 || i+1 >= len(s.r) || s.r[i][1]+1 < s.r[i+1][0] {
		return
	}
	s.r[i][1] = s.r[i+1][1]
	s.r = append(s.r[:i+1], s.r[i+2:]...)
}
