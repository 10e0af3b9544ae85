package gateway

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"strings"
	"testing"
	"time"

	"parley/gateway/wire"
)

// jwt makes a token with the given header and claims, signed by mac under
// key (nil: no signature).
func jwt(t *testing.T, header, claims map[string]any, mac func() hash.Hash, key []byte) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	in := enc(header) + "." + enc(claims)
	if mac == nil {
		return in + "."
	}
	m := hmac.New(mac, key)
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func TestVerifyIdentityToken(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	current, old := []byte("current-identity-secret"), []byte("old-identity-secret")
	hs256 := map[string]any{"alg": "HS256", "typ": "JWT"}
	claims := func(kv ...any) map[string]any {
		c := map[string]any{"sub": "42", "exp": now.Add(time.Hour).Unix()}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(c, kv[i].(string))
			} else {
				c[kv[i].(string)] = kv[i+1]
			}
		}
		return c
	}
	valid := jwt(t, hs256, claims(), sha256.New, current)
	inOverlap := Secrets{Identity: current, PreviousIdentity: old, PreviousUntil: now.Add(time.Second)}
	afterOverlap := Secrets{Identity: current, PreviousIdentity: old, PreviousUntil: now}
	tests := []struct {
		name    string
		token   string
		secrets Secrets
		want    error // nil: accepted
		wantMsg string
	}{
		{"valid", valid, Secrets{Identity: current}, nil, ""},
		{"valid with name", jwt(t, hs256, claims("name", "Ada", "email", "ada@example.test"), sha256.New, current), Secrets{Identity: current}, nil, ""},
		{"no typ", jwt(t, map[string]any{"alg": "HS256"}, claims(), sha256.New, current), Secrets{Identity: current}, nil, ""},
		{"expired within the leeway", jwt(t, hs256, claims("exp", now.Add(-10*time.Second).Unix()), sha256.New, current), Secrets{Identity: current}, nil, ""},
		{"expired", jwt(t, hs256, claims("exp", now.Add(-time.Minute).Unix()), sha256.New, current), Secrets{Identity: current}, errTokenExpired, ""},
		{"no exp", jwt(t, hs256, claims("exp", nil), sha256.New, current), Secrets{Identity: current}, nil, "exp is required"},
		{"exp as a string", jwt(t, hs256, claims("exp", "1900000000"), sha256.New, current), Secrets{Identity: current}, errTokenMalformed, ""},
		{"nbf ahead", jwt(t, hs256, claims("nbf", now.Add(time.Hour).Unix()), sha256.New, current), Secrets{Identity: current}, nil, "not valid yet"},
		{"alg none", jwt(t, map[string]any{"alg": "none"}, claims(), nil, nil), Secrets{Identity: current}, errTokenAlg, ""},
		{"alg none signed", jwt(t, map[string]any{"alg": "none"}, claims(), sha256.New, current), Secrets{Identity: current}, errTokenAlg, ""},
		{"alg HS512", jwt(t, map[string]any{"alg": "HS512"}, claims(), sha512.New, current), Secrets{Identity: current}, errTokenAlg, ""},
		{"alg hs256", jwt(t, map[string]any{"alg": "hs256"}, claims(), sha256.New, current), Secrets{Identity: current}, errTokenAlg, ""},
		{"crit", jwt(t, map[string]any{"alg": "HS256", "crit": []string{"exp"}}, claims(), sha256.New, current), Secrets{Identity: current}, nil, "crit"},
		{"bad signature", valid[:len(valid)-2] + flip(valid[len(valid)-2:]), Secrets{Identity: current}, errTokenSignature, ""},
		{"claims changed", jwt(t, hs256, claims("sub", "1"), sha256.New, current)[:0] + swapClaims(t, valid, claims("sub", "1")), Secrets{Identity: current}, errTokenSignature, ""},
		{"wrong secret", jwt(t, hs256, claims(), sha256.New, []byte("another secret")), Secrets{Identity: current}, errTokenSignature, ""},
		{"old secret in the overlap", jwt(t, hs256, claims(), sha256.New, old), inOverlap, nil, ""},
		{"current secret in the overlap", valid, inOverlap, nil, ""},
		{"old secret after the overlap", jwt(t, hs256, claims(), sha256.New, old), afterOverlap, errTokenSignature, ""},
		{"two parts", strings.Join(strings.Split(valid, ".")[:2], "."), Secrets{Identity: current}, errTokenMalformed, ""},
		{"four parts", valid + ".x", Secrets{Identity: current}, errTokenMalformed, ""},
		{"padded", valid + "=", Secrets{Identity: current}, errTokenMalformed, ""},
		{"not base64url", "a+b." + valid[4:], Secrets{Identity: current}, errTokenMalformed, ""},
		{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("HS256")) + valid[strings.Index(valid, "."):], Secrets{Identity: current}, errTokenMalformed, ""},
		{"empty", "..", Secrets{Identity: current}, errTokenMalformed, ""},
		{"too long", jwt(t, hs256, claims("pad", strings.Repeat("x", MaxIdentityToken)), sha256.New, current), Secrets{Identity: current}, nil, "at most 2048"},
		{"no sub", jwt(t, hs256, claims("sub", nil), sha256.New, current), Secrets{Identity: current}, nil, "sub:"},
		{"sub too long", jwt(t, hs256, claims("sub", strings.Repeat("u", maxUser+1)), sha256.New, current), Secrets{Identity: current}, nil, "sub:"},
		{"name with a bidi control", jwt(t, hs256, claims("name", "Ada\u202e"), sha256.New, current), Secrets{Identity: current}, nil, "name:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := verifyIdentityToken(tt.token, tt.secrets.identityKeys(now), now)
			accept := tt.want == nil && tt.wantMsg == ""
			switch {
			case accept && err != nil:
				t.Fatalf("refused: %v", err)
			case accept && c.Sub != "42" && c.Sub != "1":
				t.Fatalf("claims %+v", c)
			case !accept && err == nil:
				t.Fatalf("accepted: %+v", c)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("error %v, want %v", err, tt.want)
			case tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg):
				t.Fatalf("error %v, want it to say %q", err, tt.wantMsg)
			}
		})
	}
	if c, key, err := verifyIdentityToken(jwt(t, hs256, claims("name", "Ada"), sha256.New, old), [][]byte{current, old}, now); err != nil || c.Name != "Ada" || string(key) != string(old) {
		t.Fatalf("name claim, signing key: %+v %q, %v", c, key, err)
	}
}

func flip(s string) string {
	if s[len(s)-1] == 'A' {
		return s[:len(s)-1] + "B"
	}
	return s[:len(s)-1] + "A"
}

// swapClaims puts other claims in a signed token, keeping its signature.
func swapClaims(t *testing.T, token string, claims map[string]any) string {
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	p := strings.Split(token, ".")
	return p[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + p[2]
}

// A hello with an identity token signed with the workspace's identity
// secret is a verified visitor, named by the token; a bad one is refused
// with auth_failed, and one beside user_id is a bad request.
func TestHelloIdentityToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	claims := map[string]any{"sub": "42", "name": "Ada Verified", "exp": time.Now().Add(time.Hour).Unix()}
	hs256 := map[string]any{"alg": "HS256", "typ": "JWT"}
	cl, w := e.visitor(t, "ws1", map[string]any{"identity_token": jwt(t, hs256, claims, sha256.New, testIdentitySecret), "name": "Mallory"})
	if w["participant"] != "u:42" {
		t.Fatalf("welcome: %v", w)
	}
	// The token's name, signed by the site, is the visitor's, not the
	// hello's.
	cl.start()
	r := cl.ref()
	cl.send(map[string]any{"type": "list", "ref": r})
	items := cl.expect("conversations", refIs(r))["items"].([]any)
	if len(items) != 1 || items[0].(map[string]any)["owner_name"] != "Ada Verified" {
		t.Fatalf("conversations: %v", items)
	}
	expired := map[string]any{"sub": "42", "exp": time.Now().Add(-time.Hour).Unix()}
	for name, tok := range map[string]string{
		"expired":      jwt(t, hs256, expired, sha256.New, testIdentitySecret),
		"other secret": jwt(t, hs256, claims, sha256.New, []byte("nope")),
		"alg none":     jwt(t, map[string]any{"alg": "none"}, claims, nil, nil),
	} {
		c := e.dial(t)
		c.send(map[string]any{"type": "hello", "v": 1, "workspace": "ws1", "role": "visitor", "identity_token": tok})
		if got := c.expect("error", nil); got["code"] != wire.CodeAuthFailed {
			t.Fatalf("%s: %v", name, got)
		}
		if code := closeCode(t, c); code != wire.CloseAuthFailed {
			t.Fatalf("%s: close code %d", name, code)
		}
	}
	c := e.dial(t)
	c.send(map[string]any{"type": "hello", "v": 1, "workspace": "ws1", "role": "visitor", "identity_token": jwt(t, hs256, claims, sha256.New, testIdentitySecret),
		"user_id": "42", "user_hash": UserHash(testIdentitySecret, "42")})
	if got := c.expect("error", nil); got["code"] != wire.CodeBadRequest {
		t.Fatalf("token and user_hash: %v", got)
	}
}

// The cost of a hello's identity check: an identity token against a user
// hash, with two secrets (in a rotation's overlap).
func BenchmarkIdentityCheck(b *testing.B) {
	now := time.Now()
	keys := [][]byte{[]byte("current-identity-secret-32-bytes"), []byte("old-identity-secret-of-32-bytes.")}
	token := jwt(&testing.T{}, map[string]any{"alg": "HS256", "typ": "JWT"},
		map[string]any{"sub": "user-4242", "name": "Ada", "exp": now.Add(time.Hour).Unix()}, sha256.New, keys[1])
	b.Run("token", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := verifyIdentityToken(token, keys, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	mac := sign(keys[1], "user-4242")
	b.Run("hash", func(b *testing.B) {
		for b.Loop() {
			if matchingKey(keys, "user-4242", mac) == nil {
				b.Fatal("no match")
			}
		}
	})
}
