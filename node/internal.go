package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"parley/cluster"
	"parley/node/httpapi"
)

// Internal API paths: node to node, over the node link only, and signed
// (see peer.go).
const (
	pathForward   = "/internal/v1/forward"
	pathJoin      = "/internal/v1/join"
	pathWait      = "/internal/v1/wait"
	pathReadIndex = "/internal/v1/readindex"
)

// internalRoutes serves the requests other nodes make.
func (ctl *control) internalRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+pathForward, ctl.signed(func(w http.ResponseWriter, r *http.Request, body []byte) {
		reply, err := ctl.c.HandleForward(r.Context(), body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write(reply)
	}))
	mux.HandleFunc("POST "+pathJoin, ctl.signed(func(w http.ResponseWriter, r *http.Request, body []byte) {
		rep, status := ctl.handleJoin(r.Context(), body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(rep)
	}))
	mux.HandleFunc("POST "+pathReadIndex, ctl.signed(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		idx, err := ctl.c.LeaderCommitIndex(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(waitRequest{Index: idx})
	}))
	mux.HandleFunc("POST "+pathWait, ctl.signed(func(w http.ResponseWriter, r *http.Request, body []byte) {
		var req waitRequest
		if err := json.Unmarshal(body, &req); err != nil || req.Index == 0 {
			http.Error(w, "wait: want {\"index\": N}", http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), waitTimeout)
		defer cancel()
		if err := ctl.c.WaitApplied(ctx, req.Index); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("{}"))
	}))
}

// signed wraps a handler with the check of the sending node's signature.
func (ctl *control) signed(h func(http.ResponseWriter, *http.Request, []byte)) http.HandlerFunc {
	key := ctl.key.nodeKey()
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := verifyPeer(key, r, time.Now())
		if err != nil {
			ctl.log.Warn("internal request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
			http.Error(w, "forbidden: "+err.Error(), http.StatusForbidden)
			return
		}
		h(w, r, body)
	}
}

type waitRequest struct {
	Index uint64 `json:"index"`
}

// waitTimeout bounds how long a revocation waits for one node to confirm.
const waitTimeout = 2 * time.Second

// Confirmation is a revocation's reach (httpapi.Confirmation).
type Confirmation = httpapi.Confirmation

// confirmEverywhere returns once every member of the cluster has applied
// index, so that no node accepts what the command at index revoked: each
// member is asked to WaitApplied; a member that does not answer cannot be
// known to have applied it, so the call then waits out the lease, after
// which such a member refuses credentials until it hears from the leader
// again (and so applies the revocation first).
func (ctl *control) confirmEverywhere(ctx context.Context, index uint64) Confirmation {
	start := time.Now()
	body, _ := json.Marshal(waitRequest{Index: index})
	confirmed, unconfirmed := ctl.askMembers(ctx, "revocation", waitTimeout, pathWait, body, func(ctx context.Context) error {
		return ctl.c.WaitApplied(ctx, index)
	})
	conf := Confirmation{Index: index, Confirmed: confirmed, Unconfirmed: unconfirmed}
	// start is after the revoking command was applied on the leader, so
	// after it committed: a node that has not applied it proved itself
	// fresh last before that, and a lease after start it is stale.
	if len(conf.Unconfirmed) > 0 {
		if rest := ctl.cfg.Lease - time.Since(start); rest > 0 {
			select {
			case <-time.After(rest):
			case <-ctx.Done():
			}
		}
	}
	return conf
}

// askMembers asks every member of the cluster to confirm something: this
// node by local, the others by a POST of body to path on their link, each
// within timeout. It returns the IDs that confirmed and those that did not
// (down, cut off, too slow), sorted; what is confirmed is logged per member
// that did not.
func (ctl *control) askMembers(ctx context.Context, what string, timeout time.Duration, path string, body []byte, local func(context.Context) error) (confirmed, unconfirmed []string) {
	links := map[string]string{}
	for _, n := range ctl.c.Nodes() {
		links[n.ID] = n.RaftAddr
	}
	confirmed = []string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range ctl.c.Members() {
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			var err error
			if id == ctl.cfg.NodeID {
				wctx, cancel := context.WithTimeout(ctx, timeout)
				err = local(wctx)
				cancel()
			} else if addr := links[id]; addr == "" {
				err = errors.New("no link address registered")
			} else {
				wctx, cancel := context.WithTimeout(ctx, timeout+time.Second)
				_, err = ctl.peers.Post(wctx, addr, path, body)
				cancel()
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				ctl.log.Warn(what+" not confirmed by a member", "member", id, "path", path, "err", err)
				unconfirmed = append(unconfirmed, id)
				return
			}
			confirmed = append(confirmed, id)
		}(m.ID)
	}
	wg.Wait()
	slices.Sort(confirmed)
	slices.Sort(unconfirmed)
	return confirmed, unconfirmed
}

// revoke applies a revoking command and returns once no node accepts what it
// revoked (see confirmEverywhere).
func (ctl *control) revoke(ctx context.Context, cmd cluster.Command) (cluster.Result, Confirmation, error) {
	res, err := ctl.c.Apply(ctx, cmd)
	if err != nil {
		return res, Confirmation{}, fmt.Errorf("revoke: %w", err)
	}
	return res, ctl.confirmEverywhere(ctx, res.Index), nil
}
