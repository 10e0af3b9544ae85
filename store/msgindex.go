package store

import (
	"slices"

	bolt "go.etcd.io/bbolt"
)

// The message index (bMsgs, ws|conv|msgID -> msgRecord) says where each
// message of a conversation sits in its log: what a resent message's
// deduplication and an edit look up. From schema 9 it is written in bulk:
// a conversation's newest events are indexed by the message IDs in their
// chunks (chunk.go), and the writer merges them into bMsgs once more than
// indexTail of them are outside it (Config.indexTail), sorted, in one commit; the key ws|conv
// of bMsgs holds the seq through which bMsgs holds every message of the
// conversation (its watermark). A lookup reads the record and the events
// after the watermark, at most about Config.indexTail of them (4096 by
// default) in a conversation of up to twice as many, at most 4 × indexTail
// in a longer one (tailLimit): the sequencer's filters (idfilter.go) spare
// a new message's send even that.
const defaultIndexTail = 4096

// tailLimit is how many of a conversation's events may be outside its
// message index before the writer merges them in: indexTail, or half the
// events the index already covers (the watermark's seq within its epoch
// counts them), up to 4 × indexTail. A merge rewrites every page of the
// index its records land among, and with IDs spread as clients make
// them that is most of the conversation's pages: merged every indexTail
// events, a conversation of 29,000 messages rewrote its whole index each
// time (issue 16, docs/benchmarks.md); merged at half, a record is
// rewritten about twice per doubling until the cap. A lookup then reads
// at most 4 × indexTail events after the watermark.
func tailLimit(indexTail int, watermark uint64) int {
	covered := int(watermark & (1<<32 - 1))
	return max(indexTail, min(covered/2, 4*indexTail))
}

// indexedThrough is the watermark of a conversation's message records:
// every message of its events up to it has its record in bMsgs.
func indexedThrough(tx *bolt.Tx, ws, conv string) uint64 {
	var kb [128]byte
	return u64(tx.Bucket(bMsgs).Get(appendKey(kb[:0], ws, conv)))
}

// msgLookup returns the record of message id of a conversation, and
// whether it is stored: its record, updated by the events after the
// watermark.
func msgLookup(tx *bolt.Tx, ws, conv, id string) (msgRecord, bool, error) {
	var kb [128]byte
	rec, found := decodeMsgRecord(tx.Bucket(bMsgs).Get(appendKey(kb[:0], ws, conv, id)))
	it := newEvIter(tx, nil, ws, conv)
	for ok := it.seek(indexedThrough(tx, ws, conv) + 1); ok; ok = it.next() {
		e := it.entry()
		if string(e.id) != id {
			continue
		}
		if e.created {
			rec.Seq, found = e.seq, true
		}
		rec.Last = e.seq
	}
	return rec, found, it.err
}

// tailIDs calls fn with the ID of every message created after a
// conversation's watermark.
func tailIDs(tx *bolt.Tx, ws, conv string, fn func(id []byte)) error {
	it := newEvIter(tx, nil, ws, conv)
	for ok := it.seek(indexedThrough(tx, ws, conv) + 1); ok; ok = it.next() {
		if e := it.entry(); e.created {
			fn(e.id)
		}
	}
	return it.err
}

// indexed counts n more events of a conversation outside the message
// index, after its chunk is put, and merges them into it past
// Config.indexTail.
// The writer keeps the counts across commits (Store.tails); one it does
// not have is counted from the file. A count that a rolled-back commit
// left off only moves the next merge: lookups read whatever events are
// after the watermark.
func (b *batch) indexed(ws, conv string, n int) error {
	k := convKey{ws, conv}
	t, ok := b.tails[k]
	if ok {
		t += n
	} else {
		it := newEvIter(b.tx, nil, ws, conv)
		for ok := it.seek(indexedThrough(b.tx, ws, conv) + 1); ok; ok = it.next() {
			t++
		}
		if it.err != nil {
			return it.err
		}
		if len(b.tails) >= maxConvCache {
			clear(b.tails)
		}
	}
	if t > b.indexTail && t > tailLimit(b.indexTail, indexedThrough(b.tx, ws, conv)) {
		if err := b.mergeIndex(ws, conv); err != nil {
			return err
		}
		t = 0
	}
	b.tails[k] = t
	return nil
}

// mergeIndex writes the records of the messages of a conversation's
// events after its watermark into bMsgs, in key order, and moves the
// watermark to its last event.
func (b *batch) mergeIndex(ws, conv string) error {
	msgs := b.bMsgs
	it := newEvIter(b.tx, nil, ws, conv)
	recs := map[string]msgRecord{}
	var last uint64
	for ok := it.seek(indexedThrough(b.tx, ws, conv) + 1); ok; ok = it.next() {
		e := it.entry()
		id := string(e.id)
		r, seen := recs[id]
		if !seen && !e.created {
			r, _ = decodeMsgRecord(msgs.Get(key(ws, conv, id)))
		}
		if e.created {
			r.Seq = e.seq
		}
		r.Last = e.seq
		recs[id] = r
		last = e.seq
	}
	if it.err != nil || last == 0 {
		return it.err
	}
	ids := make([]string, 0, len(recs))
	for id := range recs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		kk := appendKey(b.kbuf[:0], ws, conv, id)
		b.kbuf = kk
		if err := msgs.Put(kk, recs[id].appendTo(b.alloc(16)[:0])); err != nil {
			return err
		}
	}
	kk := appendKey(b.kbuf[:0], ws, conv)
	b.kbuf = kk
	return msgs.Put(kk, putU64(last))
}
