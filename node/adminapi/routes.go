package adminapi

import (
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"parley/cluster"
	"parley/cluster/membership"
	"parley/ident"
	"parley/node/httpapi"
	"parley/store"
)

// Register mounts the admin API on mux; docs/api.md documents each route.
func (a *API) Register(mux httpapi.Mux) {
	mux.HandleFunc("POST /v1/login", a.login)
	a.route(mux, "POST /v1/logout", a.logout)

	a.route(mux, "GET /v1/admin/cluster", a.clusterInfo)
	a.route(mux, "DELETE /v1/admin/cluster/members/{id}", a.removeMember)
	a.route(mux, "POST /v1/admin/cluster/snapshot", a.snapshot)
	a.route(mux, "GET /v1/admin/cluster/backup", a.backup)
	a.route(mux, "GET /v1/admin/plans", a.plans)
	a.route(mux, "PUT /v1/admin/plans/{name}", a.setPlan)

	a.route(mux, "GET /v1/admin/workspaces", a.workspaces)
	a.route(mux, "POST /v1/admin/workspaces", a.createWorkspace)
	a.route(mux, "GET /v1/admin/workspaces/{ws}", a.workspace)
	a.route(mux, "PATCH /v1/admin/workspaces/{ws}", a.updateWorkspace)
	a.route(mux, "DELETE /v1/admin/workspaces/{ws}", a.deleteWorkspace)
	a.route(mux, "GET /v1/admin/workspaces/{ws}/secrets", a.secretInfo)
	a.route(mux, "POST /v1/admin/workspaces/{ws}/secrets/identity/rotate", a.rotateIdentitySecret)

	a.route(mux, "GET /v1/admin/workspaces/{ws}/operators", a.operators)
	a.route(mux, "POST /v1/admin/workspaces/{ws}/operators", a.inviteOperator)
	a.route(mux, "DELETE /v1/admin/workspaces/{ws}/operators/{id}", a.deleteOperator)
	a.route(mux, "PUT /v1/admin/workspaces/{ws}/operators/{id}/password", a.setPassword)
	a.route(mux, "DELETE /v1/admin/workspaces/{ws}/sessions/{id}", a.revokeSession)

	a.route(mux, "GET /v1/admin/workspaces/{ws}/keys", a.keys)
	a.route(mux, "POST /v1/admin/workspaces/{ws}/keys", a.mintKey)
	a.route(mux, "DELETE /v1/admin/workspaces/{ws}/keys/{id}", a.revokeKey)

	a.route(mux, "GET /v1/admin/workspaces/{ws}/usage", a.usage)
	a.route(mux, "GET /v1/admin/workspaces/{ws}/digest", a.digest)
	a.route(mux, "GET /v1/admin/workspaces/{ws}/billing", a.billing)
	a.route(mux, "POST /v1/admin/workspaces/{ws}/billing", a.recordBilling)

	a.route(mux, "POST /v1/admin/workspaces/{ws}/erasures", a.eraseVisitor)
	a.route(mux, "GET /v1/admin/workspaces/{ws}/export", a.export)
	a.route(mux, "PUT /v1/admin/workspaces/{ws}/retention", a.setRetention)
	a.route(mux, "PUT /v1/admin/workspaces/{ws}/visitor-deletion", a.setVisitorDeletion)

	a.route(mux, "GET /v1/admin/workspaces/{ws}/assignments/{conv}", a.assignment)
	a.route(mux, "PUT /v1/admin/workspaces/{ws}/assignments/{conv}", a.assign)

	a.route(mux, "GET /v1/admin/workspaces/{ws}/webhooks", a.webhooks)
	a.route(mux, "POST /v1/admin/workspaces/{ws}/webhooks", a.createWebhook)
	a.route(mux, "GET /v1/admin/workspaces/{ws}/webhooks/{id}", a.webhook)
	a.route(mux, "DELETE /v1/admin/workspaces/{ws}/webhooks/{id}", a.deleteWebhook)
	a.route(mux, "POST /v1/admin/workspaces/{ws}/webhooks/{id}/rotate", a.rotateWebhookSecret)
	a.route(mux, "GET /v1/admin/workspaces/{ws}/webhooks/{id}/dead-letters", a.deadLetters)
	a.route(mux, "POST /v1/admin/workspaces/{ws}/webhooks/{id}/redeliver", a.redeliverWebhook)

	a.route(mux, "GET /v1/admin/workspaces/{ws}/email", a.emailSettings)
	a.route(mux, "PUT /v1/admin/workspaces/{ws}/email", a.setEmailSettings)
	a.route(mux, "DELETE /v1/admin/workspaces/{ws}/email", a.deleteEmailSettings)
	a.route(mux, "GET /v1/admin/workspaces/{ws}/email/deliveries", a.mailStates)
	a.route(mux, "GET /v1/admin/workspaces/{ws}/email/deliveries/{conv}", a.mailState)

	a.route(mux, "GET /v1/admin/audit", a.auditLog)
	a.route(mux, "GET /v1/admin/workspaces/{ws}/audit", a.workspaceAuditLog)
	for _, tr := range testRoutes {
		a.route(mux, tr.pattern, tr.handler(a))
	}
}

// testRoute is a route of test builds only (-tags upgradetest:
// probe_upgradetest.go); testRoutes is empty in every other build.
type testRoute struct {
	pattern string
	handler func(*API) handlerFunc
}

var testRoutes []testRoute

var errForbidden = apiErr(http.StatusForbidden, "forbidden", "this credential may not do that")

// scope checks the principal's access to the request's workspace and
// returns its ID.
func scope(r *http.Request, p principal, need access) (string, error) {
	ws := r.PathValue("ws")
	if need == accessRoot && !p.root {
		return ws, errForbidden
	}
	if !p.can(ws, need) {
		return ws, errForbidden
	}
	return ws, nil
}

func root(p principal) error {
	if !p.root {
		return errForbidden
	}
	return nil
}

// Sessions.

type loginRequest struct {
	Workspace string `json:"workspace"`
	Email     string `json:"email"`
	Password  string `json:"password"`
}

type loginReply struct {
	Token   string          `json:"token"`
	Session cluster.Session `json:"session"`
}

func (a *API) login(w http.ResponseWriter, r *http.Request) {
	// Audited like route's requests (audit.go): the session is recorded by
	// the state machine, as the operator's once the password matched; a
	// failure is recorded here, but for the refusals of the limits.
	call := cluster.NewAuditCall(cluster.Actor{Kind: cluster.ActorAnonymous}, httpapi.ClientAddr(r), signInRoute)
	r = r.WithContext(cluster.WithAudit(r.Context(), call))
	if !a.addresses.allow(r) {
		w.Header().Set("Retry-After", "1")
		write(w, nil, apiErr(http.StatusTooManyRequests, "rate_limited", "too many sign-in attempts from this address: retry later"))
		return
	}
	if err := a.catchUp(r); err != nil {
		write(w, nil, err)
		return
	}
	var req loginRequest
	if err := decode(r, &req); err != nil {
		write(w, nil, err)
		a.auditSignIn(w, r, call, "", err)
		return
	}
	call.SetActor(signInActor(req.Workspace, req.Email))
	if d := a.accounts.wait(req.Workspace, req.Email); d > 0 {
		secs := int((d + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		write(w, nil, apiErr(http.StatusTooManyRequests, "rate_limited", "too many failed sign-ins to this account: retry in %d s", secs))
		return
	}
	raw, s, err := a.cfg.Cluster.Login(r.Context(), req.Workspace, req.Email, req.Password)
	switch {
	case errors.Is(err, cluster.ErrUnauthorized):
		a.accounts.failed(req.Workspace, req.Email)
		err = apiErr(http.StatusUnauthorized, "unauthorized", "wrong workspace, email or password")
	case errors.Is(err, cluster.ErrBusy):
		w.Header().Set("Retry-After", "1")
	case err == nil:
		a.accounts.succeeded(req.Workspace, req.Email)
	}
	if err != nil {
		write(w, nil, err)
		a.auditSignIn(w, r, call, req.Workspace, err)
		return
	}
	// The token must work on this node as soon as it is returned: wait
	// until this node has applied the session (at once on the leader).
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if _, err := a.cfg.Cluster.Session(s.ID); err == nil {
			break
		}
	}
	write(w, loginReply{Token: raw, Session: s}, nil)
}

// signInRoute is the sign-in's route, as audit entries name it.
const signInRoute = "POST /v1/login"

// auditSignIn records a failed sign-in, unless the state machine did,
// once its answer (written to w) is sent.
func (a *API) auditSignIn(w http.ResponseWriter, r *http.Request, call *cluster.AuditCall, workspace string, err error) {
	if !call.Unrecorded(err) {
		return
	}
	e := cluster.AuditEntry{Audit: call.Audit(a.cfg.Now()), Action: cluster.TypeCreateSession.String(), Outcome: outcome(err)}
	if ident.ValidID(workspace) {
		e.Workspace = workspace
	}
	flush(w)
	a.recordAudit(r.Context(), e)
}

func (a *API) logout(r *http.Request, p principal) (any, error) {
	if p.session == "" {
		return nil, apiErr(http.StatusBadRequest, "invalid", "logout needs a session token")
	}
	_, conf, err := a.cfg.Confirmer.Revoke(r.Context(), cluster.RevokeSession{ID: p.session})
	return conf, err
}

func (a *API) revokeSession(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessAdmin)
	if err != nil {
		return nil, err
	}
	s, err := a.cfg.Cluster.Session(r.PathValue("id"))
	if err != nil || s.Workspace != ws {
		return nil, apiErr(http.StatusNotFound, "not_found", "no session %q in workspace %s", r.PathValue("id"), ws)
	}
	_, conf, err := a.cfg.Confirmer.Revoke(r.Context(), cluster.RevokeSession{ID: s.ID})
	return conf, err
}

// Cluster.

type clusterReply struct {
	Stats cluster.Stats `json:"raft"`
	// Versions are the members' protocol versions (docs/operations.md,
	// Upgrading).
	Versions cluster.VersionInfo `json:"versions"`
	Members  []cluster.Member    `json:"members"`
	Nodes    []cluster.NodeInfo  `json:"nodes"`
	// Alive are the nodes gossip sees alive from this node.
	Alive []membership.Member `json:"alive"`
}

func (a *API) clusterInfo(r *http.Request, p principal) (any, error) {
	if err := root(p); err != nil {
		return nil, err
	}
	return clusterReply{Stats: a.cfg.Cluster.Stats(), Versions: a.cfg.Cluster.Versions(), Members: a.cfg.Cluster.Members(), Nodes: a.cfg.Cluster.Nodes(), Alive: a.cfg.Gossip.Members()}, nil
}

func (a *API) removeMember(r *http.Request, p principal) (any, error) {
	if err := root(p); err != nil {
		return nil, err
	}
	id := r.PathValue("id")
	if !slices.ContainsFunc(a.cfg.Cluster.Members(), func(m cluster.Member) bool { return m.ID == id }) {
		return nil, apiErr(http.StatusNotFound, "not_found", "no member %q in the Raft configuration", id)
	}
	if err := a.cfg.Cluster.RemoveServer(r.Context(), id); err != nil {
		return nil, a.leaderOnly(err)
	}
	return map[string]string{"removed": r.PathValue("id")}, nil
}

// snapshot makes this node snapshot its state now (before maintenance,
// or to compact the log).
func (a *API) snapshot(r *http.Request, p principal) (any, error) {
	if err := root(p); err != nil {
		return nil, err
	}
	if err := a.cfg.Cluster.Snapshot(r.Context()); err != nil {
		return nil, err
	}
	return a.cfg.Cluster.Stats(), nil
}

// leaderOnly names the leader's API address in a not_leader error, for
// membership changes that only the leader makes.
func (a *API) leaderOnly(err error) error {
	var nl *cluster.NotLeaderError
	if !errors.As(err, &nl) {
		return err
	}
	for _, n := range a.cfg.Cluster.Nodes() {
		if n.RaftAddr == nl.LeaderAddr && n.RaftAddr != "" {
			return apiErr(http.StatusServiceUnavailable, "not_leader", "ask the leader %s at %s", n.ID, n.APIAddr)
		}
	}
	return err
}

func (a *API) plans(r *http.Request, p principal) (any, error) {
	return a.cfg.Cluster.Plans(), nil
}

func (a *API) setPlan(r *http.Request, p principal) (any, error) {
	if err := root(p); err != nil {
		return nil, err
	}
	var plan cluster.Plan
	if err := decode(r, &plan); err != nil {
		return nil, err
	}
	if plan.Name == "" {
		plan.Name = r.PathValue("name")
	}
	if plan.Name != r.PathValue("name") {
		return nil, apiErr(http.StatusBadRequest, "invalid", "plan name %q differs from the path's", plan.Name)
	}
	res, err := a.cfg.Cluster.Apply(r.Context(), cluster.SetPlan{Plan: plan})
	if err != nil {
		return nil, err
	}
	a.written(r.Context(), res)
	return plan, nil
}

// Workspaces.

func (a *API) workspaces(r *http.Request, p principal) (any, error) {
	if !p.root {
		w, err := a.cfg.Cluster.Workspace(p.workspace)
		return []cluster.Workspace{w}, err
	}
	return a.cfg.Cluster.Workspaces(), nil
}

type createWorkspaceRequest struct {
	ID     string          `json:"id"`
	Name   string          `json:"name"`
	Region string          `json:"region"`
	Plan   string          `json:"plan"`
	Brands []cluster.Brand `json:"brands"`
}

type createWorkspaceReply struct {
	Workspace cluster.Workspace `json:"workspace"`
	secretsReply
	// Index is the log index of the last write, for min_index on other nodes.
	Index uint64 `json:"index"`
}

// createWorkspace creates a workspace with fresh secrets, and shows the
// identity secret in its reply, the only time but a rotation's. A crash
// between the commands leaves a workspace without secrets: GET .../secrets
// then answers not_found, and creating it again (exists) sets the missing
// ones.
func (a *API) createWorkspace(r *http.Request, p principal) (any, error) {
	if err := root(p); err != nil {
		return nil, err
	}
	var req createWorkspaceRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Plan == "" {
		req.Plan = "free"
	}
	ctx := r.Context()
	cmd := cluster.CreateWorkspace{ID: req.ID, Name: req.Name, Region: req.Region, Plan: req.Plan, Brands: req.Brands, Created: time.Now().UTC()}
	cres, err := a.cfg.Cluster.Apply(ctx, cmd)
	if err != nil && !errors.Is(err, cluster.ErrExists) {
		return nil, err
	}
	if errors.Is(err, cluster.ErrExists) {
		a.written(ctx, cres)
		if _, serr := a.cfg.Cluster.IdentitySecret(req.ID); serr == nil {
			return nil, err
		}
		if _, werr := a.cfg.Cluster.Workspace(req.ID); werr != nil {
			return nil, err // a deleted workspace's ID: never reused
		}
	}
	id := random(32)
	if _, err := a.cfg.Cluster.SetIdentitySecret(ctx, req.ID, id); err != nil {
		return nil, err
	}
	res, err := a.cfg.Cluster.SetVisitorKey(ctx, req.ID, random(32))
	if err != nil {
		return nil, err
	}
	a.written(ctx, res)
	w, err := a.cfg.Cluster.Workspace(req.ID)
	return createWorkspaceReply{Workspace: w, secretsReply: secretsReply{Workspace: req.ID, IdentitySecret: hex.EncodeToString(id)}, Index: res.Index}, err
}

func (a *API) workspace(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessRead)
	if err != nil {
		return nil, err
	}
	return a.cfg.Cluster.Workspace(ws)
}

type updateWorkspaceRequest struct {
	Name   *string          `json:"name"`
	Region *string          `json:"region"`
	Plan   *string          `json:"plan"`
	Brands *[]cluster.Brand `json:"brands"`
}

func (a *API) updateWorkspace(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessAdmin)
	if err != nil {
		return nil, err
	}
	var req updateWorkspaceRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	// Residency and the plan are the operator of Parley's to set.
	if (req.Region != nil || req.Plan != nil) && !p.root {
		return nil, apiErr(http.StatusForbidden, "forbidden", "region and plan are set by the cluster administrator")
	}
	cmd := cluster.UpdateWorkspace{ID: ws, Name: req.Name, Region: req.Region, Plan: req.Plan, Brands: req.Brands}
	var res cluster.Result
	var conf httpapi.Confirmation
	if req.Brands != nil {
		// Brands revoke the keys scoped to a brand no longer listed.
		res, conf, err = a.cfg.Confirmer.Revoke(r.Context(), cmd)
	} else {
		res, err = a.cfg.Cluster.Apply(r.Context(), cmd)
		conf.Index = res.Index
	}
	if err != nil {
		return nil, err
	}
	a.written(r.Context(), res)
	w, err := a.cfg.Cluster.Workspace(ws)
	reply := map[string]any{"workspace": w, "confirmation": conf}
	if req.Region != nil && a.cfg.Purger != nil {
		// The nodes outside the new region hand the workspace over to it
		// and purge it: the answer says which confirmed.
		reply["purge"] = a.cfg.Purger.ConfirmPurge(r.Context(), ws, res.Index)
	}
	return reply, err
}

// deleteWorkspaceReply is a deletion's reach: the revocation of the
// workspace's credentials (Confirmation), and the purge of its data from
// every node's store (Purge). The ID is never reused.
type deleteWorkspaceReply struct {
	httpapi.Confirmation
	Purge httpapi.PurgeConfirmation `json:"purge"`
}

func (a *API) deleteWorkspace(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessRoot)
	if err != nil {
		return nil, err
	}
	res, conf, err := a.cfg.Confirmer.Revoke(r.Context(), cluster.DeleteWorkspace{ID: ws})
	if err != nil {
		return nil, err
	}
	reply := deleteWorkspaceReply{Confirmation: conf}
	if a.cfg.Purger != nil {
		reply.Purge = a.cfg.Purger.ConfirmPurge(r.Context(), ws, res.Index)
	}
	return reply, nil
}

// Operators.

func (a *API) operators(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessRead)
	if err != nil {
		return nil, err
	}
	return a.cfg.Cluster.Operators(ws)
}

type inviteRequest struct {
	ID       string       `json:"id"`
	Email    string       `json:"email"`
	Name     string       `json:"name"`
	Role     cluster.Role `json:"role"`
	Password string       `json:"password"`
}

type inviteReply struct {
	Operator cluster.Operator `json:"operator"`
	// Password is set when the request gave none: a one-time password to
	// hand to the operator, shown once.
	Password string `json:"password,omitempty"`
	// Index is the write's log index: a sign-in on another node with
	// ?min_index= waits until that node knows the operator.
	Index uint64 `json:"index"`
}

func (a *API) inviteOperator(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessOperators)
	if err != nil {
		return nil, err
	}
	var req inviteRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Role == "" {
		req.Role = cluster.RoleAgent
	}
	reply := inviteReply{}
	if req.Password == "" {
		req.Password = hex.EncodeToString(random(12))
		reply.Password = req.Password
	}
	o, res, err := a.cfg.Cluster.AddOperator(r.Context(), cluster.NewOperator{Workspace: ws, ID: req.ID, Email: req.Email, Name: req.Name, Role: req.Role, Password: req.Password})
	if err != nil {
		return nil, err
	}
	a.written(r.Context(), res)
	reply.Operator, reply.Index = o, res.Index
	return reply, nil
}

func (a *API) deleteOperator(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessOperators)
	if err != nil {
		return nil, err
	}
	_, conf, err := a.cfg.Confirmer.Revoke(r.Context(), cluster.DeleteOperator{Workspace: ws, ID: r.PathValue("id")})
	return conf, err
}

func (a *API) setPassword(r *http.Request, p principal) (any, error) {
	ws := r.PathValue("ws")
	id := r.PathValue("id")
	// An operator sets their own; an admin anyone's in the workspace.
	self := p.workspace == ws && p.operator == id
	if _, err := scope(r, p, accessOperators); err != nil && !self {
		return nil, err
	}
	var req struct {
		Password string `json:"password"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	// A new password revokes the operator's sessions: confirmed on every
	// node like any revocation.
	res, err := a.cfg.Cluster.SetPassword(r.Context(), ws, id, req.Password)
	if err != nil {
		return nil, err
	}
	return a.cfg.Confirmer.ConfirmEverywhere(r.Context(), res.Index), nil
}

// Keys.

func (a *API) keys(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessAdmin)
	if err != nil {
		return nil, err
	}
	return a.cfg.Cluster.Keys(ws)
}

type mintReply struct {
	// Key is the raw API key, shown once: only its SHA-256 is stored.
	Key  string      `json:"key"`
	Info cluster.Key `json:"info"`
}

func (a *API) mintKey(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessKeys)
	if err != nil {
		return nil, err
	}
	var req struct {
		Name  string `json:"name"`
		Brand string `json:"brand"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	raw, k, res, err := a.cfg.Cluster.MintKey(r.Context(), ws, req.Brand, req.Name)
	if err != nil {
		return nil, err
	}
	// Every node accepts the key once it has applied it: wait for all, so
	// the caller can use it anywhere at once.
	conf := a.cfg.Confirmer.ConfirmEverywhere(r.Context(), res.Index)
	if len(conf.Unconfirmed) > 0 {
		a.cfg.Logger.Warn("new API key not yet known on every node", "unconfirmed", conf.Unconfirmed)
	}
	return mintReply{Key: raw, Info: k}, nil
}

func (a *API) revokeKey(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessAdmin)
	if err != nil {
		return nil, err
	}
	k, err := a.cfg.Cluster.Key(r.PathValue("id"))
	if err != nil || k.Workspace != ws {
		return nil, apiErr(http.StatusNotFound, "not_found", "no key %q in workspace %s", r.PathValue("id"), ws)
	}
	_, conf, err := a.cfg.Confirmer.Revoke(r.Context(), cluster.RevokeKey{ID: k.ID})
	return conf, err
}

// Replicas.

type convDigest struct {
	// Vector is how far each origin's events are durable on this node.
	Vector map[string]uint64 `json:"vector"`
	// State hashes the messages' current states; equal on replicas that
	// converged.
	State    string `json:"state"`
	Messages int    `json:"messages"`
}

// digest describes, per conversation, what this node holds of a workspace:
// compare it across nodes to check that replicas converged.
func (a *API) digest(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessAdmin)
	if err != nil {
		return nil, err
	}
	convs, err := a.cfg.Store.Conversations(ws, "")
	if err != nil {
		return nil, err
	}
	out := map[string]convDigest{}
	for _, c := range convs {
		f, err := a.cfg.Store.Frontier(ws, c.ID)
		if errors.Is(err, store.ErrNotFound) {
			continue // erased since it was listed
		}
		if err != nil {
			return nil, err
		}
		st, n, err := a.cfg.Store.StateDigest(ws, c.ID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[c.ID] = convDigest{Vector: f, State: st, Messages: n}
	}
	return map[string]any{"node": a.cfg.NodeID, "conversations": out}, nil
}

// Usage and billing.

type usageReply struct {
	Usage     cluster.Usage `json:"usage"`
	Plan      cluster.Plan  `json:"plan"`
	OverLimit string        `json:"over_limit,omitempty"`
}

func (a *API) usage(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessRead)
	if err != nil {
		return nil, err
	}
	per := r.URL.Query().Get("period")
	if per == "" {
		per = period(time.Now())
	}
	if _, err := time.Parse("2006-01", per); err != nil {
		return nil, apiErr(http.StatusBadRequest, "invalid", "period %q: want YYYY-MM", per)
	}
	u, err := a.cfg.Cluster.Usage(ws, per)
	if err != nil {
		return nil, err
	}
	w, err := a.cfg.Cluster.Workspace(ws)
	if err != nil {
		return nil, err
	}
	plan, err := a.cfg.Cluster.Plan(w.Plan)
	if err != nil {
		return nil, err
	}
	reason, _ := a.cfg.Cluster.OverLimit(ws, per)
	return usageReply{Usage: u, Plan: plan, OverLimit: reason}, nil
}

func (a *API) billing(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessAdmin)
	if err != nil {
		return nil, err
	}
	return a.cfg.Cluster.BillingEvents(ws)
}

type billingReply struct {
	Result cluster.Result `json:"result"`
}

// recordBilling applies a billing event exactly once by its idempotency
// key: a retry (on any node) answers with the original's result and
// "duplicate": true.
func (a *API) recordBilling(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessRoot)
	if err != nil {
		return nil, err
	}
	var e cluster.BillingEvent
	if err := decode(r, &e); err != nil {
		return nil, err
	}
	if e.Workspace == "" {
		e.Workspace = ws
	}
	if e.Workspace != ws {
		return nil, apiErr(http.StatusBadRequest, "invalid", "event workspace %q differs from the path's", e.Workspace)
	}
	if e.Period == "" {
		e.Period = period(time.Now())
	}
	e.At, e.Index = time.Now().UTC(), 0
	// The reply's result.index is the write's: a read elsewhere with
	// ?min_index= sees it.
	res, err := a.cfg.Cluster.Apply(r.Context(), cluster.RecordBillingEvent{Event: e})
	if err != nil {
		return nil, err
	}
	return billingReply{Result: res}, nil
}

// Assignments.

func (a *API) assignment(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessRead)
	if err != nil {
		return nil, err
	}
	return a.cfg.Cluster.Assignment(ws, r.PathValue("conv"))
}

type assignReply struct {
	cluster.Assignment
	// Index is the write's log index, for ?min_index= on a later read.
	Index uint64 `json:"index"`
}

type assignRequest struct {
	Operator      string `json:"operator"`
	ExpectVersion uint64 `json:"expect_version"`
}

func (a *API) assign(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessAssign)
	if err != nil {
		return nil, err
	}
	var req assignRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	res, err := a.cfg.Cluster.Apply(r.Context(), cluster.Assign{Workspace: ws, Conversation: r.PathValue("conv"), Operator: req.Operator, ExpectVersion: req.ExpectVersion})
	if errors.Is(err, cluster.ErrConflict) {
		return nil, apiErr(http.StatusConflict, "conflict", "%v (current version %d)", err, res.Version)
	}
	if err != nil {
		return nil, err
	}
	return assignReply{Assignment: cluster.Assignment{Workspace: ws, Conversation: r.PathValue("conv"), Operator: req.Operator, Version: res.Version}, Index: res.Index}, nil
}
