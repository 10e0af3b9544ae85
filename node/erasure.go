package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"parley/cluster"
	"parley/cluster/residency"
)

// Conversation erasure is a record in the control plane (EraseConversation):
// every node applies the log, so a node down at the time erases its copy
// when it catches up, and a node that joins later learns every erasure from
// the snapshot before it takes any conversation from a peer. Each node
// turns the records it applies into tombstones in its store
// (residency.Erasures), which refuse the conversation's events from any
// replica from then on. This file answers other nodes' questions about it.
// docs/replication.md has the whole story.

// pathErased asks a node to confirm it erased what the control plane's
// erasures up to an index name.
const pathErased = "/internal/v1/erased"

// erasureRoutes serves the confirmation other nodes ask for.
func (ctl *control) erasureRoutes(mux *http.ServeMux, e *residency.Erasures) {
	mux.HandleFunc("POST "+pathErased, ctl.signed(func(w http.ResponseWriter, r *http.Request, body []byte) {
		var req waitRequest
		if err := json.Unmarshal(body, &req); err != nil || req.Index == 0 {
			http.Error(w, "erased: want {\"index\": N}", http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), waitTimeout)
		defer cancel()
		err := ctl.c.WaitApplied(ctx, req.Index)
		if err == nil {
			err = e.Wait(ctx, req.Index)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("{}"))
	}))
}

// confirmErasures asks every member of the cluster whether it applied the erasures
// up to index, as a revocation does (confirmEverywhere): the answer names
// the nodes that confirmed and those that did not in time (down, cut off),
// which erase their copies when they catch up with the control plane.
func (ctl *control) confirmErasures(ctx context.Context, e *residency.Erasures, index uint64) Confirmation {
	body, _ := json.Marshal(waitRequest{Index: index})
	confirmed, unconfirmed := ctl.askMembers(ctx, "erasure", waitTimeout, pathErased, body, func(ctx context.Context) error {
		if err := ctl.c.WaitApplied(ctx, index); err != nil {
			return err
		}
		return e.Wait(ctx, index)
	})
	return Confirmation{Index: index, Confirmed: confirmed, Unconfirmed: unconfirmed}
}

// recordTimeout bounds the recording of one conversation's erasure; the
// erasures' applier tries again after it.
const recordTimeout = 10 * time.Second

// recordErasure records the erasure of one conversation of an erased
// visitor (residency.ErasureConfig.Record): every node then keeps its
// tombstone.
// A workspace deleted meanwhile needs no record: its purge erases the rest.
func (ctl *control) recordErasure(ctx context.Context, ws, conv string) error {
	ctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	_, err := ctl.c.Apply(ctx, cluster.EraseConversation{Workspace: ws, Conversation: conv})
	if errors.Is(err, cluster.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("erase conversation: %w", err)
	}
	return nil
}
