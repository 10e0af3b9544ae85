package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"

	"parley/store"

	bolt "go.etcd.io/bbolt"
)

// cursor is how far an endpoint's events of one conversation were
// delivered: durable in the node's webhook file, and shared with the
// conversation's other replicas (Progress) so that one taking over resends
// little.
type cursor struct {
	// Seq is the last event of this node's log delivered (or skipped);
	// local to this node.
	Seq uint64 `json:"seq,omitempty"`
	// Vec is, per origin, the highest oseq delivered: the same on every
	// replica, so another node's progress counts here.
	Vec map[string]uint64 `json:"vec,omitempty"`
	// Created: conversation.created was delivered (or skipped).
	Created bool `json:"created,omitempty"`
}

// covers says whether the event named by origin and oseq was delivered.
func (c cursor) covers(origin string, oseq uint64) bool { return oseq != 0 && oseq <= c.Vec[origin] }

// advance moves the cursor past a logged event.
func (c *cursor) advance(e store.LoggedEvent) {
	c.Seq = e.Seq
	if e.Stamp.OSeq > c.Vec[e.Stamp.Origin] {
		if c.Vec == nil {
			c.Vec = map[string]uint64{}
		}
		c.Vec[e.Stamp.Origin] = e.Stamp.OSeq
	}
}

// merge takes in another node's progress.
func (c *cursor) merge(o cursor) bool {
	changed := o.Created && !c.Created
	c.Created = c.Created || o.Created
	for k, v := range o.Vec {
		if v > c.Vec[k] {
			if c.Vec == nil {
				c.Vec = map[string]uint64{}
			}
			c.Vec[k] = v
			changed = true
		}
	}
	return changed
}

func (c cursor) clone() cursor {
	c.Vec = maps.Clone(c.Vec)
	return c
}

var bCursors = []byte("cursors")

// streamKey names a stream of events: one endpoint's events of one
// conversation.
type streamKey struct {
	ws, conv, hook string
}

func (k streamKey) bytes() []byte {
	return []byte(k.ws + "\x00" + k.conv + "\x00" + k.hook)
}

func parseKey(b []byte) (streamKey, bool) {
	p := bytes.Split(b, []byte{0})
	if len(p) != 3 {
		return streamKey{}, false
	}
	return streamKey{string(p[0]), string(p[1]), string(p[2])}, true
}

// cursors is the node's webhook file.
type cursors struct {
	db *bolt.DB
}

func openCursors(path string) (*cursors, error) {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return nil, fmt.Errorf("webhook: open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bCursors)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("webhook: %s: %w", path, err)
	}
	return &cursors{db: db}, nil
}

func (c *cursors) get(k streamKey) (cursor, error) {
	var out cursor
	err := c.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bCursors).Get(k.bytes())
		if v == nil {
			return nil
		}
		return json.Unmarshal(v, &out)
	})
	return out, err
}

// put stores a cursor durably; concurrent puts share a transaction.
func (c *cursors) put(k streamKey, cur cursor) error {
	v, err := json.Marshal(cur)
	if err != nil {
		return err
	}
	return c.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(bCursors).Put(k.bytes(), v) })
}

// mergeAll merges other nodes' progress into the cursors, returning the
// streams that moved.
func (c *cursors) mergeAll(ps []Progress) ([]streamKey, error) {
	var moved []streamKey
	err := c.db.Batch(func(tx *bolt.Tx) error {
		moved = moved[:0]
		b := tx.Bucket(bCursors)
		for _, p := range ps {
			k := streamKey{p.Workspace, p.Conversation, p.Webhook}
			var cur cursor
			if v := b.Get(k.bytes()); v != nil {
				if err := json.Unmarshal(v, &cur); err != nil {
					return err
				}
			}
			if !cur.merge(cursor{Vec: p.Vec, Created: p.Created}) {
				continue
			}
			v, err := json.Marshal(cur)
			if err != nil {
				return err
			}
			if err := b.Put(k.bytes(), v); err != nil {
				return err
			}
			moved = append(moved, k)
		}
		return nil
	})
	return moved, err
}

// drop forgets the cursors for which gone says so.
func (c *cursors) drop(gone func(streamKey) bool) error {
	return c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bCursors)
		var del [][]byte
		err := b.ForEach(func(k, _ []byte) error {
			if sk, ok := parseKey(k); !ok || gone(sk) {
				del = append(del, bytes.Clone(k))
			}
			return nil
		})
		for _, k := range del {
			if err == nil {
				err = b.Delete(k)
			}
		}
		return err
	})
}

func (c *cursors) close() error { return c.db.Close() }
