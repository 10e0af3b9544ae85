package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"parley/gateway/wire"
	"parley/ident"
)

// ErrAuth is what an Authenticator returns for a credential it refuses.
var ErrAuth = errors.New("authentication failed")

// ErrUnconfirmed is what a Store's Apply returns for a change it stored
// but could not have confirmed by a second replica in time: the client gets
// unavailable and retries with the same id, which is never stored twice.
var ErrUnconfirmed = errors.New("stored, not yet confirmed by a second replica")

// ErrOverLimit is what Limits returns for a workspace that has used up its
// plan; the client gets the error's text with the code over_limit.
var ErrOverLimit = errors.New("over plan limit")

// Limits is the gateway's view of billing: whether a workspace may still
// start conversations and send messages.
type Limits interface {
	// Allow returns nil, or an error wrapping ErrOverLimit that says which
	// limit is used up.
	Allow(workspace string, now time.Time) error
}

// Meter counts what a workspace is billed for: conversations, each with
// its first message stored (one started and left empty never counts), and
// messages stored (a retried message counts once).
type Meter interface {
	Count(workspace string, conversations, messages int64)
}

// Agent is an authenticated operator.
type Agent struct {
	ID   string
	Name string
	// Credential names the credential the agent signed in with (a session
	// ID, never the token), so that Expel can end its connections when it
	// is revoked. Zero: none. (A verified visitor's is the fingerprint of
	// the identity secret that verified it: IdentityCredential.)
	Credential string
}

// Secrets are a workspace's keys for verifying visitors.
type Secrets struct {
	// Identity keys the HMAC-SHA256 a site computes over a user ID, and
	// the HS256 signature of its identity tokens.
	Identity []byte
	// PreviousIdentity is the identity secret a rotation replaced: it
	// verifies as well until PreviousUntil, by this node's clock. Nil:
	// none.
	PreviousIdentity []byte
	PreviousUntil    time.Time
	// Visitor keys the HMAC that makes anonymous visitor IDs unforgeable.
	Visitor []byte
}

// Authenticator is the gateway's view of the control plane: who may connect
// to which workspace. The node implements it on its store today; the Raft
// control plane takes it over later without the gateway changing.
type Authenticator interface {
	// Agent checks an operator token for a workspace; ErrAuth if refused.
	Agent(ctx context.Context, workspace, token string) (Agent, error)
	// Secrets returns a workspace's visitor keys; ErrAuth if it does not exist.
	Secrets(ctx context.Context, workspace string) (Secrets, error)
}

// identity is who a connection speaks for, fixed at hello.
type identity struct {
	Workspace   string
	Participant string
	Role        ident.Role
	Name        string
	VisitorID   string
	VisitorSig  string
	Credential  string
}

// authenticate turns a validated hello into an identity.
func authenticate(ctx context.Context, a Authenticator, f inFrame) (identity, *wireError) {
	id := identity{Workspace: f.Workspace, Role: f.Role, Name: f.Name}
	if f.Role == ident.Agent {
		ag, err := a.Agent(ctx, f.Workspace, f.Token)
		if err != nil {
			return id, authError(err, "operator token refused")
		}
		id.Participant = "a:" + ag.ID
		id.Credential = ag.Credential
		if id.Name == "" {
			id.Name = ag.Name
		}
		return id, nil
	}
	sec, err := a.Secrets(ctx, f.Workspace)
	if err != nil {
		return id, authError(err, "unknown workspace")
	}
	keys := sec.identityKeys(time.Now())
	if f.IdentityToken != "" {
		c, key, err := verifyIdentityToken(f.IdentityToken, keys, time.Now())
		if err != nil {
			return id, fatalf(wire.CodeAuthFailed, wire.CloseAuthFailed, "identity_token: %v", err)
		}
		id.Participant = "u:" + c.Sub
		id.Credential = IdentityCredential(key)
		if c.Name != "" {
			id.Name = c.Name
		}
		return id, nil
	}
	if f.UserID != "" {
		key := matchingKey(keys, f.UserID, mustHex(f.UserHash))
		if key == nil {
			return id, fatalf(wire.CodeAuthFailed, wire.CloseAuthFailed, "user_hash does not match user_id")
		}
		id.Participant = "u:" + f.UserID
		id.Credential = IdentityCredential(key)
		return id, nil
	}
	if f.VisitorID != "" {
		if !hmac.Equal(visitorSig(sec.Visitor, f.Workspace, f.VisitorID), mustHex(f.VisitorSig)) {
			return id, fatalf(wire.CodeAuthFailed, wire.CloseAuthFailed, "visitor_sig does not match visitor_id")
		}
		id.VisitorID, id.VisitorSig = f.VisitorID, f.VisitorSig
	} else {
		var raw [16]byte
		rand.Read(raw[:])
		id.VisitorID = hex.EncodeToString(raw[:])
		id.VisitorSig = hex.EncodeToString(visitorSig(sec.Visitor, f.Workspace, id.VisitorID))
	}
	id.Participant = "v:" + id.VisitorID
	return id, nil
}

// identityKeys are the identity secrets that verify at now: the current
// one, and the one a rotation replaced until its overlap ends.
func (s Secrets) identityKeys(now time.Time) [][]byte {
	keys := [][]byte{s.Identity}
	if len(s.PreviousIdentity) > 0 && now.Before(s.PreviousUntil) {
		keys = append(keys, s.PreviousIdentity)
	}
	return keys
}

// matchingKey returns the key of keys under which mac is the HMAC-SHA256
// of msg, each compared in constant time; nil if none.
func matchingKey(keys [][]byte, msg string, mac []byte) []byte {
	var match []byte
	for _, k := range keys {
		if len(k) > 0 && hmac.Equal(sign(k, msg), mac) {
			match = k
		}
	}
	return match
}

// IdentityCredentialPrefix starts every IdentityCredential.
const IdentityCredentialPrefix = "i:"

// IdentityCredential names the identity secret that verified a visitor,
// as the connection's credential: when the secret stops verifying (its
// rotation's overlap ended), Expel ends the connections it verified. A
// fingerprint, which tells nothing of the secret.
func IdentityCredential(secret []byte) string {
	sum := sha256.Sum256(append([]byte("parley identity credential\x00"), secret...))
	return IdentityCredentialPrefix + hex.EncodeToString(sum[:12])
}

// Identity tokens: a JWT (RFC 7519) a site signs with HS256 under the
// workspace's identity secret, saying who its visitor is until when.
const (
	// MaxIdentityToken bounds an identity token's length.
	MaxIdentityToken = 2048
	// identityLeeway is how far an identity token's exp (and nbf) may be
	// off this node's clock.
	identityLeeway = 30 * time.Second
)

// identityClaims are the claims of an identity token Parley reads; others
// (email, iat, iss, aud…) are ignored.
type identityClaims struct {
	// Sub is the user ID: the visitor is participant u:<sub>.
	Sub string
	// Name, optional, is the visitor's display name.
	Name string
}

var (
	errTokenMalformed = errors.New("malformed: want a JWT of three base64url parts")
	errTokenAlg       = errors.New("alg must be HS256")
	errTokenSignature = errors.New("signature does not match")
	errTokenExpired   = errors.New("expired")
)

// verifyIdentityToken checks an identity token's form, its HS256 signature
// under one of keys (in constant time) and its times against now, and
// returns its claims and the key that signed it.
func verifyIdentityToken(token string, keys [][]byte, now time.Time) (identityClaims, []byte, error) {
	if len(token) > MaxIdentityToken {
		return identityClaims{}, nil, fmt.Errorf("%d characters, at most %d", len(token), MaxIdentityToken)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return identityClaims{}, nil, errTokenMalformed
	}
	var raw [3][]byte
	for i, p := range parts {
		b, err := base64.RawURLEncoding.Strict().DecodeString(p)
		if err != nil || (i < 2 && len(b) == 0) {
			return identityClaims{}, nil, errTokenMalformed
		}
		raw[i] = b
	}
	var h struct {
		Alg  string   `json:"alg"`
		Typ  string   `json:"typ"`
		Crit []string `json:"crit"`
	}
	if err := json.Unmarshal(raw[0], &h); err != nil {
		return identityClaims{}, nil, fmt.Errorf("header: %w", errTokenMalformed)
	}
	// Only the algorithm the secret is for: never "none", never another
	// one an attacker picks.
	if h.Alg != "HS256" {
		return identityClaims{}, nil, errTokenAlg
	}
	if h.Typ != "" && !strings.EqualFold(h.Typ, "JWT") {
		return identityClaims{}, nil, fmt.Errorf("typ %q: want JWT", h.Typ)
	}
	if h.Crit != nil {
		return identityClaims{}, nil, errors.New("crit: no extension is understood")
	}
	key := matchingKey(keys, parts[0]+"."+parts[1], raw[2])
	if key == nil {
		return identityClaims{}, nil, errTokenSignature
	}
	var c struct {
		Sub  *string  `json:"sub"`
		Exp  *float64 `json:"exp"`
		Nbf  *float64 `json:"nbf"`
		Name *string  `json:"name"`
	}
	if err := json.Unmarshal(raw[1], &c); err != nil {
		return identityClaims{}, nil, fmt.Errorf("claims: %w", errTokenMalformed)
	}
	if c.Exp == nil {
		return identityClaims{}, nil, errors.New("exp is required")
	}
	exp, err := numericDate(*c.Exp)
	if err != nil {
		return identityClaims{}, nil, fmt.Errorf("exp: %w", err)
	}
	if !now.Before(exp.Add(identityLeeway)) {
		return identityClaims{}, nil, errTokenExpired
	}
	if c.Nbf != nil {
		nbf, err := numericDate(*c.Nbf)
		if err != nil {
			return identityClaims{}, nil, fmt.Errorf("nbf: %w", err)
		}
		if now.Add(identityLeeway).Before(nbf) {
			return identityClaims{}, nil, errors.New("not valid yet (nbf)")
		}
	}
	if c.Sub == nil || *c.Sub == "" || len(*c.Sub) > maxUser || !ident.PrintableName(*c.Sub) {
		return identityClaims{}, nil, fmt.Errorf("sub: 1..%d printable characters required", maxUser)
	}
	out := identityClaims{Sub: *c.Sub}
	if c.Name != nil {
		if utf8.RuneCountInString(*c.Name) > maxName || !ident.PrintableName(*c.Name) {
			return identityClaims{}, nil, fmt.Errorf("name: at most %d printable characters, no invisible format characters", maxName)
		}
		out.Name = *c.Name
	}
	return out, key, nil
}

// numericDate reads a JWT NumericDate: seconds since the epoch, perhaps
// fractional.
func numericDate(f float64) (time.Time, error) {
	if math.IsNaN(f) || f <= 0 || f > 1e11 {
		return time.Time{}, errors.New("not a time in seconds since 1970")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}

func authError(err error, msg string) *wireError {
	if errors.Is(err, ErrAuth) {
		return fatalf(wire.CodeAuthFailed, wire.CloseAuthFailed, "%s", msg)
	}
	return &wireError{Code: wire.CodeUnavailable, Message: "authentication unavailable", close: wire.CloseRestart, cause: err}
}

// UserHash is what a site computes for a verified visitor: the hex HMAC-SHA256
// of the user ID under the workspace's identity secret.
func UserHash(secret []byte, userID string) string {
	return hex.EncodeToString(sign(secret, userID))
}

func sign(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// visitorSig binds a visitor ID to its workspace, so a signature of one
// workspace is worthless in another.
func visitorSig(key []byte, workspace, visitorID string) []byte {
	return sign(key, fmt.Sprintf("parley-visitor\x00%s\x00%s", workspace, visitorID))
}

// mustHex decodes validated hex; validation guarantees the format, and an
// empty slice never matches a MAC anyway.
func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}
