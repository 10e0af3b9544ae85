// Package adminapi is the admin REST API (docs/api.md), which manages the
// control plane: workspaces and their regions, operators, sessions, API
// keys, plans, usage, billing and assignments. Any node serves it: writes go
// to the Raft leader, reads come from the node's copy of the state after the
// node has applied the caller's last write (read-your-writes on one node).
package adminapi

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"parley/cluster"
	"parley/cluster/clusterkey"
	"parley/cluster/membership"
	"parley/node/httpapi"
	"parley/store"
)

// principal is who a request speaks for.
type principal struct {
	// root: the cluster administrator (the token derived from the cluster
	// key); every workspace.
	root bool
	// workspace the operator or key belongs to, when not root.
	workspace string
	operator  string       // an operator's session
	role      cluster.Role // the operator's role
	session   string       // the session's ID
	key       string       // an API key's ID
}

// can says whether p may act on workspace ws with the given need.
func (p principal) can(ws string, need access) bool {
	if p.root {
		return true
	}
	if p.workspace != ws {
		return false
	}
	switch need {
	case accessRead, accessAssign:
		return true
	case accessAdmin:
		return p.role == cluster.RoleAdmin || p.key != ""
	case accessKeys, accessOperators, accessSecrets:
		// A key can neither mint keys nor make operators or set their
		// passwords: a leaked key must not be able to make itself survive
		// its revocation, directly or through an admin session it made.
		// Nor can it rotate the identity secret, which would show it one
		// that forges any verified visitor.
		return p.role == cluster.RoleAdmin
	}
	return false
}

type access int

const (
	accessRead      access = iota // read the workspace
	accessAssign                  // assign conversations
	accessAdmin                   // manage sessions and keys, see secrets' dates
	accessKeys                    // mint API keys
	accessOperators               // invite and remove operators, set passwords
	accessRoot                    // cluster-wide: regions, plans, billing events
	accessSecrets                 // rotate the identity secret, make or rotate a webhook's secret
)

// apiErr makes an API error (httpapi.Error).
func apiErr(status int, code, format string, args ...any) *httpapi.Error {
	return httpapi.Errorf(status, code, format, args...)
}

// statusOf maps the control plane's error codes to HTTP statuses.
var statusOf = map[string]int{
	"invalid":           http.StatusBadRequest,
	"unauthorized":      http.StatusUnauthorized,
	"revoked":           http.StatusUnauthorized,
	"not_found":         http.StatusNotFound,
	"conflict":          http.StatusConflict,
	"exists":            http.StatusConflict,
	"over_limit":        http.StatusForbidden,
	"busy":              http.StatusServiceUnavailable,
	"cluster_upgrading": http.StatusConflict,
	"not_leader":        http.StatusServiceUnavailable,
	"uncertain":         http.StatusServiceUnavailable,
	"closed":            http.StatusServiceUnavailable,
	"internal":          http.StatusInternalServerError,
}

func clusterErr(err error) *httpapi.Error {
	var ae *httpapi.Error
	if errors.As(err, &ae) {
		return ae
	}
	code := cluster.ErrorCode(err)
	if errors.Is(err, context.DeadlineExceeded) && code == "internal" {
		code = "uncertain"
	}
	return &httpapi.Error{Status: statusOf[code], Code: code, Message: err.Error()}
}

// Cluster is what the admin API needs of the control plane (a
// *cluster.Cluster): its writes, its replicated state, and its Raft member.
type Cluster interface {
	// Writes.
	Apply(ctx context.Context, cmd cluster.Command) (cluster.Result, error)
	WaitApplied(ctx context.Context, index uint64) error
	Login(ctx context.Context, workspace, email, password string) (raw string, s cluster.Session, err error)
	MintKey(ctx context.Context, workspace, brand, name string) (raw string, k cluster.Key, res cluster.Result, err error)
	AddOperator(ctx context.Context, o cluster.NewOperator) (cluster.Operator, cluster.Result, error)
	SetPassword(ctx context.Context, workspace, operator, password string) (cluster.Result, error)
	SetIdentitySecret(ctx context.Context, workspace string, secret []byte) (cluster.Result, error)
	SetVisitorKey(ctx context.Context, workspace string, key []byte) (cluster.Result, error)
	RotateIdentitySecret(ctx context.Context, workspace string, secret []byte, overlap time.Duration) (cluster.Result, time.Time, error)
	CreateWebhook(ctx context.Context, workspace, url string, events []string) (cluster.Webhook, string, cluster.Result, error)
	RotateWebhookSecret(ctx context.Context, workspace, id string, overlap time.Duration) (string, time.Time, cluster.Result, error)
	SetEmailSettings(ctx context.Context, st cluster.EmailSettings, secret *string) (cluster.EmailSettings, cluster.Result, error)

	// Credentials.
	AuthenticateKey(raw string) (cluster.Key, error)
	AuthenticateSession(raw string) (cluster.Operator, error)
	Session(id string) (cluster.Session, error)
	Key(id string) (cluster.Key, error)
	Keys(workspace string) ([]cluster.Key, error)

	// Workspaces, operators, plans, usage, billing, assignments.
	Workspace(id string) (cluster.Workspace, error)
	Workspaces() []cluster.Workspace
	IdentitySecret(workspace string) ([]byte, error)
	IdentitySecretInfo(workspace string) (cluster.SecretInfo, error)
	Operators(workspace string) ([]cluster.Operator, error)
	Plans() []cluster.Plan
	Plan(name string) (cluster.Plan, error)
	Usage(workspace, period string) (cluster.Usage, error)
	OverLimit(workspace, period string) (reason string, over bool)
	BillingEvents(workspace string) ([]cluster.BillingEvent, error)
	Assignment(workspace, conversation string) (cluster.Assignment, error)
	AuditLog(q cluster.AuditQuery) cluster.AuditPage
	Webhooks(workspace string) ([]cluster.Webhook, error)
	Webhook(workspace, id string) (cluster.Webhook, error)
	DeadLetters(workspace, id string) ([]cluster.DeadLetter, error)
	EmailSettings(workspace string) (cluster.EmailSettings, error)
	MailStates(workspace, status string) ([]cluster.MailState, error)
	MailState(workspace, conv string) (cluster.MailState, error)

	// The Raft member and the nodes.
	Stats() cluster.Stats
	// Versions are the members' protocol versions as this node knows them.
	Versions() cluster.VersionInfo
	Members() []cluster.Member
	Nodes() []cluster.NodeInfo
	RemoveServer(ctx context.Context, id string) error
	Snapshot(ctx context.Context) error
}

// Confirmer is what the admin API needs of the node's control-plane
// member: revocations confirmed on every node, and whether this node may
// be trusted with operator credentials.
type Confirmer interface {
	// Revoke applies a revoking command and returns once no node accepts
	// what it revoked.
	Revoke(ctx context.Context, cmd cluster.Command) (cluster.Result, httpapi.Confirmation, error)
	// ConfirmEverywhere returns once every member has applied index (or
	// the lease of those that did not answer ran out).
	ConfirmEverywhere(ctx context.Context, index uint64) httpapi.Confirmation
	// Fresh is nil when this node's copy of the control plane is recent
	// enough to accept sessions and keys, else why not.
	Fresh() error
}

// Store is what the admin API reads of the node's store: the digests of
// a workspace's replicas and what an export holds (a *store.Store).
type Store interface {
	Conversation(ws, id string) (store.Conversation, error)
	Conversations(ws, owner string) ([]store.Conversation, error)
	ConversationsPage(ws, owner string, after store.Cursor, limit int) ([]store.Conversation, store.Cursor, error)
	Events(ws, conv string, after uint64, limit int) ([]store.Event, bool, error)
	Reads(ws, conv string) (map[string]uint64, error)
	Replies(ws string) ([]store.Reply, error)
	Frontier(ws, conv string) (map[string]uint64, error)
	StateDigest(ws, conv string) (string, int, error)
}

// Purger confirms a workspace's purge on every node.
type Purger interface {
	ConfirmPurge(ctx context.Context, ws string, index uint64) httpapi.PurgeConfirmation
}

// Erasures confirms an erasure on every node.
type Erasures interface {
	// Confirm asks every member to confirm it applied the erasures up to
	// index.
	Confirm(ctx context.Context, index uint64) httpapi.Confirmation
}

// Gossip lists the nodes gossip sees alive.
type Gossip interface {
	Members() []membership.Member
}

// Config is what an admin API is made of. Every field is required but
// Purger, Peers, Logger and Now.
type Config struct {
	// NodeID names this node in digests.
	NodeID string
	// AdminToken is the cluster administrator's bearer token.
	AdminToken string
	Cluster    Cluster
	Confirmer  Confirmer
	Store      Store
	Erasures   Erasures
	Gossip     Gossip
	// Purger confirms the purge of a deleted or moved workspace; nil
	// leaves the purge out of the answers.
	Purger Purger
	// Peers reaches the other nodes of a workspace's region, whose
	// conversations an export gathers (exportfanout.go); nil exports only
	// what this node holds.
	Peers Peers
	// WebhookAllowPrivate: webhook URLs may name private, loopback and
	// link-local addresses (the node's -webhook-allow-private). Zero: a
	// URL with such a literal address is refused.
	WebhookAllowPrivate bool
	// EmailAllowPlaintext: a workspace's SMTP settings may say tls none
	// (the node's -email-allow-plaintext). Zero: refused.
	EmailAllowPlaintext bool
	// Backup writes this node's backup to w (GET
	// /v1/admin/cluster/backup: a tar stream, node/backup.go); nil: the
	// route answers internal.
	Backup func(ctx context.Context, w io.Writer) error
	// Logger. Zero: slog.Default().
	Logger *slog.Logger
	// Now is the clock of the sign-in back-off. Zero: time.Now.
	Now func() time.Time
}

// API serves the admin API of one node.
type API struct {
	cfg Config
	// Sign-in limits (signin.go).
	addresses addressLimits
	accounts  accountBackoff
	// The audit log's own writes (audit.go).
	audits *auditLimits
}

// New makes the admin API of cfg; Register mounts it.
func New(cfg Config) *API {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &API{cfg: cfg, accounts: accountBackoff{now: cfg.Now}, audits: newAuditLimits()}
}

// maxAdminBody bounds a request body.
const maxAdminBody = 64 << 10

type handlerFunc func(r *http.Request, p principal) (any, error)

// route registers a handler that needs a credential, audited (audit.go):
// the commands it applies are recorded by the state machine, the rest of
// what it did here, once it has answered.
func (a *API) route(mux httpapi.Mux, pattern string, h handlerFunc) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		call := cluster.NewAuditCall(cluster.Actor{Kind: cluster.ActorAnonymous}, httpapi.ClientAddr(r), pattern)
		r = r.WithContext(cluster.WithAudit(r.Context(), call))
		v, authed, err := a.serve(r, call, h)
		write(w, v, err)
		a.auditRequest(w, r, pattern, call, authed, err)
	})
}

// serve authenticates the request and calls h; authed says whether the
// credential was accepted.
func (a *API) serve(r *http.Request, call *cluster.AuditCall, h handlerFunc) (v any, authed bool, err error) {
	p, err := a.authenticate(r)
	if err != nil {
		return nil, false, err
	}
	call.SetActor(p.actor())
	if err := a.catchUp(r); err != nil {
		return nil, true, err
	}
	v, err = h(r, p)
	return v, true, err
}

// write answers with v, or with err as {"error": {...}}.
func write(w http.ResponseWriter, v any, err error) {
	if err != nil {
		ae := clusterErr(err)
		if ae.Status == 0 {
			ae.Status = http.StatusInternalServerError
		}
		httpapi.WriteJSON(w, ae.Status, map[string]any{"error": ae})
		return
	}
	if d, ok := v.(download); ok {
		serveDownload(w, d)
		return
	}
	if s, ok := v.(stream); ok {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		if err := s(w); err != nil {
			slog.Default().Warn("admin API: a streamed reply cut short", "err", err)
		}
		return
	}
	if v == nil {
		v = struct{}{}
	}
	httpapi.WriteJSON(w, http.StatusOK, v)
}

// authenticate reads the bearer token: the cluster admin token, an
// operator's session or an API key. Sessions and keys are refused while
// this node is out of touch with the leader (it may have missed their
// revocation).
func (a *API) authenticate(r *http.Request) (principal, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return principal{}, apiErr(401, "unauthorized", "missing Authorization: Bearer <token>")
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(a.cfg.AdminToken)) == 1 {
		return principal{root: true}, nil
	}
	if err := a.cfg.Confirmer.Fresh(); err != nil {
		return principal{}, apiErr(503, "unavailable", "%s", err.Error())
	}
	if strings.HasPrefix(tok, cluster.APIKeyPrefix) {
		k, err := a.cfg.Cluster.AuthenticateKey(tok)
		if err != nil {
			return principal{}, apiErr(401, cluster.ErrorCode(err), "API key refused")
		}
		return principal{workspace: k.Workspace, key: k.ID}, nil
	}
	o, err := a.cfg.Cluster.AuthenticateSession(tok)
	if err != nil {
		if strings.HasPrefix(tok, clusterkey.AdminTokenPrefix) {
			// Most likely an admin token derived from another cluster's
			// key (a session token starts so once in 64³).
			return principal{}, apiErr(401, cluster.ErrorCode(err), "token refused: not this cluster's admin token (derived from another cluster key?), nor a session")
		}
		return principal{}, apiErr(401, cluster.ErrorCode(err), "session refused")
	}
	return principal{workspace: o.Workspace, operator: o.ID, role: o.Role, session: cluster.SessionID(cluster.HashToken(tok))}, nil
}

// decode reads a JSON body strictly: unknown fields and trailing data are
// errors, as is a body over maxAdminBody.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apiErr(400, "invalid", "body: %v", err)
	}
	if dec.More() {
		return apiErr(400, "invalid", "body: more than one JSON value")
	}
	return nil
}

// catchUp honours ?min_index=N: the request waits (up to 5s) until this
// node has applied the control plane's log up to N, the index a write
// returned, so that a read sees that write whichever node took it.
func (a *API) catchUp(r *http.Request) error {
	v := r.URL.Query().Get("min_index")
	if v == "" {
		return nil
	}
	idx, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return apiErr(http.StatusBadRequest, "invalid", "min_index %q: want a log index", v)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := a.cfg.Cluster.WaitApplied(ctx, idx); err != nil {
		return apiErr(http.StatusServiceUnavailable, "unavailable", "this node has not caught up to index %d yet: retry", idx)
	}
	return nil
}

// written waits until this node has applied a write, so the caller's next
// read here sees it.
func (a *API) written(ctx context.Context, res cluster.Result) {
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	a.cfg.Cluster.WaitApplied(wctx, res.Index)
}

// random returns n random bytes.
func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// period is the usage period of t: its UTC month, YYYY-MM.
func period(t time.Time) string { return t.UTC().Format("2006-01") }
