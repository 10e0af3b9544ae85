package cluster

import (
	"errors"
	"fmt"

	"parley/cluster/schema"
)

// Sentinel errors callers branch on with errors.Is. Every error the package
// returns wraps at most one of them with context.
var (
	// ErrNotLeader: this node is not the leader and could not forward; the
	// error is a *NotLeaderError naming the leader when one is known. The
	// command was not applied, so retrying elsewhere is safe.
	ErrNotLeader = errors.New("not the leader")
	// ErrUncertain: the command may or may not have been applied. Apply
	// returns it when a copy was handed to a leader and no answer came
	// before the context ended (it sends the same request to each new
	// leader until then), or when the state machine refused a copy that
	// came too long after the request was made to tell (Request). Retry
	// only commands that carry an idempotency key or that fail harmlessly
	// when repeated. HandleForward also answers it when the leader lost
	// its leadership mid-apply; the origin then sends the request again.
	ErrUncertain = errors.New("outcome unknown")
	ErrNotFound  = errors.New("not found")
	// ErrConflict: an optimistic check failed (assignment version,
	// idempotency key reused for a different payload).
	ErrConflict = errors.New("conflict")
	ErrExists   = errors.New("already exists")
	// ErrInvalid: a command or argument failed validation, or a command type
	// is unknown to this binary.
	ErrInvalid      = schema.ErrInvalid
	ErrUnauthorized = schema.ErrUnauthorized
	ErrRevoked      = errors.New("revoked")
	// ErrOverLimit: the workspace's plan does not allow the change (seats).
	ErrOverLimit = errors.New("over plan limit")
	ErrClosed    = errors.New("cluster closed")
	// ErrClusterUpgrading: the command is newer than a member of the
	// cluster runs (or than a member gossip cannot see may run): it was not
	// proposed, so that no node meets a command it does not know and
	// stops. Retry once every member runs the command's version.
	ErrClusterUpgrading = errors.New("cluster upgrading")
	// ErrBusy: this node is already checking as many passwords as it
	// allows, with a full queue behind (Config.PasswordChecks); retry
	// shortly. Nothing was checked or applied.
	ErrBusy = errors.New("busy")
	// ErrInternal: a bug; the FSM turned a panic into an error result.
	ErrInternal = errors.New("internal error")
)

// NotLeaderError is the ErrNotLeader a follower returns, with the leader it
// knows of (empty when there is none) so a caller can send the request there.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderAddr == "" {
		return "not the leader: no leader known"
	}
	return fmt.Sprintf("not the leader: leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// errorCodes name the sentinels on the wire, so an error that crossed a
// forward still matches errors.Is on the origin node. Codes are never
// renamed: nodes of different versions exchange them.
var errorCodes = []struct {
	code string
	err  error
}{
	{"not_leader", ErrNotLeader},
	{"uncertain", ErrUncertain},
	{"not_found", ErrNotFound},
	{"conflict", ErrConflict},
	{"exists", ErrExists},
	{"invalid", ErrInvalid},
	{"unauthorized", ErrUnauthorized},
	{"revoked", ErrRevoked},
	{"over_limit", ErrOverLimit},
	{"closed", ErrClosed},
	{"internal", ErrInternal},
	{"busy", ErrBusy},
	{"cluster_upgrading", ErrClusterUpgrading},
}

// ErrorCode is the stable wire name of the sentinel err wraps ("internal"
// when none); the admin API will reuse it in its error bodies.
func ErrorCode(err error) string {
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "internal"
}

// codedError is an error rebuilt from its wire form: the original message,
// unwrapping to the sentinel its code names.
type codedError struct {
	msg      string
	sentinel error
}

func (e *codedError) Error() string { return e.msg }
func (e *codedError) Unwrap() error { return e.sentinel }

func errorFromCode(code, msg string) error {
	for _, c := range errorCodes {
		if c.code == code {
			return &codedError{msg: msg, sentinel: c.err}
		}
	}
	return &codedError{msg: msg, sentinel: ErrInternal}
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
