package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"parley/internal/eventually"
)

// bodies is every admin API reply a test saw, to scan for secrets.
type bodies struct {
	t    *testing.T
	seen []seenBody
}

type seenBody struct {
	what string
	body []byte
}

// call makes an admin API request and keeps its reply; it returns the
// status and the body.
func (b *bodies) call(nd *nodeProc, method, path, token string, body any) (int, []byte) {
	b.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, nd.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	b.seen = append(b.seen, seenBody{what: fmt.Sprintf("%s %s on %s (%d)", method, path, nd.ID, resp.StatusCode), body: raw})
	return resp.StatusCode, raw
}

func (b *bodies) must(nd *nodeProc, method, path, token string, body, out any) []byte {
	b.t.Helper()
	st, raw := b.call(nd, method, path, token, body)
	if st != 200 {
		b.t.Fatalf("%s %s on %s: %d %s", method, path, nd.ID, st, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			b.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return raw
}

// forms are the ways a secret could appear in a reply or a file: its hex
// (as shown), upper-case hex, and the base64 a JSON []byte would take.
func forms(secretHex string) []string {
	raw, _ := hex.DecodeString(secretHex)
	return []string{secretHex, strings.ToUpper(secretHex), base64.StdEncoding.EncodeToString(raw), base64.RawURLEncoding.EncodeToString(raw)}
}

// userHash is what a site computes for a verified visitor: the hex
// HMAC-SHA256 of the user ID under the identity secret's 32 bytes.
func userHash(t testing.TB, secretHex, userID string) string {
	key, err := hex.DecodeString(secretHex)
	if err != nil || len(key) != 32 {
		t.Fatalf("identity secret %q: want 64 hex digits", secretHex)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(userID))
	return hex.EncodeToString(m.Sum(nil))
}

// identityToken is an identity token a site makes: a JWT, HS256, under
// the identity secret's 32 bytes.
func identityToken(t testing.TB, secretHex, sub string, exp time.Time) string {
	key, _ := hex.DecodeString(secretHex)
	enc := base64.RawURLEncoding
	msg := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		enc.EncodeToString(fmt.Appendf(nil, `{"sub":%q,"exp":%d}`, sub, exp.Unix()))
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return msg + "." + enc.EncodeToString(m.Sum(nil))
}

// verifiedHello connects to nd and says hello with id (user_id and
// user_hash, or identity_token); it returns the connection and the
// welcome, or the error frame that refused it.
func verifiedHello(t *testing.T, ctx context.Context, nd *nodeProc, ws string, id map[string]any) (*wsClient, map[string]any, map[string]any) {
	t.Helper()
	cl, err := dialNode(ctx, nd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.close)
	h := map[string]any{"type": "hello", "v": 1, "workspace": ws, "role": "visitor"}
	for k, v := range id {
		h[k] = v
	}
	if err := cl.send(ctx, h); err != nil {
		t.Fatal(err)
	}
	m, err := cl.await(ctx, "", func(m map[string]any) bool { return m["type"] == "welcome" || m["type"] == "error" })
	if err != nil {
		// await turns an error frame into an error: read it again as one.
		if strings.Contains(err.Error(), "auth_failed") {
			return cl, nil, map[string]any{"code": "auth_failed", "message": err.Error()}
		}
		t.Fatalf("hello on %s: %v", nd.ID, err)
	}
	if m["type"] == "error" {
		return cl, nil, m
	}
	return cl, m, nil
}

// TestIdentitySecretRotation: the identity secret is shown once, at
// creation and at each rotation, and in no other reply of the admin API,
// to no credential; an API key can neither read nor rotate it. A verified
// visitor connected with the old secret stays connected across a rotation
// and reconnects with it on every node during the overlap, as does a
// visitor with an identity token signed with it; the new secret works at
// once everywhere. Once the overlap the operator chose has ended, the old
// secret's hash is refused with auth_failed on every node, the connections
// it verified are closed with auth_failed, and the new one's is accepted.
func TestIdentitySecretRotation(t *testing.T) {
	tc := startCluster(t, 3)
	ctx := testCtx(t, 3*time.Minute)
	n1, n2, n3 := tc.nodes[0], tc.nodes[1], tc.nodes[2]
	b := &bodies{t: t}

	var created struct {
		IdentitySecret string `json:"identity_secret"`
		Index          uint64 `json:"index"`
	}
	createdRaw := b.must(n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, &created)
	s1 := created.IdentitySecret
	if len(s1) != 64 {
		t.Fatalf("creation shows no identity secret: %s", createdRaw)
	}
	shown := map[string]string{s1: "the creation"}
	b.seen = nil // the creation's reply is the one that shows it

	// An admin operator's session, and an API key of the workspace.
	var inv struct{ Index uint64 }
	b.must(n1, "POST", "/v1/admin/workspaces/acme/operators", tc.root,
		map[string]any{"id": "ada", "email": "ada@acme.test", "name": "Ada", "role": "admin", "password": "a good long password"}, &inv)
	var login struct{ Token string }
	b.must(n2, "POST", fmt.Sprintf("/v1/login?min_index=%d", inv.Index), "", map[string]any{"workspace": "acme", "email": "ada@acme.test", "password": "a good long password"}, &login)
	session := login.Token
	var minted struct{ Key string }
	b.must(n2, "POST", "/v1/admin/workspaces/acme/keys", session, map[string]any{"name": "integration"}, &minted)

	// A verified visitor, connected with the first secret, in a
	// conversation; another with an identity token signed with it.
	live, w, _ := verifiedHello(t, ctx, n2, "acme", map[string]any{"user_id": "42", "user_hash": userHash(t, s1, "42")})
	if w == nil || w["participant"] != "u:42" {
		t.Fatalf("verified visitor with the creation's secret: %v", w)
	}
	live.send(ctx, map[string]any{"type": "start", "ref": "s"})
	st, err := live.await(ctx, "started", nil)
	if err != nil {
		t.Fatal(err)
	}
	conv := st["conversation"].(string)
	say(t, ctx, live, conv, "before-rotation-1", "hello before the rotation")
	if _, w, e := verifiedHello(t, ctx, n3, "acme", map[string]any{"identity_token": identityToken(t, s1, "43", time.Now().Add(time.Hour))}); w == nil || w["participant"] != "u:43" {
		t.Fatalf("identity token with the creation's secret: %v %v", w, e)
	}

	// No credential reads the secret back, and an API key cannot rotate it.
	for _, tok := range []struct{ name, token string }{{"root", tc.root}, {"session", session}, {"key", minted.Key}} {
		st, raw := b.call(n3, "GET", "/v1/admin/workspaces/acme/secrets", tok.token, nil)
		if st != 200 || !bytes.Contains(raw, []byte(`"workspace":"acme"`)) {
			t.Fatalf("GET secrets as %s: %d %s", tok.name, st, raw)
		}
	}
	for _, nd := range tc.nodes {
		if st, raw := b.call(nd, "POST", "/v1/admin/workspaces/acme/secrets/identity/rotate", minted.Key, map[string]any{"overlap": "1h"}); st != 403 {
			t.Fatalf("an API key rotated the secret on %s: %d %s", nd.ID, st, raw)
		}
	}
	if st, _ := b.call(n1, "POST", "/v1/admin/workspaces/acme/secrets/identity/rotate", session, map[string]any{}); st != 400 {
		t.Fatalf("a rotation without an overlap: %d", st)
	}
	// Every other route the workspace's credentials reach.
	for _, tok := range []string{tc.root, session, minted.Key} {
		for _, path := range []string{"", "/operators", "/keys", "/usage", "/billing", "/digest"} {
			b.call(n2, "GET", "/v1/admin/workspaces/acme"+path, tok, nil)
		}
		b.call(n2, "GET", "/v1/admin/workspaces", tok, nil)
	}
	b.call(n2, "GET", "/v1/admin/cluster", tc.root, nil)
	b.must(n3, "PATCH", "/v1/admin/workspaces/acme", session, map[string]any{"name": "Acme Inc"}, nil)

	// A rotation by the admin's session, with an hour of overlap.
	type rotation struct {
		IdentitySecret string    `json:"identity_secret"`
		PreviousUntil  time.Time `json:"previous_valid_until"`
		Confirmation   struct {
			Confirmed   []string `json:"confirmed"`
			Unconfirmed []string `json:"unconfirmed"`
		} `json:"confirmation"`
	}
	var r2 rotation
	st2, raw := b.call(n3, "POST", "/v1/admin/workspaces/acme/secrets/identity/rotate", session, map[string]any{"overlap": "1h"})
	if st2 != 200 || json.Unmarshal(raw, &r2) != nil || len(r2.IdentitySecret) != 64 || r2.IdentitySecret == s1 || len(r2.Confirmation.Confirmed) != 3 {
		t.Fatalf("rotation: %d %s", st2, raw)
	}
	s2 := r2.IdentitySecret
	shown[s2] = "the first rotation"
	b.seen = b.seen[:len(b.seen)-1]
	if d := time.Until(r2.PreviousUntil); d < 50*time.Minute || d > time.Hour+time.Minute {
		t.Fatalf("the old secret verifies until %v, want an hour from now", r2.PreviousUntil)
	}
	var info struct {
		Rotated       *time.Time `json:"rotated"`
		PreviousUntil *time.Time `json:"previous_valid_until"`
	}
	b.must(n1, "GET", "/v1/admin/workspaces/acme/secrets", minted.Key, nil, &info)
	if info.Rotated == nil || info.PreviousUntil == nil || !info.PreviousUntil.Equal(r2.PreviousUntil) {
		t.Fatalf("secrets' dates after the rotation: %+v", info)
	}

	// The live visitor is still connected and chatting; in the overlap
	// the old secret's hash and token verify on every node, and so does
	// the new secret's at once.
	say(t, ctx, live, conv, "after-rotation-1", "hello after the rotation")
	for _, nd := range tc.nodes {
		for name, id := range map[string]map[string]any{
			"old hash":  {"user_id": "42", "user_hash": userHash(t, s1, "42")},
			"old token": {"identity_token": identityToken(t, s1, "42", time.Now().Add(time.Hour))},
			"new hash":  {"user_id": "42", "user_hash": userHash(t, s2, "42")},
			"new token": {"identity_token": identityToken(t, s2, "42", time.Now().Add(time.Hour))},
		} {
			cl, w, e := verifiedHello(t, ctx, nd, "acme", id)
			if w == nil || w["participant"] != "u:42" {
				t.Fatalf("%s on %s in the overlap: %v", name, nd.ID, e)
			}
			if name == "old hash" {
				// The reconnected visitor finds their conversation.
				cl.send(ctx, map[string]any{"type": "list", "ref": "l"})
				if l, err := cl.await(ctx, "conversations", nil); err != nil || !strings.Contains(fmt.Sprint(l["items"]), conv) {
					t.Fatalf("the reconnected visitor's conversations on %s: %v %v", nd.ID, l, err)
				}
			}
			cl.close()
		}
	}

	// A visitor connected with the first rotation's secret.
	liveS2, w2, e2 := verifiedHello(t, ctx, n3, "acme", map[string]any{"user_id": "44", "user_hash": userHash(t, s2, "44")})
	if w2 == nil {
		t.Fatalf("the new secret's hash: %v", e2)
	}

	// A second rotation, with 3 s of overlap: the creation's secret is
	// dropped at once (a rotation keeps only the secret it replaces), and
	// the connection it verified is closed with auth_failed; the first
	// rotation's verifies until the overlap ends, then is refused
	// everywhere, and its connection closed; the new one verifies.
	var r3 rotation
	st3, raw := b.call(n1, "POST", "/v1/admin/workspaces/acme/secrets/identity/rotate", tc.root, map[string]any{"overlap": "3s"})
	if st3 != 200 || json.Unmarshal(raw, &r3) != nil || len(r3.IdentitySecret) != 64 || len(r3.Confirmation.Confirmed) != 3 {
		t.Fatalf("second rotation: %d %s", st3, raw)
	}
	s3 := r3.IdentitySecret
	shown[s3] = "the second rotation"
	b.seen = b.seen[:len(b.seen)-1]
	if e, err := live.await(ctx, "error", nil); err != nil || e["code"] != "auth_failed" {
		t.Fatalf("the connection verified by a dropped secret: %v %v", e, err)
	}
	for _, nd := range tc.nodes {
		if _, w, e := verifiedHello(t, ctx, nd, "acme", map[string]any{"user_id": "42", "user_hash": userHash(t, s1, "42")}); w != nil || e["code"] != "auth_failed" {
			t.Fatalf("the creation's secret after two rotations on %s: %v %v", nd.ID, w, e)
		}
	}
	if _, w, e := verifiedHello(t, ctx, n2, "acme", map[string]any{"user_id": "42", "user_hash": userHash(t, s2, "42")}); w == nil && time.Now().Before(r3.PreviousUntil.Add(-time.Second)) {
		t.Fatalf("the first rotation's secret refused during its overlap: %v", e)
	}
	for _, nd := range tc.nodes {
		eventually.Holds(t, 20*time.Second, "the old secret refused once the overlap ended", func() error {
			_, w, e := verifiedHello(t, ctx, nd, "acme", map[string]any{"user_id": "42", "user_hash": userHash(t, s2, "42")})
			if w != nil {
				return fmt.Errorf("the old secret's hash still verifies on %s", nd.ID)
			}
			if e["code"] != "auth_failed" {
				return fmt.Errorf("the old secret's hash on %s: %v", nd.ID, e)
			}
			return nil
		})
		if time.Now().Before(r3.PreviousUntil) {
			t.Fatalf("%s refused the old secret before the overlap ended (%v)", nd.ID, r3.PreviousUntil)
		}
		if nd == n3 {
			// The connection it verified was closed when the overlap ended.
			e, err := liveS2.await(ctx, "error", nil)
			if err != nil || e["code"] != "auth_failed" {
				t.Fatalf("the connection verified by the first rotation's secret after the overlap: %v %v", e, err)
			}
		}
		if _, w, e := verifiedHello(t, ctx, nd, "acme", map[string]any{"identity_token": identityToken(t, s2, "42", time.Now().Add(time.Hour))}); w != nil || e["code"] != "auth_failed" {
			t.Fatalf("the old secret's token after the overlap on %s: %v %v", nd.ID, w, e)
		}
		if _, w, e := verifiedHello(t, ctx, nd, "acme", map[string]any{"user_id": "42", "user_hash": userHash(t, s3, "42")}); w == nil || w["participant"] != "u:42" {
			t.Fatalf("the new secret's hash after the overlap on %s: %v", nd.ID, e)
		}
	}
	// A connection verified by the current secret stays: it chats.
	live3, w3, e3 := verifiedHello(t, ctx, n1, "acme", map[string]any{"identity_token": identityToken(t, s3, "42", time.Now().Add(time.Hour))})
	if w3 == nil {
		t.Fatalf("the current secret's token: %v", e3)
	}
	live3.send(ctx, map[string]any{"type": "list", "ref": "l3"})
	if l, err := live3.await(ctx, "conversations", nil); err != nil || !strings.Contains(fmt.Sprint(l["items"]), conv) {
		t.Fatalf("the verified visitor's conversations with the new secret: %v %v", l, err)
	}
	say(t, ctx, live3, conv, "after-rotation-2", "still here")

	b.call(n2, "GET", "/v1/admin/workspaces/acme/secrets", session, nil)
	b.call(n2, "GET", "/v1/admin/workspaces/acme", tc.root, nil)

	// No other reply carried any of the secrets, in any form; nor did a
	// node's log or, in plaintext, its files.
	if len(b.seen) < 30 {
		t.Fatalf("scanned only %d replies", len(b.seen))
	}
	for secret, where := range shown {
		for _, f := range forms(secret) {
			for _, s := range b.seen {
				if bytes.Contains(s.body, []byte(f)) {
					t.Errorf("the identity secret shown by %s is in the reply of %s: %s", where, s.what, s.body)
				}
			}
			for _, nd := range tc.nodes {
				if strings.Contains(nd.Logs(), f) {
					t.Errorf("the identity secret shown by %s is in the log of %s", where, nd.ID)
				}
				raw, _ := hex.DecodeString(secret)
				filepath.Walk(nd.DataDir, func(path string, fi os.FileInfo, err error) error {
					if err == nil && !fi.IsDir() {
						data, _ := os.ReadFile(path)
						if bytes.Contains(data, raw) || bytes.Contains(data, []byte(f)) {
							t.Errorf("the identity secret shown by %s is in %s", where, path)
						}
					}
					return nil
				})
			}
		}
	}
}
