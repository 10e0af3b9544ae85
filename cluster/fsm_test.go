package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestApplyCommands walks one state through every command, the refusals
// included: each step is applied to the state the previous steps left.
func TestApplyCommands(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sessRaw, sessHash := NewSessionToken()
	keyRaw, keyHash := NewAPIKey()
	brandKeyRaw, brandKeyHash := NewAPIKey()
	conv := "c_0123456789abcdef01234567"
	sealed := Sealed{KeyID: "0123456789abcdef", Nonce: make([]byte, 12), Data: bytes.Repeat([]byte{9}, 40)}

	steps := []struct {
		name  string
		cmd   Command
		want  error
		check func(t *testing.T, s *State)
	}{
		{"create workspace", CreateWorkspace{ID: "acme", Name: "Acme", Region: "eu", Plan: "team", Brands: []Brand{{ID: "shop", Name: "Shop"}, {ID: "blog", Name: "Blog"}}, Created: t0}, nil,
			func(t *testing.T, s *State) {
				w, err := s.Workspace("acme")
				if err != nil || w.Name != "Acme" || w.Region != "eu" || w.Plan != "team" || len(w.Brands) != 2 || !w.Created.Equal(t0) {
					t.Fatalf("workspace %+v, %v", w, err)
				}
			}},
		{"create workspace again", CreateWorkspace{ID: "acme", Name: "Other", Plan: "free", Created: t0}, ErrExists, nil},
		{"create workspace of unknown plan", CreateWorkspace{ID: "other", Name: "Other", Plan: "gold", Created: t0}, ErrNotFound, nil},
		{"update workspace", UpdateWorkspace{ID: "acme", Name: ptr("Acme Inc"), Region: ptr("us")}, nil,
			func(t *testing.T, s *State) {
				w, _ := s.Workspace("acme")
				if w.Name != "Acme Inc" || w.Region != "us" || w.Plan != "team" {
					t.Fatalf("workspace %+v", w)
				}
			}},
		{"update workspace to unknown plan", UpdateWorkspace{ID: "acme", Plan: ptr("gold")}, ErrNotFound, nil},
		{"update missing workspace", UpdateWorkspace{ID: "nope", Name: ptr("N")}, ErrNotFound, nil},
		{"create operator", CreateOperator{Workspace: "acme", ID: "ann", Email: "ann@acme.test", Name: "Ann", Role: RoleAdmin, PasswordHash: testPasswordHash(), Created: t0}, nil,
			func(t *testing.T, s *State) {
				o, err := s.Operator("acme", "ann")
				if err != nil || o.Email != "ann@acme.test" || o.Role != RoleAdmin {
					t.Fatalf("operator %+v, %v", o, err)
				}
			}},
		{"create operator bob", CreateOperator{Workspace: "acme", ID: "bob", Email: "bob@acme.test", Name: "Bob", Role: RoleAgent, PasswordHash: testPasswordHash(), Created: t0}, nil, nil},
		{"operator id taken", CreateOperator{Workspace: "acme", ID: "ann", Email: "ann2@acme.test", Name: "Ann", Role: RoleAgent, PasswordHash: testPasswordHash(), Created: t0}, ErrExists, nil},
		{"operator email taken, other case", CreateOperator{Workspace: "acme", ID: "ann2", Email: "ANN@acme.test", Name: "Ann", Role: RoleAgent, PasswordHash: testPasswordHash(), Created: t0}, ErrExists, nil},
		{"operator of missing workspace", CreateOperator{Workspace: "nope", ID: "x", Email: "x@x.test", Name: "X", Role: RoleAgent, PasswordHash: testPasswordHash(), Created: t0}, ErrNotFound, nil},
		{"update operator", UpdateOperator{Workspace: "acme", ID: "bob", Name: ptr("Robert"), Role: ptr(RoleAdmin)}, nil,
			func(t *testing.T, s *State) {
				o, _ := s.Operator("acme", "bob")
				if o.Name != "Robert" || o.Role != RoleAdmin {
					t.Fatalf("operator %+v", o)
				}
			}},
		{"update missing operator", UpdateOperator{Workspace: "acme", ID: "zed", Name: ptr("Z")}, ErrNotFound, nil},
		{"create session", CreateSession{Hash: sessHash, Workspace: "acme", Operator: "ann", Created: t0, Expires: t0.Add(time.Hour)}, nil,
			func(t *testing.T, s *State) {
				o, err := s.AuthenticateSession(sessRaw)
				if err != nil || o.ID != "ann" {
					t.Fatalf("AuthenticateSession: %+v, %v", o, err)
				}
				if _, err := s.AuthenticateSession(sessRaw + "x"); !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("wrong token: %v", err)
				}
			}},
		{"create session twice", CreateSession{Hash: sessHash, Workspace: "acme", Operator: "ann", Created: t0, Expires: t0.Add(time.Hour)}, ErrExists, nil},
		{"session of missing operator", CreateSession{Hash: HashToken("o"), Workspace: "acme", Operator: "zed", Created: t0, Expires: t0.Add(time.Hour)}, ErrNotFound, nil},
		{"revoke session", RevokeSession{ID: SessionID(sessHash)}, nil,
			func(t *testing.T, s *State) {
				if _, err := s.AuthenticateSession(sessRaw); !errors.Is(err, ErrRevoked) {
					t.Fatalf("revoked session: %v", err)
				}
			}},
		{"revoke missing session", RevokeSession{ID: SessionID(HashToken("none"))}, ErrNotFound, nil},
		{"create key", CreateKey{Hash: keyHash, Workspace: "acme", Name: "server", Created: t0}, nil,
			func(t *testing.T, s *State) {
				k, err := s.AuthenticateKey(keyRaw)
				if err != nil || k.ID != KeyID(keyHash) || k.Workspace != "acme" || k.Brand != "" {
					t.Fatalf("AuthenticateKey: %+v, %v", k, err)
				}
				if _, err := s.AuthenticateKey(strings.TrimPrefix(keyRaw, APIKeyPrefix)); !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("key without prefix: %v", err)
				}
			}},
		{"create brand key", CreateKey{Hash: brandKeyHash, Workspace: "acme", Brand: "blog", Name: "blog", Created: t0}, nil, nil},
		{"key of unknown brand", CreateKey{Hash: HashToken("b"), Workspace: "acme", Brand: "nope", Name: "x", Created: t0}, ErrNotFound, nil},
		{"key of missing workspace", CreateKey{Hash: HashToken("b"), Workspace: "nope", Name: "x", Created: t0}, ErrNotFound, nil},
		{"revoke key", RevokeKey{ID: KeyID(keyHash)}, nil,
			func(t *testing.T, s *State) {
				if _, err := s.AuthenticateKey(keyRaw); !errors.Is(err, ErrRevoked) {
					t.Fatalf("revoked key: %v", err)
				}
				k, _ := s.Key(KeyID(keyHash))
				if !k.Revoked || k.RevokedIndex == 0 {
					t.Fatalf("key %+v", k)
				}
			}},
		{"revoke missing key", RevokeKey{ID: KeyID(HashToken("none"))}, ErrNotFound, nil},
		{"remove brand revokes its keys", UpdateWorkspace{ID: "acme", Brands: &[]Brand{{ID: "shop", Name: "Shop"}}}, nil,
			func(t *testing.T, s *State) {
				if _, err := s.AuthenticateKey(brandKeyRaw); !errors.Is(err, ErrRevoked) {
					t.Fatalf("key of removed brand: %v", err)
				}
			}},
		{"set secret", SetSecret{Workspace: "acme", Kind: SecretVisitor, Sealed: sealed}, nil,
			func(t *testing.T, s *State) {
				got, err := s.sealed("acme", SecretVisitor)
				if err != nil || !reflect.DeepEqual(got, sealed) {
					t.Fatalf("sealed %+v, %v", got, err)
				}
				if _, err := s.sealed("acme", SecretIdentity); !errors.Is(err, ErrNotFound) {
					t.Fatalf("unset secret: %v", err)
				}
			}},
		{"secret of missing workspace", SetSecret{Workspace: "nope", Kind: SecretVisitor, Sealed: sealed}, ErrNotFound, nil},
		{"set plan", SetPlan{Plan: Plan{Name: "gold", Seats: 3, ConversationsPerMonth: 10, MessagesPerMonth: 100}}, nil,
			func(t *testing.T, s *State) {
				if p, err := s.Plan("gold"); err != nil || p.Seats != 3 {
					t.Fatalf("plan %+v, %v", p, err)
				}
				if len(s.Plans()) != 4 {
					t.Fatalf("plans %+v", s.Plans())
				}
			}},
		{"move to plan", UpdateWorkspace{ID: "acme", Plan: ptr("gold")}, nil, nil},
		{"report usage", ReportUsage{NodeID: "n1", Workspace: "acme", Period: "2026-11", Conversations: 4, Messages: 60, IdempotencyKey: "u1"}, nil,
			func(t *testing.T, s *State) {
				u, _ := s.Usage("acme", "2026-11")
				if u.Conversations != 4 || u.Messages != 60 || u.Reports != 1 {
					t.Fatalf("usage %+v", u)
				}
				if _, over := s.OverLimit("acme", "2026-11"); over {
					t.Fatal("over limit too early")
				}
			}},
		{"usage reaches the limit", ReportUsage{NodeID: "n2", Workspace: "acme", Period: "2026-11", Conversations: 6, Messages: 1, IdempotencyKey: "u2"}, nil,
			func(t *testing.T, s *State) {
				reason, over := s.OverLimit("acme", "2026-11")
				if !over || !strings.Contains(reason, "conversations: 10 of 10") {
					t.Fatalf("OverLimit = %q, %v", reason, over)
				}
				if _, over := s.OverLimit("acme", "2026-12"); over {
					t.Fatal("a new period starts under the limit")
				}
				if _, over := s.OverLimit("nope", "2026-11"); !over {
					t.Fatal("an unknown workspace is not refused")
				}
			}},
		{"usage of missing workspace", ReportUsage{NodeID: "n1", Workspace: "nope", Period: "2026-11", Messages: 1, IdempotencyKey: "u3"}, ErrNotFound, nil},
		{"billing event", RecordBillingEvent{Event: BillingEvent{IdempotencyKey: "e1", Workspace: "acme", Period: "2026-11", Kind: "charge", Amount: 4900, Currency: "EUR", At: t0}}, nil,
			func(t *testing.T, s *State) {
				ev, _ := s.BillingEvents("acme")
				if len(ev) != 1 || ev[0].Amount != 4900 || ev[0].Index == 0 {
					t.Fatalf("events %+v", ev)
				}
			}},
		{"assign", Assign{Workspace: "acme", Conversation: conv, Operator: "bob", ExpectVersion: 0}, nil,
			func(t *testing.T, s *State) {
				a, _ := s.Assignment("acme", conv)
				if a.Operator != "bob" || a.Version != 1 {
					t.Fatalf("assignment %+v", a)
				}
			}},
		{"register node", RegisterNode{Node: NodeInfo{ID: "n1", Region: "eu", RaftAddr: "10.0.0.1:7000"}}, nil,
			func(t *testing.T, s *State) {
				if n, err := s.Node("n1"); err != nil || n.Region != "eu" {
					t.Fatalf("node %+v, %v", n, err)
				}
			}},
		{"seat limit", CreateOperator{Workspace: "acme", ID: "cat", Email: "cat@acme.test", Name: "Cat", Role: RoleAgent, PasswordHash: testPasswordHash(), Created: t0}, nil, nil},
		{"seat limit reached", CreateOperator{Workspace: "acme", ID: "dan", Email: "dan@acme.test", Name: "Dan", Role: RoleAgent, PasswordHash: testPasswordHash(), Created: t0}, ErrOverLimit, nil},
		{"delete operator", DeleteOperator{Workspace: "acme", ID: "bob"}, nil,
			func(t *testing.T, s *State) {
				if _, err := s.Operator("acme", "bob"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("deleted operator: %v", err)
				}
				a, _ := s.Assignment("acme", conv)
				if a.Operator != "" || a.Version != 2 {
					t.Fatalf("assignment of deleted operator %+v", a)
				}
			}},
		{"delete missing operator", DeleteOperator{Workspace: "acme", ID: "bob"}, ErrNotFound, nil},
		{"delete workspace", DeleteWorkspace{ID: "acme"}, nil,
			func(t *testing.T, s *State) {
				if _, err := s.Workspace("acme"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("deleted workspace: %v", err)
				}
				if _, err := s.Key(KeyID(keyHash)); !errors.Is(err, ErrNotFound) {
					t.Fatalf("key of deleted workspace: %v", err)
				}
				if _, err := s.Session(SessionID(sessHash)); !errors.Is(err, ErrNotFound) {
					t.Fatalf("session of deleted workspace: %v", err)
				}
			}},
		{"delete missing workspace", DeleteWorkspace{ID: "acme"}, ErrNotFound, nil},
		// Another tenant must never get the ID of a deleted workspace: a
		// node may still hold its data.
		{"recreate deleted workspace", CreateWorkspace{ID: "acme", Name: "Other", Plan: "free", Created: t0}, ErrExists,
			func(t *testing.T, s *State) {
				if _, ok := s.Deleted("acme"); !ok {
					t.Fatal("deletion not recorded")
				}
				if _, err := s.Workspace("acme"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("recreated workspace: %v", err)
				}
			}},
	}
	for _, st := range steps {
		before := h.state().Index()
		_, err := h.apply(st.cmd)
		if st.want == nil && err != nil || st.want != nil && !errors.Is(err, st.want) {
			t.Fatalf("%s: err %v, want %v", st.name, err, st.want)
		}
		if got := h.state().Index(); got != before+1 {
			t.Fatalf("%s: index %d after %d: a refused command still counts as applied", st.name, got, before)
		}
		if st.check != nil {
			t.Run(st.name, func(t *testing.T) { st.check(t, h.state()) })
		}
	}
}

func TestSessionLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	oldRaw, oldHash := NewSessionToken()
	h.must(CreateSession{Hash: oldHash, Workspace: "acme", Operator: "ann", Created: t0.Add(-2 * time.Hour), Expires: t0.Add(-time.Hour)})
	liveRaw, liveHash := NewSessionToken()
	h.must(CreateSession{Hash: liveHash, Workspace: "acme", Operator: "ann", Created: t0, Expires: t0.Add(time.Hour)})

	if _, err := h.state().AuthenticateSession(oldRaw); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("expired session: %v", err)
	}
	if _, err := h.state().AuthenticateSession(liveRaw); err != nil {
		t.Fatalf("live session: %v", err)
	}
	h.must(Prune{Now: t0})
	if _, err := h.state().Session(SessionID(oldHash)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired session not pruned: %v", err)
	}
	// A new password ends the sessions opened with the old one.
	h.must(UpdateOperator{Workspace: "acme", ID: "ann", PasswordHash: ptr(testPasswordHash())})
	if _, err := h.state().AuthenticateSession(liveRaw); !errors.Is(err, ErrRevoked) {
		t.Fatalf("session after password change: %v", err)
	}
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	report := ReportUsage{NodeID: "n1", Workspace: "acme", Period: "2026-11", Conversations: 1, Messages: 10, IdempotencyKey: "n1:42"}

	first := h.must(report)
	if first.Duplicate {
		t.Fatal("first report is a duplicate")
	}
	again := h.must(report)
	if !again.Duplicate || again.Index != first.Index {
		t.Fatalf("second report: %+v, want duplicate of index %d", again, first.Index)
	}
	// The same report retried through another node is the same report.
	other := report
	other.NodeID = "n2"
	if r := h.must(other); !r.Duplicate || r.Index != first.Index {
		t.Fatalf("retry via n2: %+v", r)
	}
	u, _ := h.state().Usage("acme", "2026-11")
	if u.Messages != 10 || u.Conversations != 1 || u.Reports != 1 {
		t.Fatalf("usage %+v, want one report applied", u)
	}
	// A node takes back messages it counted twice: a negative count, the
	// total never below zero; conversations are never negative.
	h.must(ReportUsage{NodeID: "n2", Workspace: "acme", Period: "2026-11", Messages: -3, IdempotencyKey: "n2:1"})
	if u, _ := h.state().Usage("acme", "2026-11"); u.Messages != 7 {
		t.Fatalf("after taking back 3: %+v", u)
	}
	h.must(ReportUsage{NodeID: "n2", Workspace: "acme", Period: "2026-11", Messages: -30, IdempotencyKey: "n2:2"})
	if u, _ := h.state().Usage("acme", "2026-11"); u.Messages != 0 {
		t.Fatalf("after taking back more than counted: %+v", u)
	}
	if err := (ReportUsage{NodeID: "n2", Workspace: "acme", Period: "2026-11", Conversations: -1, IdempotencyKey: "n2:3"}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative conversations: %v", err)
	}
	h.must(ReportUsage{NodeID: "n2", Workspace: "acme", Period: "2026-11", Messages: 10, IdempotencyKey: "n2:4"})
	// A key reused for another payload is a bug of the caller: refused.
	changed := report
	changed.Messages = 11
	if _, err := h.apply(changed); !errors.Is(err, ErrConflict) {
		t.Fatalf("reused key: %v", err)
	}

	// Billing events: a retry stamped later is the same event.
	ev := BillingEvent{IdempotencyKey: "inv-7", Workspace: "acme", Period: "2026-11", Kind: "charge", Amount: 100, At: t0}
	e1 := h.must(RecordBillingEvent{Event: ev})
	ev.At = t0.Add(time.Minute)
	if e2 := h.must(RecordBillingEvent{Event: ev}); !e2.Duplicate || e2.Index != e1.Index {
		t.Fatalf("event retry: %+v", e2)
	}
	if evs, _ := h.state().BillingEvents("acme"); len(evs) != 1 || !evs[0].At.Equal(t0) {
		t.Fatalf("events %+v", evs)
	}

	// A failed apply records nothing: the same key succeeds later.
	late := ReportUsage{NodeID: "n1", Workspace: "later", Period: "2026-11", Messages: 1, IdempotencyKey: "n1:43"}
	if _, err := h.apply(late); !errors.Is(err, ErrNotFound) {
		t.Fatalf("report to missing workspace: %v", err)
	}
	h.must(CreateWorkspace{ID: "later", Name: "Later", Plan: "free", Created: t0})
	if r := h.must(late); r.Duplicate {
		t.Fatal("a failed report was recorded as applied")
	}

	// Pruning forgets the keys of old periods only.
	h.must(ReportUsage{NodeID: "n1", Workspace: "acme", Period: "2026-10", Messages: 1, IdempotencyKey: "old"})
	h.must(Prune{Before: "2026-11"})
	h.state().mu.RLock()
	_, oldKept := h.state().d.Applied["old"]
	_, newKept := h.state().d.Applied["n1:42"]
	h.state().mu.RUnlock()
	if oldKept || !newKept {
		t.Fatalf("prune kept old=%v new=%v", oldKept, newKept)
	}
}

func TestAssignOptimistic(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	const conv = "c1"
	tests := []struct {
		name        string
		cmd         Assign
		want        error
		wantVersion uint64
		wantOp      string
	}{
		{"first assignment", Assign{Workspace: "acme", Conversation: conv, Operator: "ann", ExpectVersion: 0}, nil, 1, "ann"},
		{"stale expectation", Assign{Workspace: "acme", Conversation: conv, Operator: "bob", ExpectVersion: 0}, ErrConflict, 1, "ann"},
		{"future expectation", Assign{Workspace: "acme", Conversation: conv, Operator: "bob", ExpectVersion: 5}, ErrConflict, 1, "ann"},
		{"reassign", Assign{Workspace: "acme", Conversation: conv, Operator: "bob", ExpectVersion: 1}, nil, 2, "bob"},
		{"unknown operator", Assign{Workspace: "acme", Conversation: conv, Operator: "zed", ExpectVersion: 2}, ErrNotFound, 2, "bob"},
		{"unassign", Assign{Workspace: "acme", Conversation: conv, ExpectVersion: 2}, nil, 3, ""},
		{"unknown workspace", Assign{Workspace: "nope", Conversation: conv, ExpectVersion: 0}, ErrNotFound, 0, ""},
	}
	for _, tt := range tests {
		res, err := h.apply(tt.cmd)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Fatalf("%s: err %v, want %v", tt.name, err, tt.want)
		}
		if res.Version != tt.wantVersion {
			t.Fatalf("%s: result version %d, want %d", tt.name, res.Version, tt.wantVersion)
		}
		if tt.cmd.Workspace == "acme" {
			a, _ := h.state().Assignment("acme", conv)
			if a.Version != tt.wantVersion || a.Operator != tt.wantOp {
				t.Fatalf("%s: assignment %+v", tt.name, a)
			}
		}
	}
}

// The FSM refuses what it cannot apply with an error result, counts the
// entry as applied, and never panics.
func TestApplyRefusesBadEntries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data []byte
	}{
		{"unknown type", []byte("\xc8{}")},
		{"type zero", []byte{0}},
		{"empty", nil},
		{"garbage payload", []byte("\x01\xff\xfe")},
		{"invalid fields bypassing EncodeCommand", []byte("\x01" + `{"id":"UPPER","name":"x","plan":"free","created":"2026-11-22T10:00:00Z"}`)},
		{"plaintext password", []byte("\x04" + `{"workspace":"acme","id":"x","email":"x@acme.test","name":"X","role":"agent","password_hash":"hunter2hunter2","created":"2026-11-22T10:00:00Z"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.seed()
			before := h.snapshot()
			_, err := h.applyRaw(tt.data)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v, want ErrInvalid", err)
			}
			if h.state().Index() != h.idx {
				t.Fatalf("index %d, want %d", h.state().Index(), h.idx)
			}
			after := h.snapshot()
			// Only the index moved.
			want := bytes.Replace(before, fmt.Appendf(nil, `"index":%d`, h.idx-1), fmt.Appendf(nil, `"index":%d`, h.idx), 1)
			if !bytes.Equal(after, want) {
				t.Fatalf("state changed:\n%s\n%s", before, after)
			}
		})
	}
}

// Every command type known to the decoder reaches an apply method.
func TestEveryCommandApplies(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	for _, cmd := range validCommands() {
		if _, err := h.apply(cmd); err != nil {
			t.Errorf("%T: %v", cmd, err)
		}
	}
}

func richHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.seed()
	for _, cmd := range validCommands()[:len(validCommands())-2] {
		h.must(cmd)
	}
	_, sh := NewSessionToken()
	h.must(CreateSession{Hash: sh, Workspace: "acme", Operator: "ann", Created: t0, Expires: t0.Add(time.Hour)})
	_, kh := NewAPIKey()
	h.must(CreateKey{Hash: kh, Workspace: "acme", Name: "live", Created: t0})
	return h
}

func TestSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	h := richHarness(t)
	raw, hash := NewAPIKey()
	h.must(CreateKey{Hash: hash, Workspace: "acme", Name: "k", Created: t0})
	h.must(CreateWorkspace{ID: "initech", Name: "Initech", Plan: "free", Created: t0})
	h.must(DeleteWorkspace{ID: "initech"})
	snap := h.snapshot()

	r := newHarness(t)
	if err := r.f.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if got := r.snapshot(); !bytes.Equal(got, snap) {
		t.Fatalf("restored state differs:\n%s\n%s", snap, got)
	}
	h.state().mu.RLock()
	r.state().mu.RLock()
	equal := reflect.DeepEqual(h.state().d, r.state().d)
	r.state().mu.RUnlock()
	h.state().mu.RUnlock()
	if !equal {
		t.Fatal("restored state is not deeply equal")
	}
	if r.f.restores.Load() != 1 || r.state().Index() != h.state().Index() {
		t.Fatalf("restores %d, index %d", r.f.restores.Load(), r.state().Index())
	}
	// The derived indexes were rebuilt: a key authenticates.
	if _, err := r.state().AuthenticateKey(raw); err != nil {
		t.Fatalf("key after restore: %v", err)
	}
	// A deleted workspace's ID stays deleted: never reused, its data purged.
	if _, ok := r.state().Deleted("initech"); !ok {
		t.Fatal("deleted workspace lost in the snapshot")
	}
	// And idempotency survives: the report of validCommands is a duplicate.
	r.idx = h.idx
	if res := r.must(validCommands()[10]); !res.Duplicate {
		t.Fatal("idempotency record lost in the snapshot")
	}
}

func TestSnapshotRefused(t *testing.T) {
	t.Parallel()
	good := richHarness(t).snapshot()
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"garbage", []byte("\x00\x01garbage")},
		{"truncated", good[:len(good)/2]},
		{"newer format", bytes.Replace(good, []byte(`{"format":1,`), []byte(`{"format":2,`), 1)},
		{"no format", bytes.Replace(good, []byte(`{"format":1,`), []byte(`{`), 1)},
		{"no state", []byte(`{"format":1,"state":null}`)},
		{"unknown field", bytes.Replace(good, []byte(`"plans":`), []byte(`"extra":1,"plans":`), 1)},
		{"misfiled workspace", bytes.Replace(good, []byte(`"workspaces":{"acme":`), []byte(`"workspaces":{"other":`), 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if bytes.Equal(tt.data, good) {
				t.Fatal("the corruption did not apply")
			}
			h := newHarness(t)
			h.seed()
			before := h.snapshot()
			if err := h.f.Restore(io.NopCloser(bytes.NewReader(tt.data))); err == nil {
				t.Fatal("corrupt snapshot restored")
			}
			if !bytes.Equal(h.snapshot(), before) {
				t.Fatal("a refused snapshot changed the state")
			}
		})
	}
}

// FuzzApply feeds arbitrary entries to the FSM: it must answer each with a
// result, never panic (which it would turn into ErrInternal).
func FuzzApply(f *testing.F) {
	for _, cmd := range validCommands() {
		data, err := EncodeCommand(cmd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("\x10{\"workspace\":\"acme\",\"conversation\":\"c\",\"expect_version\":18446744073709551615}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h := newHarness(t)
		h.seed()
		_, err := h.applyRaw(data)
		if errors.Is(err, ErrInternal) {
			t.Fatalf("panic in apply: %v", err)
		}
		if h.state().Index() != h.idx {
			t.Fatal("entry not counted as applied")
		}
	})
}

// TestUnknownCommandStopsTheStateMachine: an entry of a type this version
// does not know, written by a newer one, stops the state machine unless
// the writer marked it as one an older node may skip (SkippableFlag, the
// type byte's high bit); a skipped entry still counts as applied.
func TestUnknownCommandStopsTheStateMachine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		data  []byte
		stops bool
	}{
		{"unknown, not skippable", []byte("\x64{}"), true},
		{"unknown, skippable", []byte("\xe4{}"), false},
		{"unknown inside a request", []byte("\x13" + `{"id":"0123456789abcdef","base":0,"type":100,"command":{}}`), true},
		{"unknown skippable inside a request", []byte("\x13" + `{"id":"0123456789abcdef","base":0,"type":228,"command":{}}`), false},
		{"known type with the skippable flag", []byte("\x83" + `{"id":"acme"}`), false},
		{"unknown inside an audited command", append([]byte{byte(TypeAudited)}, `{"actor":{"kind":"root"},"at":"2026-11-22T10:00:00Z","type":100,"command":{}}`...), true},
		{"unknown inside an audited request", []byte("\x13" + fmt.Sprintf(`{"id":"0123456789abcdef","base":0,"type":%d,"command":{"actor":{"kind":"root"},"at":"2026-11-22T10:00:00Z","type":100,"command":{}}}`, TypeAudited)), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.must(CreateWorkspace{ID: "acme", Name: "Acme", Plan: "free", Created: t0})
			var stopped any
			func() {
				defer func() { stopped = recover() }()
				h.applyRaw(c.data)
			}()
			if (stopped != nil) != c.stops {
				t.Fatalf("stopped = %v, want a stop: %v", stopped, c.stops)
			}
			if c.stops && !strings.Contains(fmt.Sprint(stopped), "upgrade this node") {
				t.Fatalf("the stop does not say what to do: %v", stopped)
			}
			if _, err := h.state().Workspace("acme"); err != nil {
				t.Fatalf("the entry changed the state: %v", err)
			}
		})
	}
	if CommandType(13).String() != "report_usage" || CommandType(100).String() != "unknown(100)" {
		t.Fatalf("names: %v %v", CommandType(13), CommandType(100))
	}
}
