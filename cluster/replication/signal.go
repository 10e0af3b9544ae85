package replication

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"parley/crdt"
	"parley/gateway"
	"parley/store"
)

// Signals between nodes are JSON objects whose "k" is their kind. The
// gateway's are of one participant each (gateway.Signal: SignalLease,
// SignalView, SignalTyping, SignalRead); the data plane's own are these,
// and the saved replies' (replies.go). A kind this node does not know is
// dropped.
const (
	// signalResync asks a node for its presence: one that comes back may
	// find that this node did not declare it dead (the two sides of a
	// partition need not agree), so only asking makes both sides resync.
	// Nothing but the kind (signalHead).
	signalResync gateway.SignalKind = "resync"
	// signalErase asked the other nodes to erase a conversation
	// (eraseSignal). Only nodes of an earlier version send it: erasures are
	// control-plane records now (node/erasure.go).
	signalErase gateway.SignalKind = "erase"
)

// signalHead is what every signal between nodes has: its kind.
type signalHead struct {
	Kind gateway.SignalKind `json:"k"`
}

// eraseSignal is a signalErase.
type eraseSignal struct {
	Kind         gateway.SignalKind `json:"k"`
	Workspace    string             `json:"ws"`
	Conversation string             `json:"conv"`
}

// resyncReq asks resync to send this node's presence to a node, and with
// ask, to ask that node for its own.
type resyncReq struct {
	node string
	ask  bool
}

// Signal sends this node's presence and typing to the other nodes that
// may serve the workspace (its region's, or all for an unpinned one);
// the gateway calls it.
func (r *Replicator) Signal(sig gateway.Signal) {
	if sig.Kind == gateway.SignalRead {
		// Seqs are this node's: say what the reader had seen instead.
		v, err := r.st.VectorAt(sig.Workspace, sig.Conversation, sig.Seq)
		if err != nil {
			return
		}
		sig.Vector, sig.Seq = crdt.Vector(v).String(), 0
	}
	b, err := json.Marshal(sig)
	if err != nil {
		return
	}
	region := r.cfg.Control.Region(sig.Workspace)
	for _, m := range r.cfg.Members.Members() {
		if m.ID == r.cfg.Self || (region != "" && m.Region != region) {
			continue
		}
		r.links.Signal(m.ID, b)
	}
}

func (r *Replicator) queueResync(req resyncReq) {
	select {
	case r.resyncs <- req:
	default: // the clients' own renewals will tell it, a heartbeat later
	}
}

// resync sends a node that joined or came back this node's presence and
// views, for the workspaces it may serve: after a partition it had ended
// them, and otherwise would see them again only as each client renews.
func (r *Replicator) resync(req resyncReq) {
	id := req.node
	gw := r.gateway()
	if gw == nil {
		return
	}
	if req.ask {
		if b, err := json.Marshal(signalHead{Kind: signalResync}); err == nil {
			r.links.Signal(id, b)
		}
	}
	m, _ := r.member(id)
	n := gw.Resync(func(sig gateway.Signal) {
		if region := r.cfg.Control.Region(sig.Workspace); region != "" && region != m.Region {
			return
		}
		if b, err := json.Marshal(sig); err == nil {
			r.links.Signal(id, b)
		}
	})
	r.log.Debug("replication: presence sent to a node that joined", "peer", id, "leases", n)
}

// onSignal handles a peer's signal: the data plane's own, or a
// participant's presence, view, typing or read receipt, applied in the
// gateway or, for a receipt, the store.
func (r *Replicator) onSignal(from string, b []byte) {
	var head signalHead
	if err := json.Unmarshal(b, &head); err != nil {
		return
	}
	switch {
	case head.Kind == signalResync:
		r.queueResync(resyncReq{node: from})
	case head.Kind == signalErase:
		var sig eraseSignal
		if err := json.Unmarshal(b, &sig); err == nil && r.cfg.Erase != nil && sig.Conversation != "" {
			r.records.forget(sig.Workspace, sig.Conversation)
			if err := r.cfg.Erase(context.Background(), sig.Workspace, sig.Conversation); err != nil && !errors.Is(err, store.ErrNotFound) {
				r.log.Warn("replication: a peer's erasure failed here", "conversation", sig.Conversation, "err", err)
			}
		}
	case isRepliesSignal(head.Kind):
		r.replies.queue(from, b)
	case head.Kind.OfParticipant():
		var sig gateway.Signal
		if err := json.Unmarshal(b, &sig); err != nil {
			return
		}
		if (sig.Kind == gateway.SignalLease || sig.Kind == gateway.SignalView) && !strings.HasPrefix(sig.LeaseID, from+"/") {
			return // a node speaks only for its own connections
		}
		if sig.Kind == gateway.SignalRead {
			r.applyRead(sig)
		} else if gw := r.gateway(); gw != nil {
			gw.ApplySignal(sig)
		}
	}
}

// applyRead records another node's read receipt in this node's terms: up
// to the last event of its log the reader's vector covers. A receipt lost
// with a link is made good by the reader's next one (receipts only grow).
func (r *Replicator) applyRead(sig gateway.Signal) { r.applyReadTry(sig, 0) }

// readWaits bounds how long a receipt waits for the events it covers: a
// reader elsewhere may have seen an event this node has published to its
// clients but not committed yet (or not received), and the receipt must
// not stop short of it.
const (
	readWaits     = 20
	readWaitEvery = 50 * time.Millisecond
)

func (r *Replicator) applyReadTry(sig gateway.Signal, try int) {
	v, err := crdt.ParseVector(sig.Vector)
	if err != nil || sig.Participant == "" {
		return
	}
	if f, err := r.st.Frontier(sig.Workspace, sig.Conversation); err == nil && try < readWaits {
		for o, n := range v {
			if f[o] < n {
				time.AfterFunc(readWaitEvery, func() { r.applyReadTry(sig, try+1) })
				return
			}
		}
	}
	seq, err := r.st.SeqCovered(sig.Workspace, sig.Conversation, v)
	if err != nil || seq == 0 {
		return // not held here, or nothing covered yet
	}
	if _, err := r.st.MarkRead(context.Background(), sig.Workspace, sig.Conversation, sig.Participant, seq, time.Now()); err != nil {
		r.log.Warn("replication: a peer's read receipt not stored", "conversation", sig.Conversation, "err", err)
	}
}
