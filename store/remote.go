package store

import (
	"context"
	"fmt"
	"time"

	"parley/crdt"
)

// Remote is an event another replica sent: the message state it carries,
// its stamp, and its conversation's record as the origin knows it (a
// replica may hear of a conversation first through one of its events).
type Remote struct {
	Conversation Conversation // Workspace, ID, Owner, OwnerName, Created
	Stamp        Stamp
	Message      crdt.Message
	Start        time.Time // when it reached this node, for latency
	// Trace is the context of the span the event is applied under (a
	// traced peer's, package tracing), handed on in its Event; nil when
	// not traced. The store only carries it.
	Trace context.Context `json:"-"`
}

func (r Remote) validate() error {
	c := r.Conversation
	switch {
	case c.Workspace == "" || c.ID == "" || c.Owner == "":
		return fmt.Errorf("remote event: conversation workspace, id and owner required: %w", ErrInvalid)
	case r.Stamp.Origin == "" || r.Stamp.OSeq == 0:
		return fmt.Errorf("remote event: stamp required: %w", ErrInvalid)
	case r.Message.ID == "":
		return fmt.Errorf("remote event: message id required: %w", ErrInvalid)
	}
	return nil
}

// ApplyRemote merges another replica's event into this store, durably. Each
// origin's events must come in oseq order (the replication gate sees to
// it): an event already covered is a no-op, one beyond the next is
// ErrInvalid. The merge is the message CRDT's, so replicas that applied the
// same events in any interleaving of origins hold the same messages. When
// the merge changes the message, a local event with the remote stamp is
// published and logged (Changed); otherwise only the origin's frontier
// moves.
func (s *Store) ApplyRemote(ctx context.Context, r Remote) (Result, error) {
	res, durable, err := s.ApplyRemoteAsync(ctx, r)
	if err != nil {
		return res, err
	}
	if err := <-durable; err != nil {
		return Result{}, err
	}
	return res, nil
}

// ApplyRemoteAsync is ApplyRemote that returns once the event is decided
// and published, with a channel that receives the outcome of its commit:
// a replica that stores a peer's stream of events publishes each at once
// and acknowledges them when they are durable, so one slow fsync does not
// hold back the events behind it.
func (s *Store) ApplyRemoteAsync(ctx context.Context, r Remote) (Result, <-chan error, error) {
	if err := r.validate(); err != nil {
		return Result{}, nil, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, nil, err
	}
	ws, conv := r.Conversation.Workspace, r.Conversation.ID
	if err := s.ensureConversation(ctx, r.Conversation); err != nil {
		return Result{}, nil, err
	}
	res, w, err := s.sequenceRemote(r)
	if err != nil {
		return res, nil, err
	}
	durable := make(chan error, 1)
	if w == nil {
		durable <- nil // already held: nothing to commit
		return res, durable, nil
	}
	go func() {
		if err := w.wait(); err != nil {
			durable <- fmt.Errorf("remote event %s.%d of %s/%s: %w", r.Stamp.Origin, r.Stamp.OSeq, ws, conv, err)
			return
		}
		durable <- nil
	}()
	return res, durable, nil
}

func (s *Store) sequenceRemote(r Remote) (Result, *write, error) {
	q := &s.seq
	if err := s.reserve(); err != nil {
		return Result{}, nil, err
	}
	cs := q.acquire(r.Conversation.Workspace, r.Conversation.ID)
	res, w, err := s.decideRemoteLocked(cs, r)
	if w == nil {
		q.release(cs)
		s.unreserve()
		return res, nil, err
	}
	// The reference stays with the write in flight, until written.
	cs.mu.Unlock()
	return res, w, nil
}

// decideRemoteLocked is sequenceRemote with the conversation's lock held.
func (s *Store) decideRemoteLocked(cs *convState, r Remote) (Result, *write, error) {
	var cur crdt.Message
	rec, found, skip, err := s.remoteCurrent(cs, r, &cur)
	if err != nil || skip {
		return Result{}, nil, err
	}
	if cs.remote == nil {
		cs.remote = map[string]uint64{}
	}
	merged := r.Message
	if found {
		merged = crdt.MergeMessage(cur, r.Message)
		if merged.Equal(cur) {
			cs.remote[r.Stamp.Origin] = r.Stamp.OSeq
			return Result{Seq: rec.Last, Message: cur}, s.advanceOnly(cs, r.Stamp), nil
		}
	}
	cs.remote[r.Stamp.Origin] = r.Stamp.OSeq
	w, res := s.appendEvent(cs, merged, rec, found, r.Stamp, !found, r.Start, r.Trace)
	if found && merged.Created != cur.Created {
		res.Displaced = cur.Created
	}
	return res, w, nil
}

// remoteCurrent reads, for a remote event, what deciding it needs from the
// file, in a transaction that ends before the event is published: whether
// it is the origin's next (skip: covered already), and its message's
// current state. Caller holds cs.mu.
func (s *Store) remoteCurrent(cs *convState, r Remote, cur *crdt.Message) (rec msgRecord, found, skip bool, err error) {
	ws, conv := r.Conversation.Workspace, r.Conversation.ID
	q := &s.seq
	tx, err := s.db.read()
	if err != nil {
		return msgRecord{}, false, false, err
	}
	defer s.db.done(tx)
	if err := q.load(tx, s.keys, cs); err != nil {
		return msgRecord{}, false, false, err
	}
	head, ok := cs.remote[r.Stamp.Origin]
	if !ok {
		head = originHead(tx, ws, conv, r.Stamp.Origin)
	}
	switch {
	case r.Stamp.OSeq <= head:
		return msgRecord{}, false, true, nil
	case r.Stamp.OSeq != head+1:
		return msgRecord{}, false, false, fmt.Errorf("remote event %s.%d of %s/%s: next is %d: %w", r.Stamp.Origin, r.Stamp.OSeq, ws, conv, head+1, ErrInvalid)
	}
	rec, found, err = q.current(tx, s.keys, cs, ws, conv, r.Message.ID, cur)
	return rec, found, false, err
}

// advanceOnly queues the durable move of an origin's frontier for an event
// that changed nothing here. Caller holds cs.mu and a place in the queue.
func (s *Store) advanceOnly(cs *convState, st Stamp) *write {
	cs.inflight++
	w := &write{cs: cs, ws: cs.key.ws, conv: cs.key.conv, stamp: st, advance: true}
	w.op.seq = w
	w.op.wg.Add(1)
	s.push(&w.op)
	return w
}

// EnsureConversation creates, durably, the record of a conversation another
// replica holds, as that replica sent it, when it is not held here: a
// conversation fetched on demand that has no event yet (an event would
// bring its record). A tombstone refuses it (ErrNotFound).
func (s *Store) EnsureConversation(ctx context.Context, c Conversation) error {
	if c.Workspace == "" || c.ID == "" || c.Owner == "" {
		return fmt.Errorf("ensure conversation: workspace, id and owner required: %w", ErrInvalid)
	}
	return s.ensureConversation(ctx, c)
}

// ensureConversation creates, durably, the record of a conversation first
// heard of through a remote event (and of its workspace on this node).
func (s *Store) ensureConversation(ctx context.Context, c Conversation) error {
	if _, err := s.Conversation(c.Workspace, c.ID); err == nil {
		return nil
	}
	return s.submit(ctx, func(b *batch) error {
		if _, err := b.conv(c.Workspace, c.ID); err == nil {
			return nil
		}
		if b.tx.Bucket(bErased).Get(key(c.Workspace, c.ID)) != nil {
			return fmt.Errorf("conversation %s was erased: %w", c.ID, ErrNotFound)
		}
		if _, err := getWorkspace(b.tx, c.Workspace); err != nil {
			v, err := marshal(Workspace{ID: c.Workspace, Created: b.now.UnixMilli()})
			if err != nil {
				return err
			}
			if err := b.tx.Bucket(bWorkspaces).Put([]byte(c.Workspace), v); err != nil {
				return err
			}
		}
		c := c
		c.Head, c.Last, c.Updated, c.Inbox = 0, nil, c.Created, nil
		if _, err := b.keys.create(b.tx, c.Workspace, c.ID); err != nil {
			return err
		}
		if err := b.tx.Bucket(bOwners).Put(key(c.Workspace, c.Owner, c.ID), nil); err != nil {
			return err
		}
		b.touch(&c)
		return nil
	})
}
