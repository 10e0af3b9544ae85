package cluster

import (
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"parley/cluster/schema"
)

// The numbers are a wire and disk format: this test fails if one is
// renumbered. Appending a type means appending a line here.
func TestCommandTypesAreStable(t *testing.T) {
	t.Parallel()
	want := map[CommandType]Command{
		1: &CreateWorkspace{}, 2: &UpdateWorkspace{}, 3: &DeleteWorkspace{},
		4: &CreateOperator{}, 5: &UpdateOperator{}, 6: &DeleteOperator{},
		7: &CreateSession{}, 8: &RevokeSession{}, 9: &CreateKey{}, 10: &RevokeKey{},
		11: &SetSecret{}, 12: &SetPlan{}, 13: &ReportUsage{}, 14: &RecordBillingEvent{},
		15: &Prune{}, 16: &Assign{}, 17: &RegisterNode{}, 18: &EraseConversation{},
		19: &Request{}, 20: &RehashPassword{}, 21: &RotateSecret{},
		22: &Audited{}, 23: &RecordAudit{}, 24: &PruneAudit{},
		25: &EraseVisitor{}, 26: &SetRetention{}, 27: &SetVisitorDeletion{}, 28: &RequestDeletion{},
		29: &CreateWebhook{}, 30: &RotateWebhookSecret{}, 31: &DeleteWebhook{},
		32: &AddDeadLetters{}, 33: &RedeliverWebhook{}, 34: &ResolveDeadLetters{},
		35: &AckWebhookOutbox{}, 36: &SetEmailSettings{}, 37: &DeleteEmailSettings{}, 38: &RecordMail{},
	}
	for n := 0; n < 256; n++ {
		got := schema.NewCommand(CommandType(n))
		w, ok := want[CommandType(n)]
		switch {
		case !ok && got != nil:
			t.Errorf("type %d decodes as %T but is not pinned here", n, got)
		case ok && reflect.TypeOf(got) != reflect.TypeOf(w):
			t.Errorf("type %d decodes as %T, want %T", n, got, w)
		case ok && got.Type() != CommandType(n):
			t.Errorf("%T.Type() = %d, want %d", got, got.Type(), n)
		}
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	seen := map[CommandType]bool{}
	for _, cmd := range validCommands() {
		t.Run(reflect.TypeOf(cmd).Name(), func(t *testing.T) {
			data, err := EncodeCommand(cmd)
			if err != nil {
				t.Fatal(err)
			}
			if data[0] != byte(cmd.Type()) {
				t.Fatalf("first byte %d, want type %d", data[0], cmd.Type())
			}
			got, err := DecodeCommand(data)
			if err != nil {
				t.Fatal(err)
			}
			if g := reflect.ValueOf(got).Elem().Interface(); !reflect.DeepEqual(g, cmd) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", g, cmd)
			}
		})
		seen[cmd.Type()] = true
	}
	for n := 1; n < 256; n++ {
		if schema.NewCommand(CommandType(n)) != nil && !seen[CommandType(n)] {
			t.Errorf("validCommands has no command of type %d", n)
		}
	}
}

// Nothing invalid is proposed: EncodeCommand validates, and every failure is
// ErrInvalid.
func TestValidationRefuses(t *testing.T) {
	t.Parallel()
	h := HashToken("x")
	long := strings.Repeat("a", 65)
	tests := []struct {
		name string
		cmd  Command
	}{
		{"nil", nil},
		{"workspace id upper case", CreateWorkspace{ID: "Acme", Name: "A", Plan: "free", Created: t0}},
		{"workspace id too long", CreateWorkspace{ID: long, Name: "A", Plan: "free", Created: t0}},
		{"workspace name empty", CreateWorkspace{ID: "a", Plan: "free", Created: t0}},
		{"workspace name control char", CreateWorkspace{ID: "a", Name: "A\x00", Plan: "free", Created: t0}},
		{"workspace name padded", CreateWorkspace{ID: "a", Name: " A", Plan: "free", Created: t0}},
		{"workspace region", CreateWorkspace{ID: "a", Name: "A", Region: "EU", Plan: "free", Created: t0}},
		{"workspace no created", CreateWorkspace{ID: "a", Name: "A", Plan: "free"}},
		{"workspace duplicate brand", CreateWorkspace{ID: "a", Name: "A", Plan: "free", Created: t0, Brands: []Brand{{ID: "b", Name: "B"}, {ID: "b", Name: "C"}}}},
		{"update nothing", UpdateWorkspace{ID: "a"}},
		{"update bad plan", UpdateWorkspace{ID: "a", Plan: ptr("Gold!")}},
		{"delete bad id", DeleteWorkspace{ID: ""}},
		{"operator plaintext password", CreateOperator{Workspace: "a", ID: "o", Email: "o@a.test", Name: "O", Role: RoleAgent, PasswordHash: "hunter2hunter2", Created: t0}},
		{"operator weak hash", CreateOperator{Workspace: "a", ID: "o", Email: "o@a.test", Name: "O", Role: RoleAgent, PasswordHash: "pbkdf2-sha256$1000$c2FsdHNhbHRzYWx0c2FsdA$" + strings.Repeat("A", 43), Created: t0}},
		{"operator role", CreateOperator{Workspace: "a", ID: "o", Email: "o@a.test", Name: "O", Role: "owner", PasswordHash: testPasswordHash(), Created: t0}},
		{"operator email", CreateOperator{Workspace: "a", ID: "o", Email: "Ann <o@a.test>", Name: "O", Role: RoleAgent, PasswordHash: testPasswordHash(), Created: t0}},
		{"operator name reversed", CreateOperator{Workspace: "a", ID: "o", Email: "o@a.test", Name: "Ann \u202enimda", Role: RoleAgent, PasswordHash: testPasswordHash(), Created: t0}},
		{"rename operator with an isolate", UpdateOperator{Workspace: "a", ID: "o", Name: ptr("Ann\u2067 x")}},
		{"workspace name with a zero-width space", CreateWorkspace{ID: "a", Name: "Ac\u200bme", Plan: "free", Created: t0}},
		{"brand name reversed", CreateWorkspace{ID: "a", Name: "A", Plan: "free", Created: t0, Brands: []Brand{{ID: "b", Name: "\u202eB"}}}},
		{"update operator nothing", UpdateOperator{Workspace: "a", ID: "o"}},
		{"update operator plaintext", UpdateOperator{Workspace: "a", ID: "o", PasswordHash: ptr("hunter2hunter2")}},
		{"session zero hash", CreateSession{Workspace: "a", Operator: "o", Created: t0, Expires: t0.Add(time.Hour)}},
		{"session expires first", CreateSession{Hash: h, Workspace: "a", Operator: "o", Created: t0, Expires: t0}},
		{"revoke session bad id", RevokeSession{ID: "s_xyz"}},
		{"revoke key id of session", RevokeKey{ID: SessionID(h)}},
		{"revoke key upper hex", RevokeKey{ID: strings.ToUpper(KeyID(h))}},
		{"key bad brand", CreateKey{Hash: h, Workspace: "a", Brand: "B", Name: "k", Created: t0}},
		{"secret kind", SetSecret{Workspace: "a", Kind: "password", Sealed: Sealed{KeyID: "0123456789abcdef", Nonce: make([]byte, 12), Data: make([]byte, 48)}}},
		{"secret nonce", SetSecret{Workspace: "a", Kind: SecretIdentity, Sealed: Sealed{KeyID: "0123456789abcdef", Nonce: make([]byte, 8), Data: make([]byte, 48)}}},
		{"plan negative", SetPlan{Plan: Plan{Name: "p", Seats: -1}}},
		{"usage period", ReportUsage{NodeID: "n", Workspace: "a", Period: "2026-13", Messages: 1, IdempotencyKey: "k"}},
		{"usage: negative conversations", ReportUsage{NodeID: "n", Workspace: "a", Period: "2026-11", Conversations: -1, IdempotencyKey: "k"}},
		{"usage: messages below -2^40", ReportUsage{NodeID: "n", Workspace: "a", Period: "2026-11", Messages: -(1<<40 + 1), IdempotencyKey: "k"}},
		{"usage huge", ReportUsage{NodeID: "n", Workspace: "a", Period: "2026-11", Messages: 1 << 50, IdempotencyKey: "k"}},
		{"usage no key", ReportUsage{NodeID: "n", Workspace: "a", Period: "2026-11", Messages: 1}},
		{"usage key with space", ReportUsage{NodeID: "n", Workspace: "a", Period: "2026-11", Messages: 1, IdempotencyKey: "a b"}},
		{"event kind", RecordBillingEvent{Event: BillingEvent{IdempotencyKey: "k", Workspace: "a", Period: "2026-11", Kind: "Charge", At: t0}}},
		{"event currency", RecordBillingEvent{Event: BillingEvent{IdempotencyKey: "k", Workspace: "a", Period: "2026-11", Kind: "charge", Currency: "eur", At: t0}}},
		{"event no time", RecordBillingEvent{Event: BillingEvent{IdempotencyKey: "k", Workspace: "a", Period: "2026-11", Kind: "charge"}}},
		{"prune nothing", Prune{}},
		{"prune bad period", Prune{Before: "2026"}},
		{"assign conversation", Assign{Workspace: "a", Conversation: "c/1"}},
		{"assign operator", Assign{Workspace: "a", Conversation: "c1", Operator: "Bob"}},
		{"node addr", RegisterNode{Node: NodeInfo{ID: "n1", RaftAddr: "nohost"}}},
		{"request id short", Request{ID: "abc", Cmd: DeleteWorkspace{ID: "a"}}},
		{"request id chars", Request{ID: "0123456789abcdef0123456789abcde!", Cmd: DeleteWorkspace{ID: "a"}}},
		{"request of nothing", Request{ID: "0123456789abcdef"}},
		{"request of request", Request{ID: "0123456789abcdef", Cmd: Request{ID: "fedcba9876543210", Cmd: DeleteWorkspace{ID: "a"}}}},
		{"request of invalid", Request{ID: "0123456789abcdef", Cmd: DeleteWorkspace{ID: "A"}}},
		{"audited of nothing", Audited{Audit: Audit{Actor: Actor{Kind: ActorRoot}, At: t0}}},
		{"audited of audited", Audited{Audit: Audit{Actor: Actor{Kind: ActorRoot}, At: t0}, Cmd: Audited{Audit: Audit{Actor: Actor{Kind: ActorRoot}, At: t0}, Cmd: DeleteWorkspace{ID: "a"}}}},
		{"audited of request", Audited{Audit: Audit{Actor: Actor{Kind: ActorRoot}, At: t0}, Cmd: Request{ID: "0123456789abcdef", Cmd: DeleteWorkspace{ID: "a"}}}},
		{"audited of invalid", Audited{Audit: Audit{Actor: Actor{Kind: ActorRoot}, At: t0}, Cmd: DeleteWorkspace{ID: "A"}}},
		{"audited actor kind", Audited{Audit: Audit{Actor: Actor{Kind: "god"}, At: t0}, Cmd: DeleteWorkspace{ID: "a"}}},
		{"audited address", Audited{Audit: Audit{Actor: Actor{Kind: ActorRoot}, Address: "10.0.0.1:80", At: t0}, Cmd: DeleteWorkspace{ID: "a"}}},
		{"audited no time", Audited{Audit: Audit{Actor: Actor{Kind: ActorRoot}}, Cmd: DeleteWorkspace{ID: "a"}}},
		{"audited email", Audited{Audit: Audit{Actor: Actor{Kind: ActorAnonymous, Email: "not an email"}, At: t0}, Cmd: DeleteWorkspace{ID: "a"}}},
		{"record audit of nothing", RecordAudit{}},
		{"record audit no outcome", RecordAudit{Entries: []AuditEntry{{Audit: Audit{Actor: Actor{Kind: ActorRoot}, At: t0}, Action: "request"}}}},
		{"record audit control char", RecordAudit{Entries: []AuditEntry{{Audit: Audit{Actor: Actor{Kind: ActorRoot}, At: t0}, Action: "request", Outcome: "ok", Target: "a\nb"}}}},
		{"prune audit zero", PruneAudit{}},
		{"webhook id without prefix", CreateWebhook{Workspace: "a", ID: "hook", URL: "https://x.test/h", Events: []string{"message.created"}, Sealed: testSealed, Created: t0}},
		{"webhook url scheme", CreateWebhook{Workspace: "a", ID: "wh_1", URL: "ftp://x.test/h", Events: []string{"message.created"}, Sealed: testSealed, Created: t0}},
		{"webhook url user", CreateWebhook{Workspace: "a", ID: "wh_1", URL: "https://u:p@x.test/h", Events: []string{"message.created"}, Sealed: testSealed, Created: t0}},
		{"webhook url relative", CreateWebhook{Workspace: "a", ID: "wh_1", URL: "/h", Events: []string{"message.created"}, Sealed: testSealed, Created: t0}},
		{"webhook no events", CreateWebhook{Workspace: "a", ID: "wh_1", URL: "https://x.test/h", Sealed: testSealed, Created: t0}},
		{"webhook unknown event", CreateWebhook{Workspace: "a", ID: "wh_1", URL: "https://x.test/h", Events: []string{"message.sent"}, Sealed: testSealed, Created: t0}},
		{"webhook event twice", CreateWebhook{Workspace: "a", ID: "wh_1", URL: "https://x.test/h", Events: []string{"message.created", "message.created"}, Sealed: testSealed, Created: t0}},
		{"webhook rotate overlap", RotateWebhookSecret{Workspace: "a", ID: "wh_1", Sealed: testSealed, Rotated: t0, OverlapUntil: t0.Add(-time.Second)}},
		{"dead letters none", AddDeadLetters{Workspace: "a", Webhook: "wh_1"}},
		{"dead letter event id", AddDeadLetters{Workspace: "a", Webhook: "wh_1", Letters: []DeadLetter{{EventID: "evt_x", Type: "message.created", Conversation: "c1", Dead: t0}}}},
		{"redeliver event id", RedeliverWebhook{Workspace: "a", Webhook: "wh_1", EventIDs: []string{"evt_X"}}},
		{"resolve nothing", ResolveDeadLetters{Workspace: "a", Webhook: "wh_1"}},
		{"ack through 0", AckWebhookOutbox{Workspace: "a", Webhook: "wh_1"}},
		{"dead visitor.erased without its visitor", AddDeadLetters{Workspace: "a", Webhook: "wh_1", Letters: []DeadLetter{{EventID: testEventID, Type: "visitor.erased", Dead: t0}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := EncodeCommand(tt.cmd)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("EncodeCommand: %v, want ErrInvalid", err)
			}
		})
	}
}

func TestDecodeRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"type zero", []byte("\x00{}")},
		{"unknown type", []byte("\xc8{}")},
		{"not json", []byte("\x01not json")},
		{"unknown field", []byte(`` + "\x03" + `{"id":"a","extra":1}`)},
		{"trailing data", []byte("\x03" + `{"id":"a"}{"id":"b"}`)},
		{"invalid after decode", []byte("\x03" + `{"id":"A"}`)},
		{"too large", append([]byte("\x03"), make([]byte, schema.MaxCommandSize)...)},
		{"request unknown field", []byte("\x13" + `{"id":"0123456789abcdef","base":1,"type":3,"command":{"id":"a"},"x":1}`)},
		{"request unknown type", []byte("\x13" + `{"id":"0123456789abcdef","base":1,"type":200,"command":{}}`)},
		{"request nested", []byte("\x13" + `{"id":"0123456789abcdef","base":1,"type":19,"command":{"id":"fedcba9876543210","base":1,"type":3,"command":{"id":"a"}}}`)},
		{"request inner unknown field", []byte("\x13" + `{"id":"0123456789abcdef","base":1,"type":3,"command":{"id":"a","x":1}}`)},
		{"request inner invalid", []byte("\x13" + `{"id":"0123456789abcdef","base":1,"type":3,"command":{"id":"A"}}`)},
		{"request inner trailing", []byte("\x13" + `{"id":"0123456789abcdef","base":1,"type":3,"command":{"id":"a"}{}}`)},
		{"request bad id", []byte("\x13" + `{"id":"short","base":1,"type":3,"command":{"id":"a"}}`)},
		{"request trailing data", []byte("\x13" + `{"id":"0123456789abcdef","base":1,"type":3,"command":{"id":"a"}}{}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := DecodeCommand(tt.data); !errors.Is(err, ErrInvalid) {
				t.Fatalf("DecodeCommand: %v, want ErrInvalid", err)
			}
		})
	}
}

// The request ID's grammar is checked without the regular expression it
// was first written as (every node checks it at every entry it applies):
// it must say exactly what the expression said.
func TestRequestIDGrammar(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`^[A-Za-z0-9_-]{16,64}$`)
	check := func(t interface{ Fatalf(string, ...any) }, s string) {
		if got, want := checkRequestID(s) == nil, re.MatchString(s); got != want {
			t.Fatalf("checkRequestID(%q) accepts: %v, the expression: %v", s, got, want)
		}
	}
	for _, n := range []int{0, 1, 15, 16, 17, 32, 63, 64, 65} {
		check(t, strings.Repeat("a", n))
		check(t, strings.Repeat("Z", n-min(n, 1))+"~")
	}
	rapid.Check(t, func(t *rapid.T) {
		check(t, rapid.StringOfN(rapid.SampledFrom([]rune("azAZ09_-~./:`{@[\n\x00 é")), 0, 70, -1).Draw(t, "id"))
	})
}

func TestErrorCodesRoundTrip(t *testing.T) {
	t.Parallel()
	for _, c := range errorCodes {
		err := errorFromCode(ErrorCode(c.err), "msg")
		if !errors.Is(err, c.err) || err.Error() != "msg" {
			t.Errorf("%s: rebuilt %v", c.code, err)
		}
	}
	res, err := decodeReply(encodeReply(Result{Index: 7, Version: 3}, &NotLeaderError{LeaderID: "n2", LeaderAddr: "a:1"}))
	if !errors.Is(err, ErrNotLeader) || res.Index != 7 || res.Version != 3 {
		t.Fatalf("reply round trip: %+v %v", res, err)
	}
	if ErrorCode(errors.New("other")) != "internal" {
		t.Fatal("an unknown error is not internal")
	}
}
