package store

import (
	"bytes"
	"hash/maphash"

	bolt "go.etcd.io/bbolt"
)

// idFilter is a Bloom filter of the IDs of a conversation's messages: the
// IDs with a record in the file or a write in flight, and perhaps a few
// more (of messages erased, or whose write failed). "Absent" is certain,
// "present" only likely: a send whose ID the filter does not hold is not a
// duplicate, and is decided without reading the file (sequencer.hotSend);
// any other answer reads the file, as before.
//
// The sequencer keeps a conversation's filter up to date under the
// conversation's lock: it builds it from the file in a read transaction
// begun under that lock, with the IDs then in flight (buildFilter), and
// adds the ID of every write it decides (appendEvent). A filter dropped
// from the cache (too much memory, or too many IDs for its size) is built
// again at the next change that reads the file.
type idFilter struct {
	bits []uint64
	n    int // IDs added
	max  int // IDs it was sized for: past them, it is dropped and rebuilt
	// full: the conversation has too many messages to filter; the filter
	// holds every ID.
	full bool
}

const (
	// filterBitsPerID and filterHashes give 0.003 % (half full) to 0.09 %
	// (full) false "present", each costing a read of the file: from
	// schema 9 a scan of the conversation's events after its message
	// index's watermark (msgindex.go), up to 4096 of them (16,384 in a
	// long conversation: tailLimit). (12 bits and 4 hashes, 0.05 to
	// 0.7 %, had a node at 60,000 messages a second spend 7 % of its CPU
	// in those scans: issue 16, docs/benchmarks.md.)
	filterBitsPerID = 16
	filterHashes    = 6
	// filterMinIDs is the smallest filter's capacity (512 bytes).
	filterMinIDs = 256
	// filterMaxIDs bounds the conversations filtered: one with more
	// messages is read from the file for every change (a scan of them all
	// at each rebuild would stall its senders).
	filterMaxIDs = 1 << 16
	// filterShardBytes bounds the filters' memory per shard of the
	// sequencer (64 shards: 32 MiB in all); past it the shard's filters
	// are dropped, to be rebuilt as their conversations are used.
	filterShardBytes = 512 << 10
)

var filterSeed = maphash.MakeSeed()

// idHash is the hash of a message ID that the filters use.
func idHash(id string) uint64 { return maphash.String(filterSeed, id) }

func newIDFilter(ids int) *idFilter {
	max := max(filterMinIDs, 2*ids)
	return &idFilter{bits: make([]uint64, (max*filterBitsPerID+63)/64), max: max}
}

// bit is the i-th bit of h, by double hashing.
func (f *idFilter) bit(h uint64, i int) (word int, mask uint64) {
	m := uint64(len(f.bits)) * 64
	h1, h2 := h, h>>32|1
	p := (h1 + uint64(i)*h2) % m
	return int(p / 64), 1 << (p % 64)
}

func (f *idFilter) add(h uint64) {
	if f.full {
		return
	}
	for i := range filterHashes {
		w, m := f.bit(h, i)
		f.bits[w] |= m
	}
	f.n++
}

// mayHave is false only for an ID never added.
func (f *idFilter) mayHave(h uint64) bool {
	if f.full {
		return true
	}
	for i := range filterHashes {
		w, m := f.bit(h, i)
		if f.bits[w]&m == 0 {
			return false
		}
	}
	return true
}

func (f *idFilter) size() int { return len(f.bits) * 8 }

// filter returns the cached filter of a conversation, or nil. Caller holds
// cs.mu.
func (q *sequencer) filter(cs *convState) *idFilter {
	sh := q.shard(cs.key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.filters[cs.key]
}

// setFilter caches f as the conversation's filter, or drops the cached one
// (f nil). Caller holds cs.mu.
func (q *sequencer) setFilter(cs *convState, f *idFilter) {
	sh := q.shard(cs.key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old := sh.filters[cs.key]; old != nil {
		sh.filterBytes -= old.size()
		delete(sh.filters, cs.key)
	}
	if f == nil {
		return
	}
	if sh.filterBytes+f.size() > filterShardBytes {
		clear(sh.filters)
		sh.filterBytes = 0
	}
	sh.filters[cs.key] = f
	sh.filterBytes += f.size()
}

// dropFilters forgets every cached filter (for tests: the next change of
// each conversation builds its filter again).
func (q *sequencer) dropFilters() {
	for i := range q.shards {
		sh := &q.shards[i]
		sh.mu.Lock()
		clear(sh.filters)
		sh.filterBytes = 0
		sh.mu.Unlock()
	}
}

// filterFor returns the conversation's filter, built from tx if it is not
// cached (a full one if the conversation has too many messages). tx
// began under cs.mu, which the caller holds: a write committed after tx
// began is still in flight (written takes cs.mu), so cs.msgs holds its ID.
func (q *sequencer) filterFor(tx *bolt.Tx, cs *convState) *idFilter {
	if f := q.filter(cs); f != nil {
		return f
	}
	p := prefix(cs.key.ws, cs.key.conv)
	var ids [][]byte
	c := tx.Bucket(bMsgs).Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		if len(ids) == filterMaxIDs {
			f := &idFilter{full: true}
			q.setFilter(cs, f)
			return f
		}
		ids = append(ids, k[len(p):])
	}
	// The messages after the index's watermark are in the chunks
	// (msgindex.go).
	if err := tailIDs(tx, cs.key.ws, cs.key.conv, func(id []byte) { ids = append(ids, id) }); err != nil || len(ids) > filterMaxIDs {
		f := &idFilter{full: true} // every ID "maybe": read from the file
		q.setFilter(cs, f)
		return f
	}
	f := newIDFilter(len(ids) + len(cs.msgs))
	for _, id := range ids {
		f.add(maphash.Bytes(filterSeed, id))
	}
	for id := range cs.msgs {
		f.add(idHash(id))
	}
	q.setFilter(cs, f)
	return f
}

// added records a decided write's message ID in the conversation's filter,
// if it has one; a filter past its size is dropped, to be rebuilt larger.
// Caller holds cs.mu.
func (q *sequencer) added(cs *convState, id string) {
	f := q.filter(cs)
	if f == nil {
		return
	}
	f.add(idHash(id))
	if !f.full && f.n > f.max {
		q.setFilter(cs, nil)
	}
}

// hotSend says whether a send can be decided without reading the file: its
// conversation has writes in flight (so load would read nothing), its ID is
// not among them, and the conversation's filter does not hold it (so the
// file has no record of it). Caller holds cs.mu.
func (q *sequencer) hotSend(cs *convState, ch *Change) bool {
	if ch.Kind != Send || cs.erasing > 0 || cs.inflight == 0 {
		return false
	}
	if _, ok := cs.msgs[ch.Message.ID]; ok {
		return false
	}
	f := q.filter(cs)
	return f != nil && !f.mayHave(idHash(ch.Message.ID))
}
