package cluster

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"
)

// stateData is the replicated state, exactly as snapshots carry it. Maps are
// keyed by ID; encoding/json sorts map keys, so equal states encode to equal
// bytes.
type stateData struct {
	// Index is the log index of the last command applied.
	Index      uint64                     `json:"index"`
	Plans      map[string]Plan            `json:"plans"`
	Workspaces map[string]*workspaceState `json:"workspaces"`
	Sessions   map[string]*Session        `json:"sessions"`
	Keys       map[string]*Key            `json:"keys"`
	// Applied holds every idempotency key applied and not yet pruned.
	Applied map[string]appliedRecord `json:"applied"`
	Nodes   map[string]NodeInfo      `json:"nodes"`
	// Deleted holds every workspace ID ever deleted, with the log index of
	// its deletion: an ID is never handed out again (any node may still
	// hold, or be about to purge, data under it), and every node purges
	// and refuses the data of a deleted workspace.
	Deleted map[string]uint64 `json:"deleted,omitempty"`
	// Audit is the audit log (audit.go); nil until its first entry, so a
	// state without one encodes as it did before the log existed. It comes
	// before Requests, which the snapshot's encoding wants last.
	Audit *auditState `json:"audit,omitempty"`
	// Requests holds the requests (Request) applied in the last
	// requestWindow entries, by ID, with the answer each gave. A snapshot
	// written before requests existed has none, which is exact: no entry
	// up to it was a request.
	Requests map[string]requestRecord `json:"requests,omitempty"`
}

type workspaceState struct {
	Workspace Workspace                  `json:"workspace"`
	Operators map[string]*operatorRecord `json:"operators"`
	Identity  *Sealed                    `json:"identity,omitempty"`
	// PreviousIdentity is the identity secret the last rotation replaced
	// (RotateSecret), valid until its Until by each verifier's clock; kept
	// after that until the next rotation replaces it.
	PreviousIdentity *previousSecret `json:"previous_identity,omitempty"`
	// IdentityRotated is when the identity secret was last rotated; zero:
	// never.
	IdentityRotated time.Time              `json:"identity_rotated,omitzero"`
	Visitor         *Sealed                `json:"visitor,omitempty"`
	Usage           map[string]*Usage      `json:"usage"`
	Events          []BillingEvent         `json:"events"`
	Assignments     map[string]*Assignment `json:"assignments"`
	// Erased holds the workspace's erased conversations, each with the log
	// index that erased it (EraseConversation).
	Erased map[string]uint64 `json:"erased,omitempty"`
	// ErasedVisitors holds the workspace's erased visitors (participants),
	// each with the log index of its last erasure (EraseVisitor).
	ErasedVisitors map[string]uint64 `json:"erased_visitors,omitempty"`
	// DeletionRequests holds the visitors who asked to be forgotten and
	// await an agent's confirmation, with when (RequestDeletion).
	DeletionRequests map[string]time.Time `json:"deletion_requests,omitempty"`
	// Webhooks holds the workspace's webhook endpoints by ID (webhook.go).
	Webhooks map[string]*webhookRecord `json:"webhooks,omitempty"`
	// Email holds the workspace's SMTP settings with their sealed secret,
	// Mail each conversation's mail cursor and outcome (email.go).
	Email *emailRecord          `json:"email,omitempty"`
	Mail  map[string]*MailState `json:"mail,omitempty"`
}

type operatorRecord struct {
	Operator
	PasswordHash string `json:"password_hash"`
}

func newStateData() *stateData {
	d := &stateData{Plans: make(map[string]Plan)}
	for _, p := range DefaultPlans() {
		d.Plans[p.Name] = p
	}
	d.fill()
	return d
}

func newWorkspaceState(w Workspace) *workspaceState {
	ws := &workspaceState{Workspace: w}
	ws.fill()
	return ws
}

// fill makes every map non-nil, as a snapshot may carry null for an empty
// one.
func (d *stateData) fill() {
	d.Plans = nonNil(d.Plans)
	d.Workspaces = nonNil(d.Workspaces)
	d.Sessions = nonNil(d.Sessions)
	d.Keys = nonNil(d.Keys)
	d.Applied = nonNil(d.Applied)
	d.Nodes = nonNil(d.Nodes)
	d.Deleted = nonNil(d.Deleted)
	d.Requests = nonNil(d.Requests)
	for _, ws := range d.Workspaces {
		ws.fill()
	}
}

func (ws *workspaceState) fill() {
	ws.Operators = nonNil(ws.Operators)
	ws.Usage = nonNil(ws.Usage)
	ws.Assignments = nonNil(ws.Assignments)
	ws.Erased = nonNil(ws.Erased)
	ws.ErasedVisitors = nonNil(ws.ErasedVisitors)
	ws.DeletionRequests = nonNil(ws.DeletionRequests)
	ws.Webhooks = nonNil(ws.Webhooks)
	ws.Mail = nonNil(ws.Mail)
}

func nonNil[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return make(map[K]V)
	}
	return m
}

// check verifies what a restored snapshot must hold for the read and apply
// code to be safe: every record under its own key and in its own workspace.
func (d *stateData) check() error {
	for name, p := range d.Plans {
		if p.Name != name {
			return fmt.Errorf("plan %q stored under %q", p.Name, name)
		}
	}
	for id, ws := range d.Workspaces {
		if ws == nil || ws.Workspace.ID != id {
			return fmt.Errorf("workspace stored under %q is missing or misnamed", id)
		}
		for oid, o := range ws.Operators {
			if o == nil || o.ID != oid || o.Workspace != id {
				return fmt.Errorf("operator stored under %s/%s is missing or misnamed", id, oid)
			}
		}
		for p, u := range ws.Usage {
			if u == nil || u.Period != p || u.Workspace != id {
				return fmt.Errorf("usage stored under %s/%s is missing or misnamed", id, p)
			}
		}
		for wid, w := range ws.Webhooks {
			if w == nil || w.Webhook.ID != wid || w.Webhook.Workspace != id {
				return fmt.Errorf("webhook stored under %s/%s is missing or misnamed", id, wid)
			}
		}
		for c, a := range ws.Assignments {
			if a == nil || a.Conversation != c || a.Workspace != id {
				return fmt.Errorf("assignment stored under %s/%s is missing or misnamed", id, c)
			}
		}
	}
	for id, s := range d.Sessions {
		if s == nil || s.ID != id || SessionID(s.Hash) != id {
			return fmt.Errorf("session stored under %q is missing or misnamed", id)
		}
	}
	for id, k := range d.Keys {
		if k == nil || k.ID != id || KeyID(k.Hash) != id {
			return fmt.Errorf("key stored under %q is missing or misnamed", id)
		}
	}
	seen := make(map[uint64]bool, len(d.Requests))
	for id, rec := range d.Requests {
		if checkRequestID(id) != nil || rec.Index == 0 || rec.Index > d.Index || seen[rec.Index] {
			return fmt.Errorf("request %q recorded at index %d (state at %d) is misnamed or misplaced", id, rec.Index, d.Index)
		}
		seen[rec.Index] = true
	}
	return nil
}

// State is a node's copy of the replicated state. The FSM writes it as
// entries are applied; its read methods answer from it directly and are safe
// for concurrent use. A read is as fresh as the node's applied index: use
// Cluster.Consistent or WaitApplied first when a read must observe a write.
type State struct {
	mu sync.RWMutex
	d  *stateData
	// Indexes derived from d, rebuilt on restore: authentication looks a
	// token up by its hash.
	sessionsByHash map[Hash]*Session
	keysByHash     map[Hash]*Key
	// lastErased is the highest index among the erasures of d (ErasedAfter
	// answers at once when nothing was erased since).
	lastErased uint64
	// requestOrder lists d.Requests oldest first, for expiry (see
	// expireRequests and requestsSnapshot).
	requestOrder []requestEntry
	// entryTime is when the leader appended the entry being applied
	// (raft.Log.AppendedAt; zero in entries written before it was kept).
	entryTime time.Time
	// applied is closed and replaced each time Index moves, waking waiters.
	applied chan struct{}
	now     func() time.Time
}

func newState(now func() time.Time) *State {
	if now == nil {
		now = time.Now
	}
	s := &State{now: now, applied: make(chan struct{})}
	s.reset(newStateData())
	return s
}

// reset replaces the data and rebuilds the derived indexes. Callers hold mu
// or own s exclusively.
func (s *State) reset(d *stateData) {
	s.d = d
	s.sessionsByHash = make(map[Hash]*Session, len(d.Sessions))
	for _, x := range d.Sessions {
		s.sessionsByHash[x.Hash] = x
	}
	s.keysByHash = make(map[Hash]*Key, len(d.Keys))
	for _, k := range d.Keys {
		s.keysByHash[k.Hash] = k
	}
	s.lastErased = 0
	for _, ws := range d.Workspaces {
		for _, i := range ws.Erased {
			s.lastErased = max(s.lastErased, i)
		}
		for _, i := range ws.ErasedVisitors {
			s.lastErased = max(s.lastErased, i)
		}
	}
	s.rebuildRequestOrder()
}

// Index is the log index of the last command applied to this copy.
func (s *State) Index() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.d.Index
}

// appliedWait returns the applied index and a channel closed when it moves.
func (s *State) appliedWait() (uint64, <-chan struct{}) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.d.Index, s.applied
}

// workspace returns a workspace's state, ErrNotFound if there is none.
// Callers hold mu.
func (d *stateData) workspace(id string) (*workspaceState, error) {
	ws, ok := d.Workspaces[id]
	if !ok {
		return nil, fmt.Errorf("workspace %q: %w", id, ErrNotFound)
	}
	return ws, nil
}

// sortedValues returns a map's values sorted by key, for deterministic lists.
func sortedValues[V any](m map[string]V) []V {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]V, 0, len(keys))
	for _, k := range keys {
		out = append(out, m[k])
	}
	return out
}

func sortBy[T any](xs []T, key func(T) string) {
	slices.SortFunc(xs, func(a, b T) int { return cmp.Compare(key(a), key(b)) })
}
