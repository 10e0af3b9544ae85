package store

import (
	"bytes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"

	"parley/crdt"

	bolt "go.etcd.io/bbolt"
)

// Chunks (schema 9): the events a commit writes of one conversation are
// one record of the events bucket, a chunk, keyed by the conversation and
// the seq of its last event (ws|conv|lastSeq), instead of one record per
// event: one B-tree insert per conversation per commit rather than one per
// message. Chunks of a conversation never overlap (its seqs only grow, and
// each commit's are above the last's), so the chunk holding seq s is the
// first at or after key ws|conv|s, and a read from s on seeks there and
// skips the chunk's events below s.
//
// A chunk's value:
//
//	chunkV1
//	uvarint n, the number of events
//	n times: uvarint seq (the first absolute, then the difference from the
//	  event before), uvarint oseq, uvarint length of the origin then the
//	  origin (length 0: the event before's origin), a byte of flags
//	  (chunkState: the event holds its message's state, else it is a
//	  reference to the message's latest event, as in schema 6 to 8;
//	  chunkCreated: the event created its message), uvarint length of the
//	  message's ID then the ID, then for a state the uvarint length of the
//	  state (messageV1), for a reference the uvarint seq of the event that
//	  replaced it (itself perhaps a reference, to a later one)
//	the states of the events that are not references, one after the
//	  other in the events' order, sealed as one value (sealedV1) under the
//	  conversation's key with the bucket and the chunk's key as additional
//	  data.
//
// The message IDs in the chunks are the message index of their newest
// events (see msgIndex): the index records (bMsgs) are written in bulk,
// once a conversation's events not in them pass indexTail, not one per
// message.
//
// Stamps and references stay in the clear, as in schema 8; only states are
// sealed. An edit or deletion turns the message's previous latest event
// into a reference by rewriting its chunk (or the chunk being built, when
// it is of the same commit): the text it replaced leaves the file with the
// old chunk's page (scrub.go).
const (
	chunkV1      = 0x03
	chunkState   = 0x01
	chunkCreated = 0x02
)

// maxChunk bounds the events of one chunk: a conversation's run of
// writes in one commit longer than that is cut into several chunks, and
// the migration from schema 8 groups at most that many.
const maxChunk = 256

// chunkEntry is one event of a chunk: its seq and stamp, its message's
// ID, whether it created the message, and either a reference to the event
// that replaced it (ref, next) or its state at plain[off:off+n] of the
// chunk's unsealed states.
type chunkEntry struct {
	seq     uint64
	stamp   Stamp
	id      []byte // parsed: in the chunk's value
	sid     string // built by the writer: the ID, instead of id
	created bool
	ref     bool
	next    uint64 // ref: the event that replaced it
	off, n  int
}

// name is the entry's message ID.
func (e *chunkEntry) name() string {
	if e.sid != "" {
		return e.sid
	}
	return string(e.id)
}

// parseChunk decodes a chunk's head into ents (reused) and returns its
// sealed states.
func parseChunk(v []byte, ents []chunkEntry) ([]chunkEntry, []byte, error) {
	return parseChunkFrom(v, ents, "")
}

// parseChunkFrom is parseChunk with the origin most likely in the chunk
// (for no allocation when it is).
func parseChunkFrom(v []byte, ents []chunkEntry, origin string) ([]chunkEntry, []byte, error) {
	ents = ents[:0]
	if len(v) == 0 || v[0] != chunkV1 {
		return ents, nil, fmt.Errorf("event record is not a chunk: %w", ErrInvalid)
	}
	d := msgDecoder{b: v[1:]}
	n := d.uvarint()
	if n > uint64(len(v)) {
		return ents, nil, fmt.Errorf("chunk of %d events in %d bytes: %w", n, len(v), ErrInvalid)
	}
	var seq uint64
	off := 0
	for range n {
		e := chunkEntry{}
		seq += d.uvarint()
		e.seq = seq
		e.stamp.OSeq = d.uvarint()
		if o := d.bytes(); len(o) > 0 {
			if string(o) != origin {
				origin = string(o)
			}
		}
		e.stamp.Origin = origin
		flags := d.byte()
		e.created = flags&chunkCreated != 0
		e.id = d.bytes()
		if flags&chunkState != 0 {
			e.off, e.n = off, int(d.uvarint())
			off += e.n
		} else {
			e.ref, e.next = true, d.uvarint()
		}
		if d.bad {
			return ents, nil, fmt.Errorf("chunk: damaged entry: %w", ErrInvalid)
		}
		ents = append(ents, e)
	}
	return ents, d.b, nil
}

// appendChunkHead appends a chunk's head for ents to dst.
func appendChunkHead(dst []byte, ents []chunkEntry) []byte {
	dst = append(dst, chunkV1)
	dst = binary.AppendUvarint(dst, uint64(len(ents)))
	var prev uint64
	origin := ""
	for i := range ents {
		e := &ents[i]
		dst = binary.AppendUvarint(dst, e.seq-prev)
		prev = e.seq
		dst = binary.AppendUvarint(dst, e.stamp.OSeq)
		if i > 0 && e.stamp.Origin == origin {
			dst = append(dst, 0)
		} else {
			dst = binary.AppendUvarint(dst, uint64(len(e.stamp.Origin)))
			dst = append(dst, e.stamp.Origin...)
			origin = e.stamp.Origin
		}
		flags := byte(0)
		if !e.ref {
			flags |= chunkState
		}
		if e.created {
			flags |= chunkCreated
		}
		dst = append(dst, flags)
		if e.sid != "" {
			dst = binary.AppendUvarint(dst, uint64(len(e.sid)))
			dst = append(dst, e.sid...)
		} else {
			dst = binary.AppendUvarint(dst, uint64(len(e.id)))
			dst = append(dst, e.id...)
		}
		if e.ref {
			dst = binary.AppendUvarint(dst, e.next)
		} else {
			dst = binary.AppendUvarint(dst, uint64(e.n))
		}
	}
	return dst
}

// chunkStates returns the states of ents that are not references, from
// plain (where ents' offsets point), one after the other, in buf, and sets
// ents' offsets to their places in it.
func chunkStates(buf []byte, ents []chunkEntry, plain []byte) []byte {
	buf = buf[:0]
	for i := range ents {
		e := &ents[i]
		if e.ref {
			continue
		}
		s := plain[e.off : e.off+e.n]
		e.off = len(buf)
		buf = append(buf, s...)
	}
	return buf
}

// findEntry returns the index of the entry with seq in ents, or -1.
func findEntry(ents []chunkEntry, seq uint64) int {
	for i := range ents {
		if ents[i].seq == seq {
			return i
		}
	}
	return -1
}

// chunkBuild is the chunk a batch is building of one conversation.
type chunkBuild struct {
	ws, conv string
	a        cipher.AEAD
	ents     []chunkEntry
	plain    []byte // the states of ents, at their offsets
}

// addEvent adds a sequenced write's event to the chunk of its
// conversation being built, putting the chunk of another conversation
// first.
func (b *batch) addEvent(a cipher.AEAD, w *write) error {
	c := &b.chunk
	if len(c.ents) > 0 && (c.ws != w.ws || c.conv != w.conv || len(c.ents) >= maxChunk) {
		if err := b.putChunk(); err != nil {
			return err
		}
	}
	if len(c.ents) == 0 {
		c.ws, c.conv, c.a = w.ws, w.conv, a
	}
	off := len(c.plain)
	c.plain = appendMessage(c.plain, w.msg())
	c.ents = append(c.ents, chunkEntry{seq: w.rec.Last, stamp: w.stamp, sid: w.msg().ID, created: w.rec.Seq == w.rec.Last, off: off, n: len(c.plain) - off})
	return nil
}

// putChunk puts the chunk being built, if any.
func (b *batch) putChunk() error {
	c := &b.chunk
	if len(c.ents) == 0 {
		return nil
	}
	k := appendSeqKey(b.kbuf[:0], c.ws, c.conv, c.ents[len(c.ents)-1].seq)
	b.kbuf = k
	b.pbuf = chunkStates(b.pbuf, c.ents, c.plain)
	if err := b.bEvents.Put(k, b.sealChunk(c.a, k, c.ents, b.pbuf)); err != nil {
		return err
	}
	if err := b.indexed(c.ws, c.conv, len(c.ents)); err != nil {
		return err
	}
	clear(c.ents)
	c.ents, c.plain, c.a = c.ents[:0], c.plain[:0], nil
	return nil
}

// sealChunk is the value of a chunk at k of ents, whose states are plain,
// in the batch's arena.
func (b *batch) sealChunk(a cipher.AEAD, k []byte, ents []chunkEntry, plain []byte) []byte {
	b.hbuf = appendChunkHead(b.hbuf[:0], ents)
	b.abuf = append(append(append(b.abuf[:0], bEvents...), '/'), k...)
	v := append(b.alloc(len(b.hbuf) + 1 + nonceLen + len(plain) + a.Overhead())[:0], b.hbuf...)
	return v[:len(b.hbuf)+len(sealTo(v[len(b.hbuf):len(b.hbuf)], a, b.abuf, plain))]
}

// refEvent turns the event at seq of a conversation into a reference to
// the event next that replaced it: in the chunk being built, or by
// rewriting its chunk.
func (b *batch) refEvent(a cipher.AEAD, ws, conv string, seq, next uint64) error {
	if c := &b.chunk; len(c.ents) > 0 && c.ws == ws && c.conv == conv {
		if i := findEntry(c.ents, seq); i >= 0 {
			c.ents[i].ref, c.ents[i].next = true, next
			return nil
		}
	}
	k, v := b.bEvents.Cursor().Seek(seqKey(ws, conv, seq))
	if k == nil || len(k) < 8 || !bytes.Equal(k[:len(k)-8], prefix(ws, conv)) {
		return nil
	}
	ents, sealed, err := parseChunk(v, nil)
	if err != nil {
		return err
	}
	i := findEntry(ents, seq)
	if i < 0 || ents[i].ref {
		return nil
	}
	k = bytes.Clone(k)
	plain, err := unseal(a, bEvents, k, sealed)
	if err != nil {
		return err
	}
	for j := range ents {
		ents[j].id = bytes.Clone(ents[j].id) // v goes with the put
	}
	ents[i].ref, ents[i].next = true, next
	b.pbuf = chunkStates(b.pbuf, ents, plain)
	return b.bEvents.Put(k, b.sealChunk(a, k, ents, b.pbuf))
}

// evIter reads the events of one conversation's log in seq order, chunk
// by chunk, in a read (or the writer's) transaction.
type evIter struct {
	tx       *bolt.Tx
	keys     *sealer
	ws, conv string
	p        []byte // the conversation's key prefix
	cur      *bolt.Cursor
	k        []byte // the current chunk's key
	ents     []chunkEntry
	i        int
	sealed   []byte
	plain    []byte // the current chunk's states, once unsealed
	opened   bool
	a        cipher.AEAD
	origin   string // the last origin read
	err      error
}

func newEvIter(tx *bolt.Tx, keys *sealer, ws, conv string) *evIter {
	return &evIter{tx: tx, keys: keys, ws: ws, conv: conv, p: prefix(ws, conv), cur: tx.Bucket(bEvents).Cursor()}
}

// seek moves to the first event with a seq of at least seq and says
// whether there is one.
func (it *evIter) seek(seq uint64) bool {
	k, v := it.cur.Seek(binary.BigEndian.AppendUint64(append([]byte(nil), it.p...), seq))
	if !it.load(k, v) {
		return false
	}
	for it.i < len(it.ents) && it.ents[it.i].seq < seq {
		it.i++
	}
	if it.i == len(it.ents) {
		return it.next()
	}
	return true
}

// next moves to the next event and says whether there is one.
func (it *evIter) next() bool {
	if it.err != nil {
		return false
	}
	if it.i++; it.i < len(it.ents) {
		return true
	}
	k, v := it.cur.Next()
	return it.load(k, v)
}

// load makes the chunk at k the current one, at its first event.
func (it *evIter) load(k, v []byte) bool {
	it.i, it.ents, it.opened = 0, it.ents[:0], false
	if it.err != nil || k == nil || !bytes.HasPrefix(k, it.p) || len(k) != len(it.p)+8 {
		return false
	}
	it.k = k
	// The origin of the chunk before is most likely this one's: no
	// allocation for it then.
	it.ents, it.sealed, it.err = parseChunkFrom(v, it.ents, it.origin)
	if n := len(it.ents); n > 0 {
		it.origin = it.ents[n-1].stamp.Origin
	}
	if it.err == nil && len(it.ents) == 0 {
		return it.load(it.cur.Next())
	}
	return it.err == nil
}

// entry is the current event.
func (it *evIter) entry() *chunkEntry { return &it.ents[it.i] }

// seq and stamp are the current event's.
func (it *evIter) seq() uint64  { return it.ents[it.i].seq }
func (it *evIter) stamp() Stamp { return it.ents[it.i].stamp }

// key opens the conversation's key, once.
func (it *evIter) key() (cipher.AEAD, error) {
	if it.a == nil {
		var err error
		if it.a, err = it.keys.key(it.tx, it.ws, it.conv, false); err != nil {
			return nil, err
		}
	}
	return it.a, nil
}

// message is the message's state at the current event: for a reference,
// its latest state.
func (it *evIter) message() (crdt.Message, error) {
	a, err := it.key()
	if err != nil {
		return crdt.Message{}, err
	}
	e := it.entry()
	if e.ref {
		return stateAt(it.tx, a, it.ws, it.conv, e.next)
	}
	if !it.opened {
		if it.plain, err = unseal(a, bEvents, it.k, it.sealed); err != nil {
			return crdt.Message{}, err
		}
		it.opened = true
	}
	return decodeState(it.plain, e)
}

// event is the current event as published.
func (it *evIter) event() (Event, error) {
	m, err := it.message()
	if err != nil {
		return Event{}, err
	}
	e := it.entry()
	return Event{Kind: EventMessage, Workspace: it.ws, Conversation: it.conv, Seq: e.seq, Stamp: e.stamp, Message: m}, nil
}

func decodeState(plain []byte, e *chunkEntry) (crdt.Message, error) {
	if e.off+e.n > len(plain) {
		return crdt.Message{}, fmt.Errorf("chunk: state of seq %d beyond its states: %w", e.seq, ErrInvalid)
	}
	m, err := decodeMessage(plain[e.off : e.off+e.n])
	if err != nil {
		return crdt.Message{}, fmt.Errorf("decode event: %w", err)
	}
	return m, nil
}

// stateAt reads the state at the event seq of a conversation's log: a
// message's latest, or one that refers to it (through the events that
// replaced it in turn).
func stateAt(tx *bolt.Tx, a cipher.AEAD, ws, conv string, seq uint64) (crdt.Message, error) {
	p := prefix(ws, conv)
	cur := tx.Bucket(bEvents).Cursor()
	var ents []chunkEntry
	for hops := 0; ; hops++ {
		k, v := cur.Seek(binary.BigEndian.AppendUint64(p[:len(p):len(p)], seq))
		if k == nil || !bytes.HasPrefix(k, p) || len(k) != len(p)+8 {
			return crdt.Message{}, fmt.Errorf("event %d of %s: %w", seq, conv, ErrNotFound)
		}
		var sealed []byte
		var err error
		if ents, sealed, err = parseChunk(v, ents); err != nil {
			return crdt.Message{}, err
		}
		i := findEntry(ents, seq)
		switch {
		case i < 0:
			return crdt.Message{}, fmt.Errorf("event %d of %s: %w", seq, conv, ErrNotFound)
		case ents[i].ref && (ents[i].next <= seq || hops > 1<<20):
			return crdt.Message{}, fmt.Errorf("event %d of %s refers to %d: %w", seq, conv, ents[i].next, ErrInvalid)
		case ents[i].ref:
			seq = ents[i].next
			continue
		}
		plain, err := unseal(a, bEvents, k, sealed)
		if err != nil {
			return crdt.Message{}, err
		}
		return decodeState(plain, &ents[i])
	}
}

// chunkEvents (migration 9) groups each conversation's events, a record
// each in schema 8, into chunks of up to maxChunk events in seq order, each
// keyed by its last event and sealed again under the chunk's key. The
// records it replaces are in pages this transaction frees, which Open
// scrubs right after the migrations.
func chunkEvents(tx *bolt.Tx, env migrationEnv) error {
	bk, msgs := tx.Bucket(bEvents), tx.Bucket(bMsgs)
	cur := bk.Cursor()
	var keys [][]byte
	var ents []chunkEntry
	var plain []byte
	for k, v := cur.First(); k != nil; {
		if len(v) > 0 && v[0] == chunkV1 {
			k, v = cur.Next()
			continue
		}
		if len(k) < 9 {
			return fmt.Errorf("event key %q: %w", k, ErrInvalid)
		}
		pair := bytes.Clone(k[:len(k)-8])
		ws, conv, ok := splitPair(pair[:len(pair)-1])
		if !ok {
			return fmt.Errorf("event key %q: %w", k, ErrInvalid)
		}
		a, err := env.keys.key(tx, ws, conv, true)
		if err != nil {
			return err
		}
		keys, ents, plain = keys[:0], ents[:0], plain[:0]
		for ; k != nil && len(k) == len(pair)+8 && bytes.HasPrefix(k, pair) && len(ents) < maxChunk; k, v = cur.Next() {
			if len(v) > 0 && v[0] == chunkV1 {
				break
			}
			st, rest, err := splitStamped(v)
			if err != nil {
				return fmt.Errorf("event %q: %w", k, err)
			}
			e := chunkEntry{seq: u64(k[len(pair):]), stamp: st}
			if len(rest) > 0 && rest[0] == eventRef {
				e.ref, e.id = true, bytes.Clone(rest[1:])
			} else {
				p, err := unseal(a, bEvents, k, rest)
				if err != nil {
					return fmt.Errorf("event %q: %w", k, err)
				}
				m, err := decodeMessage(p)
				if err != nil {
					return fmt.Errorf("event %q: %w", k, err)
				}
				e.id = []byte(m.ID)
				e.off, e.n = len(plain), len(p)
				plain = append(plain, p...)
			}
			// A message without a record (files of schema 1 and 2 may
			// hold one) is taken as created by its state; a reference
			// to it stays one that does not read, as before.
			rec, ok := decodeMsgRecord(msgs.Get(key(ws, conv, string(e.id))))
			e.created, e.next = rec.Seq == e.seq || (!ok && !e.ref), rec.Last
			keys = append(keys, bytes.Clone(k))
			ents = append(ents, e)
		}
		last := keys[len(keys)-1]
		for _, old := range keys[:len(keys)-1] {
			if err := bk.Delete(old); err != nil {
				return err
			}
		}
		val := appendChunkHead(nil, ents)
		val = append(val, sealWith(a, aad(bEvents, last), plain)...)
		if err := bk.Put(last, val); err != nil {
			return err
		}
		// The message index holds every message of the file: its
		// conversation's events are indexed through the last.
		if err := msgs.Put(key(ws, conv), bytes.Clone(last[len(pair):])); err != nil {
			return err
		}
		// The cursor moves on from the chunk: the bucket changed under it.
		cur.Seek(last)
		k, v = cur.Next()
	}
	return nil
}
