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
	res, o, err := s.sequenceRemote(r)
	if err != nil {
		return res, nil, err
	}
	durable := make(chan error, 1)
	if o == nil {
		durable <- nil // already held: nothing to commit
		return res, durable, nil
	}
	go func() {
		if err := <-o.done; err != nil {
			durable <- fmt.Errorf("remote event %s.%d of %s/%s: %w", r.Stamp.Origin, r.Stamp.OSeq, ws, conv, err)
			return
		}
		durable <- nil
	}()
	return res, durable, nil
}

func (s *Store) sequenceRemote(r Remote) (Result, *op, error) {
	ws, conv := r.Conversation.Workspace, r.Conversation.ID
	q := &s.seq
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := s.waitSpace(); err != nil {
		return Result{}, nil, err
	}
	tx, err := s.db.read()
	if err != nil {
		return Result{}, nil, err
	}
	defer s.db.done(tx)
	cs, err := q.state(tx, s.keys, ws, conv)
	if err != nil {
		return Result{}, nil, err
	}
	if cs.remote == nil {
		cs.remote = map[string]uint64{}
	}
	head, ok := cs.remote[r.Stamp.Origin]
	if !ok {
		head = originHead(tx, ws, conv, r.Stamp.Origin)
	}
	switch {
	case r.Stamp.OSeq <= head:
		q.release(ws, conv, cs)
		return Result{}, nil, nil
	case r.Stamp.OSeq != head+1:
		q.release(ws, conv, cs)
		return Result{}, nil, fmt.Errorf("remote event %s.%d of %s/%s: next is %d: %w", r.Stamp.Origin, r.Stamp.OSeq, ws, conv, head+1, ErrInvalid)
	}
	cs.remote[r.Stamp.Origin] = r.Stamp.OSeq
	cur, rec, found, err := q.current(tx, s.keys, cs, ws, conv, r.Message.ID)
	if err != nil {
		q.release(ws, conv, cs)
		return Result{}, nil, err
	}
	merged := r.Message
	if found {
		merged = crdt.MergeMessage(cur, r.Message)
		if merged.Equal(cur) {
			return Result{Seq: rec.Last, Message: cur}, s.advanceOnly(cs, ws, conv, r.Stamp), nil
		}
	}
	enc, err := marshal(merged)
	if err != nil {
		q.release(ws, conv, cs)
		return Result{}, nil, err
	}
	o, res := s.appendEvent(cs, ws, conv, merged, rec, found, enc, r.Stamp, !found, r.Start)
	if found && merged.Created != cur.Created {
		res.Displaced = cur.Created
	}
	return res, o, nil
}

// advanceOnly queues the durable move of an origin's frontier for an event
// that changed nothing here. Caller holds q.mu, with room in the queue.
func (s *Store) advanceOnly(cs *convState, ws, conv string, st Stamp) *op {
	cs.inflight++
	o := &op{done: make(chan error, 1),
		fn: func(b *batch) error { return advanceOrigin(b.tx, ws, conv, st) },
		after: func() {
			q := &s.seq
			q.mu.Lock()
			defer q.mu.Unlock()
			if cs.inflight--; cs.inflight == 0 {
				delete(q.convs, pendingKey(ws, conv))
			}
		}}
	s.push(o)
	return o
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
		c.Head, c.Last, c.Updated = 0, nil, c.Created
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
