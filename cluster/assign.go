package cluster

import (
	"fmt"

	"parley/cluster/schema"
)

// applyAssign is an optimistic compare-and-set. The log serialises every
// Assign, so of two that expect the same version the first applied wins and
// moves the version; the second no longer matches and gets ErrConflict with
// the current version in Result.Version, to re-read and decide again.
func (s *State) applyAssign(index uint64, c *Assign) (Result, error) {
	ws, err := s.d.workspace(c.Workspace)
	if err != nil {
		return Result{}, err
	}
	a := ws.Assignments[c.Conversation]
	var current uint64
	if a != nil {
		current = a.Version
	}
	if current != c.ExpectVersion {
		return Result{Version: current}, fmt.Errorf("conversation %s/%s is at version %d, not %d: %w",
			c.Workspace, c.Conversation, current, c.ExpectVersion, ErrConflict)
	}
	if c.Operator != "" {
		if _, ok := ws.Operators[c.Operator]; !ok {
			return Result{Version: current}, fmt.Errorf("operator %s/%s: %w", c.Workspace, c.Operator, ErrNotFound)
		}
	}
	if a == nil {
		a = &Assignment{Workspace: c.Workspace, Conversation: c.Conversation}
		ws.Assignments[c.Conversation] = a
	}
	a.Operator = c.Operator
	a.Version++
	s.outbox(ws, OutboxEntry{Index: index, Type: schema.EventConversationAssigned, At: s.entryTime, Conversation: c.Conversation, Operator: c.Operator, Version: a.Version})
	return Result{Version: a.Version}, nil
}

// Assignment returns a conversation's assignment; Version 0 and no operator
// when it was never assigned.
func (s *State) Assignment(workspace, conversation string) (Assignment, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ws, err := s.d.workspace(workspace)
	if err != nil {
		return Assignment{}, err
	}
	if a := ws.Assignments[conversation]; a != nil {
		return *a, nil
	}
	return Assignment{Workspace: workspace, Conversation: conversation}, nil
}
