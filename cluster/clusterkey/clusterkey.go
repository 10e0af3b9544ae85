// Package clusterkey reads the secret every node of a cluster shares (the
// -cluster-key file) and derives keys from it, each under its own label, so
// one leaked derivative tells nothing about another. It also derives the
// cluster administrator's token, which is why parleyctl uses it: it imports
// nothing of the server.
package clusterkey

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Key is a cluster key.
type Key []byte

// MinLen is the fewest bytes of a cluster key.
const MinLen = 32

// Load reads the key from path: MinLen bytes or more, as hex digits or as
// the raw text. With generate, a missing file is created with a new random
// key (mode 0600): for a node that bootstraps at the default path. A node
// that joins must be given the cluster's key: a generated one could never
// authenticate to its peers.
func Load(path string, generate bool) (Key, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && generate {
		raw := make([]byte, MinLen)
		rand.Read(raw)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(raw)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("cluster key: %w", err)
		}
		return raw, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster key: %w (every node of a cluster needs the same -cluster-key file)", err)
	}
	s := strings.TrimSpace(string(b))
	if raw, err := hex.DecodeString(s); err == nil && len(raw) >= MinLen {
		return raw, nil
	}
	if len(s) < MinLen {
		return nil, fmt.Errorf("cluster key %s: want at least %d bytes (or %d hex digits)", path, MinLen, 2*MinLen)
	}
	return []byte(s), nil
}

// Derive is the key's derivative under label: HMAC-SHA256 of
// "parley/"+label. Every use of the key has its own label.
func (k Key) Derive(label string) []byte {
	m := hmac.New(sha256.New, k)
	m.Write([]byte("parley/" + label))
	return m.Sum(nil)
}

// StoreKEK is the key-encryption key that seals the keys of the
// conversations in every node's store (store.Config.KEK): it is in no file
// of the store, so a copy of a store without the cluster key opens nothing.
func (k Key) StoreKEK() []byte { return k.Derive("store-kek/v1") }

// AdminTokenPrefix begins every cluster admin token, so that a node can
// tell an admin token of another cluster from a session.
const AdminTokenPrefix = "pa_"

// AdminToken is the cluster administrator's bearer token for the admin API:
// whoever holds the cluster key can compute it (parleyctl does).
func (k Key) AdminToken() string {
	return AdminTokenPrefix + base64.RawURLEncoding.EncodeToString(k.Derive("admin-token/v1"))
}

// AdminToken is the admin token derived from the cluster key in keyFile.
func AdminToken(keyFile string) (string, error) {
	k, err := Load(keyFile, false)
	if err != nil {
		return "", err
	}
	return k.AdminToken(), nil
}
