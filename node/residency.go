package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"parley/cluster/replication"
	"parley/cluster/residency"
	"parley/node/httpapi"
)

// Residency: which workspaces' data this node may hold. A node holds a
// workspace's data only when the control plane knows the workspace and it
// is unpinned or pinned to this node's region. A workspace the node does
// not know is refused, never taken for an unpinned one: it may be deleted
// (the control plane keeps deleted IDs, so that is known for sure), or
// just created and not yet applied here, in which case the sender's retry
// or anti-entropy delivers it once it is. The purge of the rest is
// cluster/residency's; this file answers other nodes' requests for it.

// Serves says whether this node may hold ws's data, and why not
// (replication.Control).
func (ctl *control) Serves(ws string) error {
	if _, ok := ctl.c.Deleted(ws); ok {
		return fmt.Errorf("workspace %s: %w", ws, replication.ErrWorkspaceDeleted)
	}
	w, err := ctl.c.Workspace(ws)
	if err != nil {
		return fmt.Errorf("workspace %s: %w", ws, replication.ErrWorkspaceUnknown)
	}
	if w.Region != "" && w.Region != ctl.cfg.Region {
		return fmt.Errorf("workspace %s is served by the nodes of region %s, this node is in %q: %w", ws, w.Region, ctl.cfg.Region, replication.ErrPinnedElsewhere)
	}
	return nil
}

// purgeControl is the control plane as the purger reads it
// (residency.Control).
type purgeControl struct{ *control }

func (c purgeControl) Index() uint64 { return c.c.Index() }

func (c purgeControl) WaitApplied(ctx context.Context, index uint64) error {
	return c.c.WaitApplied(ctx, index)
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

// purgeRoutes serves the peer side of a deletion's or a pin's purge.
func purgeRoutes(mux *http.ServeMux, signed func(func(http.ResponseWriter, *http.Request, []byte)) http.HandlerFunc, p *residency.Purger) {
	mux.HandleFunc("POST "+pathPurge, signed(func(w http.ResponseWriter, req *http.Request, body []byte) {
		var in purgeRequest
		if err := json.Unmarshal(body, &in); err != nil || in.Workspace == "" || in.Index == 0 {
			http.Error(w, "purge: want {\"ws\": ID, \"index\": N}", http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), purgeTimeout)
		defer cancel()
		if err := p.Purged(ctx, in.Workspace, in.Index); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("{}"))
	}))
}

// PurgeConfirmation is a deletion's or a pin's reach over the stores
// (httpapi.PurgeConfirmation).
type PurgeConfirmation = httpapi.PurgeConfirmation

// confirmPurge asks every member of the cluster to purge ws as of index.
func (ctl *control) confirmPurge(ctx context.Context, p *residency.Purger, ws string, index uint64) PurgeConfirmation {
	body, _ := json.Marshal(purgeRequest{Workspace: ws, Index: index})
	confirmed, unconfirmed := ctl.askMembers(ctx, "purge of "+ws+" (it purges when it can)", purgeTimeout, pathPurge, body, func(ctx context.Context) error {
		return p.Purged(ctx, ws, index)
	})
	return PurgeConfirmation{Confirmed: confirmed, Unconfirmed: unconfirmed}
}
