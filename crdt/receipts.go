package crdt

import "maps"

// Receipts holds each participant's read position in a conversation as a max
// register: a receipt only moves forward, so a stale or replayed one is
// harmless. Zero means "nothing read" and is never stored, which keeps Equal
// a plain map comparison. The zero value is empty; not safe for concurrent use.
type Receipts struct {
	seqs map[string]uint64
}

// NewReceipts returns an empty set of receipts.
func NewReceipts() *Receipts { return &Receipts{seqs: make(map[string]uint64)} }

// Set raises participant's receipt to seq. A lower or equal seq changes
// nothing and reports false.
func (r *Receipts) Set(participant string, seq uint64) (changed bool) {
	if seq <= r.seqs[participant] {
		return false
	}
	if r.seqs == nil {
		r.seqs = make(map[string]uint64)
	}
	r.seqs[participant] = seq
	return true
}

// Get returns participant's receipt, 0 if none.
func (r *Receipts) Get(participant string) uint64 {
	if r == nil {
		return 0
	}
	return r.seqs[participant]
}

// Merge joins o into r, keeping the higher receipt per participant.
func (r *Receipts) Merge(o *Receipts) {
	if o == nil {
		return
	}
	for p, s := range o.seqs {
		r.Set(p, s)
	}
}

// All returns a copy of every receipt.
func (r *Receipts) All() map[string]uint64 {
	out := make(map[string]uint64, r.len())
	if r != nil {
		maps.Copy(out, r.seqs)
	}
	return out
}

// Clone returns an independent copy of r.
func (r *Receipts) Clone() *Receipts { return &Receipts{seqs: r.All()} }

// Equal reports whether r and o hold the same receipts. A nil Receipts equals
// an empty one.
func (r *Receipts) Equal(o *Receipts) bool {
	if r.len() != o.len() {
		return false
	}
	return r.len() == 0 || maps.Equal(r.seqs, o.seqs)
}

func (r *Receipts) len() int {
	if r == nil {
		return 0
	}
	return len(r.seqs)
}
