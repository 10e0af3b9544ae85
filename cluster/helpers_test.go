package cluster

import (
	"bytes"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"parley/internal/syncbuf"
)

// t0 is the wall clock of the unit tests.
var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

const testPassword = "correct horse battery"

// testPasswordHash is hashed once per test binary: PBKDF2 at 100,000
// iterations is deliberately slow.
var testPasswordHash = sync.OnceValue(func() string {
	h, err := HashPassword(testPassword, MinPasswordIterations)
	if err != nil {
		panic(err)
	}
	return h
})

// testLogger keeps the logs of a test in memory and prints the end of them
// if the test fails. Registered before the clusters, its cleanup runs after
// theirs, so it sees their shutdown too; raft goroutines that log after the
// test ended write into the buffer, never into a finished testing.T.
func testLogger(t testing.TB) *slog.Logger {
	lw := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			out := lw.String()
			if len(out) > 64<<10 {
				out = "...\n" + out[len(out)-64<<10:]
			}
			t.Logf("logs:\n%s", out)
		}
	})
	return slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type lockedBuffer = syncbuf.Buffer

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// harness applies commands to an FSM directly, as raft would, with
// consecutive indexes.
type harness struct {
	t   testing.TB
	f   *fsm
	idx uint64
}

func newHarness(t testing.TB) *harness {
	st := newState(func() time.Time { return t0 })
	return &harness{t: t, f: newFSM(st, discardLogger())}
}

func (h *harness) state() *State { return h.f.state }

func (h *harness) apply(cmd Command) (Result, error) {
	h.t.Helper()
	data, err := EncodeCommand(cmd)
	if err != nil {
		h.t.Fatalf("encode %T: %v", cmd, err)
	}
	return h.applyRaw(data)
}

func (h *harness) applyRaw(data []byte) (Result, error) {
	h.t.Helper()
	h.idx++
	out := h.f.Apply(&raft.Log{Index: h.idx, Term: 1, Type: raft.LogCommand, Data: data})
	r, ok := out.(*applyResult)
	if !ok {
		h.t.Fatalf("Apply returned %T", out)
	}
	if r.Result.Index != h.idx && !r.Result.Duplicate {
		h.t.Fatalf("result index %d, want %d", r.Result.Index, h.idx)
	}
	return r.Result, r.Err
}

func (h *harness) must(cmd Command) Result {
	h.t.Helper()
	r, err := h.apply(cmd)
	if err != nil {
		h.t.Fatalf("apply %T: %v", cmd, err)
	}
	return r
}

// snapshot returns the FSM's snapshot bytes as raft would persist them.
func (h *harness) snapshot() []byte {
	h.t.Helper()
	return snapshotBytes(h.t, h.f)
}

func snapshotBytes(t testing.TB, f *fsm) []byte {
	t.Helper()
	s, err := f.Snapshot()
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	defer s.Release()
	sink := &memSink{}
	if err := s.Persist(sink); err != nil {
		t.Fatalf("persist: %v", err)
	}
	return sink.Bytes()
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

// seed creates workspace "acme" on plan "team" with brand "shop", operator
// "ann" (admin) and "bob" (agent).
func (h *harness) seed() {
	h.t.Helper()
	h.must(CreateWorkspace{ID: "acme", Name: "Acme", Region: "eu", Plan: "team", Brands: []Brand{{ID: "shop", Name: "Shop"}}, Created: t0})
	h.must(CreateOperator{Workspace: "acme", ID: "ann", Email: "ann@acme.test", Name: "Ann", Role: RoleAdmin, PasswordHash: testPasswordHash(), Created: t0})
	h.must(CreateOperator{Workspace: "acme", ID: "bob", Email: "bob@acme.test", Name: "Bob", Role: RoleAgent, PasswordHash: testPasswordHash(), Created: t0})
}

func ptr[T any](v T) *T { return &v }

// validCommands has one valid command of every type, each applicable in
// this order to a state after seed().
func validCommands() []Command {
	sessHash := HashToken("session-token")
	keyHash := HashToken(APIKeyPrefix + "key")
	return []Command{
		CreateWorkspace{ID: "globex", Name: "Globex", Plan: "free", Created: t0},
		UpdateWorkspace{ID: "globex", Name: ptr("Globex Corp"), Region: ptr("us")},
		CreateOperator{Workspace: "globex", ID: "gina", Email: "gina@globex.test", Name: "Gina", Role: RoleAgent, PasswordHash: testPasswordHash(), Created: t0},
		UpdateOperator{Workspace: "globex", ID: "gina", Role: ptr(RoleAdmin)},
		CreateSession{Hash: sessHash, Workspace: "globex", Operator: "gina", Created: t0, Expires: t0.Add(time.Hour)},
		RevokeSession{ID: SessionID(sessHash)},
		CreateKey{Hash: keyHash, Workspace: "acme", Brand: "shop", Name: "shop key", Created: t0},
		RevokeKey{ID: KeyID(keyHash)},
		SetSecret{Workspace: "acme", Kind: SecretIdentity, Sealed: Sealed{KeyID: "0123456789abcdef", Nonce: make([]byte, 12), Data: make([]byte, 48)}},
		SetPlan{Plan: Plan{Name: "gold", Seats: 50, ConversationsPerMonth: 1000, MessagesPerMonth: 0}},
		ReportUsage{NodeID: "n1", Workspace: "acme", Period: "2026-11", Conversations: 3, Messages: 40, IdempotencyKey: "n1:2026-11:1"},
		RecordBillingEvent{Event: BillingEvent{IdempotencyKey: "ev-1", Workspace: "acme", Period: "2026-11", Kind: "charge", Amount: 4900, Currency: "EUR", At: t0}},
		Assign{Workspace: "acme", Conversation: "c_0123456789abcdef01234567", Operator: "bob", ExpectVersion: 0},
		RegisterNode{Node: NodeInfo{ID: "n1", Region: "eu", RaftAddr: "127.0.0.1:7000", APIAddr: "127.0.0.1:8080"}},
		// Decoded, a request carries its command by pointer.
		Request{ID: "0123456789abcdef0123456789abcdef", Base: 1, Cmd: &SetPlan{Plan: Plan{Name: "silver", Seats: 5}}},
		RehashPassword{Workspace: "globex", ID: "gina", Old: testPasswordHash(), New: testPasswordHash()},
		RotateSecret{Workspace: "acme", Kind: SecretIdentity, Sealed: Sealed{KeyID: "0123456789abcdef", Nonce: make([]byte, 12), Data: make([]byte, 48)}, Rotated: t0, OverlapUntil: t0.Add(time.Hour)},
		Prune{Before: "2026-01", Now: t0},
		EraseConversation{Workspace: "globex", Conversation: "c1"},
		// Decoded, an audited command carries its command by pointer.
		Audited{Audit: Audit{Actor: Actor{Kind: ActorOperator, Workspace: "globex", ID: "gina"}, Address: "127.0.0.2", Route: "PATCH /v1/admin/workspaces/{ws}", At: t0}, Cmd: &UpdateWorkspace{ID: "globex", Name: ptr("Globex Inc")}},
		RecordAudit{Entries: []AuditEntry{{Audit: Audit{Actor: Actor{Kind: ActorAnonymous, Workspace: "globex", Email: "gina@globex.test"}, Address: "::1", Route: "POST /v1/login", At: t0}, Action: "create_session", Workspace: "globex", Outcome: "unauthorized", Count: 3}}},
		PruneAudit{Before: t0},
		EraseVisitor{Workspace: "globex", Visitor: "v:0123456789abcdef0123456789abcdef"},
		EraseVisitor{Workspace: "globex", Visitor: "u:user 42"},
		SetRetention{Workspace: "globex", Days: 30},
		SetVisitorDeletion{Workspace: "globex", Mode: DeletionImmediate},
		RequestDeletion{Workspace: "globex", Visitor: "v:0123456789abcdef0123456789abcdef", At: t0},
		CreateWebhook{Workspace: "acme", ID: "wh_crm", URL: "https://crm.acme.test/parley", Events: []string{"message.created", "conversation.created"}, Sealed: testSealed, Created: t0},
		RotateWebhookSecret{Workspace: "acme", ID: "wh_crm", Sealed: testSealed, Rotated: t0, OverlapUntil: t0.Add(time.Hour)},
		AddDeadLetters{Workspace: "acme", Webhook: "wh_crm", Letters: []DeadLetter{{EventID: testEventID, Type: "message.created", Conversation: "c_0123456789abcdef01234567", Origin: "n1", OSeq: 4, Attempts: 30, LastError: "503", Dead: t0}}},
		RedeliverWebhook{Workspace: "acme", Webhook: "wh_crm"},
		ResolveDeadLetters{Workspace: "acme", Webhook: "wh_crm", Failed: []string{testEventID}, Error: "connection refused"},
		AckWebhookOutbox{Workspace: "acme", Webhook: "wh_crm", Through: 7},
		SetEmailSettings{Settings: EmailSettings{Workspace: "acme", Host: "smtp.acme.test", Port: 587, TLS: "starttls", User: "parley", From: "support@acme.test", Created: t0, Updated: t0}, Sealed: &testSealed},
		RecordMail{Workspace: "acme", Conversation: "c_0123456789abcdef01234567", Kind: "replies", Status: "sent", Through: map[string]uint64{"n1": 4}, At: t0},
		DeleteEmailSettings{Workspace: "acme"},
		CreateWebhook{Workspace: "globex", ID: "wh_gone", URL: "http://hooks.globex.test/", Events: []string{"message.deleted"}, Sealed: testSealed, Created: t0},
		DeleteWebhook{Workspace: "globex", ID: "wh_gone"},
		DeleteOperator{Workspace: "globex", ID: "gina"},
		DeleteWorkspace{ID: "globex"},
	}
}

// testSealed is a well-formed sealed secret; testEventID a webhook event ID.
var (
	testSealed  = Sealed{KeyID: "0123456789abcdef", Nonce: make([]byte, 12), Data: make([]byte, 48)}
	testEventID = "evt_0123456789abcdef0123456789abcdef"
)
