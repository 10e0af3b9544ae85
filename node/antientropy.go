package node

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"parley/cluster/membership"
	"parley/crdt"
	"parley/store"

	"github.com/prometheus/client_golang/prometheus"
)

// Anti-entropy is the backstop of replication: every round, this node makes
// sure each other replica has every event it has of the conversations they
// share, whatever links broke meanwhile. The conversations they share are
// the leaves of a hash tree keyed by a hash of their names (16 children per
// node, each node the XOR of its leaves' digests of name and frontier): the
// round compares the root first, then the children of the nodes that
// differ, level by level, down to nodes of at most aeLeaf conversations,
// whose frontiers it sends; for each conversation the peer lacks events of,
// it sends each origin's missing range. Equal states cost one hash; a
// difference of D conversations costs about D paths of the tree, D
// frontiers and the missing events, whatever the number of conversations.
const (
	pathAETree    = "/internal/v1/ae/tree"
	pathAEVectors = "/internal/v1/ae/vectors"
	pathAERange   = "/internal/v1/ae/range"

	// aeBits is how many bits of a conversation's key each level of the
	// tree consumes: 16 children per node, 8 levels below the root.
	aeBits  = 4
	aeDepth = 32 / aeBits
	// aeLeaf is the most conversations of a differing node whose
	// frontiers are sent rather than its children's hashes (16 hashes
	// cost about as much as 5 frontiers).
	aeLeaf = 8
	// aeMaxHashes and aeMaxVectors bound one request, and aeMaxRange the
	// events' bytes of one range request, below maxInternalBody.
	aeMaxHashes  = 2048
	aeMaxVectors = 512
	aeMaxRange   = 64 << 10
	// aeEvery is the time between rounds; a round with a peer stops early
	// when nothing differs.
	aeEvery = 2 * time.Second
	// aeTreeTTL is how long a node keeps the tree it computed for a
	// peer's round, for that round's next requests.
	aeTreeTTL = 5 * time.Second
)

type aeMetrics struct {
	bytes    *prometheus.CounterVec
	repaired prometheus.Counter
	rounds   prometheus.Counter
}

func newAEMetrics(reg prometheus.Registerer) *aeMetrics {
	m := &aeMetrics{
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_antientropy_bytes_total", Help: "Bytes of anti-entropy requests sent and replies received, by phase (buckets: the hash tree; vectors; range: the events).",
		}, []string{"phase"}),
		repaired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_antientropy_events_sent_total", Help: "Events sent to replicas that lacked them.",
		}),
		rounds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_antientropy_rounds_total", Help: "Anti-entropy rounds with a peer.",
		}),
	}
	reg.MustRegister(m.bytes, m.repaired, m.rounds)
	return m
}

// convVector is one conversation's frontier.
type convVector struct {
	Workspace    string            `json:"ws"`
	Conversation string            `json:"conv"`
	Vector       map[string]uint64 `json:"v"`
}

// aeTree is the hash tree of the conversations this node shares with a
// peer: their frontiers sorted by key, with each one's digest.
type aeTree struct {
	convs []convVector
	keys  []uint32
	sums  []uint64
}

// shared builds the tree of the conversations this node and peer both hold
// by this node's view of placement, with peer alive: a node that calls for
// a round is, though gossip here may not have seen it come back yet (a
// view without it would hold nothing with it, and every frontier would be
// sent).
func (r *replicator) shared(peer string) (*aeTree, error) {
	members := r.mem.Members()
	if !slices.ContainsFunc(members, func(m membership.Member) bool { return m.ID == peer }) {
		for _, n := range r.ctl.c.Nodes() {
			if n.ID == peer {
				members = append(members, membership.Member{ID: n.ID, Region: n.Region, HTTPAddr: n.APIAddr, RaftAddr: n.RaftAddr})
			}
		}
	}
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
			if w, err := r.ctl.c.Workspace(ws); err == nil {
				in.region = w.Region
			}
			in.off = r.ctl.serves(ws) != nil
			if r.gw != nil && !in.off {
				in.meServes = r.gw.HasAgents(ws)
				in.peerServes = slices.Contains(r.gw.Serving(ws, ""), peer)
				in.mine, in.theirs = r.gw.VisitorsOn(ws, r.node), r.gw.VisitorsOn(ws, peer)
			}
			infos[ws] = in
		}
		if in.off {
			return
		}
		cv := convVector{Workspace: ws, Conversation: conv, Vector: f}
		if holdsWith(members, in.region, conv, r.node, peer, in.meServes, in.peerServes) {
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
		c, err := r.record(p.cv.Workspace, p.cv.Conversation)
		if err != nil {
			continue
		}
		in := infos[p.cv.Workspace]
		if holdsWith(members, p.region, p.cv.Conversation, r.node, peer, in.mine[c.Owner], in.theirs[c.Owner]) {
			convs = append(convs, p.cv)
		}
	}
	t := &aeTree{keys: make([]uint32, len(convs)), sums: make([]uint64, len(convs))}
	idx := make([]int, len(convs))
	for i, cv := range convs {
		idx[i] = i
		t.keys[i] = aeKey(cv.Workspace, cv.Conversation)
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

// holdsWith says whether me and peer both hold a conversation, one of them
// at least by placement: a node serving the conversation's participants
// (meServes, peerServes: an agent of the workspace, or the visitor who
// started it, connected there) holds it too, so that they see its
// history, and keeps it in step with the replicas (two such nodes need not
// compare with each other: each does with the replicas).
func holdsWith(members []membership.Member, region, conv, me, peer string, meServes, peerServes bool) bool {
	a, b := false, false
	for _, m := range membership.Replicas(members, conv, region, replicationFactor) {
		a = a || m.ID == me
		b = b || m.ID == peer
	}
	return (a || meServes) && (b || peerServes) && (a || b)
}

// aeKey places a conversation in the tree.
func aeKey(ws, conv string) uint32 {
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
func (t *aeTree) span(level int, idx uint32) (lo, hi int) {
	shift := uint(32 - aeBits*level)
	from, to := uint64(idx)<<shift, (uint64(idx)+1)<<shift
	lo = sort.Search(len(t.keys), func(i int) bool { return uint64(t.keys[i]) >= from })
	hi = sort.Search(len(t.keys), func(i int) bool { return uint64(t.keys[i]) >= to })
	return lo, hi
}

// hash is the hash of node idx of level: empty for a node without
// conversations.
func (t *aeTree) hash(level int, idx uint32) string {
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

// treeFor is the tree of the conversations shared with a peer, computed
// once per round of that peer's.
func (r *replicator) treeFor(peer, round string) (*aeTree, error) {
	r.aeMu.Lock()
	c := r.aeTrees[peer]
	r.aeMu.Unlock()
	if c != nil && c.round == round && time.Since(c.at) < aeTreeTTL {
		return c.tree, nil
	}
	t, err := r.shared(peer)
	if err != nil {
		return nil, err
	}
	r.aeMu.Lock()
	r.aeTrees[peer] = &aeCached{round: round, at: time.Now(), tree: t}
	r.aeMu.Unlock()
	return t, nil
}

type aeCached struct {
	round string
	at    time.Time
	tree  *aeTree
}

// peerUp runs a round with a node gossip has just seen join or come back
// (after a partition or a restart) without waiting for the next tick.
// Gossip calls it; it never blocks.
func (r *replicator) peerUp(node string) {
	select {
	case r.aeKick <- node:
	default: // the next tick will do
	}
}

// antiEntropy runs rounds with every alive peer every aeEvery, and with a
// peer that has just come up at once, until ctx ends.
func (r *replicator) antiEntropy(ctx context.Context) error {
	t := time.NewTicker(aeEvery)
	defer t.Stop()
	for {
		only := ""
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case only = <-r.aeKick:
		}
		if !r.ctl.ready.Load() || r.caughtUp != nil && !r.caughtUp() {
			continue // a conversation erased meanwhile may still be here
		}
		for _, m := range r.mem.Members() {
			if m.ID == r.node || only != "" && m.ID != only {
				continue
			}
			if err := r.aeRound(ctx, m); err != nil && ctx.Err() == nil {
				r.log.Debug("anti-entropy round failed", "peer", m.ID, "err", err)
			}
		}
	}
}

// aeRound makes sure peer has every event this node has of the
// conversations they share.
func (r *replicator) aeRound(ctx context.Context, peer membership.Member) error {
	r.ae.rounds.Inc()
	t, err := r.shared(peer.ID)
	if err != nil || len(t.convs) == 0 {
		return err
	}
	round := fmt.Sprintf("%s/%d", r.node, time.Now().UnixNano())
	// Descend the tree where it differs, one request per level (or per
	// aeMaxHashes nodes), collecting the conversations of small nodes.
	var leaves []convVector
	nodes := []uint32{0}
	for level := 0; len(nodes) > 0; level++ {
		var next []uint32
		for len(nodes) > 0 {
			batch := nodes[:min(len(nodes), aeMaxHashes)]
			nodes = nodes[len(batch):]
			req := aeTreeRequest{From: r.node, Round: round, Level: level, Hashes: make(map[uint32]string, len(batch))}
			for _, i := range batch {
				req.Hashes[i] = t.hash(level, i)
			}
			var differ []uint32
			if err := r.aeCall(ctx, peer, pathAETree, "buckets", req, &differ); err != nil {
				return err
			}
			for _, i := range differ {
				if _, ok := req.Hashes[i]; !ok {
					continue
				}
				lo, hi := t.span(level, i)
				if hi-lo <= aeLeaf || level == aeDepth {
					leaves = append(leaves, t.convs[lo:hi]...)
					continue
				}
				for c := range uint32(1 << aeBits) {
					child := i<<aeBits | c
					if lo, hi := t.span(level+1, child); lo < hi {
						next = append(next, child)
					}
				}
			}
		}
		nodes = next
	}
	// The frontiers of those conversations, and each origin's missing
	// range of the ones the peer lacks events of.
	for len(leaves) > 0 {
		batch := leaves[:min(len(leaves), aeMaxVectors)]
		leaves = leaves[len(batch):]
		var needs []aeNeed
		if err := r.aeCall(ctx, peer, pathAEVectors, "vectors", aeVectorsRequest{From: r.node, Convs: batch}, &needs); err != nil {
			return err
		}
		if err := r.sendRanges(ctx, peer, needs); err != nil {
			return err
		}
	}
	return nil
}

// aeTreeRequest carries the hashes of some nodes of one level of the
// sender's tree; the reply lists those that differ from the receiver's.
type aeTreeRequest struct {
	From   string            `json:"from"`
	Round  string            `json:"round"`
	Level  int               `json:"level"`
	Hashes map[uint32]string `json:"h"`
}

type aeVectorsRequest struct {
	From  string       `json:"from"`
	Convs []convVector `json:"convs"`
}

// aeNeed is what a peer lacks: an origin's events of a conversation from
// an oseq on.
type aeNeed struct {
	Workspace    string `json:"ws"`
	Conversation string `json:"conv"`
	Origin       string `json:"origin"`
	From         uint64 `json:"from"`
}

// aeRange is one origin's events of a conversation from From to To: the
// oseqs in between without an event changed nothing at the sender.
type aeRange struct {
	Conversation store.Conversation `json:"c"`
	Origin       string             `json:"origin"`
	From         uint64             `json:"from"`
	To           uint64             `json:"to"`
	Events       []eventAt          `json:"events"`
}

type eventAt struct {
	OSeq    uint64       `json:"oseq"`
	Message crdt.Message `json:"m"`
}

// aeRanges is a range request: ranges of several conversations.
type aeRanges struct {
	Ranges []aeRange `json:"ranges"`
}

func (r *replicator) aeCall(ctx context.Context, peer membership.Member, path, phase string, req, reply any) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	r.ae.bytes.WithLabelValues(phase).Add(float64(len(b)))
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := r.peers.post(cctx, peer.RaftAddr, path, b)
	if err != nil {
		return err
	}
	r.ae.bytes.WithLabelValues(phase).Add(float64(len(out)))
	if reply == nil {
		return nil
	}
	return json.Unmarshal(out, reply)
}

// sendRanges sends peer, for each need, this node's events of that origin
// from need.From up to its durable frontier, and that frontier: ranges of
// several conversations share a request, up to aeMaxRange bytes of events.
func (r *replicator) sendRanges(ctx context.Context, peer membership.Member, needs []aeNeed) error {
	var req aeRanges
	size := 0
	flush := func() error {
		if len(req.Ranges) == 0 {
			return nil
		}
		n := 0
		for _, rg := range req.Ranges {
			n += len(rg.Events)
		}
		r.ae.repaired.Add(float64(n))
		r.log.Info("anti-entropy: sending a replica what it lacks", "peer", peer.ID, "conversations", len(req.Ranges), "events", n)
		err := r.aeCall(ctx, peer, pathAERange, "range", req, nil)
		req, size = aeRanges{}, 0
		return err
	}
	for _, n := range needs {
		f, err := r.st.Frontier(n.Workspace, n.Conversation)
		if err != nil {
			continue // erased meanwhile, or never held
		}
		to := f[n.Origin]
		if to < n.From {
			continue
		}
		c, err := r.record(n.Workspace, n.Conversation)
		if err != nil {
			continue
		}
		for from := n.From; from <= to; {
			evs, err := r.st.OriginEvents(n.Workspace, n.Conversation, n.Origin, from, 512)
			if err != nil {
				return err
			}
			rg := aeRange{Conversation: c, Origin: n.Origin, From: from, To: to}
			for _, e := range evs {
				if e.Stamp.OSeq > to {
					break // not durable here yet: next round
				}
				if size >= aeMaxRange {
					rg.To = e.Stamp.OSeq - 1 // the rest in the next request
					break
				}
				rg.Events = append(rg.Events, eventAt{OSeq: e.Stamp.OSeq, Message: e.Message})
				size += 160 + len(e.Message.ID) + len(e.Message.Body) + len(e.Message.Author) + len(e.Message.Name)
			}
			if len(evs) == 512 && rg.To == to && len(rg.Events) == len(evs) {
				rg.To = rg.Events[len(rg.Events)-1].OSeq // more events than one read
			}
			if rg.To >= rg.From || len(rg.Events) > 0 {
				req.Ranges = append(req.Ranges, rg)
				size += 128
			}
			from = rg.To + 1
			if size >= aeMaxRange {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// aeRoutes serves the peer side of anti-entropy.
func (r *replicator) aeRoutes(mux *http.ServeMux, signed func(func(http.ResponseWriter, *http.Request, []byte)) http.HandlerFunc) {
	mux.HandleFunc("POST "+pathAETree, signed(func(w http.ResponseWriter, req *http.Request, body []byte) {
		var in aeTreeRequest
		if err := json.Unmarshal(body, &in); err != nil || in.Level < 0 || in.Level > aeDepth {
			http.Error(w, fmt.Sprintf("bad tree request: %v", err), http.StatusBadRequest)
			return
		}
		mine, err := r.treeFor(in.From, in.Round)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		differ := []uint32{}
		for i, h := range in.Hashes {
			if in.Level == 0 && i != 0 || in.Level > 0 && uint64(i) >= 1<<(aeBits*in.Level) {
				continue
			}
			if mine.hash(in.Level, i) != h {
				differ = append(differ, i)
			}
		}
		slices.Sort(differ)
		json.NewEncoder(w).Encode(differ)
	}))
	mux.HandleFunc("POST "+pathAEVectors, signed(func(w http.ResponseWriter, req *http.Request, body []byte) {
		var in aeVectorsRequest
		if err := json.Unmarshal(body, &in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		needs := []aeNeed{}
		for _, cv := range in.Convs {
			if r.ctl.serves(cv.Workspace) != nil {
				continue // never pull a pinned workspace outside its region, nor one unknown or deleted here
			}
			have, err := r.st.Frontier(cv.Workspace, cv.Conversation)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				continue
			}
			for o, n := range cv.Vector {
				if have[o] < n {
					needs = append(needs, aeNeed{Workspace: cv.Workspace, Conversation: cv.Conversation, Origin: o, From: have[o] + 1})
				}
			}
		}
		json.NewEncoder(w).Encode(needs)
	}))
	mux.HandleFunc("POST "+pathAERange, signed(func(w http.ResponseWriter, req *http.Request, body []byte) {
		var in aeRanges
		if err := json.Unmarshal(body, &in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := r.applyRanges(req.Context(), in.Ranges); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("{}"))
	}))
}

// aeApplyers bounds the conversations whose ranges are applied at once:
// their commits share fsyncs.
const aeApplyers = 16

// applyRanges stores the ranges of a request: the ranges of one
// conversation in order, several conversations at once.
func (r *replicator) applyRanges(ctx context.Context, rgs []aeRange) error {
	var order []string
	by := map[string][]aeRange{}
	for _, rg := range rgs {
		k := rg.Conversation.Workspace + "\x00" + rg.Conversation.ID
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], rg)
	}
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, aeApplyers)
	var wg sync.WaitGroup
	for _, k := range order {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			for _, rg := range by[k] {
				if err := r.applyRange(ctx, rg); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// applyRange stores an origin's range sent by anti-entropy: its events in
// order, each published at once and all committed together, then the
// origin's frontier at the range's end.
func (r *replicator) applyRange(ctx context.Context, rg aeRange) error {
	c := rg.Conversation
	if err := r.servesCaughtUp(ctx, c.Workspace); err != nil {
		return fmt.Errorf("not stored here: %w", err)
	}
	if err := r.newBeforeCatchUp(c.Workspace, c.ID); err != nil {
		return err
	}
	// The gate's positions of this conversation are stale afterwards.
	defer r.gate.Forget(c.Workspace, c.ID)
	start := time.Now()
	have, err := r.have(c.Workspace, c.ID, rg.Origin)
	if err != nil {
		return err
	}
	var waits []<-chan error
	wait := func() error {
		var errs []error
		for _, d := range waits {
			if err := <-d; err != nil {
				errs = append(errs, err)
			}
		}
		waits = nil
		return errors.Join(errs...)
	}
	for _, e := range rg.Events {
		if e.OSeq < rg.From || e.OSeq > rg.To || e.Message.ID == "" {
			return errors.Join(fmt.Errorf("range event %d outside %d..%d", e.OSeq, rg.From, rg.To), wait())
		}
		if e.OSeq <= have {
			continue
		}
		if e.OSeq != have+1 {
			// The oseqs in between changed nothing at the sender: advance
			// past them first, once what precedes is stored.
			if err := wait(); err != nil {
				return err
			}
			if err := r.st.AdvanceOrigin(ctx, c.Workspace, c.ID, rg.Origin, e.OSeq-1); err != nil {
				return err
			}
		}
		res, durable, err := r.st.ApplyRemoteAsync(ctx, store.Remote{Conversation: c, Stamp: store.Stamp{Origin: rg.Origin, OSeq: e.OSeq}, Message: e.Message, Start: start})
		if err != nil {
			return errors.Join(err, wait())
		}
		r.uncount(c.Workspace, res)
		waits = append(waits, durable)
		have = e.OSeq
	}
	if err := wait(); err != nil {
		return err
	}
	if have >= rg.To {
		return nil
	}
	if _, err := r.st.Frontier(c.Workspace, c.ID); err != nil {
		return nil // nothing of it here: nothing to advance
	}
	return r.st.AdvanceOrigin(ctx, c.Workspace, c.ID, rg.Origin, rg.To)
}
