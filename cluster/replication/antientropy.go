package replication

import (
	"context"
	"encoding/json"
	"fmt"
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
// the leaves of a hash tree keyed by a hash of their names (tree.go: 16
// children per node, each node the XOR of its leaves' digests of name and
// frontier): the round compares the root first, then the children of the
// nodes that differ, level by level, down to nodes of at most treeLeaf
// conversations, whose frontiers it sends; for each conversation the peer
// lacks events of, it sends each origin's missing range. Equal states cost
// one hash; a difference of D conversations costs about D paths of the
// tree, D frontiers and the missing events, whatever the number of
// conversations. The peer's side is antientropy_peer.go.
const (
	pathTree    = "/internal/v1/ae/tree"
	pathVectors = "/internal/v1/ae/vectors"
	pathRange   = "/internal/v1/ae/range"

	// maxHashes and maxVectors bound one request, and maxRangeBytes the
	// events' bytes of one range request, below the node's bound on an
	// internal request's body (128 KiB).
	maxHashes     = 2048
	maxVectors    = 512
	maxRangeBytes = 64 << 10
	// roundEvery is the time between rounds; a round with a peer stops
	// early when nothing differs.
	roundEvery = 2 * time.Second
	// callTimeout bounds one request of a round.
	callTimeout = 10 * time.Second
)

// antiEntropy runs this node's rounds and answers its peers'.
type antiEntropy struct {
	r       *Replicator
	metrics antiEntropyMetrics

	mu    sync.Mutex
	trees map[string]*cachedTree // by peer: the tree of its current round
	// kick carries peers just up: a round with them now.
	kick chan string
}

type antiEntropyMetrics struct {
	bytes    *prometheus.CounterVec
	repaired prometheus.Counter
	rounds   prometheus.Counter
}

func newAntiEntropy(r *Replicator, reg prometheus.Registerer) *antiEntropy {
	m := antiEntropyMetrics{
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_antientropy_bytes_total", Help: "Bytes of anti-entropy requests sent and replies received, by phase (buckets: the hash tree; vectors; range: the events; fetch: a conversation asked for on demand).",
		}, []string{"phase"}),
		repaired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_antientropy_events_sent_total", Help: "Events sent to replicas that lacked them.",
		}),
		rounds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_antientropy_rounds_total", Help: "Anti-entropy rounds with a peer.",
		}),
	}
	for _, phase := range []string{"buckets", "vectors", "range", "fetch"} {
		m.bytes.WithLabelValues(phase) // exported from the start, at 0
	}
	reg.MustRegister(m.bytes, m.repaired, m.rounds)
	return &antiEntropy{r: r, metrics: m, trees: map[string]*cachedTree{}, kick: make(chan string, 16)}
}

// kickPeer runs a round with a node gossip has just seen join or come back
// without waiting for the next tick. It never blocks.
func (a *antiEntropy) kickPeer(node string) {
	select {
	case a.kick <- node:
	default: // the next tick will do
	}
}

// run runs rounds with every alive peer every roundEvery, and with a peer
// that has just come up at once, until ctx ends.
func (a *antiEntropy) run(ctx context.Context) error {
	r := a.r
	t := time.NewTicker(roundEvery)
	defer t.Stop()
	for {
		only := ""
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case only = <-a.kick:
		}
		if !r.cfg.Control.Ready() || r.cfg.CaughtUp != nil && !r.cfg.CaughtUp() {
			continue // a conversation erased meanwhile may still be here
		}
		for _, m := range r.cfg.Members.Members() {
			if m.ID == r.cfg.Self || only != "" && m.ID != only {
				continue
			}
			if err := a.round(ctx, m); err != nil && ctx.Err() == nil {
				r.log.Debug("anti-entropy round failed", "peer", m.ID, "err", err)
			}
		}
	}
}

// round makes sure peer has every event this node has of the
// conversations they share.
func (a *antiEntropy) round(ctx context.Context, peer membership.Member) error {
	a.metrics.rounds.Inc()
	t, err := a.shared(peer.ID)
	if err != nil || len(t.convs) == 0 {
		return err
	}
	round := fmt.Sprintf("%s/%d", a.r.cfg.Self, time.Now().UnixNano())
	// Descend the tree where it differs, one request per level (or per
	// maxHashes nodes), collecting the conversations of small nodes.
	var leaves []convVector
	nodes := []uint32{0}
	for level := 0; len(nodes) > 0; level++ {
		var next []uint32
		for len(nodes) > 0 {
			batch := nodes[:min(len(nodes), maxHashes)]
			nodes = nodes[len(batch):]
			req := treeRequest{From: a.r.cfg.Self, Round: round, Level: level, Hashes: make(map[uint32]string, len(batch))}
			for _, i := range batch {
				req.Hashes[i] = t.hash(level, i)
			}
			var differ []uint32
			if err := a.call(ctx, peer, pathTree, "buckets", req, &differ); err != nil {
				return err
			}
			for _, i := range differ {
				if _, ok := req.Hashes[i]; !ok {
					continue
				}
				lo, hi := t.span(level, i)
				if hi-lo <= treeLeaf || level == treeDepth {
					leaves = append(leaves, t.convs[lo:hi]...)
					continue
				}
				for c := range uint32(1 << treeBits) {
					child := i<<treeBits | c
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
		batch := leaves[:min(len(leaves), maxVectors)]
		leaves = leaves[len(batch):]
		var needs []need
		if err := a.call(ctx, peer, pathVectors, "vectors", vectorsRequest{From: a.r.cfg.Self, Convs: batch}, &needs); err != nil {
			return err
		}
		if err := a.sendRanges(ctx, peer, needs); err != nil {
			return err
		}
	}
	return nil
}

// convVector is one conversation's frontier.
type convVector struct {
	Workspace    string            `json:"ws"`
	Conversation string            `json:"conv"`
	Vector       map[string]uint64 `json:"v"`
}

// treeRequest carries the hashes of some nodes of one level of the
// sender's tree; the reply lists those that differ from the receiver's.
type treeRequest struct {
	From   string            `json:"from"`
	Round  string            `json:"round"`
	Level  int               `json:"level"`
	Hashes map[uint32]string `json:"h"`
}

type vectorsRequest struct {
	From  string       `json:"from"`
	Convs []convVector `json:"convs"`
}

// need is what a peer lacks: an origin's events of a conversation from an
// oseq on.
type need struct {
	Workspace    string `json:"ws"`
	Conversation string `json:"conv"`
	Origin       string `json:"origin"`
	From         uint64 `json:"from"`
}

// originRange is one origin's events of a conversation from From to To:
// the oseqs in between without an event changed nothing at the sender.
type originRange struct {
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

// rangesRequest is a range request: ranges of several conversations.
type rangesRequest struct {
	Ranges []originRange `json:"ranges"`
}

// call posts req to path on peer and decodes its reply into reply (unless
// nil), counting the bytes both ways under phase.
func (a *antiEntropy) call(ctx context.Context, peer membership.Member, path, phase string, req, reply any) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	a.metrics.bytes.WithLabelValues(phase).Add(float64(len(b)))
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, err := a.r.cfg.Peers.Post(cctx, peer.RaftAddr, path, b)
	if err != nil {
		return err
	}
	a.metrics.bytes.WithLabelValues(phase).Add(float64(len(out)))
	if reply == nil {
		return nil
	}
	return json.Unmarshal(out, reply)
}

// sendRanges sends peer, for each need, this node's events of that origin
// from need.From up to its durable frontier, and that frontier: ranges of
// several conversations share a request, up to maxRangeBytes of events.
func (a *antiEntropy) sendRanges(ctx context.Context, peer membership.Member, needs []need) error {
	st := a.r.st
	var req rangesRequest
	size := 0
	flush := func() error {
		if len(req.Ranges) == 0 {
			return nil
		}
		n := 0
		for _, rg := range req.Ranges {
			n += len(rg.Events)
		}
		a.metrics.repaired.Add(float64(n))
		a.r.log.Info("anti-entropy: sending a replica what it lacks", "peer", peer.ID, "conversations", len(req.Ranges), "events", n)
		err := a.call(ctx, peer, pathRange, "range", req, nil)
		req, size = rangesRequest{}, 0
		return err
	}
	for _, n := range needs {
		f, err := st.Frontier(n.Workspace, n.Conversation)
		if err != nil {
			continue // erased meanwhile, or never held
		}
		to := f[n.Origin]
		if to < n.From {
			continue
		}
		c, err := a.r.records.get(n.Workspace, n.Conversation)
		if err != nil {
			continue
		}
		for from := n.From; from <= to; {
			evs, err := st.OriginEvents(n.Workspace, n.Conversation, n.Origin, from, 512)
			if err != nil {
				return err
			}
			rg := originRange{Conversation: c, Origin: n.Origin, From: from, To: to}
			for _, e := range evs {
				if e.Stamp.OSeq > to {
					break // not durable here yet: next round
				}
				if size >= maxRangeBytes {
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
			if size >= maxRangeBytes {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}
