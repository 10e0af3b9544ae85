package adminapi

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"parley/cluster"
	"parley/ident"
)

// Auditing (docs/api.md, "Audit log") happens in one place, route (and
// login for sign-ins), so a route added anywhere is audited without a line
// of its own:
//   - route puts an audit context in the request's context: who (once
//     authenticated), the client's address, the route. Every command the
//     handler applies through the cluster goes into the log as an Audited
//     command, and the state machine records it with its outcome.
//   - What applied no command is recorded afterwards by a RecordAudit of
//     its own: every refused or failed write (a 403, a 400 of a body, a
//     401 of a token), every 403 whatever the method, reads of secrets and
//     exports, failed sign-ins. Reads otherwise are not recorded.
//   - Those extra writes are bounded: at most auditRate a second per node
//     (bursts of auditBurst) for known actors and as many again for
//     anonymous ones (refused tokens, failed sign-ins), so that no flood
//     turns into a flood of Raft writes, and an anonymous one cannot crowd
//     out the record of what a known actor was refused. Beyond, entries
//     are counted, and the next one recorded brings an "audit_dropped"
//     entry with their count. Sign-ins refused by the limits per address
//     and per account (429) are not recorded one by one.
//
// Nothing of a request's body is recorded: the command's name, the IDs of
// its targets and the names of the fields it sets (the state machine's
// part), or the route and the path's IDs; of a sign-in, the email it gave
// when it is a well-formed address, never the password.
const (
	auditRate  = 10
	auditBurst = 50
)

// auditLimits bound the audit log's own writes (see above).
type auditLimits struct {
	known, anonymous *rate.Limiter
	dropped          atomic.Int64
}

func newAuditLimits() *auditLimits {
	return &auditLimits{known: rate.NewLimiter(auditRate, auditBurst), anonymous: rate.NewLimiter(auditRate, auditBurst)}
}

// actor is who p is, for the audit log.
func (p principal) actor() cluster.Actor {
	switch {
	case p.root:
		return cluster.Actor{Kind: cluster.ActorRoot}
	case p.key != "":
		return cluster.Actor{Kind: cluster.ActorKey, Workspace: p.workspace, ID: p.key}
	case p.operator != "":
		return cluster.Actor{Kind: cluster.ActorOperator, Workspace: p.workspace, ID: p.operator}
	}
	return cluster.Actor{Kind: cluster.ActorAnonymous}
}

// signInActor is an anonymous sign-in's actor: the workspace and email it
// gave, each only if well-formed (so a password typed into the email field
// is not recorded).
func signInActor(workspace, email string) cluster.Actor {
	a := cluster.Actor{Kind: cluster.ActorAnonymous}
	if ident.ValidID(workspace) {
		a.Workspace = workspace
	}
	if cluster.CheckEmail(email) == nil {
		a.Email = email
	}
	return a
}

// sensitiveRead says whether a GET route hands out secrets or bulk
// personal data (an export, a backup), and is audited like a write.
func sensitiveRead(pattern string) bool {
	return strings.Contains(pattern, "/secrets") || strings.Contains(pattern, "export") || strings.HasSuffix(pattern, "/backup")
}

// outcome is the audit outcome of a request's error: its API code.
func outcome(err error) string {
	if err == nil {
		return cluster.OutcomeOK
	}
	if code := clusterErr(err).Code; code != "" {
		return code
	}
	return "internal"
}

var reTarget = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

// pathTarget is the object a request's path names, if any, as an audit
// target: only IDs of a plain form are kept.
func pathTarget(r *http.Request) string {
	for _, k := range []string{"id", "conv", "name", "visitor"} {
		if v := r.PathValue(k); v != "" && reTarget.MatchString(v) {
			return v
		}
	}
	return ""
}

// auditRequest records what a request through route did that the state
// machine did not record (see above), after its answer (written to w) is
// sent: the record costs a Raft write the client need not wait for. It
// runs on the request's goroutine, which the server waits for on shutdown.
func (a *API) auditRequest(w http.ResponseWriter, r *http.Request, pattern string, call *cluster.AuditCall, authed bool, err error) {
	if !call.Unrecorded(err) {
		return
	}
	out := outcome(err)
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	if out != "forbidden" && read && (!authed || !sensitiveRead(pattern)) {
		return
	}
	e := cluster.AuditEntry{Audit: call.Audit(a.cfg.Now()), Action: cluster.ActionRequest, Target: pathTarget(r), Outcome: out}
	if ws := r.PathValue("ws"); ident.ValidID(ws) {
		e.Workspace = ws
	} else {
		e.Workspace = e.Actor.Workspace
	}
	flush(w)
	a.recordAudit(r.Context(), e)
}

// flush sends what was written of the answer now.
func flush(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// recordAudit records e with a RecordAudit of its own, within the limits.
func (a *API) recordAudit(ctx context.Context, e cluster.AuditEntry) {
	lim := a.audits.known
	if e.Actor.Kind == cluster.ActorAnonymous {
		lim = a.audits.anonymous
	}
	if !lim.Allow() {
		a.audits.dropped.Add(1)
		return
	}
	a.cfg.Logger.Info("audit", "action", e.Action, "route", e.Route, "actor", e.Actor.Kind, "actor_id", e.Actor.ID, "workspace", e.Workspace, "address", e.Address, "outcome", e.Outcome)
	entries := []cluster.AuditEntry{e}
	dropped := a.audits.dropped.Swap(0)
	if dropped > 0 {
		entries = append(entries, cluster.AuditEntry{
			Audit:  cluster.Audit{Actor: cluster.Actor{Kind: cluster.ActorAnonymous}, At: e.At},
			Action: "audit_dropped", Outcome: "rate_limited", Count: int(dropped),
		})
	}
	// The request may be over (its client gone): the record is not.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := a.cfg.Cluster.Apply(ctx, cluster.RecordAudit{Entries: entries}); err != nil {
		a.audits.dropped.Add(dropped + 1)
		a.cfg.Logger.Warn("audit: recording an entry failed; counted as dropped", "action", e.Action, "route", e.Route, "err", err)
	}
}

// auditQuery reads a query's paging and filters.
func auditQuery(r *http.Request) (cluster.AuditQuery, error) {
	v := r.URL.Query()
	var q cluster.AuditQuery
	if s := v.Get("before"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return q, apiErr(http.StatusBadRequest, "invalid", "before %q: want the next of a previous page", s)
		}
		q.Before = n
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return q, apiErr(http.StatusBadRequest, "invalid", "limit %q: want 1 to 1000", s)
		}
		q.Limit = n
	}
	if s := v.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return q, apiErr(http.StatusBadRequest, "invalid", "since %q: want an RFC 3339 time", s)
		}
		q.Since = t
	}
	q.Actor, q.Action = v.Get("actor"), v.Get("action")
	return q, nil
}

// auditLog is the cluster administrator's view: every log, or one
// workspace's (?workspace=), or the cluster's own (?workspace=-).
func (a *API) auditLog(r *http.Request, p principal) (any, error) {
	if err := root(p); err != nil {
		return nil, err
	}
	q, err := auditQuery(r)
	if err != nil {
		return nil, err
	}
	switch ws := r.URL.Query().Get("workspace"); ws {
	case "":
		q.All = true
	case "-":
	default:
		q.Workspace = ws
	}
	return a.cfg.Cluster.AuditLog(q), nil
}

// workspaceAuditLog is a workspace's log, for its admins.
func (a *API) workspaceAuditLog(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessKeys)
	if err != nil {
		return nil, err
	}
	q, err := auditQuery(r)
	if err != nil {
		return nil, err
	}
	q.Workspace = ws
	return a.cfg.Cluster.AuditLog(q), nil
}
