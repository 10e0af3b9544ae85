package node

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"parley/cluster/membership"
	"parley/cluster/replication"
	"parley/crdt"
	"parley/store"

	"github.com/coder/websocket"
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
// Not yet here (docs/replication.md): acknowledgements from a second
// replica before the sender's ack, anti-entropy after a lost link, relaying
// for nodes outside the replica set, replicated receipts and presence.
type replicator struct {
	node  string
	log   *slog.Logger
	st    *store.Store
	ctl   *control
	mem   *membership.Membership
	repl  *replication.Replicator
	gate  *replication.Gate
	peers *peerClient
	ctx   context.Context // the node's; inbound links end with it
}

func newReplicator(cfg Config, log *slog.Logger, st *store.Store, ctl *control, mem *membership.Membership) *replicator {
	r := &replicator{node: cfg.NodeID, log: log, st: st, ctl: ctl, mem: mem, peers: ctl.peers}
	r.gate = replication.NewGate(r.have, 0)
	r.repl = replication.New(replication.Config{Self: cfg.NodeID, Dial: r.dial, Store: r.store, Logger: log})
	return r
}

func (r *replicator) run(ctx context.Context) error { return r.repl.Run(ctx) }

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
// soon as an event is decided.
func (r *replicator) publish(evs []store.Event) {
	origin := r.st.Origin()
	for _, e := range evs {
		if e.Kind != store.EventMessage || e.Stamp.Origin != origin {
			continue
		}
		peers := r.replicas(e.Workspace, e.Conversation)
		if len(peers) == 0 {
			continue
		}
		c, err := r.st.Conversation(e.Workspace, e.Conversation)
		if err != nil {
			continue
		}
		c.Last = nil
		b, err := json.Marshal(payload{Conversation: c, Message: e.Message})
		if err != nil {
			continue
		}
		ev := replication.Event{Workspace: e.Workspace, Conversation: e.Conversation, Origin: e.Stamp.Origin, OSeq: e.Stamp.OSeq, Payload: b}
		for _, p := range peers {
			if !r.repl.Push(p.ID, []replication.Event{ev}) {
				r.log.Warn("replication: event not queued to a replica", "peer", p.ID, "conversation", e.Conversation)
			}
		}
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

// have is how far an origin is in this node's store: the gate's start.
func (r *replicator) have(ws, conv, origin string) (uint64, error) {
	f, err := r.st.Frontier(ws, conv)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	return f[origin], err
}

// store applies a peer's events, each origin's in order.
func (r *replicator) store(from string, evs []replication.Event) error {
	start := time.Now()
	var errs []error
	for _, ev := range evs {
		if w, err := r.ctl.c.Workspace(ev.Workspace); err == nil && w.Region != "" && w.Region != r.ctl.cfg.Region {
			errs = append(errs, fmt.Errorf("workspace %s is pinned to %s, this node is in %q: not stored", ev.Workspace, w.Region, r.ctl.cfg.Region))
			continue
		}
		_, err := r.gate.Admit(ev, func(batch []replication.Event) error {
			for _, e := range batch {
				var p payload
				if err := json.Unmarshal(e.Payload, &p); err != nil {
					return fmt.Errorf("payload of %s.%d: %w", e.Origin, e.OSeq, err)
				}
				if p.Conversation.Workspace != e.Workspace || p.Conversation.ID != e.Conversation || p.Message.ID == "" {
					return fmt.Errorf("payload of %s.%d names another conversation", e.Origin, e.OSeq)
				}
				if _, err := r.st.ApplyRemote(context.Background(), store.Remote{Conversation: p.Conversation,
					Stamp: store.Stamp{Origin: e.Origin, OSeq: e.OSeq}, Message: p.Message, Start: start}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// dial opens the link to a peer: a WebSocket on its internal API, signed
// like every internal request.
func (r *replicator) dial(ctx context.Context, peer string) (replication.Conn, error) {
	addr := ""
	for _, m := range r.mem.Members() {
		if m.ID == peer {
			addr = m.HTTPAddr
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
	c, _, err := websocket.Dial(dctx, "ws://"+addr+path, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(8 << 20)
	return wsLink{c}, nil
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
