package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"parley/cluster"
)

const (
	demoWorkspace = "demo"
	demoOperator  = "sam"
	// demoSessionTTL: the demo's operator token is printed at every start
	// and should keep working across them.
	demoSessionTTL = 365 * 24 * time.Hour
)

type demoInfo struct {
	workspace string
	token     string // shown in the banner; empty when it can't be known
}

// ensureDemo creates the demo workspace in the control plane on first start:
// secrets, one operator, and a session for the console. Only the session
// token's SHA-256 is in the control plane; for the demo's convenience the
// token is also kept, readable by the node's user only, in the data
// directory so that every start can print the console's address.
func (n *Node) ensureDemo(ctx context.Context) (demoInfo, error) {
	if n.cfg.NoDemo {
		return demoInfo{}, nil
	}
	c := n.ctl.c
	now := time.Now().UTC()
	_, err := c.Apply(ctx, cluster.CreateWorkspace{ID: demoWorkspace, Name: "Acme Widgets (demo)", Plan: "business", Created: now})
	if err != nil && !errors.Is(err, cluster.ErrExists) {
		return demoInfo{}, fmt.Errorf("demo workspace: %w", err)
	}
	// What follows reads this node's copy of the control plane: it must
	// hold what the leader has first. A node that restarts (or joins)
	// behind it would otherwise find no secrets yet and set new ones,
	// invalidating every visitor's signature.
	idx, err := n.ctl.leaderCommitIndex(ctx)
	if err == nil {
		err = c.WaitApplied(ctx, idx)
	}
	if err != nil {
		return demoInfo{}, fmt.Errorf("demo workspace: catching up with the leader: %w", err)
	}
	// Checked every start: a crash between the workspace and its secrets
	// must not leave it without them.
	if _, err := c.IdentitySecret(demoWorkspace); errors.Is(err, cluster.ErrNotFound) {
		if _, err := c.SetIdentitySecret(ctx, demoWorkspace, random(32)); err != nil {
			return demoInfo{}, fmt.Errorf("demo identity secret: %w", err)
		}
	}
	if _, err := c.VisitorKey(demoWorkspace); errors.Is(err, cluster.ErrNotFound) {
		if _, err := c.SetVisitorKey(ctx, demoWorkspace, random(32)); err != nil {
			return demoInfo{}, fmt.Errorf("demo visitor key: %w", err)
		}
	}
	if _, err := c.Operator(demoWorkspace, demoOperator); errors.Is(err, cluster.ErrNotFound) {
		// Nobody knows this password (192 random bits, so the minimum
		// PBKDF2 cost protects it as well as any): the demo operator signs
		// in with the session below; an admin can set one with parleyctl.
		hash, err := cluster.HashPassword(hex.EncodeToString(random(24)), cluster.MinPasswordIterations)
		if err != nil {
			return demoInfo{}, err
		}
		_, err = c.Apply(ctx, cluster.CreateOperator{Workspace: demoWorkspace, ID: demoOperator,
			Email: "sam@demo.invalid", Name: "Sam (Support)", Role: cluster.RoleAdmin, PasswordHash: hash, Created: now})
		if err != nil && !errors.Is(err, cluster.ErrExists) {
			return demoInfo{}, fmt.Errorf("demo operator: %w", err)
		}
	}
	token, err := n.demoToken(ctx, now)
	if err != nil {
		return demoInfo{}, err
	}
	// This node serves the demo: it holds the workspace's data, unless the
	// demo was pinned to another region.
	if err := n.auth.ensureLocal(ctx, demoWorkspace); err != nil {
		n.log.Info("demo workspace not held here", "err", err)
	}
	n.log.Info("demo workspace ready", "workspace", demoWorkspace)
	return demoInfo{workspace: demoWorkspace, token: token}, nil
}

// demoToken returns a valid session token of the demo operator: the one
// given by flag, else the one kept in the data directory, else a new one.
func (n *Node) demoToken(ctx context.Context, now time.Time) (string, error) {
	c := n.ctl.c
	tokenFile := filepath.Join(n.cfg.DataDir, "demo-agent-token")
	token, fromFlag := n.cfg.AgentToken, n.cfg.AgentToken != ""
	if token == "" {
		if b, err := os.ReadFile(tokenFile); err == nil {
			token = strings.TrimSpace(string(b))
		}
	}
	if token != "" {
		s, err := c.Session(cluster.SessionID(cluster.HashToken(token)))
		switch {
		case err == nil && !s.Revoked && s.Expires.After(now.Add(24*time.Hour)):
			return token, nil
		case err == nil && fromFlag:
			return "", errors.New("agent-token: that session was revoked or expires within a day; give another")
		case err == nil:
			token = "" // revoked or expiring: a new one
		case !errors.Is(err, cluster.ErrNotFound):
			return "", err
		}
	}
	if token == "" {
		token = hex.EncodeToString(random(24))
	}
	cmd := cluster.CreateSession{Hash: cluster.HashToken(token), Workspace: demoWorkspace, Operator: demoOperator, Created: now, Expires: now.Add(demoSessionTTL)}
	if _, err := c.Apply(ctx, cmd); err != nil && !errors.Is(err, cluster.ErrExists) {
		return "", fmt.Errorf("demo session: %w", err)
	}
	if !fromFlag {
		if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("demo token: %w", err)
		}
	}
	return token, nil
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
