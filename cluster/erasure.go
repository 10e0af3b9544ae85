package cluster

import (
	"cmp"
	"parley/cluster/schema"
	"slices"
)

func (s *State) applyEraseConversation(index uint64, c *EraseConversation) (Result, error) {
	ws, err := s.d.workspace(c.Workspace)
	if err != nil {
		return Result{}, err
	}
	if first, ok := ws.Erased[c.Conversation]; ok {
		return Result{Index: first, Duplicate: true}, nil
	}
	ws.Erased[c.Conversation] = index
	s.lastErased = max(s.lastErased, index)
	delete(ws.Assignments, c.Conversation)
	delete(ws.Mail, c.Conversation)
	return Result{}, nil
}

// applyEraseVisitor records a visitor's erasure at index; the nodes turn it
// into the erasure of each conversation of the visitor they hold.
func (s *State) applyEraseVisitor(index uint64, c *EraseVisitor) (Result, error) {
	ws, err := s.d.workspace(c.Workspace)
	if err != nil {
		return Result{}, err
	}
	ws.ErasedVisitors[c.Visitor] = index
	delete(ws.DeletionRequests, c.Visitor)
	s.lastErased = max(s.lastErased, index)
	s.outbox(ws, OutboxEntry{Index: index, Type: schema.EventVisitorErased, At: s.entryTime, Visitor: c.Visitor})
	return Result{}, nil
}

// applySetRetention sets a workspace's retention.
func (s *State) applySetRetention(c *SetRetention) (Result, error) {
	ws, err := s.d.workspace(c.Workspace)
	if err != nil {
		return Result{}, err
	}
	ws.Workspace.RetentionDays = c.Days
	return Result{}, nil
}

// applySetVisitorDeletion sets what a visitor's request to be forgotten
// does in a workspace.
func (s *State) applySetVisitorDeletion(c *SetVisitorDeletion) (Result, error) {
	ws, err := s.d.workspace(c.Workspace)
	if err != nil {
		return Result{}, err
	}
	ws.Workspace.VisitorDeletion = c.Mode
	return Result{}, nil
}

// applyRequestDeletion records a visitor's request to be forgotten; a
// second one keeps the first's time.
func (s *State) applyRequestDeletion(c *RequestDeletion) (Result, error) {
	ws, err := s.d.workspace(c.Workspace)
	if err != nil {
		return Result{}, err
	}
	if _, ok := ws.DeletionRequests[c.Visitor]; !ok {
		ws.DeletionRequests[c.Visitor] = c.At
	}
	return Result{}, nil
}

// DeletionRequests lists a workspace's visitors who asked to be forgotten
// and await an agent's confirmation, oldest first.
func (s *State) DeletionRequests(workspace string) ([]DeletionRequest, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ws, err := s.d.workspace(workspace)
	if err != nil {
		return nil, err
	}
	out := make([]DeletionRequest, 0, len(ws.DeletionRequests))
	for v, at := range ws.DeletionRequests {
		out = append(out, DeletionRequest{Visitor: v, At: at})
	}
	slices.SortFunc(out, func(a, b DeletionRequest) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return cmp.Compare(a.Visitor, b.Visitor)
	})
	return out, nil
}

// Erased returns the index that erased a conversation; ok is false when it
// was not erased.
func (s *State) Erased(workspace, conversation string) (index uint64, ok bool, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ws, err := s.d.workspace(workspace)
	if err != nil {
		return 0, false, err
	}
	index, ok = ws.Erased[conversation]
	return index, ok, nil
}

// ErasedAfter lists the erasures applied after index, in index order, and
// the index of the state they were read from.
func (s *State) ErasedAfter(index uint64) ([]Erasure, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.lastErased <= index {
		return nil, s.d.Index
	}
	var out []Erasure
	for id, ws := range s.d.Workspaces {
		for conv, i := range ws.Erased {
			if i > index {
				out = append(out, Erasure{Workspace: id, Conversation: conv, Index: i})
			}
		}
		for v, i := range ws.ErasedVisitors {
			if i > index {
				out = append(out, Erasure{Workspace: id, Visitor: v, Index: i})
			}
		}
	}
	slices.SortFunc(out, func(a, b Erasure) int { return cmp.Compare(a.Index, b.Index) })
	return out, s.d.Index
}
