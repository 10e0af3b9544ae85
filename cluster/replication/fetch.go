package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"parley/cluster/membership"
	"parley/gateway"
	"parley/ident"
	"parley/store"
)

// Fetching one conversation on demand: a node asked by a client about a
// conversation it does not hold (a visitor who reconnects through a node
// outside their conversation's placement, where nothing of it was
// before) asks the conversation's replicas for it before it answers. The
// replica that holds it pushes this node's missing ranges with
// anti-entropy's range requests (sendRanges, applied here by applyRange,
// as every round's are) and answers once they are durable here, with the
// conversation's record (for one with no event yet). After that the
// conversation is kept in step as any held where its participant is
// connected: the replicas send this node its events (fan-out to serving
// nodes) and anti-entropy compares it.
const (
	pathFetch = "/internal/v1/ae/fetch"
	// fetchCallTimeout bounds one replica's answer, its pushed ranges
	// included.
	fetchCallTimeout = 2 * time.Second
	// maxFetches bounds the conversations this node fetches at once;
	// past it a fetch is refused (gateway.ErrReplicasUnreachable: the
	// client retries), so that clients naming unknown conversations
	// cannot make it ask its peers without bound.
	maxFetches = 16
)

// fetchRequest asks a replica for a conversation: its ranges beyond
// Vector, this node's frontier of it (empty when nothing is held). Owner,
// when set, is the visitor asking: a conversation of another owner is
// answered as not held, and nothing of it is sent.
type fetchRequest struct {
	From         string            `json:"from"`
	Workspace    string            `json:"ws"`
	Conversation string            `json:"conv"`
	Owner        string            `json:"owner,omitempty"`
	Vector       map[string]uint64 `json:"v"`
}

// fetchAnswer says whether the replica holds the conversation (for that
// owner); when it does, its ranges are durable at the asker already.
type fetchAnswer struct {
	Held         bool               `json:"held"`
	Conversation store.Conversation `json:"c"`
}

// Fetch makes sure this node holds a conversation of ws before a client
// is answered about it (gateway.Fetcher): it asks the conversation's
// other replicas, in placement order, until one has it and has sent what
// this node lacks. It returns an error wrapping store.ErrNotFound when
// every alive replica answered that it does not hold it (or holds it for
// another owner than owner, when set), and one wrapping
// gateway.ErrReplicasUnreachable when some could not be asked and none
// had it, when no other replica is alive while other nodes are registered
// (this node is cut off), or when this node may not take conversations
// from peers yet.
// Concurrent fetches of one conversation share one exchange.
func (r *Replicator) Fetch(ctx context.Context, ws, conv, owner string) error {
	if !ident.ValidID(ws) || !ident.ValidConversation(conv) || r.cfg.Control.Serves(ws) != nil {
		return fmt.Errorf("conversation %s: %w", conv, store.ErrNotFound)
	}
	if r.cfg.CaughtUp != nil && !r.cfg.CaughtUp() {
		return fmt.Errorf("%w: %w", gateway.ErrReplicasUnreachable, errNotCaughtUp)
	}
	erased, err := r.st.Erased(ws, conv)
	if err != nil {
		return err
	}
	if erased {
		// Gone for good, whatever a replica not caught up with the
		// erasure still holds.
		return fmt.Errorf("conversation %s was erased: %w", conv, store.ErrNotFound)
	}
	ch := r.fetches.DoChan(ws+"\x00"+conv+"\x00"+owner, func() (any, error) {
		select {
		case r.fetchSlots <- struct{}{}:
		default:
			return nil, fmt.Errorf("%w: %d fetches under way", gateway.ErrReplicasUnreachable, maxFetches)
		}
		defer func() { <-r.fetchSlots }()
		// The exchange is shared: bounded by its own timeout, not by the
		// first caller's context.
		fctx, cancel := context.WithTimeout(r.life, ReplicationFactor*fetchCallTimeout)
		defer cancel()
		return nil, r.fetch(fctx, ws, conv, owner)
	})
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", gateway.ErrReplicasUnreachable, ctx.Err())
	}
}

func (r *Replicator) fetch(ctx context.Context, ws, conv, owner string) error {
	have, err := r.st.Frontier(ws, conv)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	req := fetchRequest{From: r.cfg.Self, Workspace: ws, Conversation: conv, Owner: owner, Vector: have}
	peers := r.replicas(ws, conv)
	if len(peers) == 0 && slices.ContainsFunc(r.cfg.Control.Registered(), func(m membership.Member) bool { return m.ID != r.cfg.Self }) {
		// Cut off from every other node: none could be asked.
		return fmt.Errorf("%w: no other replica is alive", gateway.ErrReplicasUnreachable)
	}
	var failed []error
	for _, p := range peers {
		var ans fetchAnswer
		cctx, cancel := context.WithTimeout(ctx, fetchCallTimeout)
		err := r.ae.call(cctx, p, pathFetch, "fetch", req, &ans)
		cancel()
		if err != nil {
			failed = append(failed, fmt.Errorf("node %s: %w", p.ID, err))
			continue
		}
		c := ans.Conversation
		if !ans.Held || c.Workspace != ws || c.ID != conv || owner != "" && c.Owner != owner {
			continue // not there (yet: a replica new to it); ask the next
		}
		if _, err := r.st.Conversation(ws, conv); errors.Is(err, store.ErrNotFound) {
			// No event of it yet, so no range brought its record.
			if err := r.st.EnsureConversation(ctx, c); err != nil {
				return err
			}
		}
		r.log.Info("replication: fetched a conversation from a replica", "peer", p.ID, "conversation", conv)
		return nil
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %w", gateway.ErrReplicasUnreachable, errors.Join(failed...))
	}
	return fmt.Errorf("conversation %s: no replica holds it: %w", conv, store.ErrNotFound)
}

// fetchRoutes serves the replica's side of a fetch: it pushes the asker
// the ranges it lacks, then answers.
func (r *Replicator) fetchRoutes(mux *http.ServeMux, signed Signed) {
	mux.HandleFunc("POST "+pathFetch, signed(func(w http.ResponseWriter, req *http.Request, body []byte) {
		var in fetchRequest
		if err := json.Unmarshal(body, &in); err != nil || in.From == "" || !ident.ValidID(in.Workspace) || !ident.ValidConversation(in.Conversation) {
			http.Error(w, fmt.Sprintf("bad fetch request: %v", err), http.StatusBadRequest)
			return
		}
		var ans fetchAnswer
		if r.cfg.Control.Serves(in.Workspace) != nil {
			json.NewEncoder(w).Encode(ans) // never sent outside its region, nor unknown or deleted here
			return
		}
		c, err := r.records.get(in.Workspace, in.Conversation)
		if errors.Is(err, store.ErrNotFound) || err == nil && in.Owner != "" && c.Owner != in.Owner {
			json.NewEncoder(w).Encode(ans)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		f, err := r.st.Frontier(in.Workspace, in.Conversation)
		if errors.Is(err, store.ErrNotFound) {
			json.NewEncoder(w).Encode(ans) // erased meanwhile
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		var needs []need
		for o, n := range f {
			if in.Vector[o] < n {
				needs = append(needs, need{Workspace: in.Workspace, Conversation: in.Conversation, Origin: o, From: in.Vector[o] + 1})
			}
		}
		peer, ok := r.asker(in.From)
		if !ok {
			http.Error(w, fmt.Sprintf("node %s is not a member", in.From), http.StatusConflict)
			return
		}
		if err := r.ae.sendRanges(req.Context(), peer, needs); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		ans.Held, ans.Conversation = true, c
		json.NewEncoder(w).Encode(ans)
	}))
}

// asker is the member that sent a request: alive, or registered (its
// gossip may have seen this node come back before this node's did).
func (r *Replicator) asker(id string) (membership.Member, bool) {
	if m, ok := r.member(id); ok {
		return m, true
	}
	for _, m := range r.cfg.Control.Registered() {
		if m.ID == id && m.RaftAddr != "" {
			return m, true
		}
	}
	return membership.Member{}, false
}
