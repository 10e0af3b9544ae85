package store

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Sealing (schema 7): the text of a conversation is encrypted at rest under
// a key of its own, and erasing the conversation destroys that key
// (crypto-shredding). Whatever copy of its records outlives the erasure (a
// freed page the scrubber has not reached yet, a backup taken after it, a
// disk image, the file system's journal, an SSD's remapped blocks) is
// ciphertext that no key opens any more.
//
// What is sealed, under the conversation's key, with AES-256-GCM and the
// record's bucket and key as additional data (a value moved to another
// record does not open):
//   - the conversation record (the visitor's name, the last message),
//   - every event of its log (a message's state: body, author's name),
//   - its embedding (derived from the text).
//
// What is not: keys of records (workspace, conversation and participant
// IDs, message IDs), seqs, stamps, read receipts, tombstones, and the
// workspace's saved replies (agents' texts, not a visitor's); docs/security.md.
//
// The conversation keys live in the keys bucket, each sealed under the
// node's key-encryption key (Config.KEK, derived by the node from the
// cluster key, which is not in this file). Erasing a conversation deletes
// its sealed key in the erasure's transaction; the scrubber then zeroes the
// freed page that held it, like the pages of the records. Each node makes
// its own keys: encryption is local to the disk, and nodes exchange and
// compare plaintext (over the node link's TLS), so replication, anti-entropy
// and digests see the same logical content on every node.

var bKeys = []byte("keys") // ws|conv -> the conversation's key sealed under the KEK (schema 7)

// ErrKeyDestroyed: a record's conversation key is not in the store (the
// conversation was erased): its ciphertext can no longer be opened.
var ErrKeyDestroyed = errors.New("conversation key destroyed")

// KEKSize is the size of Config.KEK.
const KEKSize = 32

const (
	// sealedV1 starts a sealed value: no JSON starts with it, nor an event
	// reference (eventRef).
	sealedV1 = 0x01
	nonceLen = 12
)

var (
	kekCheckKey   = []byte("kekcheck")
	kekCheckPlain = []byte("parley/store-kek-check/v1")
)

// sealer holds the node's key-encryption key and a bounded cache of opened
// conversation keys.
type sealer struct {
	kek cipher.AEAD
	mu  sync.Mutex
	// open caches conversation keys by conversation. Only the
	// writer adds to it, keys it created or read in its transaction, and
	// it removes them as it destroys them: a reader of a snapshot older
	// than an erasure unseals the key from its snapshot but cannot bring
	// it back into the cache.
	open map[convKey]cipher.AEAD
}

// maxOpenKeys bounds the cache: past it, the cache is emptied (the keys are
// unsealed again from the file as they are used).
const maxOpenKeys = 1 << 14

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// loadKEK returns cfg.KEK, or for a zero one the key in the file path+".kek",
// created with a random key if missing.
func loadKEK(cfg Config) ([]byte, error) {
	if len(cfg.KEK) != 0 {
		if len(cfg.KEK) != KEKSize {
			return nil, fmt.Errorf("store: KEK of %d bytes, want %d: %w", len(cfg.KEK), KEKSize, ErrInvalid)
		}
		return cfg.KEK, nil
	}
	path := cfg.Path + ".kek"
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k := make([]byte, KEKSize)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("store: write %s: %w", path, err)
		}
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: read %s: %w", path, err)
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != KEKSize {
		return nil, fmt.Errorf("store: %s is not %d hex-encoded bytes: %w", path, KEKSize, ErrInvalid)
	}
	return k, nil
}

func newSealer(kek []byte) (*sealer, error) {
	a, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	return &sealer{kek: a, open: map[convKey]cipher.AEAD{}}, nil
}

// checkKEK makes sure the file's keys are sealed under this KEK: a file
// sealed under one of previous (the cluster key was rotated) has every
// conversation key sealed again under this one, in one transaction (the
// pages of the old sealed keys are freed, and zeroed by Open's scrub); a
// file sealed under another KEK is refused rather than found unreadable
// record by record. A file without a check value gets this KEK's.
func (k *sealer) checkKEK(db *bolt.DB, previous [][]byte) error {
	return db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		v := meta.Get(kekCheckKey)
		if v == nil {
			return meta.Put(kekCheckKey, sealWith(k.kek, kekCheckKey, kekCheckPlain))
		}
		if got, err := openWith(k.kek, kekCheckKey, v); err == nil && bytes.Equal(got, kekCheckPlain) {
			return nil
		}
		for _, p := range previous {
			old, err := newAEAD(p)
			if err != nil {
				return fmt.Errorf("previous KEK: %w", err)
			}
			if got, err := openWith(old, kekCheckKey, v); err != nil || !bytes.Equal(got, kekCheckPlain) {
				continue
			}
			return k.reseal(tx, old)
		}
		return fmt.Errorf("the file's conversation keys are sealed under another key-encryption key (was the cluster key changed? give the node the previous one too): %w", ErrInvalid)
	})
}

// reseal seals every conversation key, and the check value, again under
// this KEK instead of old.
func (k *sealer) reseal(tx *bolt.Tx, old cipher.AEAD) error {
	err := rewrite(tx.Bucket(bKeys), func(kk, v []byte) ([]byte, error) {
		raw, err := openWith(old, aad(bKeys, kk), v)
		if err != nil {
			return nil, fmt.Errorf("unseal key %q under the previous KEK: %w", kk, err)
		}
		defer clear(raw)
		return sealWith(k.kek, aad(bKeys, kk), raw), nil
	})
	if err != nil {
		return err
	}
	return tx.Bucket(bMeta).Put(kekCheckKey, sealWith(k.kek, kekCheckKey, kekCheckPlain))
}

// rewrite replaces each value of bk by fn's result for it (nil: kept), in
// a pass after the iteration, which a bucket's cursor does not survive.
func rewrite(bk *bolt.Bucket, fn func(k, v []byte) ([]byte, error)) error {
	type put struct{ k, v []byte }
	var puts []put
	err := bk.ForEach(func(k, v []byte) error {
		nv, err := fn(k, v)
		if err != nil || nv == nil {
			return err
		}
		puts = append(puts, put{bytes.Clone(k), nv})
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range puts {
		if err := bk.Put(p.k, p.v); err != nil {
			return err
		}
	}
	return nil
}

// sealWith encrypts plain under a with the record's key k as additional data.
func sealWith(a cipher.AEAD, k, plain []byte) []byte {
	return sealTo(make([]byte, 0, 1+nonceLen+len(plain)+a.Overhead()), a, k, plain)
}

// sealTo is sealWith into buf, empty with room for the result.
func sealTo(buf []byte, a cipher.AEAD, k, plain []byte) []byte {
	out := buf[:1+nonceLen]
	out[0] = sealedV1
	if _, err := rand.Read(out[1 : 1+nonceLen]); err != nil {
		panic(fmt.Sprintf("store: random nonce: %v", err)) // crypto/rand does not fail on Linux
	}
	return a.Seal(out, out[1:1+nonceLen], plain, k)
}

// openWith decrypts a value from sealWith.
func openWith(a cipher.AEAD, k, v []byte) ([]byte, error) {
	if len(v) < 1+nonceLen || v[0] != sealedV1 {
		return nil, fmt.Errorf("value is not sealed: %w", ErrInvalid)
	}
	return a.Open(nil, v[1:1+nonceLen], v[1+nonceLen:], k)
}

// aad is the additional data of a record: its bucket and key.
func aad(bucket, k []byte) []byte {
	b := make([]byte, 0, len(bucket)+1+len(k))
	return append(append(append(b, bucket...), '/'), k...)
}

// seal encrypts a record's value under its conversation's key.
func seal(a cipher.AEAD, bucket, k, plain []byte) []byte {
	return sealWith(a, aad(bucket, k), plain)
}

// unseal decrypts a record's value.
func unseal(a cipher.AEAD, bucket, k, v []byte) ([]byte, error) {
	p, err := openWith(a, aad(bucket, k), v)
	if err != nil {
		return nil, fmt.Errorf("open %s record: %w", bucket, err)
	}
	return p, nil
}

// key returns the key of a conversation, from the cache or unsealed from
// tx. A conversation without one is ErrKeyDestroyed (also ErrNotFound).
// writer says tx is the writer's: only its keys are cached.
func (k *sealer) key(tx *bolt.Tx, ws, conv string, writer bool) (cipher.AEAD, error) {
	ck := convKey{ws, conv}
	k.mu.Lock()
	a, ok := k.open[ck]
	k.mu.Unlock()
	if ok {
		return a, nil
	}
	sealed := tx.Bucket(bKeys).Get(key(ws, conv))
	if sealed == nil {
		return nil, fmt.Errorf("conversation %s: %w (%w)", conv, ErrKeyDestroyed, ErrNotFound)
	}
	raw, err := openWith(k.kek, aad(bKeys, key(ws, conv)), sealed)
	if err != nil {
		return nil, fmt.Errorf("unseal key of conversation %s: %w", conv, err)
	}
	a, err = newAEAD(raw)
	clear(raw)
	if err != nil {
		return nil, err
	}
	if writer {
		k.mu.Lock()
		k.remember(ck, a)
		k.mu.Unlock()
	}
	return a, nil
}

// remember caches a key. Caller holds mu.
func (k *sealer) remember(ck convKey, a cipher.AEAD) {
	if len(k.open) >= maxOpenKeys {
		clear(k.open)
	}
	k.open[ck] = a
}

// create makes a new key for a conversation in the writer's transaction.
func (k *sealer) create(tx *bolt.Tx, ws, conv string) (cipher.AEAD, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	defer clear(raw)
	a, err := newAEAD(raw)
	if err != nil {
		return nil, err
	}
	kk := key(ws, conv)
	if err := tx.Bucket(bKeys).Put(kk, sealWith(k.kek, aad(bKeys, kk), raw)); err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.remember(convKey{ws, conv}, a)
	k.mu.Unlock()
	return a, nil
}

// destroy deletes a conversation's key in the writer's transaction and
// forgets it. If the transaction rolls back, the key is read again from
// the file when next needed.
func (k *sealer) destroy(tx *bolt.Tx, ws, conv string) error {
	k.mu.Lock()
	delete(k.open, convKey{ws, conv})
	k.mu.Unlock()
	return tx.Bucket(bKeys).Delete(key(ws, conv))
}

// forgetWorkspace forgets the keys of a purged workspace.
func (k *sealer) forgetWorkspace(ws string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for ck := range k.open {
		if ck.ws == ws {
			delete(k.open, ck)
		}
	}
}

// sealExisting (migration 7) gives every conversation held a key and seals
// its record, its events and its embedding in place. The plaintext they
// replace is in pages this transaction frees, which Open scrubs right after
// the migrations (scrub.go): once Open returns, no plaintext is left in the
// file.
func sealExisting(tx *bolt.Tx, env migrationEnv) error {
	if _, err := tx.CreateBucketIfNotExists(bKeys); err != nil {
		return err
	}
	k := env.keys
	aeads := map[convKey]cipher.AEAD{}
	keyOf := func(ws, conv string) (cipher.AEAD, error) {
		ck := convKey{ws, conv}
		if a, ok := aeads[ck]; ok {
			return a, nil
		}
		a, err := k.create(tx, ws, conv)
		if err != nil {
			return nil, err
		}
		aeads[ck] = a
		return a, nil
	}
	// Conversation records and embeddings are keyed ws|conv, events
	// ws|conv|seq; references carry no text. No plaintext value starts
	// with sealedV1: a record's JSON starts with '{', an embedding with
	// its head's high byte, 0 (seqs stay below 2^53).
	for _, name := range [][]byte{bConvs, bVectors, bEvents} {
		err := rewrite(tx.Bucket(name), func(kk, v []byte) ([]byte, error) {
			if len(v) == 0 || v[0] == sealedV1 {
				return nil, nil
			}
			pair := kk
			if bytes.Equal(name, bEvents) {
				if v[0] == eventRef || len(kk) < 9 {
					return nil, nil
				}
				pair = kk[:len(kk)-9]
			}
			ws, conv, ok := splitPair(pair)
			if !ok {
				return nil, nil
			}
			a, err := keyOf(ws, conv)
			if err != nil {
				return nil, err
			}
			return seal(a, name, kk, v), nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
