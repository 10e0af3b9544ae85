package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Applying workspace, operator and node commands. Every apply method runs
// under s.mu held for writing, is deterministic (no clock, no randomness, no
// map iteration order leaking into the state) and checks everything it
// relies on, returning an error result rather than panicking.

func (s *State) applyCreateWorkspace(c *CreateWorkspace) (Result, error) {
	d := s.d
	if _, ok := d.Workspaces[c.ID]; ok {
		return Result{}, fmt.Errorf("workspace %q: %w", c.ID, ErrExists)
	}
	if _, ok := d.Deleted[c.ID]; ok {
		return Result{}, fmt.Errorf("workspace %q was deleted, and a workspace ID is never reused: %w", c.ID, ErrExists)
	}
	if _, ok := d.Plans[c.Plan]; !ok {
		return Result{}, fmt.Errorf("plan %q: %w", c.Plan, ErrNotFound)
	}
	d.Workspaces[c.ID] = newWorkspaceState(Workspace{
		ID:      c.ID,
		Name:    c.Name,
		Region:  c.Region,
		Plan:    c.Plan,
		Brands:  slices.Clone(c.Brands),
		Created: c.Created.UTC(),
	})
	return Result{}, nil
}

func (s *State) applyUpdateWorkspace(index uint64, c *UpdateWorkspace) (Result, error) {
	ws, err := s.d.workspace(c.ID)
	if err != nil {
		return Result{}, err
	}
	if c.Plan != nil {
		if _, ok := s.d.Plans[*c.Plan]; !ok {
			return Result{}, fmt.Errorf("plan %q: %w", *c.Plan, ErrNotFound)
		}
	}
	w := &ws.Workspace
	if c.Name != nil {
		w.Name = *c.Name
	}
	if c.Region != nil {
		w.Region = *c.Region
	}
	if c.Plan != nil {
		w.Plan = *c.Plan
	}
	if c.Brands != nil {
		w.Brands = slices.Clone(*c.Brands)
		// A key scoped to a brand that is gone must stop working with it.
		for _, k := range s.d.Keys {
			if k.Workspace == c.ID && k.Brand != "" && !hasBrand(w.Brands, k.Brand) && !k.Revoked {
				k.Revoked, k.RevokedIndex = true, index
			}
		}
	}
	return Result{}, nil
}

func hasBrand(bs []Brand, id string) bool {
	return slices.ContainsFunc(bs, func(b Brand) bool { return b.ID == id })
}

func (s *State) applyDeleteWorkspace(index uint64, c *DeleteWorkspace) (Result, error) {
	if _, err := s.d.workspace(c.ID); err != nil {
		return Result{}, err
	}
	for id, x := range s.d.Sessions {
		if x.Workspace == c.ID {
			delete(s.d.Sessions, id)
			delete(s.sessionsByHash, x.Hash)
		}
	}
	for id, k := range s.d.Keys {
		if k.Workspace == c.ID {
			delete(s.d.Keys, id)
			delete(s.keysByHash, k.Hash)
		}
	}
	delete(s.d.Workspaces, c.ID)
	s.d.Deleted[c.ID] = index
	return Result{}, nil
}

func (s *State) applyCreateOperator(c *CreateOperator) (Result, error) {
	ws, err := s.d.workspace(c.Workspace)
	if err != nil {
		return Result{}, err
	}
	if _, ok := ws.Operators[c.ID]; ok {
		return Result{}, fmt.Errorf("operator %s/%s: %w", c.Workspace, c.ID, ErrExists)
	}
	for _, o := range ws.Operators {
		if strings.EqualFold(o.Email, c.Email) {
			return Result{}, fmt.Errorf("operator email in %s: %w", c.Workspace, ErrExists)
		}
	}
	if p, ok := s.d.Plans[ws.Workspace.Plan]; ok && p.Seats > 0 && int64(len(ws.Operators)) >= p.Seats {
		return Result{}, fmt.Errorf("workspace %s has %d of %d seats on plan %s: %w",
			c.Workspace, len(ws.Operators), p.Seats, p.Name, ErrOverLimit)
	}
	ws.Operators[c.ID] = &operatorRecord{
		Operator: Operator{
			ID:        c.ID,
			Workspace: c.Workspace,
			Email:     c.Email,
			Name:      c.Name,
			Role:      c.Role,
			Created:   c.Created.UTC(),
		},
		PasswordHash: c.PasswordHash,
	}
	return Result{}, nil
}

func (s *State) applyUpdateOperator(c *UpdateOperator) (Result, error) {
	o, err := s.d.operator(c.Workspace, c.ID)
	if err != nil {
		return Result{}, err
	}
	if c.Name != nil {
		o.Name = *c.Name
	}
	if c.Role != nil {
		o.Role = *c.Role
	}
	if c.PasswordHash != nil {
		o.PasswordHash = *c.PasswordHash
		// A changed password ends every session opened with the old one.
		for _, x := range s.d.Sessions {
			if x.Workspace == c.Workspace && x.Operator == c.ID {
				x.Revoked = true
			}
		}
	}
	return Result{}, nil
}

func (s *State) applyDeleteOperator(c *DeleteOperator) (Result, error) {
	ws, err := s.d.workspace(c.Workspace)
	if err != nil {
		return Result{}, err
	}
	if _, ok := ws.Operators[c.ID]; !ok {
		return Result{}, fmt.Errorf("operator %s/%s: %w", c.Workspace, c.ID, ErrNotFound)
	}
	delete(ws.Operators, c.ID)
	for id, x := range s.d.Sessions {
		if x.Workspace == c.Workspace && x.Operator == c.ID {
			delete(s.d.Sessions, id)
			delete(s.sessionsByHash, x.Hash)
		}
	}
	// Bumping the version makes a concurrent Assign that still expects the
	// old one fail rather than resurrect the deleted operator's claim.
	for _, a := range ws.Assignments {
		if a.Operator == c.ID {
			a.Operator = ""
			a.Version++
		}
	}
	return Result{}, nil
}

func (s *State) applyRegisterNode(c *RegisterNode) (Result, error) {
	s.d.Nodes[c.Node.ID] = c.Node
	return Result{}, nil
}

func (d *stateData) operator(ws, id string) (*operatorRecord, error) {
	w, err := d.workspace(ws)
	if err != nil {
		return nil, err
	}
	o, ok := w.Operators[id]
	if !ok {
		return nil, fmt.Errorf("operator %s/%s: %w", ws, id, ErrNotFound)
	}
	return o, nil
}

// Reads.

func copyWorkspace(w Workspace) Workspace {
	w.Brands = slices.Clone(w.Brands)
	return w
}

// Workspace returns a workspace, ErrNotFound if there is none.
func (s *State) Workspace(id string) (Workspace, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ws, err := s.d.workspace(id)
	if err != nil {
		return Workspace{}, err
	}
	return copyWorkspace(ws.Workspace), nil
}

// Deleted returns the log index at which a workspace was deleted, and
// whether it ever was: its ID is never reused, and its data is purged.
func (s *State) Deleted(id string) (uint64, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.d.Deleted[id]
	return i, ok
}

// Workspaces lists every workspace by ID.
func (s *State) Workspaces() []Workspace {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Workspace, 0, len(s.d.Workspaces))
	for _, ws := range sortedValues(s.d.Workspaces) {
		out = append(out, copyWorkspace(ws.Workspace))
	}
	return out
}

// Operator returns an operator, ErrNotFound if it or its workspace does not
// exist.
func (s *State) Operator(workspace, id string) (Operator, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, err := s.d.operator(workspace, id)
	if err != nil {
		return Operator{}, err
	}
	return o.Operator, nil
}

// Operators lists a workspace's operators by ID.
func (s *State) Operators(workspace string) ([]Operator, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ws, err := s.d.workspace(workspace)
	if err != nil {
		return nil, err
	}
	out := make([]Operator, 0, len(ws.Operators))
	for _, o := range sortedValues(ws.Operators) {
		out = append(out, o.Operator)
	}
	return out, nil
}

// operatorByEmail finds an operator for a login, with its password hash.
func (s *State) operatorByEmail(workspace, email string) (operatorRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ws, err := s.d.workspace(workspace)
	if err != nil {
		return operatorRecord{}, err
	}
	for _, o := range ws.Operators {
		if strings.EqualFold(o.Email, email) {
			return *o, nil
		}
	}
	return operatorRecord{}, fmt.Errorf("operator email in %s: %w", workspace, ErrNotFound)
}

// Nodes lists the nodes that registered, by ID.
func (s *State) Nodes() []NodeInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sortedValues(s.d.Nodes)
}

// Node returns what a node registered, ErrNotFound if it never did.
func (s *State) Node(id string) (NodeInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n, ok := s.d.Nodes[id]
	if !ok {
		return NodeInfo{}, fmt.Errorf("node %q: %w", id, ErrNotFound)
	}
	return n, nil
}

// NewOperator is an operator to add, with the password in clear: AddOperator
// hashes it before anything is proposed.
type NewOperator struct {
	Workspace string
	ID        string
	Email     string
	Name      string
	Role      Role
	Password  string
}

// AddOperator hashes the operator's password on this node and applies
// CreateOperator: the password itself never reaches the log.
func (c *Cluster) AddOperator(ctx context.Context, o NewOperator) (Operator, Result, error) {
	hash, err := c.hashPassword(ctx, o.Password)
	if err != nil {
		return Operator{}, Result{}, err
	}
	cmd := CreateOperator{
		Workspace:    o.Workspace,
		ID:           o.ID,
		Email:        o.Email,
		Name:         o.Name,
		Role:         o.Role,
		PasswordHash: hash,
		Created:      c.cfg.Now().UTC(),
	}
	res, err := c.Apply(ctx, cmd)
	if err != nil {
		return Operator{}, res, err
	}
	return Operator{ID: cmd.ID, Workspace: cmd.Workspace, Email: cmd.Email, Name: cmd.Name, Role: cmd.Role, Created: cmd.Created}, res, nil
}

// SetPassword hashes a new password on this node and applies it, which
// revokes the operator's sessions.
func (c *Cluster) SetPassword(ctx context.Context, workspace, operator, password string) (Result, error) {
	hash, err := c.hashPassword(ctx, password)
	if err != nil {
		return Result{}, err
	}
	return c.Apply(ctx, UpdateOperator{Workspace: workspace, ID: operator, PasswordHash: &hash})
}
