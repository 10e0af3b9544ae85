package replication

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"parley/cluster/membership"
	"parley/gateway"
	"parley/store"
	"parley/tracing"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures New. Self, Store, Control, Members and Peers are
// required; every other field has a zero value that works.
type Config struct {
	// Self is this node's ID.
	Self string
	// Region is this node's region; "" when the cluster has none.
	Region string
	// Store is this node's store.
	Store Store
	// Control is what the data plane reads of the control plane.
	Control Control
	// Members are the nodes gossip sees alive.
	Members Members
	// Peers reaches other nodes over the node link.
	Peers Peers
	// Meter counts usage: a message this node counted that another node
	// had accepted first is taken back (a negative count). Zero: nothing
	// is taken back.
	Meter Meter
	// Erase erases a conversation here, leaving its tombstone (the
	// embeddings follow), for the erase signal of nodes of an earlier
	// version. Zero: that signal is ignored.
	Erase func(ctx context.Context, ws, conv string) error
	// CaughtUp says whether this node has applied the control plane's
	// erasures since it started; until then it takes no conversation it
	// does not hold from a peer, and runs no anti-entropy round. Zero:
	// always caught up.
	CaughtUp func() bool
	// CatchUp waits until this node applied what the leader had committed,
	// reporting whether it applied anything new: a peer's events of a
	// workspace created a moment ago may arrive before its creation. Zero:
	// never catches up (an unknown workspace is refused until the control
	// plane here knows it).
	CatchUp func(ctx context.Context) bool
	// OnReplies is told of saved replies another node changed here (the
	// embedding index follows). Zero: nobody is told.
	OnReplies func(ws string, applied []store.Reply)
	// Logger. Zero: slog.Default().
	Logger *slog.Logger
	// Registerer takes the anti-entropy metrics and the links' backlog
	// and lag per peer. Zero: a registry of their own, which nothing
	// exports.
	Registerer prometheus.Registerer
	// Tracer records the spans of replication to each peer and of what a
	// peer sent (package tracing). Zero: off.
	Tracer *tracing.Tracer
	// LinkDelay holds back every frame this node sends on a link (a fault
	// for tests; see Delayed). Zero: none.
	LinkDelay time.Duration
}

// Store is what the data plane reads from and writes to this node's store
// (*store.Store).
type Store interface {
	Origin() string
	Conversation(ws, id string) (store.Conversation, error)
	Conversations(ws, owner string) ([]store.Conversation, error)
	Events(ws, conv string, after uint64, limit int) ([]store.Event, bool, error)
	OriginEvents(ws, conv, origin string, from uint64, limit int) ([]store.Event, error)
	Frontier(ws, conv string) (map[string]uint64, error)
	Frontiers(fn func(ws, conv string, f map[string]uint64)) error
	VectorAt(ws, conv string, seq uint64) (map[string]uint64, error)
	SeqCovered(ws, conv string, have map[string]uint64) (uint64, error)
	ApplyRemoteAsync(ctx context.Context, r store.Remote) (store.Result, <-chan error, error)
	EnsureConversation(ctx context.Context, c store.Conversation) error
	Erased(ws, conv string) (bool, error)
	AdvanceOrigin(ctx context.Context, ws, conv, origin string, oseq uint64) error
	MarkRead(ctx context.Context, ws, conv, participant string, seq uint64, start time.Time) (bool, error)
	AllReplies(ws string) ([]store.Reply, error)
	MergeReplies(ctx context.Context, ws string, in []store.Reply) ([]store.Reply, error)
	PutWorkspace(ctx context.Context, w store.Workspace) error
}

// Why Control.Serves refuses a workspace: what callers branch on.
var (
	// ErrWorkspaceUnknown: the control plane here does not know it: not
	// created, or not yet applied here (catching up may change that).
	ErrWorkspaceUnknown = errors.New("workspace unknown to this node (not created, or not yet applied here: retry)")
	// ErrWorkspaceDeleted: it was deleted (its ID is never used again).
	ErrWorkspaceDeleted = errors.New("workspace deleted")
	// ErrPinnedElsewhere: it is pinned to another region than this node's.
	ErrPinnedElsewhere = errors.New("workspace pinned to another region")
)

// Control is what the data plane reads of the control plane.
type Control interface {
	// Region is the region ws is pinned to: "" when it is unpinned or
	// unknown.
	Region(ws string) string
	// Serves is nil when this node may hold ws's data, and otherwise says
	// why not, wrapping ErrWorkspaceUnknown, ErrWorkspaceDeleted or
	// ErrPinnedElsewhere.
	Serves(ws string) error
	// Workspaces are the IDs of the workspaces the control plane holds.
	Workspaces() []string
	// Registered are the nodes registered in the control plane, alive or
	// not.
	Registered() []membership.Member
	// Ready says whether this node is a registered member with a leader.
	Ready() bool
}

// Members are the nodes gossip sees alive (*membership.Membership).
type Members interface {
	Members() []membership.Member
	Alive(id string) bool
	// Others counts the alive members other than this node.
	Others() int
}

// Peers reaches other nodes over the node link, authenticated as this
// node.
type Peers interface {
	// Post sends body to path on the node whose link listens at addr and
	// returns the reply of a 200; any other status is an error.
	Post(ctx context.Context, addr, path string, body []byte) ([]byte, error)
	// Dial opens a replication link to the node whose link listens at
	// addr.
	Dial(ctx context.Context, addr string) (Conn, error)
}

// Gateway is the part of this node's gateway the data plane uses
// (*gateway.Server): who is connected where, and the presence signals of
// other nodes. Run is given it.
type Gateway interface {
	// Serving lists the nodes serving ws's agents and, when given, the
	// participant.
	Serving(ws, participant string) []string
	// HasAgents says whether an agent of ws is connected here.
	HasAgents(ws string) bool
	// VisitorsOn are the visitors of ws connected at node.
	VisitorsOn(ws, node string) map[string]bool
	// Resync renews this node's presence and passes it to send.
	Resync(send func(gateway.Signal)) int
	// ApplySignal applies another node's presence, view or typing.
	ApplySignal(sig gateway.Signal)
}

// Meter counts usage (gateway.Meter).
type Meter interface {
	Count(workspace string, conversations, messages int64)
}

// noMeter is Config.Meter's zero value.
type noMeter struct{}

func (noMeter) Count(string, int64, int64) {}
