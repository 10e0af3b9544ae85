package replication

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"parley/cluster/membership"
	"parley/crdt"
	"parley/store"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"
)

// ReplicationFactor is how many nodes of a workspace's region hold each of
// its conversations.
const ReplicationFactor = 3

// Replicator is the data plane between nodes: events this node originates
// go, the moment they are decided, to the other replicas of their
// conversation (placement over the alive nodes of the workspace's region)
// and to the nodes serving its participants (fanout.go); events from peers
// pass the gate (each origin's once, in order) into the store, which
// publishes them to this node's clients like its own (inbound.go). A
// sender's ack waits for a second replica when one is alive (ack.go).
// Anti-entropy (antientropy.go) repairs what the links lost; presence,
// typing, views and receipts travel as signals (signal.go), and saved
// replies are kept in step between nodes (replies.go).
type Replicator struct {
	cfg   Config
	log   *slog.Logger
	st    Store
	links *Links
	gate  *Gate
	// life ends when Run's context does: the inbound links and the
	// background repairs of serving nodes end with it.
	life context.Context
	stop context.CancelFunc
	// gw is the gateway Run was given; nil before Run.
	gw atomic.Pointer[gatewayRef]

	mu   sync.Mutex
	acks map[ackKey]*ackWait // own events' replica answers, until confirmed

	records records
	ae      *antiEntropy
	replies *savedReplies
	// fetches and fetchSlots: the conversations being fetched on demand
	// (fetch.go), one exchange each, at most maxFetches at once.
	fetches    singleflight.Group
	fetchSlots chan struct{}
	// resyncs carries the nodes to send this node's presence to (resync):
	// those that joined or came back, and those that asked; gossip's
	// callback must not block.
	resyncs chan resyncReq
}

type gatewayRef struct{ Gateway }

// New returns a Replicator; Run starts it.
func New(cfg Config) *Replicator {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Meter == nil {
		cfg.Meter = noMeter{}
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	life, stop := context.WithCancel(context.Background())
	r := &Replicator{cfg: cfg, log: cfg.Logger, st: cfg.Store, life: life, stop: stop,
		acks: map[ackKey]*ackWait{}, records: records{st: cfg.Store, byKey: map[string]store.Conversation{}},
		resyncs: make(chan resyncReq, 64), fetchSlots: make(chan struct{}, maxFetches)}
	r.gate = NewGate(r.have, 0)
	r.links = NewLinks(LinksConfig{Self: cfg.Self, Dial: r.dial, Store: r.Apply, Logger: cfg.Logger, OnSignal: r.onSignal, Tracer: cfg.Tracer})
	cfg.Registerer.MustRegister(r.links.Collector())
	r.ae = newAntiEntropy(r, cfg.Registerer)
	r.replies = &savedReplies{self: cfg.Self, region: cfg.Region, st: cfg.Store, ctl: cfg.Control, mem: cfg.Members,
		signal: r.links.Signal, onReplies: cfg.OnReplies, log: cfg.Logger, in: make(chan repliesFrom, 64)}
	return r
}

// Run runs the links, the sweep of unanswered acks, presence resyncs,
// saved-reply sync and anti-entropy until ctx ends; gw is this node's
// gateway, whose presence says which nodes serve a conversation.
func (r *Replicator) Run(ctx context.Context, gw Gateway) error {
	defer r.stop()
	stop := context.AfterFunc(ctx, r.stop)
	defer stop()
	r.gw.Store(&gatewayRef{gw})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.links.Run(gctx) })
	g.Go(func() error { return r.ae.run(gctx) })
	g.Go(func() error {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		rt := time.NewTicker(repliesEvery)
		defer rt.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case now := <-t.C:
				r.sweep(now)
			case req := <-r.resyncs:
				r.resync(req)
				r.replies.sendDigests(req.node)
			case in := <-r.replies.in:
				r.replies.onSignal(in.from, in.b)
			case <-rt.C:
				r.replies.sendDigests("")
			}
		}
	})
	return g.Wait()
}

// gateway is the gateway Run was given, nil before.
func (r *Replicator) gateway() Gateway {
	if p := r.gw.Load(); p != nil {
		return p.Gateway
	}
	return nil
}

// PeerUp is gossip's callback for a node that joined or came back (after a
// partition or a restart): an anti-entropy round with it now, and this
// node's presence for it. It never blocks.
func (r *Replicator) PeerUp(id string) {
	r.ae.kickPeer(id)
	r.queueResync(resyncReq{node: id, ask: true})
}

// ReplyChanged sends a saved reply just saved or deleted here to the other
// nodes serving its workspace.
func (r *Replicator) ReplyChanged(ws string, rep store.Reply) { r.replies.changed(ws, rep) }

// payload is what an event carries between nodes: the conversation's record
// (a replica may not have it yet) and the message's state.
type payload struct {
	Conversation store.Conversation `json:"c"`
	Message      crdt.Message       `json:"m"`
}

func (r *Replicator) encode(e store.Event) (Event, error) {
	c, err := r.records.get(e.Workspace, e.Conversation)
	if err != nil {
		return Event{}, err
	}
	b, err := json.Marshal(payload{Conversation: c, Message: e.Message})
	if err != nil {
		return Event{}, err
	}
	return Event{Workspace: e.Workspace, Conversation: e.Conversation, Origin: e.Stamp.Origin, OSeq: e.Stamp.OSeq, Payload: b}, nil
}

// Forget drops an erased conversation's record from the cache.
func (r *Replicator) Forget(ws, conv string) { r.records.forget(ws, conv) }

// replicas are the other nodes that hold a conversation.
func (r *Replicator) replicas(ws, conv string) []membership.Member {
	var out []membership.Member
	for _, m := range membership.Replicas(r.cfg.Members.Members(), conv, r.cfg.Control.Region(ws), ReplicationFactor) {
		if m.ID != r.cfg.Self {
			out = append(out, m)
		}
	}
	return out
}

// member is the alive member id, if it is one.
func (r *Replicator) member(id string) (membership.Member, bool) {
	ms := r.cfg.Members.Members()
	if i := slices.IndexFunc(ms, func(m membership.Member) bool { return m.ID == id }); i >= 0 {
		return ms[i], true
	}
	return membership.Member{}, false
}
