package gateway

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"parley/gateway/wire"
)

// Load shedding at the edge (docs/protocol.md, *Overload*). A node past
// what it can carry refuses new changes (send, edit, delete, start) with
// overloaded and a retry_ms, before it does any work for them: nothing is
// stored, no budget is drawn on, and the reads, acks, resumes and
// heartbeats of every connection go on being served. Three signs say the
// node is past it:
//
//   - its store: more changes of all connections wait for the store than
//     Config.ShedPending (the store's writer cannot keep up, and every
//     ack would wait longer still);
//   - its fan-out: one of a workspace's agent connections is behind when
//     an event of the workspace is queued on it (hub.publish): half of
//     Config.SendQueue waits for it, not yet written (conn.behind). With
//     the changes not yet decided (at most as many, the third sign) it
//     would hold a send queue's worth, far below Config.SendQueueBytes.
//     Its writer cannot keep up, and more events would
//     pile up past Config.SendQueueBytes and close it as a slow consumer,
//     to reconnect and replay. The workspace's changes are then
//     refused for Config.ShedHold, after which the next event tells
//     again. A connection behind for slowAfterHolds holds in a row is
//     too slow to wait for even with nothing new for it: it no longer
//     counts, and is closed as a slow consumer when its bytes pass
//     Config.SendQueueBytes;
//   - its CPU: a workspace has half a send queue of changes taken but not
//     yet decided. A change is decided (and queued for its recipients) by
//     the store's sequencer microseconds after it is taken, unless the
//     node has no CPU to spare; those would all land on the agents'
//     queues at once.
type shedder struct {
	maxPending int64 // < 0: the store's sign is off
	hold       time.Duration
	half       int64 // half a connection's send queue
	// pending counts the changes handed to the store and not yet
	// answered, over every connection.
	pending atomic.Int64
}

// slowAfterHolds is how many holds an agent connection may stay behind
// and still hold its workspace's changes back (hub.lagging).
const slowAfterHolds = 20

func newShedder(cfg *Config) *shedder {
	return &shedder{maxPending: int64(cfg.ShedPending), hold: cfg.ShedHold, half: int64(cfg.SendQueue / 2)}
}

// overloaded is the wire error refusing a change of r's workspace, nil
// when the node takes it. r may be nil (a workspace with no connection
// in the hub).
func (s *shedder) overloaded(r *room, now time.Time) *wireError {
	why := ""
	switch {
	case s.maxPending >= 0 && s.pending.Load() >= s.maxPending:
		why = "too many changes waiting for the store"
	case r != nil && r.behindUntil.Load() > now.UnixNano():
		why = "the workspace's agents are behind"
	case r != nil && r.undecided.n.Load() >= s.half:
		why = "too many of the workspace's changes not yet decided"
	default:
		return nil
	}
	// Spread the retries over a hold or two, so that the refused do not
	// all come back at once.
	retry := s.hold + rand.N(s.hold+1)
	e := errf(wire.CodeOverloaded, "node overloaded (%s): retry in %d ms", why, retry.Milliseconds())
	e.retry = max(retry.Milliseconds(), 1)
	return e
}

// taken counts a change of r's workspace (r may be nil) handed to the
// store: a message change (id not empty) is undecided until its event is
// published (hub.publish) or the store answered; answered ends it.
func (s *shedder) taken(r *room, id string) {
	s.pending.Add(1)
	if r != nil && id != "" {
		r.undecided.add(id)
	}
}

func (s *shedder) answered(r *room, id string) {
	s.pending.Add(-1)
	if r != nil && id != "" {
		r.undecided.remove(id) // the change published nothing (a resend, an error)
	}
}

// undecided counts, by message id, a room's message changes taken and not
// yet published.
type undecided struct {
	n   atomic.Int64
	mu  sync.Mutex
	ids map[string]int
}

func (u *undecided) add(id string) {
	u.mu.Lock()
	if u.ids == nil {
		u.ids = map[string]int{}
	}
	u.ids[id]++
	u.n.Add(1)
	u.mu.Unlock()
}

// remove ends one undecided change of message id, if there is one.
func (u *undecided) remove(id string) {
	if u.n.Load() == 0 {
		return
	}
	u.mu.Lock()
	if k := u.ids[id]; k > 0 {
		if k == 1 {
			delete(u.ids, id)
		} else {
			u.ids[id] = k - 1
		}
		u.n.Add(-1)
	}
	u.mu.Unlock()
}

// behind is whether a connection's items not yet written are at least
// half of Config.SendQueue: its writer is behind by that much (long
// before the bytes waiting make it a slow consumer,
// Config.SendQueueBytes). The workspace's changes not yet decided do not
// count here: they have a sign of their own, bounded by the same half,
// and counting them here too held a workspace whose agents keep up
// whenever as many changes were in flight (issue 16, item 2).
func (c *conn) behind() bool {
	c.mu.Lock()
	n := c.queuedItems
	c.mu.Unlock()
	return n*2 >= c.srv.cfg.SendQueue
}
