package node

import (
	"path/filepath"

	"parley/cluster/clusterkey"
)

// clusterKey is the secret every node of a cluster shares. Everything the
// nodes must agree on without talking is derived from it, each under its own
// label, so one leaked derivative tells nothing about another (package
// clusterkey reads it and derives).
type clusterKey []byte

// loadClusterKey reads the key from path; when path is the default one and
// the file does not exist yet, a node that bootstraps generates it.
func loadClusterKey(path string, generate bool) (clusterKey, error) {
	k, err := clusterkey.Load(path, generate)
	return clusterKey(k), err
}

// nodeClusterKey reads the node's cluster key: cfg.ClusterKey, or
// DATA/cluster.key, generated there by a node that bootstraps.
func nodeClusterKey(cfg Config) (clusterKey, error) {
	path := cfg.ClusterKey
	if path == "" {
		path = filepath.Join(cfg.DataDir, "cluster.key")
	}
	return loadClusterKey(path, len(cfg.Join) == 0 && cfg.ClusterKey == "")
}

func (k clusterKey) derive(label string) []byte { return clusterkey.Key(k).Derive(label) }

// masterKey seals workspace secrets in the Raft log (AES-256-GCM).
func (k clusterKey) masterKey() []byte { return k.derive("master-key/v1") }

// storeKEK seals the keys of the conversations in the node's store
// (store.Config.KEK): it is in no file of the store.
func (k clusterKey) storeKEK() []byte { return clusterkey.Key(k).StoreKEK() }

// nodeKey signs requests between nodes.
func (k clusterKey) nodeKey() []byte { return k.derive("node-auth/v1") }

// linkSeed derives the key of the cluster's certificate authority, which
// issues the certificates nodes present to each other (cluster/nodelink).
func (k clusterKey) linkSeed() []byte { return k.derive("node-link-ca/v1") }

// adminToken is the cluster administrator's bearer token for the admin API.
func (k clusterKey) adminToken() string { return clusterkey.Key(k).AdminToken() }

// AdminToken is the cluster administrator's token for the admin API, derived
// from the cluster key in keyFile (see Config.ClusterKey).
func AdminToken(keyFile string) (string, error) { return clusterkey.AdminToken(keyFile) }
