package node

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"sort"
	"time"

	"parley/cluster/membership"
	"parley/cluster/replication"
	"parley/store"

	"github.com/prometheus/client_golang/prometheus"
)

// Anti-entropy is the backstop of replication: every round, this node makes
// sure each other replica has every event it has of the conversations they
// share, whatever links broke meanwhile. It compares hashes of buckets of
// frontiers first, then the frontiers of the buckets that differ, then
// sends each origin's missing range, so the bytes exchanged grow with the
// difference, not with the number of conversations.
const (
	pathAEBuckets = "/internal/v1/ae/buckets"
	pathAEVectors = "/internal/v1/ae/vectors"
	pathAERange   = "/internal/v1/ae/range"

	aeBuckets = 256
	// aeEvery is the time between rounds; a round with a peer stops early
	// when nothing differs.
	aeEvery = 2 * time.Second
)

type aeMetrics struct {
	bytes    *prometheus.CounterVec
	repaired prometheus.Counter
	rounds   prometheus.Counter
}

func newAEMetrics(reg prometheus.Registerer) *aeMetrics {
	m := &aeMetrics{
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_antientropy_bytes_total", Help: "Bytes of anti-entropy requests sent and replies received, by phase.",
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

// shared lists the frontiers of the conversations this node and peer both
// hold by this node's view of placement, by bucket.
func (r *replicator) shared(peer string) (map[int][]convVector, error) {
	members := r.mem.Members()
	out := map[int][]convVector{}
	err := r.st.Frontiers(func(ws, conv string, f map[string]uint64) {
		if !r.holdsWith(members, ws, conv, peer) {
			return
		}
		b := bucketOf(ws, conv)
		out[b] = append(out[b], convVector{Workspace: ws, Conversation: conv, Vector: f})
	})
	return out, err
}

// holdsWith says whether placement puts a conversation on both this node
// and peer.
func (r *replicator) holdsWith(members []membership.Member, ws, conv, peer string) bool {
	region := ""
	if w, err := r.ctl.c.Workspace(ws); err == nil {
		region = w.Region
	}
	me, them := false, false
	for _, m := range membership.Replicas(members, conv, region, replicationFactor) {
		me = me || m.ID == r.node
		them = them || m.ID == peer
	}
	return me && them
}

func bucketOf(ws, conv string) int {
	h := fnv.New32a()
	h.Write([]byte(ws))
	h.Write([]byte{0})
	h.Write([]byte(conv))
	return int(h.Sum32() % aeBuckets)
}

// bucketHash digests a bucket's frontiers, in a canonical order.
func bucketHash(cvs []convVector) string {
	sort.Slice(cvs, func(i, j int) bool {
		if cvs[i].Workspace != cvs[j].Workspace {
			return cvs[i].Workspace < cvs[j].Workspace
		}
		return cvs[i].Conversation < cvs[j].Conversation
	})
	h := sha256.New()
	for _, cv := range cvs {
		fmt.Fprintf(h, "%s\x00%s\x00%s\n", cv.Workspace, cv.Conversation, replication.Vector(cv.Vector).String())
	}
	return fmt.Sprintf("%x", h.Sum(nil)[:12])
}

// antiEntropy runs rounds with every alive peer until ctx ends.
func (r *replicator) antiEntropy(ctx context.Context) error {
	t := time.NewTicker(aeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if !r.ctl.ready.Load() {
			continue
		}
		for _, m := range r.mem.Members() {
			if m.ID == r.node {
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
	mine, err := r.shared(peer.ID)
	if err != nil {
		return err
	}
	hashes := map[int]string{}
	for b, cvs := range mine {
		hashes[b] = bucketHash(cvs)
	}
	var differ []int
	if err := r.aeCall(ctx, peer, pathAEBuckets, "buckets", aeBucketsRequest{From: r.node, Hashes: hashes}, &differ); err != nil {
		return err
	}
	for _, b := range differ {
		var needs []aeNeed
		if err := r.aeCall(ctx, peer, pathAEVectors, "vectors", aeVectorsRequest{From: r.node, Convs: mine[b]}, &needs); err != nil {
			return err
		}
		for _, n := range needs {
			if err := r.sendRange(ctx, peer, n); err != nil {
				return err
			}
		}
	}
	return nil
}

type aeBucketsRequest struct {
	From   string         `json:"from"`
	Hashes map[int]string `json:"hashes"`
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

type aeRange struct {
	Conversation store.Conversation `json:"c"`
	Origin       string             `json:"origin"`
	From         uint64             `json:"from"`
	To           uint64             `json:"to"`
	Events       []payloadAt        `json:"events"`
}

type payloadAt struct {
	OSeq    uint64  `json:"oseq"`
	Payload payload `json:"p"`
}

func (r *replicator) aeCall(ctx context.Context, peer membership.Member, path, phase string, req, reply any) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	r.ae.bytes.WithLabelValues(phase).Add(float64(len(b)))
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := r.peers.post(cctx, peer.HTTPAddr, path, b)
	if err != nil {
		return err
	}
	r.ae.bytes.WithLabelValues(phase).Add(float64(len(out)))
	if reply == nil {
		return nil
	}
	return json.Unmarshal(out, reply)
}

// sendRange sends peer this node's events of one origin from n.From up to
// its durable frontier, and that frontier.
func (r *replicator) sendRange(ctx context.Context, peer membership.Member, n aeNeed) error {
	f, err := r.st.Frontier(n.Workspace, n.Conversation)
	if err != nil {
		return err
	}
	to := f[n.Origin]
	if to < n.From {
		return nil
	}
	c, err := r.record(n.Workspace, n.Conversation)
	if err != nil {
		return err
	}
	evs, err := r.st.OriginEvents(n.Workspace, n.Conversation, n.Origin, n.From, 4096)
	if err != nil {
		return err
	}
	rg := aeRange{Conversation: c, Origin: n.Origin, From: n.From, To: to}
	for _, e := range evs {
		if e.Stamp.OSeq > to {
			break // not durable here yet: next round
		}
		rg.Events = append(rg.Events, payloadAt{OSeq: e.Stamp.OSeq, Payload: payload{Conversation: c, Message: e.Message}})
	}
	if len(rg.Events) == 4096 {
		rg.To = rg.Events[len(rg.Events)-1].OSeq // the rest next round
	}
	r.ae.repaired.Add(float64(len(rg.Events)))
	r.log.Info("anti-entropy: sending a replica what it lacks", "peer", peer.ID, "conversation", n.Conversation, "origin", n.Origin, "from", n.From, "to", rg.To, "events", len(rg.Events))
	return r.aeCall(ctx, peer, pathAERange, "range", rg, nil)
}

// aeRoutes serves the peer side of anti-entropy.
func (r *replicator) aeRoutes(mux *http.ServeMux, signed func(func(http.ResponseWriter, *http.Request, []byte)) http.HandlerFunc) {
	mux.HandleFunc("POST "+pathAEBuckets, signed(func(w http.ResponseWriter, req *http.Request, body []byte) {
		var in aeBucketsRequest
		if err := json.Unmarshal(body, &in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mine, err := r.shared(in.From)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		differ := []int{}
		for b, h := range in.Hashes {
			if b < 0 || b >= aeBuckets {
				continue
			}
			if bucketHash(mine[b]) != h {
				differ = append(differ, b)
			}
		}
		sort.Ints(differ)
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
			if w, err := r.ctl.c.Workspace(cv.Workspace); err == nil && w.Region != "" && w.Region != r.ctl.cfg.Region {
				continue // never pull a pinned workspace outside its region
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
		var rg aeRange
		if err := json.Unmarshal(body, &rg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := r.applyRange(req.Context(), rg); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("{}"))
	}))
}

// applyRange stores an origin's range sent by anti-entropy: its events in
// order, then the origin's frontier at the range's end.
func (r *replicator) applyRange(ctx context.Context, rg aeRange) error {
	c := rg.Conversation
	if w, err := r.ctl.c.Workspace(c.Workspace); err == nil && w.Region != "" && w.Region != r.ctl.cfg.Region {
		return fmt.Errorf("workspace %s is pinned to %s: not stored here", c.Workspace, w.Region)
	}
	start := time.Now()
	for _, e := range rg.Events {
		if e.OSeq < rg.From || e.OSeq > rg.To || e.Payload.Message.ID == "" {
			return fmt.Errorf("range event %d outside %d..%d", e.OSeq, rg.From, rg.To)
		}
		have, err := r.have(c.Workspace, c.ID, rg.Origin)
		if err != nil {
			return err
		}
		if e.OSeq <= have {
			continue
		}
		if e.OSeq != have+1 {
			// The oseqs in between changed nothing at the sender: advance
			// past them first.
			if err := r.st.AdvanceOrigin(ctx, c.Workspace, c.ID, rg.Origin, e.OSeq-1); err != nil {
				return err
			}
		}
		if _, err := r.st.ApplyRemote(ctx, store.Remote{Conversation: c, Stamp: store.Stamp{Origin: rg.Origin, OSeq: e.OSeq}, Message: e.Payload.Message, Start: start}); err != nil {
			return err
		}
	}
	if _, err := r.st.Frontier(c.Workspace, c.ID); err == nil {
		if err := r.st.AdvanceOrigin(ctx, c.Workspace, c.ID, rg.Origin, rg.To); err != nil {
			return err
		}
	}
	// The gate's positions of this conversation are stale now.
	r.gate.Forget(c.Workspace, c.ID)
	return nil
}
