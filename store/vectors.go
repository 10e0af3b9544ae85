package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"
)

// Conversation embeddings are derived data: the node computes them from the
// messages in the background, stores them here so that a restart need not
// compute them again, and erases them with their conversation. Each carries
// the conversation head it was computed at, so the node can tell a stale one.

// MaxVectorDim bounds the size of a stored embedding (all-MiniLM-L6-v2 has
// 384 dimensions).
const MaxVectorDim = 4096

// encodeVector is head (8 bytes, big-endian) then float32s, little-endian.
func encodeVector(head uint64, vec []float32) []byte {
	b := make([]byte, 8, 8+4*len(vec))
	binary.BigEndian.PutUint64(b, head)
	for _, x := range vec {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// decodeVector is the inverse of encodeVector. It refuses a record that is
// not a whole number of float32s, empty, over MaxVectorDim, or not finite,
// since a vector read back from a damaged file must never reach a search.
func decodeVector(b []byte) (uint64, []float32, error) {
	if len(b) < 12 || (len(b)-8)%4 != 0 || (len(b)-8)/4 > MaxVectorDim {
		return 0, nil, fmt.Errorf("vector record of %d bytes: %w", len(b), ErrInvalid)
	}
	head := binary.BigEndian.Uint64(b)
	vec := make([]float32, (len(b)-8)/4)
	for i := range vec {
		x := math.Float32frombits(binary.LittleEndian.Uint32(b[8+4*i:]))
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return 0, nil, fmt.Errorf("vector record: element %d is not finite: %w", i, ErrInvalid)
		}
		vec[i] = x
	}
	return head, vec, nil
}

// VectorPut is one conversation embedding to store, computed at Head.
type VectorPut struct {
	Workspace, Conversation string
	Head                    uint64
	Vector                  []float32
}

// PutVector durably stores the embedding of a conversation computed at head.
// It stores nothing when the conversation is gone (ErrNotFound: an erasure
// won the race against the worker) or when the stored embedding is from a
// later head (stored false).
func (s *Store) PutVector(ctx context.Context, ws, conv string, head uint64, vec []float32) (stored bool, err error) {
	res, err := s.PutVectors(ctx, []VectorPut{{ws, conv, head, vec}})
	if err != nil {
		return false, err
	}
	if res[0] == nil {
		return true, nil
	}
	if errors.Is(res[0], errStale) {
		return false, nil
	}
	return false, res[0]
}

// errStale marks a vector older than the one stored.
var errStale = errors.New("a later vector is stored")

// PutVectors durably stores a batch of embeddings in one transaction, so a
// batch costs one fsync. It returns, per item, nil when stored, an error
// wrapping ErrNotFound when the conversation is gone, or one wrapping
// ErrInvalid for a malformed item; an older vector than the stored one is
// skipped (its result says so, without ErrNotFound or ErrInvalid).
func (s *Store) PutVectors(ctx context.Context, puts []VectorPut) ([]error, error) {
	res := make([]error, len(puts))
	enc := make([][]byte, len(puts))
	for i, p := range puts {
		if p.Workspace == "" || p.Conversation == "" || len(p.Vector) == 0 || len(p.Vector) > MaxVectorDim {
			res[i] = fmt.Errorf("put vector: workspace, conversation and 1..%d dimensions required: %w", MaxVectorDim, ErrInvalid)
			continue
		}
		enc[i] = encodeVector(p.Head, p.Vector)
	}
	err := s.submit(ctx, func(b *batch) error {
		bk := b.tx.Bucket(bVectors)
		for i, p := range puts {
			if enc[i] == nil {
				continue
			}
			if _, err := b.conv(p.Workspace, p.Conversation); err != nil {
				res[i] = err
				continue
			}
			a, err := b.keys.key(b.tx, p.Workspace, p.Conversation, true)
			if err != nil {
				return err
			}
			k := key(p.Workspace, p.Conversation)
			if old := bk.Get(k); old != nil {
				if plain, err := unseal(a, bVectors, k, old); err == nil && len(plain) >= 8 && binary.BigEndian.Uint64(plain) > p.Head {
					res[i] = errStale
					continue
				}
			}
			if err := bk.Put(k, seal(a, bVectors, k, enc[i])); err != nil {
				return err
			}
			res[i] = nil
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Vector returns a conversation's stored embedding and the head it was
// computed at.
func (s *Store) Vector(ws, conv string) (head uint64, vec []float32, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		k := key(ws, conv)
		raw := tx.Bucket(bVectors).Get(k)
		if raw == nil {
			return fmt.Errorf("vector of %s: %w", conv, ErrNotFound)
		}
		head, vec, err = s.decodeVector(tx, ws, conv, k, raw)
		return err
	})
	return head, vec, err
}

// ForEachVector calls fn with every stored conversation embedding, grouped
// by workspace. A record that does not decode is skipped and reported to
// bad, so one damaged vector costs a recomputation, not the start.
func (s *Store) ForEachVector(fn func(ws, conv string, head uint64, vec []float32) error, bad func(ws, conv string, err error)) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bVectors).ForEach(func(k, v []byte) error {
			ws, conv, ok := splitPair(k)
			if !ok {
				return nil
			}
			head, vec, err := s.decodeVector(tx, ws, conv, k, v)
			if err != nil {
				if bad != nil {
					bad(ws, conv, err)
				}
				return nil
			}
			return fn(ws, conv, head, vec)
		})
	})
}

// decodeVector unseals and decodes a stored embedding.
func (s *Store) decodeVector(tx *bolt.Tx, ws, conv string, k, v []byte) (uint64, []float32, error) {
	a, err := s.keys.key(tx, ws, conv, false)
	if err != nil {
		return 0, nil, err
	}
	plain, err := unseal(a, bVectors, k, v)
	if err != nil {
		return 0, nil, err
	}
	return decodeVector(plain)
}

// ForEachConversation calls fn with every conversation of every workspace.
func (s *Store) ForEachConversation(fn func(Conversation) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bConvs).ForEach(func(k, v []byte) error {
			ws, id, ok := splitPair(k)
			if !ok {
				return nil
			}
			c, err := decodeConversation(tx, s.keys, ws, id, k, v, false)
			if err != nil {
				return err
			}
			return fn(*c)
		})
	})
}

// splitPair splits a ws|id key.
func splitPair(k []byte) (ws, id string, ok bool) {
	i := bytes.IndexByte(k, sep)
	if i < 0 {
		return "", "", false
	}
	return string(k[:i]), string(k[i+1:]), true
}

// Reply is a saved reply of a workspace: a text agents reuse, suggested by
// its similarity to what the visitor wrote.
type Reply struct {
	ID      string `json:"id"`
	Title   string `json:"title"`
	Body    string `json:"body"`
	Created int64  `json:"created"` // unix ms
	// Updated orders the versions of a reply on different nodes (last
	// writer wins); Deleted marks a tombstone, which keeps only the ID, so
	// that a replica that missed the deletion cannot bring the reply back.
	Updated int64 `json:"updated,omitempty"`
	Deleted bool  `json:"deleted,omitempty"`
	// Vector is the embedding of Title and Body; empty when the node had no
	// embedder when the reply was saved (computed at the next start).
	Vector []float32 `json:"vector,omitempty"`
}

// PutReply durably creates or replaces a saved reply of workspace ws. With
// max > 0, creating one more than max replies is ErrInvalid.
func (s *Store) PutReply(ctx context.Context, ws string, r Reply, max int) error {
	if ws == "" || r.ID == "" {
		return fmt.Errorf("put reply: workspace and id required: %w", ErrInvalid)
	}
	if r.Updated == 0 {
		r.Updated = r.Created
	}
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.submit(ctx, func(b *batch) error {
		if _, err := getWorkspace(b.tx, ws); err != nil {
			return err
		}
		bk := b.tx.Bucket(bReplies)
		k := key(ws, r.ID)
		if max > 0 && liveReply(bk.Get(k)) == nil {
			n, p := 0, prefix(ws)
			cur := bk.Cursor()
			for k, v := cur.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = cur.Next() {
				if liveReply(v) != nil {
					n++
				}
			}
			if n >= max {
				return fmt.Errorf("workspace %s has %d saved replies, the most allowed: %w", ws, n, ErrInvalid)
			}
		}
		if bk.Get(k) != nil {
			b.removed() // the old version's text is replaced
		}
		return bk.Put(k, v)
	})
}

// liveReply decodes a stored reply; nil for none or a tombstone.
func liveReply(v []byte) *Reply {
	if v == nil {
		return nil
	}
	var r Reply
	if json.Unmarshal(v, &r) != nil || r.Deleted {
		return nil
	}
	return &r
}

// Replies lists the saved replies of ws in ID order, tombstones left out.
func (s *Store) Replies(ws string) ([]Reply, error) {
	all, err := s.AllReplies(ws)
	out := all[:0]
	for _, r := range all {
		if !r.Deleted {
			out = append(out, r)
		}
	}
	return out, err
}

// AllReplies lists the saved replies of ws and their tombstones, in ID
// order: what another node compares and merges.
func (s *Store) AllReplies(ws string) ([]Reply, error) {
	var out []Reply
	err := s.db.View(func(tx *bolt.Tx) error {
		p := prefix(ws)
		cur := tx.Bucket(bReplies).Cursor()
		for k, v := cur.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = cur.Next() {
			var r Reply
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode reply: %w", err)
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// DeleteReply durably replaces a saved reply by its tombstone, stamped at,
// and returns the tombstone; ErrNotFound if there is no such reply.
func (s *Store) DeleteReply(ctx context.Context, ws, id string, at int64) (Reply, error) {
	tomb := Reply{ID: id, Updated: at, Deleted: true}
	v, err := json.Marshal(tomb)
	if err != nil {
		return Reply{}, err
	}
	err = s.submit(ctx, func(b *batch) error {
		bk := b.tx.Bucket(bReplies)
		k := key(ws, id)
		cur := liveReply(bk.Get(k))
		if cur == nil {
			return fmt.Errorf("reply %s: %w", id, ErrNotFound)
		}
		if cur.Updated >= tomb.Updated {
			tomb.Updated = cur.Updated + 1 // a deletion follows what it deletes
			if v, err = json.Marshal(tomb); err != nil {
				return err
			}
		}
		b.removed()
		return bk.Put(k, v)
	})
	return tomb, err
}

// MergeReplies applies saved replies (or tombstones) from another node,
// each where it is newer than what this node has (last writer wins by
// Updated; on a tie a tombstone wins, then the greater body), and returns
// those applied. The most-replies limit is not applied: replicas must
// converge on the same set.
func (s *Store) MergeReplies(ctx context.Context, ws string, in []Reply) ([]Reply, error) {
	var applied []Reply
	err := s.submit(ctx, func(b *batch) error {
		applied = applied[:0]
		if _, err := getWorkspace(b.tx, ws); err != nil {
			return err
		}
		bk := b.tx.Bucket(bReplies)
		for _, r := range in {
			if r.ID == "" {
				continue
			}
			k := key(ws, r.ID)
			old := bk.Get(k)
			if old != nil {
				var cur Reply
				if json.Unmarshal(old, &cur) == nil && !replyNewer(r, cur) {
					continue
				}
			}
			r.Vector = nil // each node computes its own
			v, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := bk.Put(k, v); err != nil {
				return err
			}
			if old != nil {
				// A newer version or a tombstone replaces the old's text.
				b.removed()
			}
			applied = append(applied, r)
		}
		return nil
	})
	return applied, err
}

func replyNewer(a, b Reply) bool {
	if a.Updated != b.Updated {
		return a.Updated > b.Updated
	}
	if a.Deleted != b.Deleted {
		return a.Deleted
	}
	return a.Title+"\x00"+a.Body > b.Title+"\x00"+b.Body
}

// RepliesDigest sums a workspace's saved replies and tombstones: two nodes
// with the same digest hold the same set.
func RepliesDigest(rs []Reply) string {
	h := sha256.New()
	for _, r := range rs {
		fmt.Fprintf(h, "%s\x00%d\x00%t\x00%s\x00%s\n", r.ID, r.Updated, r.Deleted, r.Title, r.Body)
	}
	return fmt.Sprintf("%x", h.Sum(nil)[:12])
}

// EraseConversation durably erases a conversation and everything derived
// from it: its record, event log, messages, read receipts, owner index entry
// and embedding. Writes of it already sequenced commit first (the erasure is
// queued behind them); changes arriving from the moment it is called fail
// with ErrNotFound, so no write can bring a part of it back.
func (s *Store) EraseConversation(ctx context.Context, ws, conv string) error {
	return s.eraseConversation(ctx, ws, conv, false)
}

// Tombstone is EraseConversation for an erasure decided elsewhere (the
// control plane's): it erases the conversation if this store holds it, and
// leaves its tombstone either way, so that no replica's event can bring it
// here later. It reports whether the conversation was held.
func (s *Store) Tombstone(ctx context.Context, ws, conv string) (held bool, err error) {
	err = s.eraseConversation(ctx, ws, conv, true)
	if errors.Is(err, errNotHeld) {
		return false, nil
	}
	return err == nil, err
}

// Erased reports whether a conversation's tombstone is in this store.
func (s *Store) Erased(ws, conv string) (bool, error) {
	var erased bool
	err := s.db.View(func(tx *bolt.Tx) error {
		erased = tx.Bucket(bErased).Get(key(ws, conv)) != nil
		return nil
	})
	return erased, err
}

// errNotHeld is what a tombstone's op returns when the store did not hold
// the conversation: a clean error (nothing else of it written), wrapping
// ErrNotFound, after the tombstone itself was put.
var errNotHeld = fmt.Errorf("conversation not held: %w", ErrNotFound)

func (s *Store) eraseConversation(ctx context.Context, ws, conv string, tombstone bool) error {
	if ws == "" || conv == "" {
		return fmt.Errorf("erase: workspace and conversation required: %w", ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	q := &s.seq
	o := newOp(func(b *batch) error {
		err := b.erase(ws, conv)
		if tombstone && errors.Is(err, ErrNotFound) {
			if err := b.tx.Bucket(bErased).Put(key(ws, conv), putU64(uint64(b.now.UnixMilli()))); err != nil {
				return err
			}
			return errNotHeld
		}
		return err
	})
	if err := s.reserve(); err != nil {
		return err
	}
	// Queued under the conversation's lock, behind the writes of it
	// already sequenced; the reference keeps erasing counted until the
	// erasure is over.
	cs := q.acquire(ws, conv)
	cs.erasing++
	s.push(o)
	cs.mu.Unlock()
	err := o.wait()
	// Once committed the file has no trace of it, which refuses later
	// changes by itself; after a failure, the conversation is usable again.
	cs.mu.Lock()
	cs.erasing--
	q.release(cs)
	return err
}

// erase deletes every key of one conversation in the batch's transaction.
func (b *batch) erase(ws, conv string) error {
	c, err := b.conv(ws, conv)
	if err != nil {
		return err
	}
	for _, bk := range [][]byte{bEvents, bMsgs, bReads, bByStamp, bOrigins} {
		if err := deletePrefix(b.tx.Bucket(bk), prefix(ws, conv)); err != nil {
			return err
		}
	}
	for _, d := range []struct {
		bucket []byte
		key    []byte
	}{{bConvs, key(ws, conv)}, {bOwners, key(ws, c.Owner, conv)}, {bVectors, key(ws, conv)}, {bMsgs, key(ws, conv)}} {
		if err := b.tx.Bucket(d.bucket).Delete(d.key); err != nil {
			return err
		}
	}
	// Without its key, whatever copy of its records outlives this
	// transaction is ciphertext nobody can open (seal.go).
	if err := b.keys.destroy(b.tx, ws, conv); err != nil {
		return err
	}
	// The tombstone keeps the conversation from coming back with a late
	// event from another replica.
	if err := b.tx.Bucket(bErased).Put(key(ws, conv), putU64(uint64(b.now.UnixMilli()))); err != nil {
		return err
	}
	// A write of this batch may have loaded the record or moved a
	// frontier: neither must be written back by flush.
	b.forgetConv(convKey{ws, conv})
	b.removed()
	return nil
}

// deletePrefix deletes every key of bk starting with p.
func deletePrefix(bk *bolt.Bucket, p []byte) error {
	var keys [][]byte
	cur := bk.Cursor()
	for k, _ := cur.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = cur.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := bk.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
