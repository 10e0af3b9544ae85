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
//   - its fan-out: most of a workspace's agent connections are behind,
//     their send queues at least half full when an event of the workspace
//     was queued on them (hub.publish). Their writers cannot keep up, and
//     more events would fill the queues and close them as slow consumers,
//     to reconnect and replay. The workspace's changes are then refused
//     for Config.ShedHold, after which the next event tells again.
//
// A single agent behind among several is not the node's overload: it is
// closed as a slow consumer when its queue fills, as before.
type shedder struct {
	maxPending int64 // < 0: the store's sign is off
	hold       time.Duration
	// pending counts the changes handed to the store and not yet
	// answered, over every connection.
	pending atomic.Int64
}

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

// begin counts a change handed to the store; done, once its answer is in.
func (s *shedder) begin() { s.pending.Add(1) }
func (s *shedder) done()  { s.pending.Add(-1) }

// behind is whether a connection's send queue is at least half full: its
// writer is behind by that much.
func (c *conn) behind() bool { return len(c.out)*2 >= cap(c.out) }
