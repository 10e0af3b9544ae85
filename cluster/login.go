package cluster

import (
	"context"
	"errors"
	"fmt"
)

// Signing in costs a PBKDF2 check: hundreds of milliseconds of a core at
// the default cost. Three rules keep that from being turned against the
// node or its operators:
//   - at most Config.PasswordChecks hashings and checks run at once
//     (hashSlots), with Config.PasswordQueue waiting behind; beyond, ErrBusy
//     at once, so that a storm of sign-ins leaves cores for chat;
//   - every check costs the same whether the email is unknown, the password
//     wrong, or the stored hash made at an older, lower cost
//     (schema.VerifyPasswordAtCost pads the work), so timing does not tell
//     which accounts exist;
//   - a successful sign-in with a hash of another cost rehashes the
//     password at the current one (RehashPassword), so old hashes converge.
//
// Limits per address and per account are the HTTP layer's (node/adminapi).

// Login checks an operator's email and password against this node's state
// and opens a session: the raw token is returned once, only its hash is
// stored. Any mismatch is ErrUnauthorized, after the same work whether or
// not the email exists; ErrBusy when too many checks run or wait already.
func (c *Cluster) Login(ctx context.Context, workspace, email, password string) (raw string, s Session, err error) {
	o, _, err := c.checkLogin(ctx, workspace, email, password)
	if err != nil {
		return "", Session{}, err
	}
	return c.NewSession(ctx, workspace, o.ID)
}

// checkLogin finds the operator and checks the password, under a hashing
// slot; work is the PBKDF2 iterations spent (at least the current cost).
// On success it rehashes a hash of another cost.
func (c *Cluster) checkLogin(ctx context.Context, workspace, email, password string) (op Operator, work int, err error) {
	release, err := c.hashing.acquire(ctx)
	if err != nil {
		return Operator{}, 0, fmt.Errorf("login: %w", err)
	}
	cost := c.cfg.PasswordIterations
	o, err := c.State.operatorByEmail(workspace, email)
	if err != nil {
		// Spend the time a real check takes, so the answer does not tell
		// which emails exist.
		work, _ = VerifyPasswordAtCost(c.dummyHash(), password, cost)
		release()
		return Operator{}, work, fmt.Errorf("login: %w", ErrUnauthorized)
	}
	work, err = VerifyPasswordAtCost(o.PasswordHash, password, cost)
	if err != nil {
		release()
		return Operator{}, work, fmt.Errorf("login: %w", ErrUnauthorized)
	}
	if call := AuditFrom(ctx); call != nil {
		// The password proved who signs in: the session (and a rehash) is
		// the operator's own action in the audit log.
		call.SetActor(Actor{Kind: ActorOperator, Workspace: workspace, ID: o.ID})
	}
	var rehashed string
	if have, _ := PasswordCost(o.PasswordHash); have != cost {
		rehashed, err = HashPassword(password, cost)
	}
	release()
	if rehashed != "" && err == nil {
		// Best effort: the sign-in stands if the rehash fails or lost to a
		// new password (ErrConflict); the next sign-in tries again.
		_, err := c.Apply(ctx, RehashPassword{Workspace: workspace, ID: o.ID, Old: o.PasswordHash, New: rehashed})
		if err != nil && !errors.Is(err, ErrConflict) {
			c.log.Warn("rehashing a password at the current cost", "workspace", workspace, "operator", o.ID, "err", err)
		}
	}
	return o.Operator, work, nil
}

// dummyHash is a well-formed hash at this node's cost for Login to check
// against when the email is unknown.
func (c *Cluster) dummyHash() string {
	c.dummyOnce.Do(func() {
		c.dummy, _ = HashPassword("parley-no-such-operator", c.cfg.PasswordIterations)
	})
	return c.dummy
}

// hashPassword is HashPassword at this node's cost under a hashing slot.
func (c *Cluster) hashPassword(ctx context.Context, password string) (string, error) {
	release, err := c.hashing.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	return HashPassword(password, c.cfg.PasswordIterations)
}

func (s *State) applyRehashPassword(c *RehashPassword) (Result, error) {
	o, err := s.d.operator(c.Workspace, c.ID)
	if err != nil {
		return Result{}, err
	}
	if o.PasswordHash != c.Old {
		return Result{}, fmt.Errorf("rehash of operator %s/%s: the password changed meanwhile: %w", c.Workspace, c.ID, ErrConflict)
	}
	o.PasswordHash = c.New // the same password: sessions stay
	return Result{}, nil
}

// hashSlots bounds the PBKDF2 work running at once: acquire takes one of
// n slots, waiting behind at most queue others; past that it fails at once
// with ErrBusy.
type hashSlots struct {
	slots   chan struct{}
	waiting chan struct{}
}

func newHashSlots(n, queue int) *hashSlots {
	return &hashSlots{slots: make(chan struct{}, n), waiting: make(chan struct{}, n+queue)}
}

// acquire takes a slot, and returns its release; ErrBusy when n run and
// queue wait already, or the context's error if it ends first.
func (h *hashSlots) acquire(ctx context.Context) (release func(), err error) {
	select {
	case h.waiting <- struct{}{}:
	default:
		return nil, fmt.Errorf("%d password checks running or waiting: %w", cap(h.waiting), ErrBusy)
	}
	select {
	case h.slots <- struct{}{}:
		return func() { <-h.slots; <-h.waiting }, nil
	case <-ctx.Done():
		<-h.waiting
		return nil, ctx.Err()
	}
}

// inUse is how many checks run now.
func (h *hashSlots) inUse() int { return len(h.slots) }
