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

	"parley/cluster"
	"parley/store"
)

// Conversation erasure is a record in the control plane (EraseConversation):
// every node applies the log, so a node down at the time erases its copy
// when it catches up, and a node that joins later learns every erasure from
// the snapshot before it takes any conversation from a peer. Each node
// turns the records it applies into tombstones in its store (erasures.run),
// which refuse the conversation's events from any replica from then on.
// docs/replication.md has the whole story.

// pathErased asks a node to confirm it erased what the control plane's
// erasures up to an index name.
const pathErased = "/internal/v1/erased"

// erasures applies the control plane's erasure records to this node's
// store, in index order, and tells who waits how far it got.
type erasures struct {
	ctl *control
	st  *store.Store
	log *slog.Logger
	// erase erases a conversation here, if held, leaving its tombstone
	// (the embeddings follow).
	erase func(ctx context.Context, ws, conv string) error
	// forget drops a conversation's cached record (replication.Replicator.Forget).
	forget func(ws, conv string)

	mu    sync.Mutex
	done  uint64        // every erasure up to this index is applied here
	moved chan struct{} // closed and replaced when done moves
}

func newErasures(ctl *control, st *store.Store, log *slog.Logger, forget func(ws, conv string), erase func(ctx context.Context, ws, conv string) error) *erasures {
	return &erasures{ctl: ctl, st: st, log: log, forget: forget, erase: erase, moved: make(chan struct{})}
}

// eraseRetry is how long run waits after a failed erasure before it tries
// again.
const eraseRetry = time.Second

// run applies erasure records until ctx ends: first every record the
// control plane holds (those already applied here cost a read), then each
// new one as it is applied.
func (e *erasures) run(ctx context.Context) error {
	var after uint64
	for {
		list, idx := e.ctl.c.ErasedAfter(after)
		ok := true
		for _, x := range list {
			if err := e.apply(ctx, x); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				e.log.Warn("erasure not applied here yet; retrying", "workspace", x.Workspace, "conversation", x.Conversation, "err", err)
				ok = false
				break
			}
		}
		wait := func() error { return e.ctl.c.WaitApplied(ctx, idx+1) }
		if ok {
			after = idx
			e.advance(idx)
		} else {
			wait = func() error {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(eraseRetry):
					return nil
				}
			}
		}
		if err := wait(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, cluster.ErrClosed) {
				return nil
			}
			return fmt.Errorf("erasures: %w", err)
		}
	}
}

// apply erases one conversation here unless its tombstone is already in
// the store.
func (e *erasures) apply(ctx context.Context, x cluster.Erasure) error {
	if done, err := e.st.Erased(x.Workspace, x.Conversation); err != nil || done {
		return err
	}
	e.forget(x.Workspace, x.Conversation)
	err := e.erase(ctx, x.Workspace, x.Conversation)
	if errors.Is(err, store.ErrNotFound) {
		return nil // not held here: the tombstone is all there is to keep
	}
	if err == nil {
		e.log.Info("conversation erased here", "workspace", x.Workspace, "conversation", x.Conversation, "index", x.Index)
	}
	return err
}

func (e *erasures) advance(idx uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if idx > e.done {
		e.done = idx
		close(e.moved)
		e.moved = make(chan struct{})
	}
}

// wait returns once every erasure up to index is applied here.
func (e *erasures) wait(ctx context.Context, index uint64) error {
	for {
		e.mu.Lock()
		done, moved := e.done, e.moved
		e.mu.Unlock()
		if done >= index {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return fmt.Errorf("waiting for erasures up to index %d (at %d): %w", index, done, ctx.Err())
		}
	}
}

// routes serves the confirmation other nodes ask for.
func (e *erasures) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+pathErased, e.ctl.signed(func(w http.ResponseWriter, r *http.Request, body []byte) {
		var req waitRequest
		if err := json.Unmarshal(body, &req); err != nil || req.Index == 0 {
			http.Error(w, "erased: want {\"index\": N}", http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), waitTimeout)
		defer cancel()
		err := e.ctl.c.WaitApplied(ctx, req.Index)
		if err == nil {
			err = e.wait(ctx, req.Index)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("{}"))
	}))
}

// confirm asks every member of the cluster whether it applied the erasures
// up to index, as a revocation does (confirmEverywhere): the answer names
// the nodes that confirmed and those that did not in time (down, cut off),
// which erase their copies when they catch up with the control plane.
func (e *erasures) confirm(ctx context.Context, index uint64) Confirmation {
	body, _ := json.Marshal(waitRequest{Index: index})
	confirmed, unconfirmed := e.ctl.askMembers(ctx, "erasure", waitTimeout, pathErased, body, func(ctx context.Context) error {
		if err := e.ctl.c.WaitApplied(ctx, index); err != nil {
			return err
		}
		return e.wait(ctx, index)
	})
	return Confirmation{Index: index, Confirmed: confirmed, Unconfirmed: unconfirmed}
}
