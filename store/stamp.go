package store

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"parley/crdt"

	bolt "go.etcd.io/bbolt"
)

// Stamp names an event the same way on every replica: the origin, the node
// (incarnation) that accepted the change, and OSeq, its place among that
// origin's changes of the conversation, from 1 without gaps. A replica's own
// seq orders its log; stamps let a client resume on another replica and let
// replicas tell each other what they lack (docs/replication.md).
type Stamp struct {
	Origin string `json:"origin"`
	OSeq   uint64 `json:"oseq"`
}

// originName is this store's origin for its life: the node ID, with the seq
// epoch after a "~" once an unclean stop started a new epoch. A killed node
// may have published oseqs it never made durable; under a new name its
// counters start again at 1, and no oseq a client saw is ever given to
// another event. Node IDs never contain "~".
func originName(node string, epoch uint64) string {
	if epoch == 0 {
		return node
	}
	return node + "~" + strconv.FormatUint(epoch, 10)
}

func (st Stamp) encode() []byte {
	return append(putU64(st.OSeq), st.Origin...)
}

func decodeStamp(v []byte) (Stamp, bool) {
	if len(v) < 9 {
		return Stamp{}, false
	}
	return Stamp{OSeq: binary.BigEndian.Uint64(v[:8]), Origin: string(v[8:])}, true
}

// stampedV1 starts an event's value from schema 8: the event's stamp
// (uvarint oseq, uvarint length of the origin, the origin), then the rest
// of the value: the state at the event sealed (sealedV1), or a reference
// to the message's latest event (eventRef). Before, stamps had an index of
// their own, one more entry to write per event.
const stampedV1 = 0x02

// appendStamped appends the head of an event's value that carries st.
func appendStamped(dst []byte, st Stamp) []byte {
	dst = append(dst, stampedV1)
	dst = binary.AppendUvarint(dst, st.OSeq)
	dst = binary.AppendUvarint(dst, uint64(len(st.Origin)))
	return append(dst, st.Origin...)
}

// stampedLen is the length of appendStamped's output for st.
func stampedLen(st Stamp) int {
	var b [binary.MaxVarintLen64]byte
	return 1 + len(binary.AppendUvarint(b[:0], st.OSeq)) + len(binary.AppendUvarint(b[:0], uint64(len(st.Origin)))) + len(st.Origin)
}

// splitStamped splits an event's value into its stamp and the rest.
func splitStamped(v []byte) (Stamp, []byte, error) {
	if len(v) == 0 || v[0] != stampedV1 {
		return Stamp{}, nil, fmt.Errorf("event value without its stamp: %w", ErrInvalid)
	}
	oseq, n := binary.Uvarint(v[1:])
	if n <= 0 {
		return Stamp{}, nil, fmt.Errorf("event stamp: bad oseq: %w", ErrInvalid)
	}
	rest := v[1+n:]
	l, n := binary.Uvarint(rest)
	if n <= 0 || uint64(len(rest)-n) < l {
		return Stamp{}, nil, fmt.Errorf("event stamp: bad origin: %w", ErrInvalid)
	}
	return Stamp{OSeq: oseq, Origin: string(rest[n : n+int(l)])}, rest[n+int(l):], nil
}

// eventStamp is the stamp of an event's value, zero for a damaged one.
func eventStamp(v []byte) Stamp {
	st, _, _ := splitStamped(v)
	return st
}

// compactEvents (migration 8) moves every event's stamp from the stamps
// index into the event's value (stampedV1), drops the index, and encodes
// every message state in the binary form (messageV1) instead of JSON,
// sealed again under its conversation's key.
func compactEvents(tx *bolt.Tx, env migrationEnv) error {
	stamps := tx.Bucket(bStamps)
	if stamps == nil {
		return nil
	}
	err := rewrite(tx.Bucket(bEvents), func(k, v []byte) ([]byte, error) {
		if len(v) > 0 && v[0] == stampedV1 {
			return nil, nil
		}
		st, _ := decodeStamp(stamps.Get(k))
		out := appendStamped(nil, st)
		if len(v) == 0 || v[0] != sealedV1 || len(k) < 9 {
			return append(out, v...), nil // a reference (eventRef)
		}
		ws, conv, ok := splitPair(k[:len(k)-9])
		if !ok {
			return nil, fmt.Errorf("event key %q: %w", k, ErrInvalid)
		}
		a, err := env.keys.key(tx, ws, conv, true)
		if err != nil {
			return nil, err
		}
		plain, err := unseal(a, bEvents, k, v)
		if err != nil {
			return nil, err
		}
		var m crdt.Message
		if err := json.Unmarshal(plain, &m); err != nil {
			return nil, fmt.Errorf("decode event %q: %w", k, err)
		}
		return append(out, seal(a, bEvents, k, encodeMessage(&m))...), nil
	})
	if err != nil {
		return err
	}
	return tx.DeleteBucket(bStamps)
}

// stampEvery spaces the entries of the stamps' index (bByStamp): from
// schema 8 the writer puts one for an origin's oseq 1, 1+stampEvery,
// 1+2*stampEvery..., where the oseq's event changed this store (no entry
// otherwise), rather than one per event. An origin's events are in oseq
// order in a log, so an entry is a place to start reading the log from
// (stampFloor), and the stamp in each event's value says the rest.
const stampEvery = 16

// stampFloor is a seq at or before that of every event of origin with an
// oseq from oseq on in a conversation's log: the event of the latest entry
// of the stamps' index at or before oseq, or 0 (the log's start).
func stampFloor(tx *bolt.Tx, ws, conv, origin string, oseq uint64) uint64 {
	k := byStampKey(ws, conv, Stamp{Origin: origin, OSeq: oseq})
	p := k[:len(k)-8]
	cur := tx.Bucket(bByStamp).Cursor()
	sk, sv := cur.Seek(k)
	if sk != nil && bytes.Equal(sk, k) {
		return u64(sv)
	}
	if sk == nil {
		sk, sv = cur.Last()
	} else {
		sk, sv = cur.Prev()
	}
	if sk != nil && bytes.HasPrefix(sk, p) && len(sk) == len(k) {
		return u64(sv)
	}
	return 0
}

func byStampKey(ws, conv string, st Stamp) []byte {
	return binary.BigEndian.AppendUint64(prefix(ws, conv, st.Origin), st.OSeq)
}

// putStamp records that the event at seq carries st, and advances st's
// origin, as schema 3 to 7 kept stamps (migration 3; the writer keeps the
// stamp in the event's value from schema 8, batch.write).
func putStamp(tx *bolt.Tx, ws, conv string, seq uint64, st Stamp) error {
	if err := tx.Bucket(bStamps).Put(seqKey(ws, conv, seq), st.encode()); err != nil {
		return err
	}
	if err := tx.Bucket(bByStamp).Put(byStampKey(ws, conv, st), putU64(seq)); err != nil {
		return err
	}
	return advanceOrigin(tx, ws, conv, st)
}

// advanceOrigin moves an origin's frontier to st.OSeq if that is ahead.
func advanceOrigin(tx *bolt.Tx, ws, conv string, st Stamp) error {
	k := key(ws, conv, st.Origin)
	b := tx.Bucket(bOrigins)
	if u64(b.Get(k)) >= st.OSeq {
		return nil
	}
	return b.Put(k, putU64(st.OSeq))
}

// stampExisting (migration 3) stamps the events written before stamps
// existed as this node's, in seq order, and records each conversation's
// frontier.
func stampExisting(tx *bolt.Tx, env migrationEnv) error {
	for _, b := range [][]byte{bStamps, bByStamp, bOrigins} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	var convs []Conversation
	err := tx.Bucket(bConvs).ForEach(func(_, v []byte) error {
		var c Conversation
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("decode conversation: %w", err)
		}
		convs = append(convs, c)
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range convs {
		p := prefix(c.Workspace, c.ID)
		cur := tx.Bucket(bEvents).Cursor()
		var seqs []uint64
		for k, _ := cur.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = cur.Next() {
			seqs = append(seqs, u64(k[len(p):]))
		}
		for i, seq := range seqs {
			if err := putStamp(tx, c.Workspace, c.ID, seq, Stamp{Origin: env.origin, OSeq: uint64(i + 1)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// originHead is how far an origin has got in a conversation, durably.
func originHead(tx *bolt.Tx, ws, conv, origin string) uint64 {
	return u64(tx.Bucket(bOrigins).Get(key(ws, conv, origin)))
}

// Frontier returns, for every origin of a conversation, the highest oseq
// such that all of its events up to it are durable here.
func (s *Store) Frontier(ws, conv string) (map[string]uint64, error) {
	out := map[string]uint64{}
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := hasConversation(tx, ws, conv); err != nil {
			return err
		}
		p := prefix(ws, conv)
		cur := tx.Bucket(bOrigins).Cursor()
		for k, v := cur.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = cur.Next() {
			out[string(k[len(p):])] = u64(v)
		}
		return nil
	})
	return out, err
}

// EventsSince returns up to limit events of a conversation that the vector
// (origin -> oseq, as a client or a replica has them) does not cover, in
// this node's seq order, and whether more follow. It is how a client that
// was served by another replica resumes here: it gets exactly the events it
// lacks, whatever this node's seqs are.
func (s *Store) EventsSince(ws, conv string, have map[string]uint64, limit int) ([]Event, bool, error) {
	covered := func(st Stamp) bool { return st.OSeq <= have[st.Origin] }
	var out []Event
	more := false
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := hasConversation(tx, ws, conv); err != nil {
			return err
		}
		// Where to start: at or before the first event, in seq order, of
		// the first uncovered oseq of each origin.
		start, any := uint64(0), false
		p := prefix(ws, conv)
		oc := tx.Bucket(bOrigins).Cursor()
		for k, v := oc.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = oc.Next() {
			origin := string(k[len(p):])
			if u64(v) <= have[origin] {
				continue
			}
			if seq := stampFloor(tx, ws, conv, origin, have[origin]+1); !any || seq < start {
				start, any = seq, true
			}
		}
		if !any {
			return nil
		}
		it := newEvIter(tx, s.keys, ws, conv)
		for ok := it.seek(start); ok; ok = it.next() {
			if covered(it.stamp()) {
				continue
			}
			if len(out) == limit {
				more = true
				return nil
			}
			e, err := it.event()
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return it.err
	})
	if err != nil {
		return nil, false, err
	}
	var pending []Event
	for _, e := range s.pending.after(ws, conv, 0) {
		if !covered(e.Stamp) {
			pending = append(pending, e)
		}
	}
	if len(pending) == 0 {
		return out, more, nil
	}
	merged, cut := mergeEvents(out, pending, limit)
	return merged, more || cut, nil
}

// OriginEvents returns up to limit events of one origin in a conversation
// from oseq from on, in oseq order, published ones not yet durable
// included: what a replica that lacks them is sent. Only events that
// changed this store have one here; for the store's own origin that is
// every event.
func (s *Store) OriginEvents(ws, conv, origin string, from uint64, limit int) ([]Event, error) {
	var out []Event
	err := s.db.View(func(tx *bolt.Tx) error {
		it := newEvIter(tx, s.keys, ws, conv)
		// An origin's events are in oseq order in the log: from the
		// lower bound on, they are those of its stamps.
		for ok := it.seek(stampFloor(tx, ws, conv, origin, from)); ok && len(out) < limit; ok = it.next() {
			if st := it.stamp(); st.Origin != origin || st.OSeq < from {
				continue
			}
			e, err := it.event()
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return it.err
	})
	if err != nil {
		return nil, err
	}
	have := map[uint64]bool{}
	for _, e := range out {
		have[e.Stamp.OSeq] = true
	}
	for _, e := range s.pending.after(ws, conv, 0) {
		if e.Stamp.Origin == origin && e.Stamp.OSeq >= from && !have[e.Stamp.OSeq] && len(out) < limit {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Event) int { return cmp.Compare(a.Stamp.OSeq, b.Stamp.OSeq) })
	return out, nil
}

// Frontiers calls fn with the frontier of every conversation of this store
// that has one, for anti-entropy digests.
func (s *Store) Frontiers(fn func(ws, conv string, f map[string]uint64)) error {
	return s.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bOrigins).Cursor()
		var ws, conv string
		f := map[string]uint64{}
		flush := func() {
			if len(f) > 0 {
				fn(ws, conv, f)
				f = map[string]uint64{}
			}
		}
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			parts := bytes.SplitN(k, []byte{sep}, 3)
			if len(parts) != 3 {
				continue
			}
			if string(parts[0]) != ws || string(parts[1]) != conv {
				flush()
				ws, conv = string(parts[0]), string(parts[1])
			}
			f[string(parts[2])] = u64(v)
		}
		flush()
		return nil
	})
}

// AdvanceOrigin moves an origin's frontier in a conversation to oseq after
// a replica sent every event of that origin up to it that changed its
// state (anti-entropy): the oseqs in between changed nothing there, and the
// events this store got cover their effect.
func (s *Store) AdvanceOrigin(ctx context.Context, ws, conv, origin string, oseq uint64) error {
	return s.submit(ctx, func(b *batch) error {
		if _, err := b.conv(ws, conv); err != nil {
			return err
		}
		b.advance(ws, conv, Stamp{Origin: origin, OSeq: oseq})
		return nil
	})
}

// StateDigest hashes a conversation's messages as this replica holds them
// (every message's current state, by ID): replicas that converged have the
// same digest, whatever their logs' order.
func (s *Store) StateDigest(ws, conv string) (string, int, error) {
	states := map[string]crdt.Message{}
	after := uint64(0)
	for {
		evs, more, err := s.Events(ws, conv, after, 1000)
		if err != nil {
			return "", 0, err
		}
		for _, e := range evs {
			if cur, ok := states[e.Message.ID]; ok {
				states[e.Message.ID] = crdt.MergeMessage(cur, e.Message)
			} else {
				states[e.Message.ID] = e.Message
			}
			after = e.Seq
		}
		if !more {
			break
		}
	}
	ids := slices.Sorted(maps.Keys(states))
	h := sha256.New()
	for _, id := range ids {
		b, err := json.Marshal(states[id])
		if err != nil {
			return "", 0, err
		}
		h.Write(b)
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil)[:16]), len(ids), nil
}

// VectorAt is what a reader who saw this node's log of a conversation up to
// seq has seen, as a vector: for each origin the highest oseq among the
// events up to seq (the prefix property of the log makes that enough).
func (s *Store) VectorAt(ws, conv string, seq uint64) (map[string]uint64, error) {
	out := map[string]uint64{}
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := hasConversation(tx, ws, conv); err != nil {
			return err
		}
		it := newEvIter(tx, s.keys, ws, conv)
		for ok := it.seek(0); ok && it.seq() <= seq; ok = it.next() {
			if st := it.stamp(); st.OSeq > out[st.Origin] {
				out[st.Origin] = st.OSeq
			}
		}
		return it.err
	})
	return out, err
}

// SeqCovered is the inverse: the highest seq of this node's log of a
// conversation such that every event up to it is covered by the vector.
func (s *Store) SeqCovered(ws, conv string, have map[string]uint64) (uint64, error) {
	var seq uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := hasConversation(tx, ws, conv); err != nil {
			return err
		}
		it := newEvIter(tx, s.keys, ws, conv)
		for ok := it.seek(0); ok; ok = it.next() {
			st := it.stamp()
			if st.OSeq == 0 || st.OSeq > have[st.Origin] {
				return nil
			}
			seq = it.seq()
		}
		return it.err
	})
	return seq, err
}
