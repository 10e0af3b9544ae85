package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"
)

// The audit log (schema.Audited, docs/api.md "Audit log") is part of the
// replicated state: entries are recorded by the state machine, so every
// node holds the same entries with the same outcomes.
//
// Entries are kept per workspace, and the cluster's own (plans,
// membership, and whatever names no known workspace) under "". Each
// workspace's log keeps at most maxAuditEntries entries of known actors
// and, apart, maxAnonymousAuditEntries of anonymous ones (failed
// sign-ins, refused credentials), so that a flood of anonymous attempts
// can push out only older anonymous attempts, never the record of what an
// operator or a key did. Beyond either bound the oldest entry goes and the
// log's Dropped counts it. Entries older than the retention go by
// PruneAudit. Like requestWindow, the bounds are part of the state
// machine's definition: they never change.
const (
	maxAuditEntries          = 10_000
	maxAnonymousAuditEntries = 2_000
)

// auditState is the audit log as the state and its snapshots carry it.
type auditState struct {
	// Seq is the last entry's Seq.
	Seq uint64 `json:"seq"`
	// Logs by workspace ID; "" is the cluster's.
	Logs map[string]*auditLog `json:"logs"`
}

type auditLog struct {
	// Entries of known actors and Anonymous ones, each oldest first.
	Entries   []AuditEntry `json:"entries,omitempty"`
	Anonymous []AuditEntry `json:"anonymous,omitempty"`
	// Dropped counts the entries dropped for the bounds (not the retention).
	Dropped uint64 `json:"dropped,omitempty"`
}

// recordAudit appends e to its workspace's log, numbered. Callers hold mu.
func (s *State) recordAudit(index uint64, e AuditEntry) {
	d := s.d
	if d.Audit == nil {
		d.Audit = &auditState{}
	}
	if d.Audit.Logs == nil {
		d.Audit.Logs = map[string]*auditLog{}
	}
	d.Audit.Seq++
	e.Seq, e.Index = d.Audit.Seq, index
	e.At = e.At.UTC()
	scope := e.Workspace
	if _, ok := d.Audit.Logs[scope]; !ok {
		// An attempt may name any workspace: only those that exist get a
		// log of their own, so made-up names cannot multiply the logs.
		_, exists := d.Workspaces[scope]
		_, deleted := d.Deleted[scope]
		if !exists && !deleted {
			scope = ""
		}
	}
	l := d.Audit.Logs[scope]
	if l == nil {
		l = &auditLog{}
		d.Audit.Logs[scope] = l
	}
	list, bound := &l.Entries, maxAuditEntries
	if e.Actor.Kind == ActorAnonymous {
		list, bound = &l.Anonymous, maxAnonymousAuditEntries
	}
	if len(*list) >= bound {
		// Move the start rather than shift the whole list at every entry
		// once it is full: append moves the live entries to a new array
		// once in a while, amortised.
		n := len(*list) - bound + 1
		*list = (*list)[n:]
		l.Dropped += uint64(n)
	}
	*list = append(*list, e)
}

// applyAudited applies an audited command as if alone, then records it.
func (f *fsm) applyAudited(index uint64, c *Audited) (Result, error) {
	ws, target, fields := f.state.auditTarget(c.Cmd)
	res, err := f.dispatch(index, c.Cmd)
	outcome := OutcomeOK
	if err != nil {
		outcome = ErrorCode(err)
	}
	f.state.recordAudit(index, AuditEntry{Audit: c.Audit, Action: c.Cmd.Type().String(), Workspace: ws, Target: target, Fields: fields, Outcome: outcome})
	return res, err
}

func (s *State) applyRecordAudit(index uint64, c *RecordAudit) (Result, error) {
	for _, e := range c.Entries {
		s.recordAudit(index, e)
	}
	return Result{}, nil
}

func (s *State) applyPruneAudit(c *PruneAudit) (Result, error) {
	if s.d.Audit == nil {
		return Result{}, nil
	}
	old := func(e AuditEntry) bool { return e.At.Before(c.Before) }
	for scope, l := range s.d.Audit.Logs {
		l.Entries = slices.DeleteFunc(l.Entries, old)
		l.Anonymous = slices.DeleteFunc(l.Anonymous, old)
		if len(l.Entries) == 0 && len(l.Anonymous) == 0 {
			delete(s.d.Audit.Logs, scope)
		}
	}
	return Result{}, nil
}

// auditTarget names what cmd acts on, from the state before it applies
// (a revocation names only the ID, the state knows its workspace): never a
// value of the command but IDs and the names of the fields it sets.
// Callers hold mu.
func (s *State) auditTarget(cmd Command) (ws, target string, fields []string) {
	set := func(name string, isSet bool) {
		if isSet {
			fields = append(fields, name)
		}
	}
	switch c := cmd.(type) {
	case *CreateWorkspace:
		return c.ID, "", nil
	case *UpdateWorkspace:
		set("name", c.Name != nil)
		set("region", c.Region != nil)
		set("plan", c.Plan != nil)
		set("brands", c.Brands != nil)
		return c.ID, "", fields
	case *DeleteWorkspace:
		return c.ID, "", nil
	case *CreateOperator:
		return c.Workspace, c.ID, []string{"role"}
	case *UpdateOperator:
		set("name", c.Name != nil)
		set("role", c.Role != nil)
		set("password", c.PasswordHash != nil)
		return c.Workspace, c.ID, fields
	case *RehashPassword:
		return c.Workspace, c.ID, []string{"password"}
	case *DeleteOperator:
		return c.Workspace, c.ID, nil
	case *CreateSession:
		return c.Workspace, SessionID(c.Hash), nil
	case *RevokeSession:
		if x, ok := s.d.Sessions[c.ID]; ok {
			ws = x.Workspace
		}
		return ws, c.ID, nil
	case *CreateKey:
		if c.Brand != "" {
			fields = []string{"brand"}
		}
		return c.Workspace, KeyID(c.Hash), fields
	case *RevokeKey:
		if k, ok := s.d.Keys[c.ID]; ok {
			ws = k.Workspace
		}
		return ws, c.ID, nil
	case *SetSecret:
		return c.Workspace, string(c.Kind), nil
	case *SetPlan:
		return "", c.Plan.Name, nil
	case *RecordBillingEvent:
		return c.Event.Workspace, c.Event.IdempotencyKey, nil
	case *Assign:
		set("operator", c.Operator != "")
		return c.Workspace, c.Conversation, fields
	case *EraseConversation:
		return c.Workspace, c.Conversation, nil
	case *RegisterNode:
		return "", c.Node.ID, nil
	}
	// A command this switch does not name (added since): its workspace if
	// it has a field of that name, so its workspace's admins see it.
	b, err := json.Marshal(cmd)
	if err != nil {
		return "", "", nil
	}
	var w struct {
		Workspace string `json:"workspace"`
	}
	if json.Unmarshal(b, &w) == nil && checkID("workspace", w.Workspace) == nil {
		ws = w.Workspace
	}
	return ws, "", nil
}

// AuditQuery selects audit entries, newest first.
type AuditQuery struct {
	// Workspace: only that workspace's log; "" with All: every log; ""
	// without All: the cluster's own.
	Workspace string
	All       bool
	// Before is a paging cursor: only entries with a smaller Seq. Zero: from
	// the newest.
	Before uint64
	// Since: only entries made at or after it. Zero: all.
	Since time.Time
	// Actor: only entries whose actor's ID, email or kind is this.
	Actor string
	// Action: only entries whose action or route is this.
	Action string
	// Limit: at most this many (1 to 1000). Zero: 100.
	Limit int
}

// AuditPage is a page of entries, newest first. Next is the cursor of the
// following page (Before), zero when this is the last.
type AuditPage struct {
	Entries []AuditEntry `json:"entries"`
	Next    uint64       `json:"next,omitempty"`
	// Dropped counts the entries the logs read dropped for their bounds.
	Dropped uint64 `json:"dropped,omitempty"`
}

// AuditLog answers a query from this node's copy of the log.
func (s *State) AuditLog(q AuditQuery) AuditPage {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	q.Limit = min(q.Limit, 1000)
	s.mu.RLock()
	defer s.mu.RUnlock()
	page := AuditPage{Entries: []AuditEntry{}}
	if s.d.Audit == nil {
		return page
	}
	var hits []AuditEntry
	match := func(e AuditEntry) bool {
		return (q.Since.IsZero() || !e.At.Before(q.Since)) &&
			(q.Actor == "" || q.Actor == e.Actor.ID || q.Actor == e.Actor.Kind || strings.EqualFold(q.Actor, e.Actor.Email)) &&
			(q.Action == "" || q.Action == e.Action || q.Action == e.Route)
	}
	for scope, l := range s.d.Audit.Logs {
		if !q.All && scope != q.Workspace {
			continue
		}
		page.Dropped += l.Dropped
		for _, list := range [][]AuditEntry{l.Entries, l.Anonymous} {
			// Each list is in Seq order: from the cursor down, the first
			// Limit+1 that match are all it can give the page.
			i := len(list)
			if q.Before != 0 {
				i, _ = slices.BinarySearchFunc(list, q.Before, func(e AuditEntry, seq uint64) int { return cmp.Compare(e.Seq, seq) })
			}
			for n := 0; i > 0 && n <= q.Limit; i-- {
				if e := list[i-1]; match(e) {
					hits = append(hits, e)
					n++
				}
			}
		}
	}
	slices.SortFunc(hits, func(a, b AuditEntry) int { return cmp.Compare(b.Seq, a.Seq) })
	if len(hits) > q.Limit {
		hits = hits[:q.Limit]
		page.Next = hits[len(hits)-1].Seq
	}
	for i := range hits {
		hits[i].Fields = slices.Clone(hits[i].Fields)
	}
	page.Entries = append(page.Entries, hits...)
	return page
}

// OldestAudit is the time of the oldest entry held; zero when none.
func (s *State) OldestAudit() time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var oldest time.Time
	if s.d.Audit == nil {
		return oldest
	}
	for _, l := range s.d.Audit.Logs {
		for _, list := range [][]AuditEntry{l.Entries, l.Anonymous} {
			for _, e := range list {
				if oldest.IsZero() || e.At.Before(oldest) {
					oldest = e.At
				}
			}
		}
	}
	return oldest
}

// AuditCall is one API request's audit context: who makes it, from where,
// through which route. Handed to Apply in the context (WithAudit), it
// makes every command the request applies an Audited one, recorded by the
// state machine with its outcome; the caller then records what applied no
// command (Unrecorded). Safe for concurrent use.
type AuditCall struct {
	mu    sync.Mutex
	audit Audit
	// recorded counts the commands the state machine recorded; failed
	// says whether the last of them failed.
	recorded int
	failed   bool
}

// NewAuditCall starts the audit context of a request by actor from
// address through route.
func NewAuditCall(actor Actor, address, route string) *AuditCall {
	return &AuditCall{audit: Audit{Actor: actor, Address: address, Route: route}}
}

// SetActor names the actor once known (after authentication or a
// successful sign-in).
func (a *AuditCall) SetActor(actor Actor) {
	a.mu.Lock()
	a.audit.Actor = actor
	a.mu.Unlock()
}

// Audit is the call's context stamped with at.
func (a *AuditCall) Audit(at time.Time) Audit {
	a.mu.Lock()
	defer a.mu.Unlock()
	x := a.audit
	x.At = at.UTC()
	return x
}

// Unrecorded says whether an outcome of the request (its error, nil for
// success) is not in the log yet: no command of it was recorded, or it
// failed after the last one recorded, which succeeded.
func (a *AuditCall) Unrecorded(err error) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.recorded == 0 || (err != nil && !a.failed)
}

// applied notes an Apply's outcome: the state machine recorded it if it
// answered with an index (it applied the entry).
func (a *AuditCall) applied(res Result, err error) {
	if res.Index == 0 {
		return
	}
	a.mu.Lock()
	a.recorded++
	a.failed = err != nil
	a.mu.Unlock()
}

type auditKey struct{}

// WithAudit returns ctx carrying the audit context of a request.
func WithAudit(ctx context.Context, call *AuditCall) context.Context {
	return context.WithValue(ctx, auditKey{}, call)
}

// AuditFrom returns the audit context ctx carries, or nil.
func AuditFrom(ctx context.Context) *AuditCall {
	call, _ := ctx.Value(auditKey{}).(*AuditCall)
	return call
}

// audited wraps cmd for the audit context of ctx, if any: every command
// but those of the audit log itself.
func (c *Cluster) audited(ctx context.Context, cmd Command) (Command, *AuditCall) {
	call := AuditFrom(ctx)
	if call == nil || cmd == nil {
		return cmd, nil
	}
	switch cmd.Type() {
	case TypeRecordAudit, TypePruneAudit, TypeAudited, TypeRequest:
		return cmd, nil
	}
	a := Audited{Audit: call.Audit(c.cfg.Now()), Cmd: cmd}
	if err := a.Validate(); err != nil && cmd.Validate() == nil {
		// The audit context is at fault, not the command: the action must
		// not fail for it. A bug of the caller's; the action goes
		// unrecorded, loudly.
		c.log.Error("cluster: BUG: audit context refused; applying the command unaudited", "type", cmd.Type(), "err", err)
		return cmd, nil
	}
	return a, call
}

// RunAuditRetention keeps the audit log to retention: while this node
// leads, whenever the oldest entry is older than retention, it applies a
// PruneAudit of what is (every node drops the same entries, the command
// carrying the time). It checks every retention/4, at most every hour and
// at least every second, and returns nil when ctx ends. The node runs it.
func (c *Cluster) RunAuditRetention(ctx context.Context, retention time.Duration) error {
	if retention <= 0 {
		return nil
	}
	t := time.NewTicker(min(max(retention/4, time.Second), time.Hour))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if !c.IsLeader() {
			continue
		}
		before := c.cfg.Now().Add(-retention)
		if oldest := c.OldestAudit(); oldest.IsZero() || !oldest.Before(before) {
			continue
		}
		if _, err := c.Apply(ctx, PruneAudit{Before: before}); err != nil && ctx.Err() == nil {
			c.log.Warn("audit: pruning entries past the retention failed; next check tries again", "before", before, "err", err)
		}
	}
}
