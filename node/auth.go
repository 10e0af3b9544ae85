package node

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"

	"parley/gateway"
	"parley/store"
)

// storeAuth is the single-node control plane: workspace records in the
// node's own store. The Raft control plane replaces it behind the same
// gateway.Authenticator interface.
type storeAuth struct{ st *store.Store }

func (a storeAuth) Agent(_ context.Context, workspace, token string) (gateway.Agent, error) {
	w, err := a.st.Workspace(workspace)
	if errors.Is(err, store.ErrNotFound) {
		return gateway.Agent{}, gateway.ErrAuth
	}
	if err != nil {
		return gateway.Agent{}, fmt.Errorf("workspace %s: %w", workspace, err)
	}
	sum := sha256.Sum256([]byte(token))
	var found *store.AgentToken
	// Compare against every token, without stopping early, so timing tells
	// nothing about which or how many tokens there are.
	for i := range w.AgentTokens {
		if subtle.ConstantTimeCompare(w.AgentTokens[i].SHA256, sum[:]) == 1 {
			found = &w.AgentTokens[i]
		}
	}
	if found == nil {
		return gateway.Agent{}, gateway.ErrAuth
	}
	return gateway.Agent{ID: found.AgentID, Name: found.Name}, nil
}

func (a storeAuth) Secrets(_ context.Context, workspace string) (gateway.Secrets, error) {
	w, err := a.st.Workspace(workspace)
	if errors.Is(err, store.ErrNotFound) {
		return gateway.Secrets{}, gateway.ErrAuth
	}
	if err != nil {
		return gateway.Secrets{}, fmt.Errorf("workspace %s: %w", workspace, err)
	}
	return gateway.Secrets{Identity: w.IdentitySecret, Visitor: w.VisitorKey}, nil
}
