package cluster

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"parley/cluster/schema"
)

// Workspace secrets (the identity-verification HMAC key a site uses to sign
// its user IDs, and the visitor key) are encrypted at rest with AES-256-GCM
// under the cluster master key. The node taking the request seals a secret
// before proposing it, so the log, the snapshots and every FSM hold only
// ciphertext; a read decrypts on the node that needs the plaintext.
//
// The master key is the same on every node. Config.MasterKey provides it;
// left empty, Open reads DataDir/master.key or, on first start, generates one
// there with mode 0600, which suits a single node in development. For a
// cluster, generate one key, distribute it through the deployment's secret
// store and pass it to every node: a node with another key replicates the
// state fine but cannot decrypt (its reads fail naming the key mismatch).

const (
	masterKeyLen  = 32
	gcmNonceLen   = schema.SealedNonceLen
	gcmTagLen     = schema.SealedTagLen
	maxSecretLen  = schema.MaxSecretLen
	keyIDLen      = schema.SealedKeyIDLen // bytes of the key's fingerprint
	masterKeyFile = "master.key"
)

// sealer encrypts and decrypts workspace secrets under the master key.
type sealer struct {
	aead  cipher.AEAD
	keyID string
}

func newSealer(key []byte) (*sealer, error) {
	if len(key) != masterKeyLen {
		return nil, invalidf("master key of %d bytes, want %d", len(key), masterKeyLen)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	// Domain-separated so the fingerprint says nothing usable about the key.
	sum := sha256.Sum256(append([]byte("parley master key id\x00"), key...))
	return &sealer{aead: aead, keyID: hex.EncodeToString(sum[:keyIDLen])}, nil
}

// aad binds a ciphertext to its workspace and kind: a sealed secret copied
// to another workspace or slot does not decrypt.
func aad(workspace string, kind SecretKind) []byte {
	return []byte("parley/" + string(kind) + "/" + workspace)
}

func (s *sealer) seal(workspace string, kind SecretKind, plaintext []byte) (Sealed, error) {
	if len(plaintext) == 0 || len(plaintext) > maxSecretLen {
		return Sealed{}, invalidf("secret of %d bytes: want 1 to %d", len(plaintext), maxSecretLen)
	}
	nonce := make([]byte, gcmNonceLen)
	rand.Read(nonce) // random 96-bit nonces: safe far beyond this many secrets
	return Sealed{
		KeyID: s.keyID,
		Nonce: nonce,
		Data:  s.aead.Seal(nil, nonce, plaintext, aad(workspace, kind)),
	}, nil
}

func (s *sealer) open(workspace string, kind SecretKind, sl Sealed) ([]byte, error) {
	if sl.KeyID != s.keyID {
		return nil, fmt.Errorf("%s secret of %s sealed with master key %s, this node has %s", kind, workspace, sl.KeyID, s.keyID)
	}
	pt, err := s.aead.Open(nil, sl.Nonce, sl.Data, aad(workspace, kind))
	if err != nil {
		return nil, fmt.Errorf("%s secret of %s: %w", kind, workspace, err)
	}
	return pt, nil
}

// loadOrCreateMasterKey reads dir/master.key (64 hex digits), creating it
// with a fresh random key, mode 0600, when it does not exist.
func loadOrCreateMasterKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, masterKeyFile)
	b, err := os.ReadFile(path)
	if err == nil {
		key, err := hex.DecodeString(string(bytes.TrimSpace(b)))
		if err != nil || len(key) != masterKeyLen {
			return nil, fmt.Errorf("%s: want %d hex digits: %w", path, 2*masterKeyLen, ErrInvalid)
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key := make([]byte, masterKeyLen)
	rand.Read(key)
	// O_EXCL: two processes racing on one directory must not end up with
	// different keys.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create master key: %w", err)
	}
	_, err = fmt.Fprintf(f, "%x\n", key)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("write master key: %w", err)
	}
	return key, nil
}

func (s *State) applySetSecret(c *SetSecret) (Result, error) {
	ws, err := s.d.workspace(c.Workspace)
	if err != nil {
		return Result{}, err
	}
	sl := c.Sealed
	switch c.Kind {
	case SecretIdentity:
		ws.Identity = &sl
	case SecretVisitor:
		ws.Visitor = &sl
	}
	return Result{}, nil
}

// previousSecret is an identity secret replaced by a rotation, with the end
// of its overlap.
type previousSecret struct {
	Sealed Sealed    `json:"sealed"`
	Until  time.Time `json:"until"`
}

func (s *State) applyRotateSecret(c *RotateSecret) (Result, error) {
	ws, err := s.d.workspace(c.Workspace)
	if err != nil {
		return Result{}, err
	}
	if ws.Identity != nil {
		ws.PreviousIdentity = &previousSecret{Sealed: *ws.Identity, Until: c.OverlapUntil}
	}
	sl := c.Sealed
	ws.Identity = &sl
	ws.IdentityRotated = c.Rotated
	return Result{}, nil
}

// sealed returns a workspace's sealed secret; ErrNotFound if the workspace
// or the secret does not exist.
func (s *State) sealed(workspace string, kind SecretKind) (Sealed, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ws, err := s.d.workspace(workspace)
	if err != nil {
		return Sealed{}, err
	}
	var sl *Sealed
	switch kind {
	case SecretIdentity:
		sl = ws.Identity
	case SecretVisitor:
		sl = ws.Visitor
	}
	if sl == nil {
		return Sealed{}, fmt.Errorf("%s secret of %s: %w", kind, workspace, ErrNotFound)
	}
	return *sl, nil
}

// SetIdentitySecret seals a workspace's identity-verification secret (the
// HMAC key its site signs user IDs with) on this node and applies it.
func (c *Cluster) SetIdentitySecret(ctx context.Context, workspace string, secret []byte) (Result, error) {
	return c.setSecret(ctx, workspace, SecretIdentity, secret)
}

// SetVisitorKey seals a workspace's visitor key on this node and applies it.
func (c *Cluster) SetVisitorKey(ctx context.Context, workspace string, key []byte) (Result, error) {
	return c.setSecret(ctx, workspace, SecretVisitor, key)
}

func (c *Cluster) setSecret(ctx context.Context, workspace string, kind SecretKind, secret []byte) (Result, error) {
	if err := checkID("workspace id", workspace); err != nil {
		return Result{}, err
	}
	sl, err := c.sealer.seal(workspace, kind, secret)
	if err != nil {
		return Result{}, err
	}
	return c.Apply(ctx, SetSecret{Workspace: workspace, Kind: kind, Sealed: sl})
}

// RotateIdentitySecret seals secret on this node and makes it the
// workspace's identity secret; the secret it replaces stays valid for
// overlap (0 to MaxSecretOverlap) by this node's clock. It returns when the
// overlap ends.
func (c *Cluster) RotateIdentitySecret(ctx context.Context, workspace string, secret []byte, overlap time.Duration) (Result, time.Time, error) {
	if err := checkID("workspace id", workspace); err != nil {
		return Result{}, time.Time{}, err
	}
	sl, err := c.sealer.seal(workspace, SecretIdentity, secret)
	if err != nil {
		return Result{}, time.Time{}, err
	}
	now := time.Now().UTC()
	until := now.Add(overlap)
	res, err := c.Apply(ctx, RotateSecret{Workspace: workspace, Kind: SecretIdentity, Sealed: sl, Rotated: now, OverlapUntil: until})
	return res, until, err
}

// IdentityKeys are a workspace's identity secrets in plaintext: the
// current one and the one its last rotation replaced.
type IdentityKeys struct {
	Current []byte
	// Previous is nil when the secret was never rotated; it verifies
	// until PreviousUntil by the verifier's clock.
	Previous      []byte
	PreviousUntil time.Time
}

// IdentityKeys decrypts a workspace's identity secrets from this node's
// state; ErrNotFound if it has none.
func (c *Cluster) IdentityKeys(workspace string) (IdentityKeys, error) {
	c.State.mu.RLock()
	ws, err := c.State.d.workspace(workspace)
	var cur *Sealed
	var prev *previousSecret
	if err == nil {
		cur, prev = ws.Identity, ws.PreviousIdentity
	}
	c.State.mu.RUnlock()
	if err != nil {
		return IdentityKeys{}, err
	}
	if cur == nil {
		return IdentityKeys{}, fmt.Errorf("%s secret of %s: %w", SecretIdentity, workspace, ErrNotFound)
	}
	var k IdentityKeys
	if k.Current, err = c.sealer.open(workspace, SecretIdentity, *cur); err != nil {
		return IdentityKeys{}, err
	}
	if prev != nil {
		if k.Previous, err = c.sealer.open(workspace, SecretIdentity, prev.Sealed); err != nil {
			return IdentityKeys{}, err
		}
		k.PreviousUntil = prev.Until
	}
	return k, nil
}

// NextOverlapEnd returns the earliest end, after now, of a rotated identity
// secret's overlap in any workspace; false if none is ahead.
func (c *Cluster) NextOverlapEnd(now time.Time) (time.Time, bool) {
	s := c.State
	s.mu.RLock()
	defer s.mu.RUnlock()
	var next time.Time
	for _, ws := range s.d.Workspaces {
		if p := ws.PreviousIdentity; p != nil && p.Until.After(now) && (next.IsZero() || p.Until.Before(next)) {
			next = p.Until
		}
	}
	return next, !next.IsZero()
}

// SecretInfo describes a workspace's identity secret without revealing it.
type SecretInfo struct {
	Workspace string `json:"workspace"`
	// Rotated is when the secret was last rotated; absent: never since the
	// workspace was created.
	Rotated *time.Time `json:"rotated,omitempty"`
	// PreviousUntil is when the secret the last rotation replaced stops
	// verifying (it may be past); absent: never rotated.
	PreviousUntil *time.Time `json:"previous_valid_until,omitempty"`
}

// IdentitySecretInfo describes a workspace's identity secret; ErrNotFound
// if the workspace or its secret does not exist.
func (c *Cluster) IdentitySecretInfo(workspace string) (SecretInfo, error) {
	s := c.State
	s.mu.RLock()
	defer s.mu.RUnlock()
	ws, err := s.d.workspace(workspace)
	if err != nil {
		return SecretInfo{}, err
	}
	if ws.Identity == nil {
		return SecretInfo{}, fmt.Errorf("%s secret of %s: %w", SecretIdentity, workspace, ErrNotFound)
	}
	info := SecretInfo{Workspace: workspace}
	if !ws.IdentityRotated.IsZero() {
		t := ws.IdentityRotated
		info.Rotated = &t
	}
	if ws.PreviousIdentity != nil {
		t := ws.PreviousIdentity.Until
		info.PreviousUntil = &t
	}
	return info, nil
}

// IdentitySecret decrypts a workspace's identity-verification secret from
// this node's state; ErrNotFound if it has none.
func (c *Cluster) IdentitySecret(workspace string) ([]byte, error) {
	return c.openSecret(workspace, SecretIdentity)
}

// VisitorKey decrypts a workspace's visitor key from this node's state.
func (c *Cluster) VisitorKey(workspace string) ([]byte, error) {
	return c.openSecret(workspace, SecretVisitor)
}

func (c *Cluster) openSecret(workspace string, kind SecretKind) ([]byte, error) {
	sl, err := c.State.sealed(workspace, kind)
	if err != nil {
		return nil, err
	}
	return c.sealer.open(workspace, kind, sl)
}
