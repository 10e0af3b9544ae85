package gateway

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"parley/gateway/wire"
)

// Load shedding at the edge (docs/protocol.md, *Overload*). A node past
// what it can carry refuses new changes (send, edit, delete, start) with
// overloaded and a retry_ms, before it does any work for them: nothing is
// stored, no budget is drawn on, and the reads, acks, resumes and
// heartbeats of every connection go on being served. Two signs say the
// node is past it:
//
//   - its store: more changes of all connections wait for the store than
//     Config.ShedPending (the store's writer cannot keep up, and every
//     ack would wait longer still);
//   - its fan-out: one of a workspace's agent connections is behind when
//     an event of the workspace is queued on it (hub.publish):
//     Config.ShedBehind items, or a quarter of Config.SendQueueBytes,
//     wait for it, not yet written (conn.behind). Its writer cannot keep
//     up, and more events would pile up past Config.SendQueueBytes and
//     close it as a slow consumer, to reconnect and replay. The
//     workspace's changes are then refused for Config.ShedHold, after
//     which the next event tells again. A connection behind for
//     slowAfterHolds holds in a row is too slow to wait for even with
//     nothing new for it: it no longer counts, and is closed as a slow
//     consumer when its bytes pass Config.SendQueueBytes.
//
// A change taken is decided (given its seq, and its event queued for its
// recipients) by the reader that took it, before the reader reads on
// (conn.change). So once a workspace's changes are refused, nothing more
// of it lands on its agents' queues but the changes its readers were
// deciding at that moment (one each): the queues only drain, and the
// fan-out's sign needs no margin for changes taken and not yet decided.
// Its bound is set by what a burst of the readers' decisions brings at
// once (2,048 changes in flight from 32 connections, one agent receiving
// them all, is a burst, not a slow agent: about 700 KB), the bytes' bound
// by the slow consumer's. (Before, each change waited for a goroutine of
// its own to decide it, a third sign refused a workspace's changes while
// half a send queue of them were not yet decided, and an agent was
// behind at half a send queue, 256 items: with the decision in the
// reader the third sign never fired and the 256 items were passed by
// every burst, issue 16 item 2, docs/benchmarks.md.)
type shedder struct {
	maxPending int64 // < 0: the store's sign is off
	hold       time.Duration
	// pending counts the changes handed to the store and not yet
	// answered, over every connection.
	pending atomic.Int64
}

// slowAfterHolds is how many holds an agent connection may stay behind
// and still hold its workspace's changes back (hub.lagging).
const slowAfterHolds = 20

func newShedder(cfg *Config) *shedder {
	return &shedder{maxPending: int64(cfg.ShedPending), hold: cfg.ShedHold}
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

// taken counts a change handed to the store, until answered.
func (s *shedder) taken() { s.pending.Add(1) }

func (s *shedder) answered() { s.pending.Add(-1) }

// behind is whether a connection's items not yet written are at least
// Config.ShedBehind, or its bytes a quarter of Config.SendQueueBytes: its
// writer is behind by that much (long before the bytes waiting make it a
// slow consumer). Only what is queued counts: counting the changes in
// flight too held a workspace whose agents keep up whenever as many
// changes were in flight (issue 16, item 2).
func (c *conn) behind() bool {
	c.mu.Lock()
	n, b := c.queuedItems, c.queuedBytes
	c.mu.Unlock()
	return n >= c.srv.cfg.ShedBehind || b*4 >= c.srv.cfg.SendQueueBytes
}
