package cluster

import (
	"fmt"
	"slices"
)

// DefaultPlans are the plans every new state starts with. They are part of
// the state's starting point, which every node replaying the log from index
// 1 must share: change a plan with SetPlan, never by editing these values.
func DefaultPlans() []Plan {
	return []Plan{
		{Name: "free", Seats: 2, ConversationsPerMonth: 100, MessagesPerMonth: 5_000},
		{Name: "team", Seats: 10, ConversationsPerMonth: 5_000, MessagesPerMonth: 250_000},
		{Name: "business", Seats: 100, ConversationsPerMonth: 100_000, MessagesPerMonth: 5_000_000},
	}
}

// appliedRecord remembers an applied idempotency key: its period (for
// pruning), a fingerprint of its payload and the result it produced.
type appliedRecord struct {
	Period      string `json:"period"`
	Fingerprint string `json:"fingerprint"`
	Result      Result `json:"result"`
}

// once applies a command carrying an idempotency key exactly once. The log
// orders every proposal, so of two copies of a command (a retry after a lost
// acknowledgement, the same event sent to two nodes at the same moment, a
// resend across a leader change) the first applied changes the state and
// every later one finds its key here and gets the first one's Result back.
// A failed apply records nothing, so a retry may succeed later.
func (s *State) once(index uint64, key, period, fp string, apply func() error) (Result, error) {
	if rec, ok := s.d.Applied[key]; ok {
		if rec.Fingerprint != fp {
			return Result{}, fmt.Errorf("idempotency key %q reused for a different payload: %w", key, ErrConflict)
		}
		r := rec.Result
		r.Duplicate = true
		return r, nil
	}
	if err := apply(); err != nil {
		return Result{}, err
	}
	r := Result{Index: index}
	s.d.Applied[key] = appliedRecord{Period: period, Fingerprint: fp, Result: r}
	return r, nil
}

func (s *State) applySetPlan(c *SetPlan) (Result, error) {
	s.d.Plans[c.Plan.Name] = c.Plan
	return Result{}, nil
}

func (s *State) applyReportUsage(index uint64, c *ReportUsage) (Result, error) {
	return s.once(index, c.IdempotencyKey, c.Period, c.Fingerprint(), func() error {
		ws, err := s.d.workspace(c.Workspace)
		if err != nil {
			return err
		}
		u := ws.Usage[c.Period]
		if u == nil {
			u = &Usage{Workspace: c.Workspace, Period: c.Period}
			ws.Usage[c.Period] = u
		}
		u.Conversations += c.Conversations
		u.Messages = max(u.Messages+c.Messages, 0)
		u.Reports++
		return nil
	})
}

func (s *State) applyRecordBillingEvent(index uint64, c *RecordBillingEvent) (Result, error) {
	e := c.Event
	return s.once(index, e.IdempotencyKey, e.Period, e.Fingerprint(), func() error {
		ws, err := s.d.workspace(e.Workspace)
		if err != nil {
			return err
		}
		e.At = e.At.UTC()
		e.Index = index
		ws.Events = append(ws.Events, e)
		return nil
	})
}

func (s *State) applyPrune(c *Prune) (Result, error) {
	if c.Before != "" {
		for k, rec := range s.d.Applied {
			if rec.Period < c.Before { // YYYY-MM sorts as text
				delete(s.d.Applied, k)
			}
		}
	}
	if !c.Now.IsZero() {
		s.pruneSessions(c.Now)
	}
	return Result{}, nil
}

// Reads.

// Plans lists the plans by name.
func (s *State) Plans() []Plan {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sortedValues(s.d.Plans)
}

// Plan returns a plan by name.
func (s *State) Plan(name string) (Plan, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.d.Plans[name]
	if !ok {
		return Plan{}, fmt.Errorf("plan %q: %w", name, ErrNotFound)
	}
	return p, nil
}

// Usage returns a workspace's usage in a period (zero counts when nothing
// was reported yet).
func (s *State) Usage(workspace, period string) (Usage, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ws, err := s.d.workspace(workspace)
	if err != nil {
		return Usage{}, err
	}
	if u := ws.Usage[period]; u != nil {
		return *u, nil
	}
	return Usage{Workspace: workspace, Period: period}, nil
}

// BillingEvents lists a workspace's billing events in the order applied.
func (s *State) BillingEvents(workspace string) ([]BillingEvent, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ws, err := s.d.workspace(workspace)
	if err != nil {
		return nil, err
	}
	return slices.Clone(ws.Events), nil
}

// OverLimit says whether a workspace has used up its plan in a period, and
// which limit: at the limit counts as over, since the next conversation or
// message would exceed it. Usage arrives in the nodes' periodic reports, so
// enforcement lags by up to one report interval. An unknown workspace is
// over (fail closed).
func (s *State) OverLimit(workspace, period string) (reason string, over bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ws, err := s.d.workspace(workspace)
	if err != nil {
		return err.Error(), true
	}
	p, ok := s.d.Plans[ws.Workspace.Plan]
	if !ok {
		return fmt.Sprintf("plan %q of workspace %s not found", ws.Workspace.Plan, workspace), true
	}
	u := ws.Usage[period]
	if u == nil {
		return "", false
	}
	if p.ConversationsPerMonth > 0 && u.Conversations >= p.ConversationsPerMonth {
		return fmt.Sprintf("conversations: %d of %d in %s on plan %s", u.Conversations, p.ConversationsPerMonth, period, p.Name), true
	}
	if p.MessagesPerMonth > 0 && u.Messages >= p.MessagesPerMonth {
		return fmt.Sprintf("messages: %d of %d in %s on plan %s", u.Messages, p.MessagesPerMonth, period, p.Name), true
	}
	return "", false
}
