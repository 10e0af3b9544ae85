package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"parley/cluster/replication"
	"parley/node/httpapi"
	"parley/store"
)

// Residency: which workspaces' data this node may hold, and the purge of
// the rest. A node holds a workspace's data only when the control plane
// knows the workspace and it is unpinned or pinned to this node's region.
// A workspace the node does not know is refused, never taken for an
// unpinned one: it may be deleted (the control plane keeps deleted IDs, so
// that is known for sure), or just created and not yet applied here, in
// which case the sender's retry or anti-entropy delivers it once it is.
//
// The purger makes the store agree: a deleted workspace's data is purged;
// a workspace pinned to another region is handed over to that region's
// nodes (anti-entropy's ranges, pushed, then checked) and purged once they
// confirmed they hold it. It runs on every change of the control plane's
// state and every purgeEvery, so a node that was down at the time purges
// when it comes back (its store still lists the workspace), and a node
// that joins later refuses the data from the start.

// Residency errors callers branch on.
var (
	errWorkspaceDeleted = errors.New("workspace deleted")
	errPinnedElsewhere  = errors.New("workspace pinned to another region")
)

// Serves says whether this node may hold ws's data, and why not
// (replication.Control).
func (ctl *control) Serves(ws string) error {
	if _, ok := ctl.c.Deleted(ws); ok {
		return fmt.Errorf("workspace %s: %w", ws, errWorkspaceDeleted)
	}
	w, err := ctl.c.Workspace(ws)
	if err != nil {
		return fmt.Errorf("workspace %s: %w", ws, replication.ErrWorkspaceUnknown)
	}
	if w.Region != "" && w.Region != ctl.cfg.Region {
		return fmt.Errorf("workspace %s is served by the nodes of region %s, this node is in %q: %w", ws, w.Region, ctl.cfg.Region, errPinnedElsewhere)
	}
	return nil
}

// purgeEvery is the period of the purger's passes besides those the
// control plane's changes trigger: a pass that could not hand a workspace
// over (no node of its region reachable) is retried then.
const purgeEvery = 15 * time.Second

// purger purges what this node must not hold (see the top of this file).
type purger struct {
	log  *slog.Logger
	ctl  *control
	st   *store.Store
	repl *replication.Replicator
	emb  *embedding
	auth *clusterAuth
	// expel closes a deleted workspace's connections (the gateway's
	// ExpelWorkspace); nil: none.
	expel func(ws string) int
	// mu runs one pass or one workspace's reconciliation at a time.
	mu sync.Mutex
}

// run reconciles every workspace the store lists whenever the control
// plane's state changes and every purgeEvery, until ctx ends.
func (p *purger) run(ctx context.Context) error {
	changed := make(chan struct{}, 1)
	go func() {
		for {
			if err := p.ctl.c.WaitApplied(ctx, p.ctl.c.Index()+1); err != nil {
				return
			}
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}()
	t := time.NewTicker(purgeEvery)
	defer t.Stop()
	// retryAt holds back a workspace whose pass failed (no node of its
	// region to hand it over to, say) until purgeEvery later, rather than
	// at every change of the control plane.
	retryAt := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-t.C:
		}
		if !p.ctl.ready.Load() {
			continue
		}
		wss, err := p.st.HeldWorkspaces()
		if err != nil {
			p.log.Warn("purge: listing workspaces", "err", err)
			continue
		}
		now := time.Now()
		for _, ws := range wss {
			if now.Before(retryAt[ws]) {
				continue
			}
			delete(retryAt, ws)
			if err := p.reconcile(ctx, ws); err != nil && ctx.Err() == nil {
				p.log.Warn("purge: workspace not purged yet", "workspace", ws, "err", err)
				retryAt[ws] = now.Add(purgeEvery - time.Second)
			}
		}
	}
}

// reconcile purges ws here if this node must not hold it, handing it over
// first to its region when it is pinned elsewhere. A workspace unknown
// here is left alone: this node may not have applied its creation yet.
func (p *purger) reconcile(ctx context.Context, ws string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.ctl.Serves(ws)
	if err == nil || errors.Is(err, replication.ErrWorkspaceUnknown) {
		return nil
	}
	held, herr := p.st.Holds(ws)
	if herr != nil || !held {
		return herr
	}
	if errors.Is(err, errPinnedElsewhere) {
		w, werr := p.ctl.c.Workspace(ws)
		if werr != nil {
			return werr
		}
		if err := p.handover(ctx, ws, w.Region); err != nil {
			return fmt.Errorf("hand over to region %s: %w", w.Region, err)
		}
	}
	return p.purge(ctx, ws, err)
}

// purge erases every conversation of ws here (their writes in flight
// commit first, later ones are refused), then everything else under its
// prefix, and drops it from the in-memory indexes.
func (p *purger) purge(ctx context.Context, ws string, why error) error {
	if errors.Is(why, errWorkspaceDeleted) && p.expel != nil {
		if n := p.expel(ws); n > 0 {
			p.log.Info("purge: connections of a deleted workspace closed", "workspace", ws, "connections", n)
		}
	}
	convs, err := p.st.Conversations(ws, "")
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	for _, c := range convs {
		p.repl.Forget(ws, c.ID)
		erase := p.st.EraseConversation
		if p.emb != nil {
			erase = p.emb.erase
		}
		if err := erase(ctx, ws, c.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("erase %s: %w", c.ID, err)
		}
	}
	p.emb.dropWorkspace(ws)
	p.auth.local.Delete(ws)
	n, err := p.st.PurgeWorkspace(ctx, ws)
	if err != nil {
		return err
	}
	p.log.Info("purge: workspace's data removed from this node", "workspace", ws, "conversations", len(convs), "keys", n, "reason", why)
	return nil
}

// handover makes sure the nodes of region hold everything this node holds
// of ws (replication.Replicator.Handover). An error leaves the data here,
// for the next pass.
func (p *purger) handover(ctx context.Context, ws, region string) error {
	convs, replies, err := p.repl.Handover(ctx, ws, region)
	if err != nil {
		return err
	}
	if convs > 0 || replies > 0 {
		p.log.Info("purge: workspace handed over to its region", "workspace", ws, "region", region, "conversations", convs, "replies", replies)
	}
	return nil
}

// pathPurge asks a node to apply a deletion or a pin and purge what it
// must not hold, answering once it holds nothing of the workspace (or
// serves it).
const pathPurge = "/internal/v1/purge"

type purgeRequest struct {
	Workspace string `json:"ws"`
	Index     uint64 `json:"index"`
}

// purgeTimeout bounds how long a deletion or a pin waits for one node to
// confirm its purge: a handover sends the workspace's events.
const purgeTimeout = 20 * time.Second

// purgeRoutes serves the peer side of residency.
func (p *purger) purgeRoutes(mux *http.ServeMux, signed func(func(http.ResponseWriter, *http.Request, []byte)) http.HandlerFunc) {
	mux.HandleFunc("POST "+pathPurge, signed(func(w http.ResponseWriter, req *http.Request, body []byte) {
		var in purgeRequest
		if err := json.Unmarshal(body, &in); err != nil || in.Workspace == "" || in.Index == 0 {
			http.Error(w, "purge: want {\"ws\": ID, \"index\": N}", http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), purgeTimeout)
		defer cancel()
		if err := p.purged(ctx, in.Workspace, in.Index); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("{}"))
	}))
}

// purged applies index, reconciles ws, and says whether this node now
// holds nothing of it it must not hold.
func (p *purger) purged(ctx context.Context, ws string, index uint64) error {
	if err := p.ctl.c.WaitApplied(ctx, index); err != nil {
		return fmt.Errorf("apply index %d: %w", index, err)
	}
	if err := p.reconcile(ctx, ws); err != nil {
		return err
	}
	if p.ctl.Serves(ws) == nil {
		return nil // its data belongs here
	}
	held, err := p.st.Holds(ws)
	if err != nil {
		return err
	}
	if held {
		return fmt.Errorf("workspace %s: data still held", ws)
	}
	return nil
}

// PurgeConfirmation is a deletion's or a pin's reach over the stores
// (httpapi.PurgeConfirmation).
type PurgeConfirmation = httpapi.PurgeConfirmation

// confirmPurge asks every member of the cluster to purge ws as of index.
func (p *purger) confirmPurge(ctx context.Context, ws string, index uint64) PurgeConfirmation {
	body, _ := json.Marshal(purgeRequest{Workspace: ws, Index: index})
	confirmed, unconfirmed := p.ctl.askMembers(ctx, "purge of "+ws+" (it purges when it can)", purgeTimeout, pathPurge, body, func(ctx context.Context) error {
		return p.purged(ctx, ws, index)
	})
	return PurgeConfirmation{Confirmed: confirmed, Unconfirmed: unconfirmed}
}
