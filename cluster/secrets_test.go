package cluster

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSealOpen(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{1}, 32)
	s, err := newSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("site-hmac-secret-0123456789")
	sl, err := s.seal("acme", SecretIdentity, secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := (SetSecret{Workspace: "acme", Kind: SecretIdentity, Sealed: sl}).Validate(); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sl.Data, secret) {
		t.Fatal("ciphertext contains the plaintext")
	}
	got, err := s.open("acme", SecretIdentity, sl)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("open: %q, %v", got, err)
	}
	again, _ := s.seal("acme", SecretIdentity, secret)
	if bytes.Equal(again.Data, sl.Data) {
		t.Fatal("two seals of one secret are equal: nonce reused")
	}

	other, _ := newSealer(bytes.Repeat([]byte{2}, 32))
	tampered := sl
	tampered.Data = append([]byte(nil), sl.Data...)
	tampered.Data[0] ^= 1
	tests := []struct {
		name string
		s    *sealer
		ws   string
		kind SecretKind
		sl   Sealed
	}{
		{"other workspace", s, "globex", SecretIdentity, sl},
		{"other kind", s, "acme", SecretVisitor, sl},
		{"other master key", other, "acme", SecretIdentity, sl},
		{"tampered", s, "acme", SecretIdentity, tampered},
	}
	for _, tt := range tests {
		if _, err := tt.s.open(tt.ws, tt.kind, tt.sl); err == nil {
			t.Errorf("%s: opened", tt.name)
		}
	}
	if _, err := newSealer(key[:16]); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short master key: %v", err)
	}
}

func TestMasterKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k1, err := loadOrCreateMasterKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, masterKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("master.key mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := loadOrCreateMasterKey(dir)
	if err != nil || !bytes.Equal(k1, k2) || len(k1) != 32 {
		t.Fatalf("reloaded key differs: %v", err)
	}
	os.WriteFile(filepath.Join(dir, masterKeyFile), []byte("not hex\n"), 0o600)
	if _, err := loadOrCreateMasterKey(dir); !errors.Is(err, ErrInvalid) {
		t.Fatalf("corrupt master.key: %v", err)
	}
}

// The secret is sealed before it is proposed: neither the snapshot nor the
// Raft log file holds the plaintext, and every node decrypts it.
func TestSecretsEncryptedAtRest(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t, 1, nil)
	c := tc.node("n1")
	ctx := testContext(t)
	mustApply(t, c, CreateWorkspace{ID: "acme", Name: "Acme", Plan: "team", Created: t0})
	identity := []byte("IDENTITY-PLAINTEXT-4c1b0f7e9a")
	visitor := []byte("VISITOR-PLAINTEXT-77e0aa1c3d")
	if _, err := c.SetIdentitySecret(ctx, "acme", identity); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetVisitorKey(ctx, "acme", visitor); err != nil {
		t.Fatal(err)
	}
	if got, err := c.IdentitySecret("acme"); err != nil || !bytes.Equal(got, identity) {
		t.Fatalf("IdentitySecret: %q, %v", got, err)
	}
	if got, err := c.VisitorKey("acme"); err != nil || !bytes.Equal(got, visitor) {
		t.Fatalf("VisitorKey: %q, %v", got, err)
	}
	if _, err := c.IdentitySecret("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("secret of missing workspace: %v", err)
	}

	snap := snapshotBytes(t, c.fsm)
	if err := c.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"fsm snapshot": snap}
	filepath.Walk(tc.dir("n1"), func(path string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(path)
			files[path] = b
		}
		return nil
	})
	if len(files) < 3 {
		t.Fatalf("found only %d files to check", len(files))
	}
	for name, b := range files {
		for _, secret := range [][]byte{identity, visitor} {
			if bytes.Contains(b, secret) {
				t.Errorf("%s contains the plaintext %q", name, secret)
			}
		}
	}
	if !bytes.Contains(snap, []byte(`"identity":{"key_id"`)) {
		t.Fatalf("snapshot has no sealed identity secret: %s", snap)
	}
}

// A rotation makes the new secret current on every node and keeps the one
// it replaced, sealed, until the overlap end the proposer chose; a second
// rotation drops the first's old secret. The info describes it without it.
func TestRotateIdentitySecret(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t, 1, nil)
	c := tc.node("n1")
	ctx := testContext(t)
	mustApply(t, c, CreateWorkspace{ID: "acme", Name: "Acme", Plan: "team", Created: t0})
	first, second, third := []byte("FIRST-SECRET-91ac"), []byte("SECOND-SECRET-5e2d"), []byte("THIRD-SECRET-77f0")
	if _, err := c.SetIdentitySecret(ctx, "acme", first); err != nil {
		t.Fatal(err)
	}
	if info, err := c.IdentitySecretInfo("acme"); err != nil || info.Rotated != nil || info.PreviousUntil != nil {
		t.Fatalf("info before any rotation: %+v, %v", info, err)
	}
	before := time.Now()
	_, until, err := c.RotateIdentitySecret(ctx, "acme", second, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if d := until.Sub(before); d < time.Hour || d > time.Hour+time.Minute {
		t.Fatalf("overlap ends %v after the call, want an hour", d)
	}
	k, err := c.IdentityKeys("acme")
	if err != nil || !bytes.Equal(k.Current, second) || !bytes.Equal(k.Previous, first) || !k.PreviousUntil.Equal(until) {
		t.Fatalf("after a rotation: %q %q %v, %v", k.Current, k.Previous, k.PreviousUntil, err)
	}
	info, err := c.IdentitySecretInfo("acme")
	if err != nil || info.Rotated == nil || info.PreviousUntil == nil || !info.PreviousUntil.Equal(until) {
		t.Fatalf("info after a rotation: %+v, %v", info, err)
	}
	if _, _, err := c.RotateIdentitySecret(ctx, "acme", third, 0); err != nil {
		t.Fatal(err)
	}
	if k, err = c.IdentityKeys("acme"); err != nil || !bytes.Equal(k.Current, third) || !bytes.Equal(k.Previous, second) {
		t.Fatalf("after a second rotation: %q %q, %v", k.Current, k.Previous, err)
	}
	snap := snapshotBytes(t, c.fsm)
	for _, s := range [][]byte{first, second, third} {
		if bytes.Contains(snap, s) {
			t.Errorf("snapshot holds the plaintext %q", s)
		}
	}
	for _, tt := range []struct {
		name    string
		overlap time.Duration
		ws      string
	}{{"negative overlap", -time.Second, "acme"}, {"overlap too long", MaxSecretOverlap + time.Second, "acme"}} {
		if _, _, err := c.RotateIdentitySecret(ctx, tt.ws, []byte("x"), tt.overlap); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	if _, _, err := c.RotateIdentitySecret(ctx, "nope", []byte("x"), time.Second); !errors.Is(err, ErrNotFound) {
		t.Errorf("rotation of a missing workspace: %v", err)
	}
}

// An endpoint's signing secret is sealed in the state, opens only under
// its own endpoint, and a rotation signs with both secrets until the
// overlap ends; dead letters are kept, marked, resolved.
func TestWebhookSecretsAndDeadLetters(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	s, err := newSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	first, second := []byte(NewWebhookSecret()), []byte(NewWebhookSecret())
	sl1, _ := s.seal("acme", webhookKind("wh_a"), first)
	sl2, _ := s.seal("acme", webhookKind("wh_a"), second)
	if h.state().HasWebhooks("acme") {
		t.Fatal("HasWebhooks before any endpoint")
	}
	h.must(CreateWebhook{Workspace: "acme", ID: "wh_a", URL: "https://x.test/h", Events: []string{"message.created"}, Sealed: sl1, Created: t0})
	if _, err := h.apply(CreateWebhook{Workspace: "acme", ID: "wh_a", URL: "https://x.test/h", Events: []string{"message.created"}, Sealed: sl1, Created: t0}); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	if !h.state().HasWebhooks("acme") || h.state().HasWebhooks("nope") {
		t.Fatalf("HasWebhooks: acme %v (an endpoint), nope %v (unknown)", h.state().HasWebhooks("acme"), h.state().HasWebhooks("nope"))
	}
	snap := string(h.snapshot())
	if bytes.Contains([]byte(snap), first) {
		t.Fatal("the snapshot holds the secret in plaintext")
	}
	c := &Cluster{State: h.state(), sealer: s}
	k, err := c.WebhookSecrets("acme", "wh_a")
	if err != nil || !bytes.Equal(k.Current, first) || len(k.Signing(t0)) != 1 {
		t.Fatalf("secrets: %+v, %v", k, err)
	}
	// Copied to another endpoint, the sealed secret does not open.
	h.must(CreateWebhook{Workspace: "acme", ID: "wh_b", URL: "https://x.test/h", Events: []string{"message.created"}, Sealed: sl1, Created: t0})
	if _, err := c.WebhookSecrets("acme", "wh_b"); err == nil {
		t.Fatal("a secret sealed for wh_a opened as wh_b's")
	}
	h.must(RotateWebhookSecret{Workspace: "acme", ID: "wh_a", Sealed: sl2, Rotated: t0, OverlapUntil: t0.Add(time.Hour)})
	k, err = c.WebhookSecrets("acme", "wh_a")
	if err != nil {
		t.Fatal(err)
	}
	if got := k.Signing(t0.Add(time.Minute)); len(got) != 2 || !bytes.Equal(got[0], second) || !bytes.Equal(got[1], first) {
		t.Fatalf("during the overlap: %q", got)
	}
	if got := k.Signing(t0.Add(time.Hour)); len(got) != 1 || !bytes.Equal(got[0], second) {
		t.Fatalf("after the overlap: %q", got)
	}
	letter := DeadLetter{EventID: testEventID, Type: "message.created", Conversation: "c1", Origin: "n1", OSeq: 3, Dead: t0}
	h.must(AddDeadLetters{Workspace: "acme", Webhook: "wh_a", Letters: []DeadLetter{letter}})
	h.must(RedeliverWebhook{Workspace: "acme", Webhook: "wh_a"})
	if d, _ := h.state().DeadLetters("acme", "wh_a"); len(d) != 1 || !d[0].Redeliver {
		t.Fatalf("dead letters after redeliver: %+v", d)
	}
	h.must(ResolveDeadLetters{Workspace: "acme", Webhook: "wh_a", Delivered: []string{testEventID}})
	if d, _ := h.state().DeadLetters("acme", "wh_a"); len(d) != 0 {
		t.Fatalf("dead letters after delivery: %+v", d)
	}
	// The control plane's events wait in the outbox of the endpoints that
	// want them, in log order, until acknowledged.
	h.must(CreateWebhook{Workspace: "acme", ID: "wh_c", URL: "https://x.test/h", Events: []string{"conversation.assigned", "visitor.erased"}, Sealed: sl1, Created: t0})
	assigned := h.must(Assign{Workspace: "acme", Conversation: "c1", Operator: "bob"})
	erased := h.must(EraseVisitor{Workspace: "acme", Visitor: "v:0123456789abcdef0123456789abcdef"})
	box, _ := h.state().WebhookOutbox("acme", "wh_c")
	if len(box) != 2 || box[0].Index != assigned.Index || box[0].Type != "conversation.assigned" || box[0].Operator != "bob" || box[0].Version != 1 ||
		box[1].Index != erased.Index || box[1].Visitor != "v:0123456789abcdef0123456789abcdef" {
		t.Fatalf("outbox: %+v", box)
	}
	if box, _ := h.state().WebhookOutbox("acme", "wh_a"); len(box) != 0 {
		t.Fatalf("an endpoint that did not ask has an outbox: %+v", box)
	}
	h.must(AckWebhookOutbox{Workspace: "acme", Webhook: "wh_c", Through: assigned.Index})
	if box, _ := h.state().WebhookOutbox("acme", "wh_c"); len(box) != 1 || box[0].Index != erased.Index {
		t.Fatalf("outbox after the ack: %+v", box)
	}
	h.must(DeleteWebhook{Workspace: "acme", ID: "wh_a"})
	if _, err := h.state().Webhook("acme", "wh_a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}
