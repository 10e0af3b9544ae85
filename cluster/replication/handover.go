package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"parley/cluster/membership"
	"parley/store"
)

// pathRepliesMerge merges saved replies handed over by a node outside the
// workspace's region, answering once they are durable.
const pathRepliesMerge = "/internal/v1/replies/merge"

// Signed wraps a handler of another node's request with the check of its
// signature; the handler gets the request's body.
type Signed func(func(w http.ResponseWriter, r *http.Request, body []byte)) http.HandlerFunc

// Routes serves what other nodes ask of the data plane besides the links:
// anti-entropy's requests and the saved replies of a handover.
func (r *Replicator) Routes(mux *http.ServeMux, signed Signed) {
	r.ae.routes(mux, signed)
	r.fetchRoutes(mux, signed)
	mux.HandleFunc("POST "+pathRepliesMerge, signed(func(w http.ResponseWriter, req *http.Request, body []byte) {
		var sig repliesSignal
		if err := json.Unmarshal(body, &sig); err != nil || sig.Workspace == "" {
			http.Error(w, "replies: want a workspace and replies", http.StatusBadRequest)
			return
		}
		if err := r.servesCaughtUp(req.Context(), sig.Workspace); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		if err := r.replies.merge(req.Context(), sig.Workspace, sig.Replies); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("{}"))
	}))
}

// Handover makes sure the nodes of region hold everything this node holds
// of ws: each conversation's events on each of its replicas in the region
// (the anti-entropy exchange, pushed from here, then checked), and the
// saved replies on every alive node of the region. It reports how many
// conversations and replies it covered; an error leaves the data here,
// for the next try.
func (r *Replicator) Handover(ctx context.Context, ws, region string) (convs, replies int, err error) {
	members := r.cfg.Members.Members()
	var inRegion []membership.Member
	for _, m := range members {
		if m.Region == region && m.ID != r.cfg.Self {
			inRegion = append(inRegion, m)
		}
	}
	if len(inRegion) == 0 {
		return 0, 0, fmt.Errorf("no node of region %s is alive: the data stays here until one is", region)
	}
	held, err := r.st.Conversations(ws, "")
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return 0, 0, err
	}
	byPeer := map[string][]convVector{}
	for _, c := range held {
		f, err := r.st.Frontier(ws, c.ID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		for _, m := range membership.Replicas(members, c.ID, region, ReplicationFactor) {
			if m.ID != r.cfg.Self {
				byPeer[m.ID] = append(byPeer[m.ID], convVector{Workspace: ws, Conversation: c.ID, Vector: f})
			}
		}
	}
	for _, m := range inRegion {
		cvs := byPeer[m.ID]
		for len(cvs) > 0 {
			batch := cvs[:min(len(cvs), maxVectors)]
			cvs = cvs[len(batch):]
			var needs []need
			if err := r.ae.call(ctx, m, pathVectors, "vectors", vectorsRequest{From: r.cfg.Self, Convs: batch}, &needs); err != nil {
				return 0, 0, fmt.Errorf("node %s: %w", m.ID, err)
			}
			if err := r.ae.sendRanges(ctx, m, needs); err != nil {
				return 0, 0, fmt.Errorf("node %s: %w", m.ID, err)
			}
			needs = nil
			if err := r.ae.call(ctx, m, pathVectors, "vectors", vectorsRequest{From: r.cfg.Self, Convs: batch}, &needs); err != nil {
				return 0, 0, fmt.Errorf("node %s: %w", m.ID, err)
			}
			if len(needs) > 0 {
				return 0, 0, fmt.Errorf("node %s still lacks events of %d conversations", m.ID, len(needs))
			}
		}
	}
	all, err := r.st.AllReplies(ws)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return 0, 0, err
	}
	for _, chunk := range replyChunks(all) {
		b, err := json.Marshal(repliesSignal{Kind: signalReplies, Workspace: ws, Replies: chunk})
		if err != nil {
			return 0, 0, err
		}
		for _, m := range inRegion {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			_, err := r.cfg.Peers.Post(cctx, m.RaftAddr, pathRepliesMerge, b)
			cancel()
			if err != nil {
				return 0, 0, fmt.Errorf("saved replies to node %s: %w", m.ID, err)
			}
		}
	}
	return len(held), len(all), nil
}
