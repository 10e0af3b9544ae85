package cluster

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
)

// Sessions and API keys are bearer tokens of 32 random bytes. The raw token
// is shown once, to whoever created it; the state keeps only its SHA-256
// (a token has 256 bits of entropy, so a fast hash is enough: there is
// nothing to brute-force) and an ID derived from that hash for listing and
// revoking.
const (
	tokenBytes = 32
	// APIKeyPrefix starts every raw API key, so a leaked one is recognisable
	// (and greppable by secret scanners).
	APIKeyPrefix = "pk_"
)

func randomToken() string {
	b := make([]byte, tokenBytes)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// NewSessionToken returns a fresh raw session token (base64url of 32 random
// bytes) and the hash to put in CreateSession.
func NewSessionToken() (raw string, hash Hash) {
	raw = randomToken()
	return raw, HashToken(raw)
}

// NewAPIKey returns a fresh raw API key ("pk_" and base64url of 32 random
// bytes) and the hash to put in CreateKey.
func NewAPIKey() (raw string, hash Hash) {
	raw = APIKeyPrefix + randomToken()
	return raw, HashToken(raw)
}

func (s *State) applyCreateSession(c *CreateSession) (Result, error) {
	if _, err := s.d.operator(c.Workspace, c.Operator); err != nil {
		return Result{}, err
	}
	id := SessionID(c.Hash)
	if _, ok := s.sessionsByHash[c.Hash]; ok {
		return Result{}, fmt.Errorf("session %s: %w", id, ErrExists)
	}
	if _, ok := s.d.Sessions[id]; ok {
		return Result{}, fmt.Errorf("session %s: %w", id, ErrExists)
	}
	x := &Session{
		ID:        id,
		Hash:      c.Hash,
		Workspace: c.Workspace,
		Operator:  c.Operator,
		Created:   c.Created.UTC(),
		Expires:   c.Expires.UTC(),
	}
	s.d.Sessions[id] = x
	s.sessionsByHash[c.Hash] = x
	return Result{}, nil
}

func (s *State) applyRevokeSession(c *RevokeSession) (Result, error) {
	x, ok := s.d.Sessions[c.ID]
	if !ok {
		return Result{}, fmt.Errorf("session %s: %w", c.ID, ErrNotFound)
	}
	x.Revoked = true // revoking twice is not an error: the outcome is the same
	return Result{}, nil
}

func (s *State) applyCreateKey(c *CreateKey) (Result, error) {
	ws, err := s.d.workspace(c.Workspace)
	if err != nil {
		return Result{}, err
	}
	if c.Brand != "" && !hasBrand(ws.Workspace.Brands, c.Brand) {
		return Result{}, fmt.Errorf("brand %s/%s: %w", c.Workspace, c.Brand, ErrNotFound)
	}
	id := KeyID(c.Hash)
	if _, ok := s.keysByHash[c.Hash]; ok {
		return Result{}, fmt.Errorf("key %s: %w", id, ErrExists)
	}
	if _, ok := s.d.Keys[id]; ok {
		return Result{}, fmt.Errorf("key %s: %w", id, ErrExists)
	}
	k := &Key{
		ID:        id,
		Hash:      c.Hash,
		Workspace: c.Workspace,
		Brand:     c.Brand,
		Name:      c.Name,
		Created:   c.Created.UTC(),
	}
	s.d.Keys[id] = k
	s.keysByHash[c.Hash] = k
	return Result{}, nil
}

func (s *State) applyRevokeKey(index uint64, c *RevokeKey) (Result, error) {
	k, ok := s.d.Keys[c.ID]
	if !ok {
		return Result{}, fmt.Errorf("key %s: %w", c.ID, ErrNotFound)
	}
	if !k.Revoked {
		k.Revoked, k.RevokedIndex = true, index
	}
	return Result{}, nil
}

func (s *State) pruneSessions(now time.Time) {
	for id, x := range s.d.Sessions {
		if x.Expires.Before(now) {
			delete(s.d.Sessions, id)
			delete(s.sessionsByHash, x.Hash)
		}
	}
}

// AuthenticateSession returns the operator a raw session token belongs to:
// ErrUnauthorized if the token is unknown or expired, ErrRevoked if it was
// revoked. It answers from this node's state; see Cluster.WaitApplied for
// how revocation is made to hold on every node.
func (s *State) AuthenticateSession(raw string) (Operator, error) {
	h := HashToken(raw)
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	x, ok := s.sessionsByHash[h]
	// The map lookup finds the candidate; the constant-time comparison makes
	// the decision, so the answer cannot depend on a partial match.
	if !ok || subtle.ConstantTimeCompare(x.Hash[:], h[:]) != 1 {
		return Operator{}, fmt.Errorf("session: %w", ErrUnauthorized)
	}
	if x.Revoked {
		return Operator{}, fmt.Errorf("session %s: %w", x.ID, ErrRevoked)
	}
	if !now.Before(x.Expires) {
		return Operator{}, fmt.Errorf("session %s expired: %w", x.ID, ErrUnauthorized)
	}
	o, err := s.d.operator(x.Workspace, x.Operator)
	if err != nil {
		return Operator{}, fmt.Errorf("session %s: %w", x.ID, ErrUnauthorized)
	}
	return o.Operator, nil
}

// Session returns a session by ID.
func (s *State) Session(id string) (Session, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	x, ok := s.d.Sessions[id]
	if !ok {
		return Session{}, fmt.Errorf("session %s: %w", id, ErrNotFound)
	}
	return *x, nil
}

// AuthenticateKey returns the API key a raw key belongs to: ErrUnauthorized
// if unknown, ErrRevoked if revoked.
func (s *State) AuthenticateKey(raw string) (Key, error) {
	if !strings.HasPrefix(raw, APIKeyPrefix) {
		return Key{}, fmt.Errorf("key: %w", ErrUnauthorized)
	}
	h := HashToken(raw)
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.keysByHash[h]
	if !ok || subtle.ConstantTimeCompare(k.Hash[:], h[:]) != 1 {
		return Key{}, fmt.Errorf("key: %w", ErrUnauthorized)
	}
	if k.Revoked {
		return Key{}, fmt.Errorf("key %s: %w", k.ID, ErrRevoked)
	}
	return *k, nil
}

// Key returns an API key by ID.
func (s *State) Key(id string) (Key, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.d.Keys[id]
	if !ok {
		return Key{}, fmt.Errorf("key %s: %w", id, ErrNotFound)
	}
	return *k, nil
}

// Keys lists a workspace's API keys, revoked ones included, by ID.
func (s *State) Keys(workspace string) ([]Key, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, err := s.d.workspace(workspace); err != nil {
		return nil, err
	}
	out := []Key{}
	for _, k := range sortedValues(s.d.Keys) {
		if k.Workspace == workspace {
			out = append(out, *k)
		}
	}
	return out, nil
}

// NewSession opens a session for an operator, lasting Config.SessionTTL.
// The raw token is returned once; only its hash is proposed.
func (c *Cluster) NewSession(ctx context.Context, workspace, operator string) (raw string, s Session, err error) {
	raw, hash := NewSessionToken()
	now := c.cfg.Now().UTC()
	cmd := CreateSession{Hash: hash, Workspace: workspace, Operator: operator, Created: now, Expires: now.Add(c.cfg.SessionTTL)}
	if _, err := c.Apply(ctx, cmd); err != nil {
		return "", Session{}, err
	}
	return raw, Session{ID: SessionID(hash), Hash: hash, Workspace: workspace, Operator: operator, Created: cmd.Created, Expires: cmd.Expires}, nil
}

// MintKey creates an API key scoped to a workspace, or to a brand of it when
// brand is not empty. The raw key is returned once; only its hash is
// proposed. Result.Index is the index to WaitApplied for on another node.
func (c *Cluster) MintKey(ctx context.Context, workspace, brand, name string) (raw string, k Key, res Result, err error) {
	raw, hash := NewAPIKey()
	cmd := CreateKey{Hash: hash, Workspace: workspace, Brand: brand, Name: name, Created: c.cfg.Now().UTC()}
	res, err = c.Apply(ctx, cmd)
	if err != nil {
		return "", Key{}, res, err
	}
	return raw, Key{ID: KeyID(hash), Hash: hash, Workspace: workspace, Brand: brand, Name: name, Created: cmd.Created}, res, nil
}
