package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"parley/cluster"
	"parley/gateway"
	"parley/node/agentapi"
	"parley/store"
)

// errStale is what operators get from a node that has not heard from the
// Raft leader within its lease: it may have missed a revocation.
var errStale = errors.New("control plane out of reach or catching up: sign-in paused on this node")

// clusterAuth is the gateway's Authenticator and plan check on the Raft
// control plane: sessions, workspace secrets and usage are read from this
// node's copy of the replicated state.
type clusterAuth struct {
	ctl *control
	st  *store.Store
	// local holds the workspaces whose record this node has written to its
	// store (the store refuses conversations of a workspace it has no
	// record of).
	local sync.Map
	// catchUps bounds the concurrent catch-ups of Agent (see catchUp).
	catchUps chan struct{}
}

func (a *clusterAuth) Agent(ctx context.Context, workspace, token string) (gateway.Agent, error) {
	if !a.ctl.ready.Load() || !a.ctl.fresh() {
		return gateway.Agent{}, errStale
	}
	o, err := a.ctl.c.AuthenticateSession(token)
	if err != nil && !errors.Is(err, cluster.ErrRevoked) && a.catchUp(ctx) {
		// Signed in a moment ago through another node (a relayed console
		// signs in on its nearest node and is served in its workspace's
		// region): this node may not have applied the session yet.
		o, err = a.ctl.c.AuthenticateSession(token)
	}
	if err != nil || o.Workspace != workspace {
		return gateway.Agent{}, gateway.ErrAuth
	}
	if err := a.ensureLocal(ctx, workspace); err != nil {
		return gateway.Agent{}, err
	}
	return gateway.Agent{ID: o.ID, Name: o.Name, Credential: cluster.SessionID(cluster.HashToken(token))}, nil
}

// Key checks an API key for a workspace, for the conversations API: as
// the admin API does, refused while this node is out of touch with the
// leader (it may have missed the key's revocation). A key is applied on
// every node before its minting answers, so no catch-up is tried.
func (a *clusterAuth) Key(ctx context.Context, workspace, raw string) (agentapi.Key, error) {
	if !a.ctl.ready.Load() || !a.ctl.fresh() {
		return agentapi.Key{}, errStale
	}
	k, err := a.ctl.c.AuthenticateKey(raw)
	if err != nil || k.Workspace != workspace {
		return agentapi.Key{}, gateway.ErrAuth
	}
	if err := a.ensureLocal(ctx, workspace); err != nil {
		return agentapi.Key{}, err
	}
	return agentapi.Key{ID: k.ID, Name: k.Name}, nil
}

// catchUp waits until this node has applied what the leader had committed
// when asked, and reports whether it applied anything new. At most a few
// run at once: unknown tokens must not turn into a stream of requests to
// the leader.
func (a *clusterAuth) catchUp(ctx context.Context) bool {
	select {
	case a.catchUps <- struct{}{}:
		defer func() { <-a.catchUps }()
	default:
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	before := a.ctl.c.Index()
	idx, err := a.ctl.leaderCommitIndex(ctx)
	if err != nil || idx <= before {
		return false
	}
	return a.ctl.c.WaitApplied(ctx, idx) == nil
}

// Secrets answers from the local state even when it is stale: visitors
// are served through a partition, so a node cut off when an identity
// secret is rotated verifies the secrets it knew until it catches up (the
// rotation's confirmation lists it unconfirmed).
func (a *clusterAuth) Secrets(ctx context.Context, workspace string) (gateway.Secrets, error) {
	if _, err := a.ctl.c.Workspace(workspace); err != nil {
		// A node that has not caught up with the control plane (starting,
		// or cut off) cannot tell a workspace that does not exist from one
		// it has not heard of yet: the client is asked to retry rather
		// than told it is refused.
		if !a.ctl.ready.Load() || !a.ctl.fresh() {
			return gateway.Secrets{}, errStale
		}
		if errors.Is(err, cluster.ErrNotFound) || errors.Is(err, cluster.ErrInvalid) {
			return gateway.Secrets{}, gateway.ErrAuth
		}
		return gateway.Secrets{}, err
	}
	id, err := a.ctl.c.IdentityKeys(workspace)
	if err != nil {
		return gateway.Secrets{}, fmt.Errorf("workspace %s identity secret: %w", workspace, err)
	}
	vk, err := a.ctl.c.VisitorKey(workspace)
	if err != nil {
		return gateway.Secrets{}, fmt.Errorf("workspace %s visitor key: %w", workspace, err)
	}
	if err := a.ensureLocal(ctx, workspace); err != nil {
		return gateway.Secrets{}, err
	}
	return gateway.Secrets{Identity: id.Current, PreviousIdentity: id.Previous, PreviousUntil: id.PreviousUntil, Visitor: vk}, nil
}

// Allow refuses a change of a workspace that has used up its plan this
// month, by the usage the nodes have reported.
func (a *clusterAuth) Allow(workspace string, now time.Time) error {
	if reason, over := a.ctl.c.OverLimit(workspace, period(now)); over {
		return fmt.Errorf("%w: %s", gateway.ErrOverLimit, reason)
	}
	return nil
}

func (a *clusterAuth) ensureLocal(ctx context.Context, workspace string) error {
	// A workspace pinned to another region keeps no data here. Its sessions
	// are relayed to a node of its region (relay.go) before they get here;
	// one that arrives anyway (no node of the region reachable, or relayed
	// here by a node that disagrees about the region) is refused, saying
	// where it is served, rather than stored against its pin.
	// A workspace this node does not know (deleted, or not yet applied
	// here) is refused too, never taken for an unpinned one.
	if err := a.ctl.Serves(workspace); err != nil {
		return err
	}
	if _, ok := a.local.Load(workspace); ok {
		return nil
	}
	if err := a.st.PutWorkspace(ctx, store.Workspace{ID: workspace}); err != nil {
		return fmt.Errorf("workspace %s: %w", workspace, err)
	}
	a.local.Store(workspace, true)
	return nil
}

// period is the billing period of t: its UTC month.
func period(t time.Time) string { return cluster.Period(t) }

// revokedNow returns what Expel asks of each connection's credential, for
// one pass at now: whether it no longer admits its holder.
func (a *clusterAuth) revokedNow(now time.Time) func(workspace, credential string) bool {
	valid := map[string][]string{} // by workspace: credentials of its identity secrets that verify at now
	return func(workspace, credential string) bool {
		if !strings.HasPrefix(credential, gateway.IdentityCredentialPrefix) {
			return a.revoked(workspace, credential)
		}
		creds, ok := valid[workspace]
		if !ok {
			creds = a.identityCredentials(workspace, now)
			valid[workspace] = creds
		}
		return creds != nil && !slices.Contains(creds, credential)
	}
}

// identityCredentials are the credentials (gateway.IdentityCredential) of
// a workspace's identity secrets that verify at now: the current one, and
// the one its last rotation replaced until the overlap ends. Nil when they
// cannot be read (this node cannot open them): nothing is expelled then.
func (a *clusterAuth) identityCredentials(workspace string, now time.Time) []string {
	k, err := a.ctl.c.IdentityKeys(workspace)
	if errors.Is(err, cluster.ErrNotFound) {
		return []string{}
	}
	if err != nil {
		return nil
	}
	creds := []string{gateway.IdentityCredential(k.Current)}
	if k.Previous != nil && now.Before(k.PreviousUntil) {
		creds = append(creds, gateway.IdentityCredential(k.Previous))
	}
	return creds
}

// revoked says whether a session no longer admits its operator: revoked,
// expired, gone, or its operator or workspace gone.
func (a *clusterAuth) revoked(workspace, sessionID string) bool {
	s, err := a.ctl.c.Session(sessionID)
	if err != nil || s.Revoked || s.Workspace != workspace || !time.Now().Before(s.Expires) {
		return true
	}
	_, err = a.ctl.c.Operator(workspace, s.Operator)
	return err != nil
}

// expelRevoked ends the connections of revoked sessions, and of visitors
// verified by an identity secret that no longer verifies, each time the
// control plane's state changes and when a rotated secret's overlap ends,
// until ctx ends.
func (a *clusterAuth) expelRevoked(ctx context.Context, expel func(func(string, string) bool) int) error {
	for {
		wctx, cancel := ctx, context.CancelFunc(func() {})
		if end, ok := a.ctl.c.NextOverlapEnd(time.Now()); ok {
			// Just after it: the check is "now before the end".
			wctx, cancel = context.WithDeadline(ctx, end.Add(time.Millisecond))
		}
		err := a.ctl.c.WaitApplied(wctx, a.ctl.c.Index()+1)
		cancel()
		if ctx.Err() != nil || (err != nil && !errors.Is(err, context.DeadlineExceeded)) {
			return nil
		}
		if n := expel(a.revokedNow(time.Now())); n > 0 {
			a.ctl.log.Info("connections of revoked credentials closed", "connections", n)
		}
	}
}
