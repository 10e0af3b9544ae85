package cluster

import (
	"bytes"
	"errors"
	"testing"

	"parley/cluster/schema"
)

// TestEmailSettingsSealed: the SMTP secret is sealed at rest (never in a
// snapshot in plaintext), bound to its workspace, kept by a change that
// brings none, replaced by one that does, dropped by clear, and never part
// of what a read returns.
func TestEmailSettingsSealed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	s, err := newSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{State: h.state(), sealer: s}
	first, second := []byte("smtp-password-one"), []byte("smtp-api-key-two")
	sl1, _ := s.seal("acme", emailKind, first)
	sl2, _ := s.seal("acme", emailKind, second)
	st := EmailSettings{Workspace: "acme", Host: "smtp.acme.test", Port: 465, TLS: schema.TLSImplicit, User: "u", From: "help@acme.test", Created: t0, Updated: t0}
	h.must(SetEmailSettings{Settings: st, Sealed: &sl1})
	if bytes.Contains(h.snapshot(), first) {
		t.Fatal("the snapshot holds the SMTP secret in plaintext")
	}
	got, err := c.State.EmailSettings("acme")
	if err != nil || !got.PasswordSet || got.Host != "smtp.acme.test" {
		t.Fatalf("settings %+v, %v", got, err)
	}
	if k, err := c.EmailSecret("acme"); err != nil || !bytes.Equal(k, first) {
		t.Fatalf("secret %q, %v", k, err)
	}
	// Copied to another workspace, the sealed secret does not open.
	h.must(CreateWorkspace{ID: "globex", Name: "Globex", Plan: "team", Created: t0})
	h.must(SetEmailSettings{Settings: EmailSettings{Workspace: "globex", Host: "h.test", Port: 25, TLS: schema.TLSStartTLS, From: "a@globex.test", Created: t0, Updated: t0}, Sealed: &sl1})
	if _, err := c.EmailSecret("globex"); err == nil {
		t.Fatal("acme's sealed secret opened as globex's")
	}
	// A change without a secret keeps it; with one, replaces it.
	st.Host = "smtp2.acme.test"
	h.must(SetEmailSettings{Settings: st})
	if k, _ := c.EmailSecret("acme"); !bytes.Equal(k, first) {
		t.Fatalf("after a change without a secret: %q", k)
	}
	h.must(SetEmailSettings{Settings: st, Sealed: &sl2})
	if k, _ := c.EmailSecret("acme"); !bytes.Equal(k, second) {
		t.Fatalf("after a rotation: %q", k)
	}
	h.must(SetEmailSettings{Settings: st, Clear: true})
	if k, err := c.EmailSecret("acme"); k != nil || err != nil {
		t.Fatalf("after clear: %q, %v", k, err)
	}
	if got, _ := c.State.EmailSettings("acme"); got.PasswordSet {
		t.Fatal("password_set after clear")
	}
	h.must(DeleteEmailSettings{Workspace: "acme"})
	if _, err := c.State.EmailSettings("acme"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

// TestRecordMail: the cursor of a kind only moves forward, retrying moves
// none, an erased conversation's state goes with it, and an error holding
// an address is refused.
func TestRecordMail(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	conv := "c_0123456789abcdef01234567"
	h.must(RecordMail{Workspace: "acme", Conversation: conv, Kind: schema.MailReplies, Status: schema.MailSent, Through: map[string]uint64{"n1": 5}, At: t0})
	h.must(RecordMail{Workspace: "acme", Conversation: conv, Kind: schema.MailReplies, Status: schema.MailSent, Through: map[string]uint64{"n1": 3, "n2": 1}, At: t0})
	h.must(RecordMail{Workspace: "acme", Conversation: conv, Kind: schema.MailReplies, Status: schema.MailRetrying, Through: map[string]uint64{"n1": 9}, Error: "421 try later", Attempts: 2, At: t0})
	m, err := h.state().MailState("acme", conv)
	if err != nil || m.Mailed["n1"] != 5 || m.Mailed["n2"] != 1 || m.Status != schema.MailRetrying || m.Sent != 2 {
		t.Fatalf("mail state %+v, %v", m, err)
	}
	if list, _ := h.state().MailStates("acme", schema.MailRetrying); len(list) != 1 {
		t.Fatalf("retrying states: %+v", list)
	}
	if _, err := EncodeCommand(RecordMail{Workspace: "acme", Conversation: conv, Kind: schema.MailReplies, Status: schema.MailFailed, Error: "550 <bob@x.test>: no such user", At: t0}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an error with an address: %v, want ErrInvalid", err)
	}
	h.must(EraseConversation{Workspace: "acme", Conversation: conv})
	if m, _ := h.state().MailState("acme", conv); len(m.Mailed) != 0 || m.Status != "" {
		t.Fatalf("after the erasure: %+v", m)
	}
}
