package node

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"parley/cluster/membership"
	"parley/cluster/replication"
	"parley/crdt"
	"parley/gateway"
	"parley/store"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// pathRepl is the internal WebSocket a node opens to another to send it
// events: one per ordered pair of nodes (package replication).
const pathRepl = "/internal/v1/repl"

// replicationFactor is how many nodes of a workspace's region hold each of
// its conversations.
const replicationFactor = 3

// replicator wires package replication into the node: events this node
// originates go, the moment they are decided, to the other replicas of their
// conversation (placement over the alive nodes of the workspace's region);
// events from peers pass the gate (each origin's once, in order) into the
// store, which publishes them to this node's clients like its own.
//
// A sender's ack waits for a second replica when one is alive
// (replicatedStore). Anti-entropy (antientropy.go) repairs what the links
// lost; presence, typing, views and receipts travel as signals.
type replicator struct {
	node  string
	log   *slog.Logger
	st    *store.Store
	ctl   *control
	mem   *membership.Membership
	repl  *replication.Links
	gate  *replication.Gate
	peers *peerClient
	ctx   context.Context // the node's; inbound links end with it

	mu   sync.Mutex
	acks map[ackKey]*ackWait // own events' replica answers, until confirmed

	recMu   sync.Mutex
	records map[string]store.Conversation // see record

	ae      *aeMetrics
	aeMu    sync.Mutex
	aeTrees map[string]*aeCached // by peer: the tree of its current round
	aeKick  chan string          // peers just up: a round with them now
	gw      *gateway.Server      // set once the gateway exists, before serving
	// meter counts usage; uncount takes back a message counted twice.
	meter gateway.Meter
	// delay is Config.FaultReplDelay.
	delay time.Duration
	// erase erases a conversation here (and from the embeddings); set
	// before serving.
	erase func(ctx context.Context, ws, conv string) error
	// caughtUp says whether this node has applied the control plane's
	// erasures since it started (erasures.caughtUp); until then it takes
	// no conversation it does not hold from a peer. Set before serving.
	caughtUp func() bool
	// joined carries the nodes to send this node's presence to (resync):
	// those that joined or came back, and those that asked; gossip's
	// callback must not block.
	joined chan resyncReq
	// onReplies is told of saved replies another node's signal changed
	// here (the embedding index follows); set before serving.
	onReplies func(ws string, applied []store.Reply)
	// catchUp waits until this node applied what the leader had committed
	// (clusterAuth.catchUp), reporting whether it applied anything new;
	// set before serving.
	catchUp func(context.Context) bool
	// repliesIn carries saved-reply signals from the links' readers to the
	// run loop: merging them waits for an fsync and embedding them for the
	// model, which must not hold up the messages behind them on a link.
	repliesIn chan repliesFrom
}

type repliesFrom struct {
	from string
	b    []byte
}

// resyncReq asks resync to send this node's presence to a node, and with
// ask, to ask that node for its own.
type resyncReq struct {
	node string
	ask  bool
}

// Signals between nodes are JSON objects whose "k" is their kind. The
// gateway's are of one participant each (gateway.Signal: SignalLease,
// SignalView, SignalTyping, SignalRead); the node's own are these, and the
// saved replies' (replies.go). A kind this node does not know is dropped.
const (
	// signalResync asks a node for its presence: one that comes back may
	// find that this node did not declare it dead (the two sides of a
	// partition need not agree), so only asking makes both sides resync.
	// Nothing but the kind (signalHead).
	signalResync gateway.SignalKind = "resync"
	// signalErase asked the other nodes to erase a conversation
	// (eraseSignal). Only nodes of an earlier version send it: erasures are
	// control-plane records now (erasure.go).
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

func newReplicator(cfg Config, log *slog.Logger, st *store.Store, ctl *control, mem *membership.Membership, meter gateway.Meter, reg prometheus.Registerer) *replicator {
	r := &replicator{node: cfg.NodeID, log: log, st: st, ctl: ctl, mem: mem, meter: meter, peers: ctl.peers, acks: map[ackKey]*ackWait{}, records: map[string]store.Conversation{}, ae: newAEMetrics(reg), aeTrees: map[string]*aeCached{}, aeKick: make(chan string, 16), delay: cfg.FaultReplDelay, joined: make(chan resyncReq, 64), repliesIn: make(chan repliesFrom, 64)}
	r.gate = replication.NewGate(r.have, 0)
	r.repl = replication.NewLinks(replication.LinksConfig{Self: cfg.NodeID, Dial: r.dial, Store: r.store, Logger: log, OnSignal: r.onSignal})
	return r
}

func (r *replicator) run(ctx context.Context) error {
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		rt := time.NewTicker(repliesEvery)
		defer rt.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				r.sweep(now)
			case req := <-r.joined:
				r.resync(req)
				r.sendRepliesDigests(req.node)
			case in := <-r.repliesIn:
				r.onRepliesSignal(in.from, in.b)
			case <-rt.C:
				r.sendRepliesDigests("")
			}
		}
	}()
	return r.repl.Run(ctx)
}

// setContext gives inbound links the node's life; called before serving.
func (r *replicator) setContext(ctx context.Context) { r.ctx = ctx }

// payload is what an event carries between nodes: the conversation's record
// (a replica may not have it yet) and the message's state.
type payload struct {
	Conversation store.Conversation `json:"c"`
	Message      crdt.Message       `json:"m"`
}

// publish sends this node's own message events to the other replicas of
// their conversations; the store calls it (through the node's OnCommit) as
// soon as an event is decided, under its sequencer's lock, so each
// conversation's events are queued to each peer in oseq order. The peers'
// answers are kept for confirm.
func (r *replicator) publish(evs []store.Event) {
	origin := r.st.Origin()
	for _, e := range evs {
		if e.Kind != store.EventMessage || e.Stamp.Origin != origin {
			continue
		}
		if w := r.send(e); w != nil {
			r.mu.Lock()
			r.acks[ackKey{e.Workspace, e.Conversation, e.Seq}] = w
			r.mu.Unlock()
		}
	}
}

// send queues one of this node's events to the other replicas of its
// conversation and to the nodes where its participants are connected, and
// returns what to wait on, nil when there are none.
func (r *replicator) send(e store.Event) *ackWait {
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
		ch, ok := r.repl.Enqueue(p.ID, []replication.Event{ev})
		if !ok {
			r.log.Warn("replication: event not queued to a replica", "peer", p.ID, "conversation", e.Conversation)
			continue
		}
		w.peers = append(w.peers, p.ID)
		w.answers = append(w.answers, ch)
	}
	for _, id := range serving {
		if ch, ok := r.repl.Enqueue(id, []replication.Event{ev}); ok {
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
func (r *replicator) serving(ws, conv string, replicas []membership.Member) []string {
	if r.gw == nil {
		return nil
	}
	owner := ""
	if c, err := r.record(ws, conv); err == nil {
		owner = c.Owner
	}
	var out []string
	for _, id := range r.gw.Serving(ws, owner) {
		if id == r.node || !r.mem.Alive(id) || slices.ContainsFunc(replicas, func(m membership.Member) bool { return m.ID == id }) {
			continue
		}
		out = append(out, id)
	}
	return out
}

func (r *replicator) encode(e store.Event) (replication.Event, error) {
	c, err := r.record(e.Workspace, e.Conversation)
	if err != nil {
		return replication.Event{}, err
	}
	b, err := json.Marshal(payload{Conversation: c, Message: e.Message})
	if err != nil {
		return replication.Event{}, err
	}
	return replication.Event{Workspace: e.Workspace, Conversation: e.Conversation, Origin: e.Stamp.Origin, OSeq: e.Stamp.OSeq, Payload: b}, nil
}

// maxRecords bounds the cache of conversation records.
const maxRecords = 100_000

// record is the part of a conversation's record that its events carry
// (workspace, ID, owner, owner's name, creation: fixed for its life), from
// a cache: publish runs under the store's sequencer lock, on every message,
// and must not read the file each time.
func (r *replicator) record(ws, conv string) (store.Conversation, error) {
	k := ws + "\x00" + conv
	r.recMu.Lock()
	c, ok := r.records[k]
	r.recMu.Unlock()
	if ok {
		return c, nil
	}
	c, err := r.st.Conversation(ws, conv)
	if err != nil {
		return store.Conversation{}, err
	}
	c.Head, c.Updated, c.Last = 0, 0, nil
	r.recMu.Lock()
	if len(r.records) >= maxRecords {
		clear(r.records)
	}
	r.records[k] = c
	r.recMu.Unlock()
	return c, nil
}

// forget drops an erased conversation's record from the cache.
func (r *replicator) forget(ws, conv string) {
	r.recMu.Lock()
	delete(r.records, ws+"\x00"+conv)
	r.recMu.Unlock()
}

type ackKey struct {
	ws, conv string
	seq      uint64
}

// ackWait is what the replicas of one event answer.
type ackWait struct {
	at      time.Time
	peers   []string
	answers []<-chan error
	// serving are nodes outside the placement where the conversation's
	// participants are connected: sent every event, not counted for the
	// ack (a copy there is not kept in step by anti-entropy), and sent
	// what they lack when they report a gap.
	serving        []string
	servingAnswers []<-chan error
}

// confirmTimeout bounds how long a sender's ack waits for a second replica.
const confirmTimeout = 2 * time.Second

// confirm waits until a second replica has stored the event at seq (this
// node's own, just applied), when one is alive: that is what the sender's
// ack promises. A replica that lacks earlier events of this node is sent
// them first. It returns gateway.ErrUnconfirmed when no replica confirmed
// in time.
func (r *replicator) confirm(ctx context.Context, ws, conv string, seq uint64) error {
	r.mu.Lock()
	w := r.acks[ackKey{ws, conv, seq}]
	delete(r.acks, ackKey{ws, conv, seq})
	r.mu.Unlock()
	if w == nil {
		return nil // no other replica alive when it was published
	}
	return r.wait(ctx, ws, conv, w)
}

func (r *replicator) wait(ctx context.Context, ws, conv string, w *ackWait) error {
	r.repairServing(w)
	if len(w.answers) == 0 {
		return nil // only serving nodes: no other replica is alive
	}
	ctx, cancel := context.WithTimeout(ctx, confirmTimeout)
	defer cancel()
	results := make(chan error, len(w.answers))
	for i, ch := range w.answers {
		go func() {
			var err error
			select {
			case err = <-ch:
			case <-ctx.Done():
				err = ctx.Err()
			}
			var gaps *replication.GapsError
			if errors.As(err, &gaps) {
				err = r.repair(ctx, w.peers[i], gaps.Gaps)
			}
			results <- err
		}()
	}
	var errs []error
	for range w.answers {
		err := <-results
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	r.log.Warn("replication: no second replica confirmed an event", "conversation", conv, "err", errors.Join(errs...))
	return fmt.Errorf("%w: %v", gateway.ErrUnconfirmed, errors.Join(errs...))
}

// repairServing sends each serving node that reports a gap what it lacks,
// in the background: the sender's ack does not wait for them.
func (r *replicator) repairServing(w *ackWait) {
	for i, ch := range w.servingAnswers {
		go func() {
			base := r.ctx
			if base == nil {
				base = context.Background()
			}
			ctx, cancel := context.WithTimeout(base, confirmTimeout)
			defer cancel()
			select {
			case err := <-ch:
				var gaps *replication.GapsError
				if errors.As(err, &gaps) {
					r.repair(ctx, w.serving[i], gaps.Gaps)
				}
			case <-ctx.Done():
			}
		}()
	}
}

// repair sends a replica the events of this node it lacks, in order, and
// waits for its answer to the last.
func (r *replicator) repair(ctx context.Context, peer string, gaps []replication.Gap) error {
	for _, g := range gaps {
		if g.Origin != r.st.Origin() {
			continue // not this node's to send
		}
		evs, err := r.st.OriginEvents(g.Workspace, g.Conversation, g.Origin, g.Next, 4096)
		if err != nil {
			return err
		}
		var batch []replication.Event
		for _, e := range evs {
			ev, err := r.encode(e)
			if err != nil {
				return err
			}
			batch = append(batch, ev)
		}
		if len(batch) == 0 {
			continue
		}
		r.log.Info("replication: sending a replica the events it lacks", "peer", peer, "conversation", g.Conversation, "from", g.Next, "events", len(batch))
		ch, ok := r.repl.Enqueue(peer, batch)
		if !ok {
			return fmt.Errorf("%w: %s", replication.ErrLinkDown, peer)
		}
		select {
		case err := <-ch:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// confirmExisting is confirm for a message sent again (a retry): its event
// is queued to the replicas once more, which store it once.
func (r *replicator) confirmExisting(ctx context.Context, ws, conv string, seq uint64) error {
	evs, _, err := r.st.Events(ws, conv, seq-1, 1)
	if err != nil || len(evs) == 0 || evs[0].Seq != seq || evs[0].Stamp.Origin != r.st.Origin() {
		// Not this node's event: it came from another replica, so two hold
		// it already.
		return nil
	}
	w := r.send(evs[0])
	if w == nil {
		return nil
	}
	return r.wait(ctx, ws, conv, w)
}

// sweep forgets answers nobody waited for (a change whose caller went away).
func (r *replicator) sweep(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, w := range r.acks {
		if now.Sub(w.at) > time.Minute {
			delete(r.acks, k)
		}
	}
}

// replicatedStore is the gateway's store on a node with peers: a change is
// acknowledged once it is durable here and on a second replica.
type replicatedStore struct {
	*store.Store
	r *replicator
}

func (s replicatedStore) Apply(ctx context.Context, ch store.Change) (store.Result, error) {
	res, err := s.Store.Apply(ctx, ch)
	if err != nil {
		return res, err
	}
	if res.Changed {
		err = s.r.confirm(ctx, ch.Workspace, ch.Conversation, res.Seq)
	} else if res.Dup {
		err = s.r.confirmExisting(ctx, ch.Workspace, ch.Conversation, res.Seq)
	}
	return res, err
}

// signal sends this node's presence and typing to the other nodes that
// may serve the workspace (its region's, or all for an unpinned one);
// the gateway calls it.
func (r *replicator) signal(sig gateway.Signal) {
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
	region := ""
	if w, err := r.ctl.c.Workspace(sig.Workspace); err == nil {
		region = w.Region
	}
	for _, m := range r.mem.Members() {
		if m.ID == r.node || (region != "" && m.Region != region) {
			continue
		}
		r.repl.Signal(m.ID, b)
	}
}

// nodeJoined is gossip's callback for a node that joined or came back.
func (r *replicator) nodeJoined(id string) { r.queueResync(resyncReq{node: id, ask: true}) }

func (r *replicator) queueResync(req resyncReq) {
	select {
	case r.joined <- req:
	default: // the clients' own renewals will tell it, a heartbeat later
	}
}

// resync sends a node that joined or came back this node's presence and
// views, for the workspaces it may serve: after a partition it had ended
// them, and otherwise would see them again only as each client renews.
func (r *replicator) resync(req resyncReq) {
	id := req.node
	if r.gw == nil {
		return
	}
	if req.ask {
		if b, err := json.Marshal(signalHead{Kind: signalResync}); err == nil {
			r.repl.Signal(id, b)
		}
	}
	region := ""
	for _, m := range r.mem.Members() {
		if m.ID == id {
			region = m.Region
		}
	}
	n := r.gw.Resync(func(sig gateway.Signal) {
		if w, err := r.ctl.c.Workspace(sig.Workspace); err == nil && w.Region != "" && w.Region != region {
			return
		}
		if b, err := json.Marshal(sig); err == nil {
			r.repl.Signal(id, b)
		}
	})
	r.log.Debug("replication: presence sent to a node that joined", "peer", id, "leases", n)
}

// onSignal handles a peer's signal: the node's own, or a participant's
// presence, view, typing or read receipt, applied in the gateway or, for a
// receipt, the store.
func (r *replicator) onSignal(from string, b []byte) {
	var head signalHead
	if err := json.Unmarshal(b, &head); err != nil {
		return
	}
	switch {
	case head.Kind == signalResync:
		r.queueResync(resyncReq{node: from})
	case head.Kind == signalErase:
		var sig eraseSignal
		if err := json.Unmarshal(b, &sig); err == nil && r.erase != nil && sig.Conversation != "" {
			r.forget(sig.Workspace, sig.Conversation)
			if err := r.erase(context.Background(), sig.Workspace, sig.Conversation); err != nil && !errors.Is(err, store.ErrNotFound) {
				r.log.Warn("replication: a peer's erasure failed here", "conversation", sig.Conversation, "err", err)
			}
		}
	case isRepliesSignal(head.Kind):
		select {
		case r.repliesIn <- repliesFrom{from, b}:
		default: // dropped: the next exchange of digests makes it good
		}
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
		} else if gw := r.gw; gw != nil {
			gw.ApplySignal(sig)
		}
	}
}

// applyRead records another node's read receipt in this node's terms: up
// to the last event of its log the reader's vector covers. A receipt lost
// with a link is made good by the reader's next one (receipts only grow).
func (r *replicator) applyRead(sig gateway.Signal) { r.applyReadTry(sig, 0) }

// readWaits bounds how long a receipt waits for the events it covers: a
// reader elsewhere may have seen an event this node has published to its
// clients but not committed yet (or not received), and the receipt must
// not stop short of it.
const (
	readWaits     = 20
	readWaitEvery = 50 * time.Millisecond
)

func (r *replicator) applyReadTry(sig gateway.Signal, try int) {
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

// replicas are the other nodes that hold a conversation.
func (r *replicator) replicas(ws, conv string) []membership.Member {
	region := ""
	if w, err := r.ctl.c.Workspace(ws); err == nil {
		region = w.Region
	}
	var out []membership.Member
	for _, m := range membership.Replicas(r.mem.Members(), conv, region, replicationFactor) {
		if m.ID != r.node {
			out = append(out, m)
		}
	}
	return out
}

// uncount takes back the message this node counted for usage when it
// accepted a send that another node had accepted earlier (the client
// resent it there while this node stalled): the cluster holds it once, as
// the other node's, which counted it too.
func (r *replicator) uncount(ws string, res store.Result) {
	if res.Displaced.Node == r.node {
		r.meter.Count(ws, 0, -1)
	}
}

// have is how far an origin is in this node's store: the gate's start.
func (r *replicator) have(ws, conv, origin string) (uint64, error) {
	f, err := r.st.Frontier(ws, conv)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	return f[origin], err
}

// store applies a peer's events, each origin's in order, publishing each at
// once; the returned function waits until they are durable.
func (r *replicator) store(ctx context.Context, from string, evs []replication.Event) (func() error, error) {
	start := time.Now()
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
		_, err = r.gate.Admit(ev, func(batch []replication.Event) error {
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
					Stamp: store.Stamp{Origin: e.Origin, OSeq: e.OSeq}, Message: p.Message, Start: start})
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

// dial opens the link to a peer: a WebSocket on its internal API, signed
// like every internal request.
func (r *replicator) dial(ctx context.Context, peer string) (replication.Conn, error) {
	addr := ""
	for _, m := range r.mem.Members() {
		if m.ID == peer {
			addr = m.RaftAddr
		}
	}
	if addr == "" {
		return nil, fmt.Errorf("node %s is not alive", peer)
	}
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	path := pathRepl
	h := http.Header{}
	h.Set(hdrNodeTime, ts)
	h.Set(hdrNodeSig, sign(r.peers.key, http.MethodGet, path, ts, []byte(r.node)))
	h.Set(hdrNodeID, r.node)
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	opts := &websocket.DialOptions{HTTPHeader: h, HTTPClient: r.peers.client}
	c, _, err := websocket.Dial(dctx, "wss://"+addr+path, opts)
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(8 << 20)
	return replication.Delayed(wsLink{c}, r.delay), nil
}

// hdrNodeID names the node opening a replication link; the signature
// covers it.
const hdrNodeID = "X-Parley-Node-ID"

// serveRepl accepts a peer's replication link.
func (r *replicator) serveRepl(w http.ResponseWriter, req *http.Request) {
	from := req.Header.Get(hdrNodeID)
	ts := req.Header.Get(hdrNodeTime)
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || from == "" || time.Since(time.UnixMilli(ms)).Abs() > maxSkew ||
		!hmac.Equal([]byte(sign(r.peers.key, http.MethodGet, req.URL.Path, ts, []byte(from))), []byte(req.Header.Get(hdrNodeSig))) {
		r.log.Warn("replication link refused", "remote", req.RemoteAddr, "from", from)
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	c, err := websocket.Accept(w, req, nil)
	if err != nil {
		return
	}
	c.SetReadLimit(8 << 20)
	// The link ends with the request or with the node, whichever first:
	// the HTTP server does not close hijacked connections on shutdown.
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	if r.ctx != nil {
		defer context.AfterFunc(r.ctx, cancel)()
	}
	r.repl.Serve(ctx, from, wsLink{c})
}

// wsLink adapts a WebSocket to replication.Conn.
type wsLink struct{ c *websocket.Conn }

func (l wsLink) Read(ctx context.Context) ([]byte, error) {
	_, b, err := l.c.Read(ctx)
	return b, err
}

func (l wsLink) Write(ctx context.Context, b []byte) error {
	return l.c.Write(ctx, websocket.MessageText, b)
}

func (l wsLink) Close() error { return l.c.CloseNow() }
