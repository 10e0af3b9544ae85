package replication

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/fnv"
	"slices"
	"sort"
	"strconv"
	"time"

	"parley/cluster/membership"
	"parley/crdt"
)

// The hash tree anti-entropy compares (antientropy.go).
const (
	// treeBits is how many bits of a conversation's key each level of the
	// tree consumes: 16 children per node, 8 levels below the root.
	treeBits  = 4
	treeDepth = 32 / treeBits
	// treeLeaf is the most conversations of a differing node whose
	// frontiers are sent rather than its children's hashes (16 hashes
	// cost about as much as 5 frontiers).
	treeLeaf = 8
	// treeTTL is how long a node keeps the tree it computed for a peer's
	// round, for that round's next requests.
	treeTTL = 5 * time.Second
)

// tree is the hash tree of the conversations this node shares with a
// peer: their frontiers sorted by key, with each one's digest.
type tree struct {
	convs []convVector
	keys  []uint32
	sums  []uint64
}

type cachedTree struct {
	round string
	at    time.Time
	tree  *tree
}

// shared builds the tree of the conversations this node and peer both hold
// by this node's view of placement, with peer alive: a node that calls for
// a round is, though gossip here may not have seen it come back yet (a
// view without it would hold nothing with it, and every frontier would be
// sent).
func (a *antiEntropy) shared(peer string) (*tree, error) {
	r := a.r
	self := r.cfg.Self
	members := r.cfg.Members.Members()
	if !slices.ContainsFunc(members, func(m membership.Member) bool { return m.ID == peer }) {
		for _, n := range r.cfg.Control.Registered() {
			if n.ID == peer {
				members = append(members, n)
			}
		}
	}
	gw := r.gateway()
	type wsInfo struct {
		region               string
		meServes, peerServes bool
		// Visitors connected here (mine) and at peer (theirs): a node
		// serving a visitor holds the conversations they started.
		mine, theirs map[string]bool
		// off: this node must not hold the workspace (unknown, deleted,
		// or pinned elsewhere): shared with no one, the purger's.
		off bool
	}
	infos := map[string]wsInfo{}
	var convs []convVector
	type pending struct {
		cv     convVector
		region string
	}
	var byOwner []pending
	err := r.st.Frontiers(func(ws, conv string, f map[string]uint64) {
		in, ok := infos[ws]
		if !ok {
			in.region = r.cfg.Control.Region(ws)
			in.off = r.cfg.Control.Serves(ws) != nil
			if gw != nil && !in.off {
				in.meServes = gw.HasAgents(ws)
				in.peerServes = slices.Contains(gw.Serving(ws, ""), peer)
				in.mine, in.theirs = gw.VisitorsOn(ws, self), gw.VisitorsOn(ws, peer)
			}
			infos[ws] = in
		}
		if in.off {
			return
		}
		cv := convVector{Workspace: ws, Conversation: conv, Vector: f}
		if holdsWith(members, in.region, conv, self, peer, in.meServes, in.peerServes) {
			convs = append(convs, cv)
		} else if len(in.mine) > 0 || len(in.theirs) > 0 {
			// Its owner decides; the record is read after the scan, not
			// in a read transaction inside another.
			byOwner = append(byOwner, pending{cv, in.region})
		}
	})
	if err != nil {
		return nil, err
	}
	for _, p := range byOwner {
		c, err := r.records.get(p.cv.Workspace, p.cv.Conversation)
		if err != nil {
			continue
		}
		in := infos[p.cv.Workspace]
		if holdsWith(members, p.region, p.cv.Conversation, self, peer, in.mine[c.Owner], in.theirs[c.Owner]) {
			convs = append(convs, p.cv)
		}
	}
	t := &tree{keys: make([]uint32, len(convs)), sums: make([]uint64, len(convs))}
	idx := make([]int, len(convs))
	for i, cv := range convs {
		idx[i] = i
		t.keys[i] = treeKey(cv.Workspace, cv.Conversation)
	}
	sort.Slice(idx, func(a, b int) bool { return t.keys[idx[a]] < t.keys[idx[b]] })
	keys := make([]uint32, len(convs))
	t.convs = make([]convVector, len(convs))
	for i, j := range idx {
		t.convs[i], keys[i] = convs[j], t.keys[j]
		t.sums[i] = convSum(convs[j])
	}
	t.keys = keys
	return t, nil
}

// treeFor is the tree of the conversations shared with a peer, computed
// once per round of that peer's.
func (a *antiEntropy) treeFor(peer, round string) (*tree, error) {
	a.mu.Lock()
	c := a.trees[peer]
	a.mu.Unlock()
	if c != nil && c.round == round && time.Since(c.at) < treeTTL {
		return c.tree, nil
	}
	t, err := a.shared(peer)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.trees[peer] = &cachedTree{round: round, at: time.Now(), tree: t}
	a.mu.Unlock()
	return t, nil
}

// holdsWith says whether me and peer both hold a conversation, one of them
// at least by placement: a node serving the conversation's participants
// (meServes, peerServes: an agent of the workspace, or the visitor who
// started it, connected there) holds it too, so that they see its
// history, and keeps it in step with the replicas (two such nodes need not
// compare with each other: each does with the replicas).
func holdsWith(members []membership.Member, region, conv, me, peer string, meServes, peerServes bool) bool {
	a, b := false, false
	for _, m := range membership.Replicas(members, conv, region, ReplicationFactor) {
		a = a || m.ID == me
		b = b || m.ID == peer
	}
	return (a || meServes) && (b || peerServes) && (a || b)
}

// treeKey places a conversation in the tree.
func treeKey(ws, conv string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(ws))
	h.Write([]byte{0})
	h.Write([]byte(conv))
	return h.Sum32()
}

// convSum digests a conversation's name and frontier.
func convSum(cv convVector) uint64 {
	sum := sha256.Sum256([]byte(cv.Workspace + "\x00" + cv.Conversation + "\x00" + crdt.Vector(cv.Vector).String()))
	return binary.BigEndian.Uint64(sum[:8])
}

// span is the range of t's conversations under node idx of level.
func (t *tree) span(level int, idx uint32) (lo, hi int) {
	shift := uint(32 - treeBits*level)
	from, to := uint64(idx)<<shift, (uint64(idx)+1)<<shift
	lo = sort.Search(len(t.keys), func(i int) bool { return uint64(t.keys[i]) >= from })
	hi = sort.Search(len(t.keys), func(i int) bool { return uint64(t.keys[i]) >= to })
	return lo, hi
}

// hash is the hash of node idx of level: empty for a node without
// conversations.
func (t *tree) hash(level int, idx uint32) string {
	lo, hi := t.span(level, idx)
	if lo == hi {
		return ""
	}
	var x uint64
	for _, s := range t.sums[lo:hi] {
		x ^= s
	}
	return strconv.FormatUint(x, 36)
}
