package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"parley/store"
)

const demoWorkspace = "demo"

type demoInfo struct {
	workspace string
	token     string // shown in the banner; empty when it can't be known
}

// ensureDemo creates the demo workspace on first start. Only the SHA-256 of
// its operator token is stored; for the demo's convenience the generated
// token is also kept, readable by the node's user only, in the data directory
// so that every start can print the console's address.
func (n *Node) ensureDemo(ctx context.Context) (demoInfo, error) {
	if n.cfg.NoDemo {
		return demoInfo{}, nil
	}
	tokenFile := filepath.Join(n.cfg.DataDir, "demo-agent-token")
	token := n.cfg.AgentToken
	if token == "" {
		if b, err := os.ReadFile(tokenFile); err == nil {
			token = strings.TrimSpace(string(b))
		}
	}
	w, err := n.store.Workspace(demoWorkspace)
	switch {
	case errors.Is(err, store.ErrNotFound):
		w = store.Workspace{ID: demoWorkspace, Name: "Acme Widgets (demo)", IdentitySecret: random(32), VisitorKey: random(32)}
	case err != nil:
		return demoInfo{}, err
	}
	if token == "" {
		token = hex.EncodeToString(random(24))
		if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
			return demoInfo{}, fmt.Errorf("demo token: %w", err)
		}
	}
	sum := sha256.Sum256([]byte(token))
	for _, t := range w.AgentTokens {
		if string(t.SHA256) == string(sum[:]) {
			return demoInfo{workspace: demoWorkspace, token: token}, nil
		}
	}
	w.AgentTokens = append(w.AgentTokens, store.AgentToken{AgentID: fmt.Sprintf("agent%d", len(w.AgentTokens)+1), Name: "Sam (Support)", SHA256: sum[:]})
	if err := n.store.PutWorkspace(ctx, w); err != nil {
		return demoInfo{}, fmt.Errorf("demo workspace: %w", err)
	}
	n.log.Info("demo workspace ready", "workspace", demoWorkspace)
	return demoInfo{workspace: demoWorkspace, token: token}, nil
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
