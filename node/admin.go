package node

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"parley/cluster"
	"parley/cluster/membership"
	"parley/store"

	"golang.org/x/time/rate"
)

// The admin REST API (docs/api.md) manages the control plane: workspaces and
// their regions, operators, sessions, API keys, plans, usage, billing and
// assignments. Any node serves it: writes go to the Raft leader, reads come
// from the node's copy of the state after the node has applied the caller's
// last write (read-your-writes on one node).

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
	case accessKeys, accessOperators:
		// A key can neither mint keys nor make operators or set their
		// passwords: a leaked key must not be able to make itself survive
		// its revocation, directly or through an admin session it made.
		return p.role == cluster.RoleAdmin
	}
	return false
}

type access int

const (
	accessRead      access = iota // read the workspace
	accessAssign                  // assign conversations
	accessAdmin                   // manage operators, sessions, secrets
	accessKeys                    // mint API keys
	accessOperators               // invite and remove operators, set passwords
	accessRoot                    // cluster-wide: regions, plans, billing events
)

// apiError is an error body: {"error": {"code": ..., "message": ...}}.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func apiErr(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// statusOf maps the control plane's error codes to HTTP statuses.
var statusOf = map[string]int{
	"invalid":      http.StatusBadRequest,
	"unauthorized": http.StatusUnauthorized,
	"revoked":      http.StatusUnauthorized,
	"not_found":    http.StatusNotFound,
	"conflict":     http.StatusConflict,
	"exists":       http.StatusConflict,
	"over_limit":   http.StatusForbidden,
	"not_leader":   http.StatusServiceUnavailable,
	"uncertain":    http.StatusServiceUnavailable,
	"closed":       http.StatusServiceUnavailable,
	"internal":     http.StatusInternalServerError,
}

func clusterErr(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	code := cluster.ErrorCode(err)
	if errors.Is(err, context.DeadlineExceeded) && code == "internal" {
		code = "uncertain"
	}
	return &apiError{Status: statusOf[code], Code: code, Message: err.Error()}
}

// admin serves the admin API of one node.
type admin struct {
	ctl *control
	st  *store.Store
	// members lists the nodes gossip sees alive.
	members func() []membership.Member
	// purge confirms a deletion's or a pin's purge on every node.
	purge *purger
	// logins limits password attempts per client address.
	loginsMu sync.Mutex
	logins   map[string]*rate.Limiter
}

// maxAdminBody bounds a request body.
const maxAdminBody = 64 << 10

type handlerFunc func(r *http.Request, p principal) (any, error)

// route registers a handler that needs a credential.
func (a *admin) route(mux *http.ServeMux, pattern string, h handlerFunc) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, err := a.authenticate(r)
		if err != nil {
			writeAPI(w, nil, err)
			return
		}
		if err := a.catchUp(r); err != nil {
			writeAPI(w, nil, err)
			return
		}
		v, err := h(r, p)
		writeAPI(w, v, err)
	})
}

func writeAPI(w http.ResponseWriter, v any, err error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if err != nil {
		ae := clusterErr(err)
		if ae.Status == 0 {
			ae.Status = http.StatusInternalServerError
		}
		if ae.Status == http.StatusUnauthorized {
			h.Set("WWW-Authenticate", `Bearer realm="parley"`)
		}
		w.WriteHeader(ae.Status)
		json.NewEncoder(w).Encode(map[string]any{"error": ae})
		return
	}
	if v == nil {
		v = struct{}{}
	}
	json.NewEncoder(w).Encode(v)
}

// authenticate reads the bearer token: the cluster admin token, an
// operator's session or an API key. Sessions and keys are refused while
// this node is out of touch with the leader (it may have missed their
// revocation).
func (a *admin) authenticate(r *http.Request) (principal, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return principal{}, apiErr(401, "unauthorized", "missing Authorization: Bearer <token>")
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(a.ctl.key.adminToken())) == 1 {
		return principal{root: true}, nil
	}
	if !a.ctl.fresh() {
		return principal{}, apiErr(503, "unavailable", "%s", errStale.Error())
	}
	if strings.HasPrefix(tok, cluster.APIKeyPrefix) {
		k, err := a.ctl.c.AuthenticateKey(tok)
		if err != nil {
			return principal{}, apiErr(401, cluster.ErrorCode(err), "API key refused")
		}
		return principal{workspace: k.Workspace, key: k.ID}, nil
	}
	o, err := a.ctl.c.AuthenticateSession(tok)
	if err != nil {
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
func (a *admin) catchUp(r *http.Request) error {
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
	if err := a.ctl.c.WaitApplied(ctx, idx); err != nil {
		return apiErr(http.StatusServiceUnavailable, "unavailable", "this node has not caught up to index %d yet: retry", idx)
	}
	return nil
}

// written waits until this node has applied a write, so the caller's next
// read here sees it.
func (a *admin) written(ctx context.Context, res cluster.Result) {
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	a.ctl.c.WaitApplied(wctx, res.Index)
}

// allowLogin limits password attempts: 5 per second, bursts of 10, per
// client address.
func (a *admin) allowLogin(r *http.Request) bool {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	a.loginsMu.Lock()
	defer a.loginsMu.Unlock()
	if a.logins == nil || len(a.logins) > 10_000 {
		a.logins = map[string]*rate.Limiter{}
	}
	l := a.logins[ip]
	if l == nil {
		l = rate.NewLimiter(5, 10)
		a.logins[ip] = l
	}
	return l.Allow()
}
