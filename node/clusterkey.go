package node

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

// clusterKey is the secret every node of a cluster shares. Everything the
// nodes must agree on without talking is derived from it, each under its own
// label, so one leaked derivative tells nothing about another.
type clusterKey []byte

const minClusterKey = 32

// loadClusterKey reads the key from path; when path is the default one and
// the file does not exist yet, a node that bootstraps generates it. A node
// that joins must be given the cluster's key: a generated one could never
// authenticate to its peers.
func loadClusterKey(path string, generate bool) (clusterKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && generate {
		raw := make([]byte, minClusterKey)
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
	if raw, err := hex.DecodeString(s); err == nil && len(raw) >= minClusterKey {
		return raw, nil
	}
	if len(s) < minClusterKey {
		return nil, fmt.Errorf("cluster key %s: want at least %d bytes (or %d hex digits)", path, minClusterKey, 2*minClusterKey)
	}
	return []byte(s), nil
}

func (k clusterKey) derive(label string) []byte {
	m := hmac.New(sha256.New, k)
	m.Write([]byte("parley/" + label))
	return m.Sum(nil)
}

// masterKey seals workspace secrets in the Raft log (AES-256-GCM).
func (k clusterKey) masterKey() []byte { return k.derive("master-key/v1") }

// nodeKey signs requests between nodes.
func (k clusterKey) nodeKey() []byte { return k.derive("node-auth/v1") }

// linkSeed derives the key of the cluster's certificate authority, which
// issues the certificates nodes present to each other (cluster/nodelink).
func (k clusterKey) linkSeed() []byte { return k.derive("node-link-ca/v1") }

// adminToken is the cluster administrator's bearer token for the admin API:
// whoever holds the cluster key can compute it (parleyctl does).
func (k clusterKey) adminToken() string {
	return "pa_" + base64.RawURLEncoding.EncodeToString(k.derive("admin-token/v1"))
}

// AdminToken is the cluster administrator's token for the admin API, derived
// from the cluster key in keyFile (see Config.ClusterKey).
func AdminToken(keyFile string) (string, error) {
	k, err := loadClusterKey(keyFile, false)
	if err != nil {
		return "", err
	}
	return k.adminToken(), nil
}
