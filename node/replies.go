package node

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"parley/cluster/replication"
	"parley/gateway"
	"parley/store"
)

// Saved replies are workspace data, like conversations: every node that
// serves the workspace (its region's, or every node for an unpinned one)
// keeps a copy, merged last writer wins with tombstones for deletions
// (store.MergeReplies). A change goes to the other nodes at once, as a
// signal; every repliesEvery, and when a node comes back, each node sends
// the others a digest per workspace, and two nodes whose digests differ
// send each other their whole set, so a node that missed a change catches
// up. A few hundred replies a workspace at most: no need for more.
const (
	signalReplies     gateway.SignalKind = "replies"      // replies or tombstones of a workspace
	signalRepliesSum  gateway.SignalKind = "replies-sum"  // a workspace's digest
	signalRepliesWant gateway.SignalKind = "replies-want" // "send me all of this workspace's"
	repliesEvery                         = 30 * time.Second
	// repliesChunk and repliesChunkBytes bound one signal of replies; the
	// bytes leave room under replication.MaxSignal for the envelope.
	repliesChunk      = 32
	repliesChunkBytes = replication.MaxSignal - 1024
)

type repliesSignal struct {
	Kind      gateway.SignalKind `json:"k"`
	Workspace string             `json:"ws"`
	Replies   []store.Reply      `json:"replies,omitempty"`
	Digest    string             `json:"sum,omitempty"`
}

// repliesTargets lists the other alive nodes that serve ws.
func (r *replicator) repliesTargets(ws string) []string {
	region := ""
	if w, err := r.ctl.c.Workspace(ws); err == nil {
		region = w.Region
	}
	var out []string
	for _, m := range r.mem.Members() {
		if m.ID != r.node && (region == "" || m.Region == region) {
			out = append(out, m.ID)
		}
	}
	return out
}

// sendReplies sends replies of ws to peers, in signals that a link carries.
func (r *replicator) sendReplies(peers []string, ws string, rs []store.Reply) {
	for _, chunk := range replyChunks(rs) {
		r.sendRepliesSignal(peers, repliesSignal{Kind: signalReplies, Workspace: ws, Replies: chunk})
	}
}

// replyChunks splits replies, their vectors left out (each node computes
// its own), into groups whose signal stays under replication.MaxSignal: a
// reply is at most about 12 KiB encoded (2,000 characters, escaped), a
// signal at most 64 KiB, and a larger one would close the link.
func replyChunks(rs []store.Reply) [][]store.Reply {
	var out [][]store.Reply
	var cur []store.Reply
	size := 0
	for _, r := range rs {
		r.Vector = nil
		b, err := json.Marshal(r)
		if err != nil {
			continue
		}
		if len(cur) > 0 && (size+len(b)+1 > repliesChunkBytes || len(cur) == repliesChunk) {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, r)
		size += len(b) + 1
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func (r *replicator) sendRepliesSignal(peers []string, sig repliesSignal) {
	b, err := json.Marshal(sig)
	if err != nil {
		return
	}
	for _, p := range peers {
		r.repl.Signal(p, b)
	}
}

// replyChanged sends a reply just saved or deleted here to the other nodes.
func (r *replicator) replyChanged(ws string, rep store.Reply) {
	r.sendReplies(r.repliesTargets(ws), ws, []store.Reply{rep})
}

// sendRepliesDigests sends this node's digest of each workspace it serves
// to peer, or to every node serving it when peer is empty.
func (r *replicator) sendRepliesDigests(peer string) {
	for _, w := range r.ctl.c.Workspaces() {
		if w.Region != "" && w.Region != r.ctl.cfg.Region {
			continue
		}
		all, err := r.st.AllReplies(w.ID)
		if err != nil || len(all) == 0 {
			// Nothing to offer: a node that has some sends its digest here.
			continue
		}
		peers := []string{peer}
		if peer == "" {
			peers = r.repliesTargets(w.ID)
		}
		r.sendRepliesSignal(peers, repliesSignal{Kind: signalRepliesSum, Workspace: w.ID, Digest: store.RepliesDigest(all)})
	}
}

// onRepliesSignal handles another node's saved-replies signal.
func (r *replicator) onRepliesSignal(from string, b []byte) {
	var sig repliesSignal
	if err := json.Unmarshal(b, &sig); err != nil || sig.Workspace == "" {
		return
	}
	if r.ctl.serves(sig.Workspace) != nil {
		return // unknown or deleted here, or not stored in this region
	}
	switch sig.Kind {
	case signalReplies:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.mergeReplies(ctx, sig.Workspace, sig.Replies); err != nil {
			r.log.Warn("replication: saved replies from a peer not stored", "peer", from, "err", err)
		}
	case signalRepliesSum:
		all, err := r.st.AllReplies(sig.Workspace)
		if err != nil || store.RepliesDigest(all) == sig.Digest {
			return
		}
		r.sendReplies([]string{from}, sig.Workspace, all)
		r.sendRepliesSignal([]string{from}, repliesSignal{Kind: signalRepliesWant, Workspace: sig.Workspace})
	case signalRepliesWant:
		if all, err := r.st.AllReplies(sig.Workspace); err == nil {
			r.sendReplies([]string{from}, sig.Workspace, all)
		}
	}
}

// mergeReplies stores another node's saved replies of ws, durably, and
// tells the embedding index of those that changed here.
func (r *replicator) mergeReplies(ctx context.Context, ws string, rs []store.Reply) error {
	applied, err := r.st.MergeReplies(ctx, ws, rs)
	if errors.Is(err, store.ErrNotFound) {
		// No session of the workspace has reached this node yet: its
		// record, which the store keys everything of it under, first.
		if err = r.st.PutWorkspace(ctx, store.Workspace{ID: ws}); err == nil {
			applied, err = r.st.MergeReplies(ctx, ws, rs)
		}
	}
	if err != nil {
		return err
	}
	if len(applied) > 0 && r.onReplies != nil {
		r.onReplies(ws, applied)
	}
	return nil
}

// isRepliesSignal says whether a signal is about saved replies.
func isRepliesSignal(kind gateway.SignalKind) bool {
	return kind == signalReplies || kind == signalRepliesSum || kind == signalRepliesWant
}
