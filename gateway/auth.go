package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

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
	// is revoked. Zero: none.
	Credential string
}

// Secrets are a workspace's keys for verifying visitors.
type Secrets struct {
	// Identity keys the HMAC-SHA256 a site computes over a user ID.
	Identity []byte
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
	if f.UserID != "" {
		if !hmac.Equal(sign(sec.Identity, f.UserID), mustHex(f.UserHash)) {
			return id, fatalf(wire.CodeAuthFailed, wire.CloseAuthFailed, "user_hash does not match user_id")
		}
		id.Participant = "u:" + f.UserID
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
