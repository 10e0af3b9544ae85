package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"parley/crdt"
	"parley/gateway/wire"
	"parley/store"
	"parley/tracing"

	"golang.org/x/time/rate"
)

// Store is what the gateway needs of a node's storage.
type Store interface {
	CreateConversation(ctx context.Context, c store.Conversation) error
	Conversation(ws, id string) (store.Conversation, error)
	ConversationsPageFunc(ws, owner string, after store.Cursor, limit int, keep func(store.Conversation) bool) ([]store.Conversation, store.Cursor, error)
	// ApplyAsync decides a change and publishes its event (store.Store's
	// ApplyAsync); the Pending's Wait returns once it is durable and, on
	// a node with peers, confirmed by a second replica (an error wrapping
	// ErrUnconfirmed: stored here, not confirmed in time).
	ApplyAsync(ctx context.Context, ch store.Change) (store.Result, store.Pending, error)
	MarkRead(ctx context.Context, ws, conv, participant string, seq uint64, start time.Time) (bool, error)
	Events(ws, conv string, after uint64, limit int) ([]store.Event, bool, error)
	EventsSince(ws, conv string, have map[string]uint64, limit int) ([]store.Event, bool, error)
	Reads(ws, conv string) (map[string]uint64, error)
	Unread(ws, conv, participant string, after uint64, max int) (int, error)
}

// Fetcher brings a conversation this node does not hold from the nodes
// that do (its replicas), so that any node serves any participant: a
// client who reconnects through a node that held nothing of their
// conversation is answered as its replicas would answer.
type Fetcher interface {
	// Fetch returns once the conversation is held here (nil), or an error
	// wrapping store.ErrNotFound when the replicas asked do not hold it
	// either, or hold it for another owner (owner "" is an agent's
	// request: any conversation of the workspace), or another error
	// (ErrReplicasUnreachable) when they could not be asked; then nothing
	// is known and the client may retry. It stores nothing for an
	// unknown conversation or another owner's.
	Fetch(ctx context.Context, ws, conv, owner string) error
}

// ErrReplicasUnreachable is what a Fetcher returns when it could not ask
// the replicas of a conversation whether they hold it: the client gets
// unavailable (not closing) and retries.
var ErrReplicasUnreachable = errors.New("conversation not held here and its replicas could not be asked")

// Privacy carries a visitor's request to be forgotten (a forget frame).
type Privacy interface {
	// Forget erases every conversation of the visitor at once, or records
	// the request for an agent to confirm, as the workspace chose; erased
	// says which.
	Forget(ctx context.Context, workspace, visitor string) (erased bool, err error)
}

// Metrics receives the gateway's measurements; the node feeds Prometheus.
type Metrics interface {
	ConnOpened(transport string)
	ConnClosed(transport string)
	FrameIn(transport string)
	MessageIn(transport string)
	Delivered(transport string, d time.Duration)
	Error(code string)
	// Relay counts connections relayed to another node: "opened", "failed".
	Relay(outcome string)
}

// Config configures New. Store, Auth and Clock are required; every other
// zero value is a documented default.
type Config struct {
	Store Store
	Auth  Authenticator
	Clock *crdt.Clock
	// Privacy takes visitors' requests to be forgotten. Zero: a forget
	// frame is answered forbidden.
	Privacy Privacy
	// Assignee names the operator a conversation is assigned to (the
	// control plane's optimistic assignment), "" when none: agents' list
	// items show it and their list filters on it. Zero: no assignee is
	// known (every conversation lists as unassigned).
	Assignee func(workspace, conversation string) string
	// InternalMessages says whether internal messages (notes, inbox
	// changes, the visitor's context) may be written now: during a
	// rolling upgrade an older node would hand them to visitors. An error
	// refuses the frame with cluster_upgrading and its text. Zero: they
	// may.
	InternalMessages func() error
	// Node names this node in welcome frames. Zero: "node".
	Node string
	// Logger for connection-level events. Zero: slog.Default().
	Logger *slog.Logger
	// Metrics. Zero: none.
	Metrics Metrics
	// Heartbeat is the client ping interval; a connection silent for three is
	// closed and its presence ends. Zero: 10s.
	Heartbeat time.Duration
	// TypingTTL is how long a typing indicator lasts unless renewed. Zero: 5s.
	TypingTTL time.Duration
	// HelloTimeout is how long a new connection may take to say hello. Zero: 10s.
	HelloTimeout time.Duration
	// WriteTimeout is the longest a connection's writer waits without
	// writing a byte before it gives the connection up. Zero: 10s.
	WriteTimeout time.Duration
	// SendQueue is how many items a connection's send queue may hold before
	// a resume waits for the writer (at half of it), so that a client
	// resuming many conversations at once takes its replays in turn.
	// Zero: 512.
	SendQueue int
	// SendQueueBytes is how many bytes of frames may wait in a
	// connection's send queue, not yet written; a client that lets more
	// pile up is disconnected as slow (slow_consumer). A client that reads
	// nothing for WriteTimeout is disconnected too. Zero: 8 MiB.
	SendQueueBytes int
	// FrameRate and FrameBurst limit frames per connection. Zero: 20/s, 60.
	FrameRate  float64
	FrameBurst int
	// ResumeRate and ResumeBurst limit resume frames per connection, apart
	// from the others: an agent reconnecting resumes every conversation it
	// had loaded at once. Zero: 100/s, 1000.
	ResumeRate  float64
	ResumeBurst int
	// MaxConnsPerIP limits concurrent connections from one address. Zero: 1000.
	MaxConnsPerIP int
	// Conns is the table of connections per address the gateway counts its
	// sessions in, shared with a listener that counts every connection it
	// accepts (see IPConns). Nil: a table of its own, capped at
	// MaxConnsPerIP.
	Conns *IPConns
	// WorkspaceRate and WorkspaceBurst are a workspace's budget of changes
	// (send, edit, delete) and conversation starts, cluster-wide: this node
	// takes WorkspaceShare's fraction of both (budget.go). Zero: 2000/s,
	// 4000.
	WorkspaceRate  float64
	WorkspaceBurst int
	// WorkspaceShare says which fraction (0..1] of a workspace's budget is
	// this node's; it is asked again at most once a second per workspace.
	// Nil: 1, the whole budget (a single node).
	WorkspaceShare func(workspace string) float64
	// AddressShare is the fraction of a workspace's budget (of this
	// node's part) that the visitors of one client address may take, so
	// that one address cannot take it all while others want some. Zero:
	// 0.25.
	AddressShare float64
	// IPMessageRate and IPMessageBurst limit the changes (send, edit,
	// delete) of visitors per client address on this node, over all its
	// connections and workspaces. Zero: 20/s, 100.
	IPMessageRate  float64
	IPMessageBurst int
	// IPStartRate and IPStartBurst limit the conversations visitors start
	// per client address on this node. Zero: 0.2/s (12 a minute), 20.
	IPStartRate  float64
	IPStartBurst int
	// IPPlanConversations and IPPlanMessages are the most that the visitors
	// of one client address may add to a workspace's plan counts on this
	// node in one IPPlanWindow: conversations counted (each with its first
	// message) and messages sent. A visitor's send past them is refused
	// rate_limited until the window ends (budget.go). Each is lowered to
	// IPPlanFraction of the plan's monthly count (at least 1) where Plan
	// says it is smaller. Zero: 50 and 1000.
	IPPlanConversations int64
	IPPlanMessages      int64
	// IPPlanFraction is the most of a plan's monthly counts one address
	// may add in one IPPlanWindow, when less than the caps above; 1 leaves
	// the caps alone but for plans smaller than them. Zero: 0.1.
	IPPlanFraction float64
	// IPPlanWindow is the window of IPPlanConversations and
	// IPPlanMessages; windows are aligned to the Unix epoch, so that a
	// day's are UTC days. Zero: 24h.
	IPPlanWindow time.Duration
	// Plan returns a workspace's plan: the conversations and messages it
	// allows a month (zero: unlimited). Nil: no plan bounds the address
	// caps.
	Plan func(workspace string) (conversations, messages int64)
	// Tracer records the spans of a connection's hello and of each
	// change from its frame to its answer (package tracing); the change's
	// context carries its span to the store. Zero: off.
	Tracer *tracing.Tracer
	// MaxReplay bounds the events of one resume; "more" tells the client to
	// resume again. Zero: 1000.
	MaxReplay int
	// MaxInFlight bounds a connection's changes waiting for the store. Zero: 64.
	MaxInFlight int
	// ShedPending is how many changes (send, edit, delete, start) of all
	// connections may wait for the store before new ones are refused
	// overloaded, with retry_ms (shed.go). Zero: 4096. Negative: never
	// for this reason.
	ShedPending int
	// ShedHold is how long a workspace's changes are refused overloaded
	// once one of its agent connections is behind (ShedBehind; shed.go);
	// a refusal's retry_ms is between one and two of it. Zero: 100ms.
	ShedHold time.Duration
	// ShedBehind is how many items not yet written make an agent
	// connection behind, its workspace's changes then shed (shed.go); a
	// quarter of SendQueueBytes not yet written does too. Zero: 2048.
	ShedBehind int
	// Limits refuses new conversations and messages of a workspace over its
	// plan. Zero: no limits.
	Limits Limits
	// Meter counts conversations and messages for billing. Zero: none.
	Meter Meter
	// OnSignal receives this node's presence leases and typing states, for
	// the other nodes (see Signal). It must not block. Zero: none.
	OnSignal func(Signal)
	// Fetch brings a conversation a client asks about that this node does
	// not hold from its replicas before the client is answered. Zero: a
	// conversation not held here is not_found.
	Fetch Fetcher
	// FetchWait bounds how long a frame waits for Fetch; past it the
	// client gets unavailable and retries. Zero: 5s.
	FetchWait time.Duration
	// Relay hands connections of workspaces this node does not serve to a
	// node that does (relay.go). Zero: every workspace is served here.
	Relay Relayer
	// Forwarded says, for a connection relayed here by another node, the
	// client's own address (per-IP limits apply to it, not to the relay);
	// ok is false for a direct connection. Zero: none are trusted.
	Forwarded func(r *http.Request) (ip string, ok bool)
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Heartbeat, 10*time.Second)
	def(&c.TypingTTL, 5*time.Second)
	def(&c.HelloTimeout, 10*time.Second)
	def(&c.WriteTimeout, 10*time.Second)
	def(&c.FetchWait, 5*time.Second)
	if c.Node == "" {
		c.Node = "node"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = noMetrics{}
	}
	if c.Meter == nil {
		c.Meter = noMeter{}
	}
	if c.SendQueue <= 0 {
		c.SendQueue = 512
	}
	if c.SendQueueBytes <= 0 {
		c.SendQueueBytes = 8 << 20
	}
	if c.FrameRate <= 0 {
		c.FrameRate = 20
	}
	if c.FrameBurst <= 0 {
		c.FrameBurst = 60
	}
	if c.ResumeRate <= 0 {
		c.ResumeRate = 100
	}
	if c.ResumeBurst <= 0 {
		c.ResumeBurst = 1000
	}
	if c.MaxConnsPerIP <= 0 {
		c.MaxConnsPerIP = 1000
	}
	if c.Conns == nil {
		c.Conns = NewIPConns(c.MaxConnsPerIP)
	}
	if c.WorkspaceRate <= 0 {
		c.WorkspaceRate = 2000
	}
	if c.WorkspaceBurst <= 0 {
		c.WorkspaceBurst = 4000
	}
	if c.AddressShare <= 0 || c.AddressShare > 1 {
		c.AddressShare = 0.25
	}
	if c.IPMessageRate <= 0 {
		c.IPMessageRate = 20
	}
	if c.IPMessageBurst <= 0 {
		c.IPMessageBurst = 100
	}
	if c.IPStartRate <= 0 {
		c.IPStartRate = 0.2
	}
	if c.IPStartBurst <= 0 {
		c.IPStartBurst = 20
	}
	if c.IPPlanConversations <= 0 {
		c.IPPlanConversations = 50
	}
	if c.IPPlanMessages <= 0 {
		c.IPPlanMessages = 1000
	}
	if c.IPPlanFraction <= 0 || c.IPPlanFraction > 1 {
		c.IPPlanFraction = 0.1
	}
	if c.IPPlanWindow <= 0 {
		c.IPPlanWindow = 24 * time.Hour
	}
	if c.MaxReplay <= 0 {
		c.MaxReplay = 1000
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 64
	}
	if c.ShedPending == 0 {
		c.ShedPending = 4096
	}
	def(&c.ShedHold, 100*time.Millisecond)
	if c.ShedBehind <= 0 {
		c.ShedBehind = 2048
	}
}

// Server is the gateway of one node.
type Server struct {
	cfg      Config
	log      *slog.Logger
	metrics  Metrics
	hub      *hub
	presence *presence
	views    *views

	budgets *budgets
	shed    *shedder

	mu      sync.Mutex
	relays  map[*conn]struct{}
	closing bool

	conns  sync.WaitGroup
	nextID atomic.Uint64
	// pollers read the WebSocket connections (poll_linux.go); Shutdown
	// stops them.
	pollers pollers
	// writers write the connections' queues (writers.go); Shutdown stops
	// them.
	writers writers
}

// New returns a gateway; Run must be running for presence to expire.
func New(cfg Config) *Server {
	cfg.defaults()
	s := &Server{
		cfg: cfg, log: cfg.Logger, metrics: cfg.Metrics,
		hub: newHub(cfg.ShedHold), presence: newPresence(cfg.Clock), views: newViews(),
		relays: map[*conn]struct{}{},
	}
	s.budgets = newBudgets(&s.cfg)
	s.shed = newShedder(&s.cfg)
	return s
}

// Publish fans committed store events out to the connections that want
// them. The node wires it as the store's OnCommit; it never blocks.
func (s *Server) Publish(events []store.Event) { s.hub.publish(events) }

// Run closes connections that stopped sending heartbeats until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	pruned := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			dead := now.Add(-3 * s.cfg.Heartbeat).UnixMilli()
			for _, c := range s.hub.conns() {
				if c.lastSeen.Load() < dead {
					c.fail(nil)
				}
			}
			s.endExpiredRemote(now.UnixMilli())
			if now.Sub(pruned) >= 30*time.Second {
				pruned = now
				s.budgets.prune(now)
			}
		}
	}
}

// Shutdown tells every client to reconnect elsewhere and waits, until ctx
// ends, for their connections to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	for _, c := range append(s.hub.conns(), s.relayed()...) {
		c.fail(fatalf(wire.CodeUnavailable, wire.CloseRestart, "node restarting: reconnect"))
	}
	done := make(chan struct{})
	go func() { s.conns.Wait(); close(done) }()
	// Connections still open when ctx ends were told to go: their reading
	// stops with the pollers.
	defer s.pollers.close()
	defer s.writers.close()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Expel closes, with auth_failed, the agent connections whose credential
// revoked reports as no longer valid, and returns how many. The node calls
// it when the control plane changes, so a revoked session ends its open
// connections as well as the next sign-in.
func (s *Server) Expel(revoked func(workspace, credential string) bool) int {
	n := 0
	for _, c := range s.hub.conns() {
		// c.id is set before the connection joins the hub and never
		// changes after, so reading it here does not race.
		if c.id.Credential != "" && revoked(c.id.Workspace, c.id.Credential) {
			c.fail(fatalf(wire.CodeAuthFailed, wire.CloseAuthFailed, "credential revoked"))
			n++
		}
	}
	return n
}

// ExpelWorkspace closes, with auth_failed, every connection of a workspace,
// visitors' and agents', and returns how many. The node calls it when the
// workspace is deleted: no one may go on writing to it.
func (s *Server) ExpelWorkspace(ws string) int {
	n := 0
	for _, c := range s.hub.conns() {
		if c.id.Workspace == ws {
			c.fail(fatalf(wire.CodeAuthFailed, wire.CloseAuthFailed, "workspace deleted"))
			n++
		}
	}
	return n
}

// admit counts a new connection from ip, or refuses it; counted says the
// listener counted it under ip already (WithCountedConn). An admitted
// connection counts for Shutdown until release: counting it under the lock
// that Shutdown sets closing with orders every Add before Shutdown's Wait.
func (s *Server) admit(ip string, counted bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || (!counted && !s.cfg.Conns.Acquire(ip, s.cfg.Conns.Max())) {
		return false
	}
	s.conns.Add(1)
	return true
}

func (s *Server) release(ip string, counted bool) {
	if !counted {
		s.cfg.Conns.Release(ip)
	}
	s.conns.Done()
}

type noMeter struct{}

func (noMeter) Count(string, int64, int64) {}

// overLimit is the wire error for a workspace over its plan, nil when it
// is within it.
func (s *Server) overLimit(ws string, now time.Time) *wireError {
	if s.cfg.Limits == nil {
		return nil
	}
	if err := s.cfg.Limits.Allow(ws, now); err != nil {
		if errors.Is(err, ErrOverLimit) {
			return errf(wire.CodeOverLimit, "%s", err.Error())
		}
		return errf(wire.CodeUnavailable, "plan check unavailable: retry later")
	}
	return nil
}

// serve runs one connection, admitted already; done is called once it is
// over. A transport that a poller reads (polledTransport) returns at once:
// the connection's frames are handled on a goroutine started when they
// arrive. Any other is read on the calling goroutine (WebTransport's
// handler, or a WebSocket's whose socket cannot be polled), and serve
// returns when the connection is over.
func (s *Server) serve(ctx context.Context, t transport, ip string, viaRelay bool, done func()) {
	c := &conn{
		srv: s, t: t, ctx: ctx, ip: ip, viaRelay: viaRelay, stop: make(chan struct{}),
		limiter: rate.NewLimiter(rate.Limit(s.cfg.FrameRate), s.cfg.FrameBurst),
		resumes: rate.NewLimiter(rate.Limit(s.cfg.ResumeRate), s.cfg.ResumeBurst),
		ops:     make(chan struct{}, s.cfg.MaxInFlight),
		leaseID: s.cfg.Node + "/" + strconv.FormatUint(s.nextID.Add(1), 10),
	}
	c.writer = c.writeRun
	c.lastSeen.Store(time.Now().UnixMilli())
	s.metrics.ConnOpened(t.Name())
	// Nothing ends the connection by cancelling a context: cancelling a
	// read or a write would drop it before the writer sends its closing
	// error frame. Whatever ends it calls fail; the writer then sends the
	// frame and closes the transport, which ends the reading.
	hello := time.AfterFunc(s.cfg.HelloTimeout, func() {
		if !c.authed.Load() && !c.relaying.Load() {
			c.fail(fatalf(wire.CodeUnauthenticated, wire.CloseUnauthentic, "no hello within %s", s.cfg.HelloTimeout))
		}
	})
	over := make(chan struct{})
	c.onDone = func() {
		hello.Stop()
		if done != nil {
			done()
		}
		close(over)
	}
	if pt, ok := t.(polledTransport); ok && pt.poll(c, &s.pollers) {
		return
	}
	c.readLoop(ctx)
	c.mu.Lock()
	c.readDone = true
	c.mu.Unlock()
	c.fail(nil)
	c.ended()
	<-over
}

// ended finishes the connection once both its reading and its writer are
// over: it leaves the hub and presence, after its last ops.
func (c *conn) ended() {
	c.mu.Lock()
	last := c.readDone && c.writeDone && c.onDone != nil
	done := c.onDone
	if last {
		c.onDone = nil
	}
	c.mu.Unlock()
	if !last {
		return
	}
	c.bg.Wait()
	c.opsWG.Wait()
	s := c.srv
	if c.authed.Load() {
		s.hub.leave(c)
		c.endView()
		ch, l := s.presence.lease(c, time.Now().UnixMilli(), 0)
		s.emit(leaseSignal(c, l))
		if ch.changed {
			s.announce(c, ch)
		}
	}
	s.metrics.ConnClosed(c.t.Name())
	done()
}

// announce tells the workspace that c's participant came online, left or
// went away or back: visitors are seen by agents, agents by everyone.
func (s *Server) announce(c *conn, ch presenceChange) {
	s.announceParticipant(c.id.Workspace, c.id.Participant, c.id.Role, c.id.Name, ch)
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type noMetrics struct{}

func (noMetrics) ConnOpened(string)               {}
func (noMetrics) ConnClosed(string)               {}
func (noMetrics) FrameIn(string)                  {}
func (noMetrics) MessageIn(string)                {}
func (noMetrics) Delivered(string, time.Duration) {}
func (noMetrics) Error(string)                    {}
func (noMetrics) Relay(string)                    {}
