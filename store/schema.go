package store

import (
	"bytes"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Bucket names. Keys inside every bucket but meta start with the workspace ID.
var (
	bMeta       = []byte("meta")       // "schema" -> version (uint64)
	bWorkspaces = []byte("workspaces") // ws -> Workspace JSON
	bConvs      = []byte("convs")      // ws|conv -> Conversation JSON
	bEvents     = []byte("events")     // ws|conv|seq -> crdt.Message at that event; from schema 8 its stamp (stampedV1), then the message (messageV1); from schema 9 ws|conv|lastSeq -> a chunk of events (chunk.go)
	bMsgs       = []byte("msgs")       // ws|conv|msgID -> msgRecord JSON (current state)
	bReads      = []byte("reads")      // ws|conv|participant -> seq (uint64)
	bOwners     = []byte("owners")     // ws|owner|conv -> empty (schema 2)
	bStamps     = []byte("stamps")     // ws|conv|seq -> Stamp of the event (schema 3 to 7; in the event's value from 8)
	bByStamp    = []byte("bystamp")    // ws|conv|origin|oseq -> seq (schema 3; from 8 every stampEvery-th oseq only)
	bErased     = []byte("erased")     // ws|conv -> unix ms of its erasure (schema 5)
	bOrigins    = []byte("origins")    // ws|conv|origin -> highest oseq, contiguous (schema 3)
	bVectors    = []byte("vectors")    // ws|conv -> head (uint64) + embedding (schema 4)
	bReplies    = []byte("replies")    // ws|reply -> Reply JSON (schema 4)
	// bKeys (schema 7, seal.go): ws|conv -> the conversation's key, sealed.
	// From schema 7 the values of convs, events and vectors are sealed
	// under their conversation's key.
	// An event's value is a reference to its message's latest event once
	// the message changed again (schema 6, eventRef).
)

var schemaKey = []byte("schema")

// migration moves the schema from Version-1 to Version. It runs inside one
// transaction with the version bump, so a crash leaves the old or the new
// schema, never a mix. Migrations add a bucket or a derived index, or
// rewrite values in place (6, 7, 8 and 9: 8 moves an index into the values
// it indexes, and drops it; 9 joins a conversation's records into chunks),
// never dropping data; what a rewrite replaces is scrubbed from the file by
// Open, right after.
type migration struct {
	Version int
	Name    string
	Up      func(tx *bolt.Tx, env migrationEnv) error
}

// migrationEnv is what a migration may need to know of the store opening
// the file.
type migrationEnv struct {
	// origin names this node in event stamps (Config.Origin).
	origin string
	// keys seals conversations (Config.KEK).
	keys *sealer
}

// migrations in order; numbers are only ever appended.
var migrations = []migration{
	{1, "initial buckets", func(tx *bolt.Tx, _ migrationEnv) error {
		for _, b := range [][]byte{bMeta, bWorkspaces, bConvs, bEvents, bMsgs, bReads} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}},
	{2, "index of conversations by owner", func(tx *bolt.Tx, _ migrationEnv) error {
		owners, err := tx.CreateBucketIfNotExists(bOwners)
		if err != nil {
			return err
		}
		return tx.Bucket(bConvs).ForEach(func(_, v []byte) error {
			var c Conversation
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("decode conversation: %w", err)
			}
			return owners.Put(key(c.Workspace, c.Owner, c.ID), nil)
		})
	}},
	{3, "event stamps: origin and oseq of every event", stampExisting},
	{4, "conversation embeddings and saved replies", func(tx *bolt.Tx, _ migrationEnv) error {
		// Empty at first: the node's embedding worker fills them in the
		// background from the conversations already stored.
		for _, b := range [][]byte{bVectors, bReplies} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}},
	{5, "tombstones of erased conversations", func(tx *bolt.Tx, _ migrationEnv) error {
		_, err := tx.CreateBucketIfNotExists(bErased)
		return err
	}},
	{6, "earlier events of changed messages refer to the latest", refSuperseded},
	{7, "conversations sealed under keys of their own", sealExisting},
	{8, "event stamps in the events' values, not an index of their own; message states in a binary form", compactEvents},
	{9, "a commit's events of a conversation in one record (a chunk)", chunkEvents},
}

// refSuperseded (migration 6) turns the value of every event that is not
// its message's latest into a reference (eventRef): files written before
// kept the text of edited and deleted messages in their earlier events.
func refSuperseded(tx *bolt.Tx, _ migrationEnv) error {
	msgs := tx.Bucket(bMsgs)
	return rewrite(tx.Bucket(bEvents), func(k, v []byte) ([]byte, error) {
		if len(v) == 0 || v[0] == eventRef || len(k) < 8 {
			return nil, nil
		}
		parts := bytes.SplitN(k[:len(k)-8], []byte{sep}, 3)
		if len(parts) != 3 {
			return nil, nil
		}
		var m struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(v, &m); err != nil {
			return nil, fmt.Errorf("decode event: %w", err)
		}
		ws, conv := string(parts[0]), string(parts[1])
		rec, ok := decodeMsgRecord(msgs.Get(key(ws, conv, m.ID)))
		if ok && rec.Last != u64(k[len(k)-8:]) {
			return refValue(m.ID), nil
		}
		return nil, nil
	})
}

// SchemaLatest is the schema version this build writes.
func SchemaLatest() int { return migrations[len(migrations)-1].Version }

func schemaVersion(tx *bolt.Tx) int {
	m := tx.Bucket(bMeta)
	if m == nil {
		return 0
	}
	return int(u64(m.Get(schemaKey)))
}

// migrate applies, in order and each in its own transaction, the migrations
// above the file's version. A file newer than this build is refused rather
// than guessed at.
func migrate(db *bolt.DB, ms []migration, env migrationEnv) error {
	for i, m := range ms {
		if m.Version != i+1 {
			return fmt.Errorf("migration %q has version %d, want %d", m.Name, m.Version, i+1)
		}
	}
	var current int
	if err := db.View(func(tx *bolt.Tx) error { current = schemaVersion(tx); return nil }); err != nil {
		return err
	}
	if current > len(ms) {
		return fmt.Errorf("%w: schema version %d, this build knows %d at most: run the release that wrote it (or a later one), or restore a backup made before the upgrade", ErrNewerSchema, current, len(ms))
	}
	for _, m := range ms[current:] {
		err := db.Update(func(tx *bolt.Tx) error {
			if err := m.Up(tx, env); err != nil {
				return err
			}
			meta, err := tx.CreateBucketIfNotExists(bMeta)
			if err != nil {
				return err
			}
			return meta.Put(schemaKey, putU64(uint64(m.Version)))
		})
		if err != nil {
			return fmt.Errorf("migration %d (%s): %w", m.Version, m.Name, err)
		}
	}
	return nil
}
