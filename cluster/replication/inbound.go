package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"parley/store"
)

// have is how far an origin is in this node's store: the gate's start.
func (r *Replicator) have(ws, conv, origin string) (uint64, error) {
	f, err := r.st.Frontier(ws, conv)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	return f[origin], err
}

// Apply applies a peer's events, each origin's in order, publishing each
// at once, and returns what waits until they are durable: what an inbound
// link does with each frame of events.
func (r *Replicator) Apply(ctx context.Context, from string, evs []Event) (func() error, error) {
	start := time.Now()
	trace := r.cfg.Tracer.Traced(ctx)
	var errs []error
	var waits []<-chan error
	refused := map[string]error{}
	for _, ev := range evs {
		// Only a workspace this node knows and serves: an unknown one may
		// be deleted, and is never taken for an unpinned one.
		err, ok := refused[ev.Workspace]
		if !ok {
			err = r.servesCaughtUp(ctx, ev.Workspace)
			refused[ev.Workspace] = err
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("not stored: %w", err))
			continue
		}
		_, err = r.gate.Admit(ev, func(batch []Event) error {
			for _, e := range batch {
				var p payload
				if err := json.Unmarshal(e.Payload, &p); err != nil {
					return fmt.Errorf("payload of %s.%d: %w", e.Origin, e.OSeq, err)
				}
				if p.Conversation.Workspace != e.Workspace || p.Conversation.ID != e.Conversation || p.Message.ID == "" {
					return fmt.Errorf("payload of %s.%d names another conversation", e.Origin, e.OSeq)
				}
				if err := r.newBeforeCatchUp(e.Workspace, e.Conversation); err != nil {
					return err
				}
				res, durable, err := r.st.ApplyRemoteAsync(context.Background(), store.Remote{Conversation: p.Conversation,
					Stamp: store.Stamp{Origin: e.Origin, OSeq: e.OSeq}, Message: p.Message, Start: start, Trace: trace})
				if err != nil {
					return err
				}
				r.uncount(e.Workspace, res)
				waits = append(waits, durable)
			}
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	wait := func() error {
		var errs []error
		for _, w := range waits {
			if err := <-w; err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	return wait, errors.Join(errs...)
}

// servesCaughtUp is Control.Serves, after catching up with the leader
// when the workspace is unknown here: a peer's events of a workspace
// created a moment ago may arrive before this node applied its creation.
func (r *Replicator) servesCaughtUp(ctx context.Context, ws string) error {
	err := r.cfg.Control.Serves(ws)
	if errors.Is(err, ErrWorkspaceUnknown) && r.cfg.CatchUp != nil && r.cfg.CatchUp(ctx) {
		err = r.cfg.Control.Serves(ws)
	}
	return err
}

// errNotCaughtUp refuses a peer's conversation this node may not know to be
// erased yet; the peer sends it again in a later round.
var errNotCaughtUp = errors.New("this node has not caught up with the control plane's erasures yet")

// newBeforeCatchUp refuses, until this node has caught up with the control
// plane's erasures, a conversation it does not hold: a node that joins, or
// comes back after missing an erasure, must not take the conversation from
// a peer that still has it before it knows.
func (r *Replicator) newBeforeCatchUp(ws, conv string) error {
	if r.cfg.CaughtUp == nil || r.cfg.CaughtUp() {
		return nil
	}
	if _, err := r.st.Conversation(ws, conv); err == nil {
		return nil
	}
	return fmt.Errorf("conversation %s/%s: %w", ws, conv, errNotCaughtUp)
}

// uncount takes back the message this node counted for usage when it
// accepted a send that another node had accepted earlier (the client
// resent it there while this node stalled): the cluster holds it once, as
// the other node's, which counted it too.
func (r *Replicator) uncount(ws string, res store.Result) {
	if res.Displaced.Node == r.cfg.Self {
		r.cfg.Meter.Count(ws, 0, -1)
	}
}

// dial opens the link to a peer, through Peers at its link address.
func (r *Replicator) dial(ctx context.Context, peer string) (Conn, error) {
	m, ok := r.member(peer)
	if !ok || m.RaftAddr == "" {
		return nil, fmt.Errorf("node %s is not alive", peer)
	}
	c, err := r.cfg.Peers.Dial(ctx, m.RaftAddr)
	if err != nil {
		return nil, err
	}
	return Delayed(c, r.cfg.LinkDelay), nil
}

// Serve reads a link a peer opened to this node until it ends, or Run's
// context does (an HTTP server does not close hijacked connections on
// shutdown).
func (r *Replicator) Serve(ctx context.Context, from string, c Conn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(r.life, cancel)()
	return r.links.Serve(ctx, from, c)
}
