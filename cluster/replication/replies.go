package replication

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

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
	// bytes leave room under MaxSignal for the envelope.
	repliesChunk      = 32
	repliesChunkBytes = MaxSignal - 1024
)

type repliesSignal struct {
	Kind      gateway.SignalKind `json:"k"`
	Workspace string             `json:"ws"`
	Replies   []store.Reply      `json:"replies,omitempty"`
	Digest    string             `json:"sum,omitempty"`
}

// savedReplies keeps this node's saved replies in step with the other
// nodes serving their workspaces.
type savedReplies struct {
	self, region string
	st           Store
	ctl          Control
	mem          Members
	// signal queues a signal to a peer (Links.Signal).
	signal func(peer string, b []byte) bool
	// onReplies is Config.OnReplies.
	onReplies func(ws string, applied []store.Reply)
	log       *slog.Logger
	// in carries saved-reply signals from the links' readers to Run's
	// loop: merging them waits for an fsync and embedding them for the
	// model, which must not hold up the messages behind them on a link.
	in chan repliesFrom
}

type repliesFrom struct {
	from string
	b    []byte
}

// queue hands a peer's signal to Run's loop; dropped when it is full: the
// next exchange of digests makes it good.
func (s *savedReplies) queue(from string, b []byte) {
	select {
	case s.in <- repliesFrom{from, b}:
	default:
	}
}

// targets lists the other alive nodes that serve ws.
func (s *savedReplies) targets(ws string) []string {
	region := s.ctl.Region(ws)
	var out []string
	for _, m := range s.mem.Members() {
		if m.ID != s.self && (region == "" || m.Region == region) {
			out = append(out, m.ID)
		}
	}
	return out
}

// send sends replies of ws to peers, in signals that a link carries.
func (s *savedReplies) send(peers []string, ws string, rs []store.Reply) {
	for _, chunk := range replyChunks(rs) {
		s.sendSignal(peers, repliesSignal{Kind: signalReplies, Workspace: ws, Replies: chunk})
	}
}

// replyChunks splits replies, their vectors left out (each node computes
// its own), into groups whose signal stays under MaxSignal: a reply is at
// most about 12 KiB encoded (2,000 characters, escaped), a signal at most
// 64 KiB, and a larger one would close the link.
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

func (s *savedReplies) sendSignal(peers []string, sig repliesSignal) {
	b, err := json.Marshal(sig)
	if err != nil {
		return
	}
	for _, p := range peers {
		s.signal(p, b)
	}
}

// changed sends a reply just saved or deleted here to the other nodes.
func (s *savedReplies) changed(ws string, rep store.Reply) {
	s.send(s.targets(ws), ws, []store.Reply{rep})
}

// sendDigests sends this node's digest of each workspace it serves to
// peer, or to every node serving it when peer is empty.
func (s *savedReplies) sendDigests(peer string) {
	for _, ws := range s.ctl.Workspaces() {
		if region := s.ctl.Region(ws); region != "" && region != s.region {
			continue
		}
		all, err := s.st.AllReplies(ws)
		if err != nil || len(all) == 0 {
			// Nothing to offer: a node that has some sends its digest here.
			continue
		}
		peers := []string{peer}
		if peer == "" {
			peers = s.targets(ws)
		}
		s.sendSignal(peers, repliesSignal{Kind: signalRepliesSum, Workspace: ws, Digest: store.RepliesDigest(all)})
	}
}

// onSignal handles another node's saved-replies signal.
func (s *savedReplies) onSignal(from string, b []byte) {
	var sig repliesSignal
	if err := json.Unmarshal(b, &sig); err != nil || sig.Workspace == "" {
		return
	}
	if s.ctl.Serves(sig.Workspace) != nil {
		return // unknown or deleted here, or not stored in this region
	}
	switch sig.Kind {
	case signalReplies:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.merge(ctx, sig.Workspace, sig.Replies); err != nil {
			s.log.Warn("replication: saved replies from a peer not stored", "peer", from, "err", err)
		}
	case signalRepliesSum:
		all, err := s.st.AllReplies(sig.Workspace)
		if err != nil || store.RepliesDigest(all) == sig.Digest {
			return
		}
		s.send([]string{from}, sig.Workspace, all)
		s.sendSignal([]string{from}, repliesSignal{Kind: signalRepliesWant, Workspace: sig.Workspace})
	case signalRepliesWant:
		if all, err := s.st.AllReplies(sig.Workspace); err == nil {
			s.send([]string{from}, sig.Workspace, all)
		}
	}
}

// merge stores another node's saved replies of ws, durably, and tells
// onReplies of those that changed here.
func (s *savedReplies) merge(ctx context.Context, ws string, rs []store.Reply) error {
	applied, err := s.st.MergeReplies(ctx, ws, rs)
	if errors.Is(err, store.ErrNotFound) {
		// No session of the workspace has reached this node yet: its
		// record, which the store keys everything of it under, first.
		if err = s.st.PutWorkspace(ctx, store.Workspace{ID: ws}); err == nil {
			applied, err = s.st.MergeReplies(ctx, ws, rs)
		}
	}
	if err != nil {
		return err
	}
	if len(applied) > 0 && s.onReplies != nil {
		s.onReplies(ws, applied)
	}
	return nil
}

// isRepliesSignal says whether a signal is about saved replies.
func isRepliesSignal(kind gateway.SignalKind) bool {
	return kind == signalReplies || kind == signalRepliesSum || kind == signalRepliesWant
}
