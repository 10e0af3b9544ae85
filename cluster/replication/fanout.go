package replication

import (
	"context"
	"slices"
	"time"

	"parley/cluster/membership"
	"parley/store"
)

// Publish sends this node's own message events to the other replicas of
// their conversations and to the nodes serving their participants; the
// store calls it (through the node's OnCommit) as soon as an event is
// decided, under the lock of the event's conversation in its sequencer, so
// each conversation's events are queued to each peer in oseq order (events
// of different conversations may come concurrently). The peers' answers are kept for the
// sender's ack (ack.go).
//
// trace is the context of the span of their fan-out (nil when not
// traced): each peer's frame is sent under a span of its own beneath it.
//
// When no other node is alive there is no replica and no serving node to
// send to, nor any answer to wait for (the ack needs none): nothing is
// looked up, encoded or kept.
func (r *Replicator) Publish(trace context.Context, evs []store.Event) {
	if r.cfg.Members.Others() == 0 {
		return
	}
	origin := r.st.Origin()
	for _, e := range evs {
		if e.Kind != store.EventMessage || e.Stamp.Origin != origin {
			continue
		}
		if w := r.send(trace, e); w != nil {
			r.mu.Lock()
			r.acks[ackKey{e.Workspace, e.Conversation, e.Seq}] = w
			r.mu.Unlock()
		}
	}
}

// send queues one of this node's events to the other replicas of its
// conversation and to the nodes where its participants are connected, and
// returns what to wait on, nil when there are none.
func (r *Replicator) send(trace context.Context, e store.Event) *ackWait {
	peers := r.replicas(e.Workspace, e.Conversation)
	serving := r.serving(e.Workspace, e.Conversation, peers)
	if len(peers) == 0 && len(serving) == 0 {
		return nil
	}
	ev, err := r.encode(e)
	if err != nil {
		r.log.Error("replication: event not encodable", "err", err)
		return nil
	}
	w := &ackWait{at: time.Now()}
	for _, p := range peers {
		ch, ok := r.links.Enqueue(trace, p.ID, []Event{ev})
		if !ok {
			r.log.Warn("replication: event not queued to a replica", "peer", p.ID, "conversation", e.Conversation)
			continue
		}
		w.peers = append(w.peers, p.ID)
		w.answers = append(w.answers, ch)
	}
	for _, id := range serving {
		if ch, ok := r.links.Enqueue(trace, id, []Event{ev}); ok {
			w.serving = append(w.serving, id)
			w.servingAnswers = append(w.servingAnswers, ch)
		}
	}
	return w
}

// serving lists the alive nodes, other than this one and the replicas,
// where participants of a conversation are connected: any agent of the
// workspace, or the visitor who started it. Pinned workspaces' clients are
// relayed into their region, so its nodes are the only ones listed.
func (r *Replicator) serving(ws, conv string, replicas []membership.Member) []string {
	gw := r.gateway()
	if gw == nil {
		return nil
	}
	owner := ""
	if c, err := r.records.get(ws, conv); err == nil {
		owner = c.Owner
	}
	var out []string
	for _, id := range gw.Serving(ws, owner) {
		if id == r.cfg.Self || !r.cfg.Members.Alive(id) || slices.ContainsFunc(replicas, func(m membership.Member) bool { return m.ID == id }) {
			continue
		}
		out = append(out, id)
	}
	return out
}
