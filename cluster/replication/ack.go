package replication

import (
	"context"
	"errors"
	"fmt"
	"time"

	"parley/gateway"
	"parley/store"
	"parley/tracing"

	"go.opentelemetry.io/otel/trace"
)

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

// AckedStore is the gateway's store on a node with peers: a change is
// acknowledged once it is durable here and on a second replica.
type AckedStore struct {
	*store.Store
	Replicator *Replicator
}

// Apply applies a change and confirms it: ApplyAsync, then its Wait.
func (s AckedStore) Apply(ctx context.Context, ch store.Change) (store.Result, error) {
	res, p, err := s.ApplyAsync(ctx, ch)
	if err != nil || p == nil {
		return res, err
	}
	if err := p.Wait(); err != nil {
		if !errors.Is(err, gateway.ErrUnconfirmed) {
			res = store.Result{}
		}
		return res, err
	}
	return res, nil
}

// ApplyAsync decides and publishes a change (the store's ApplyAsync) and
// returns what waits for it to be durable here and confirmed
// (Replicator.Confirm): the wait for a second replica of a change it
// stored starts now, so that the confirmations of a connection's changes,
// waited for in turn, run out at once rather than one after another.
// When ctx carries a recorded span (the client's change), the store's
// part is the span parley.commit, decided, published and durable here,
// under which the event is fanned out and replicated (its Trace), and the
// wait for a second replica the span parley.confirm.
func (s AckedStore) ApplyAsync(ctx context.Context, ch store.Change) (store.Result, store.Pending, error) {
	tr := s.Replicator.cfg.Tracer
	cctx, span := tr.Child(ctx, "parley.commit")
	if span.IsRecording() {
		ch.Trace = cctx
	}
	res, p, err := s.Store.ApplyAsync(ctx, ch)
	if err != nil {
		if span.IsRecording() {
			span.SetAttributes(tracing.Seq(res.Seq), tracing.Dup(res.Dup))
			tracing.Fail(span, "not stored")
		}
		span.End()
		return res, nil, err
	}
	a := &ackedPending{r: s.Replicator, ctx: ctx, span: span, p: p, ws: ch.Workspace, conv: ch.Conversation, seq: res.Seq, dup: res.Dup}
	if res.Changed {
		a.conf = s.Replicator.startConfirm(ctx, ch.Workspace, ch.Conversation, res.Seq)
	}
	return res, a, nil
}

// ackedPending is AckedStore's Pending: the store's commit, then a second
// replica's confirmation.
type ackedPending struct {
	r    *Replicator
	ctx  context.Context
	span trace.Span // parley.commit
	p    store.Pending
	conf *confirmation // the change's own event's, started when decided
	ws   string
	conv string
	seq  uint64
	dup  bool
}

// Done says, without waiting, whether Wait would return at once: the
// store's commit is made and no confirmation is waited for (no other
// replica was sent the event). A Pending waiting for a replica says no.
func (a *ackedPending) Done() bool {
	if a.conf != nil || a.dup {
		return false
	}
	return a.p == nil || a.p.Done()
}

func (a *ackedPending) Wait() error {
	var err error
	if a.p != nil {
		err = a.p.Wait()
	}
	span := a.span
	if span.IsRecording() {
		span.SetAttributes(tracing.Seq(a.seq), tracing.Dup(a.dup))
		if err != nil {
			tracing.Fail(span, "not stored")
		}
	}
	span.End()
	if err != nil {
		a.conf.cancel()
		return err
	}
	_, span = a.r.cfg.Tracer.Child(a.ctx, "parley.confirm")
	switch {
	case a.conf != nil:
		err = a.conf.wait()
	case a.dup:
		err = a.r.confirmExisting(a.ctx, a.ws, a.conv, a.seq)
	}
	if err != nil {
		tracing.Fail(span, "unconfirmed")
	}
	span.End()
	return err
}

// Confirm waits until a second replica has stored the change this node
// just applied (res), when one is alive: that is what the sender's ack
// promises. A change sent again (a duplicate) is queued to the replicas
// once more, which store it once. It returns gateway.ErrUnconfirmed when
// no replica confirmed in time.
func (r *Replicator) Confirm(ctx context.Context, ch store.Change, res store.Result) error {
	switch {
	case res.Changed:
		return r.startConfirm(ctx, ch.Workspace, ch.Conversation, res.Seq).wait()
	case res.Dup:
		return r.confirmExisting(ctx, ch.Workspace, ch.Conversation, res.Seq)
	}
	return nil
}

// startConfirm starts waiting until a second replica has stored the event
// at seq (this node's own, just published), when one is alive: nil when
// none is. A replica that lacks earlier events of this node is sent them
// first.
func (r *Replicator) startConfirm(ctx context.Context, ws, conv string, seq uint64) *confirmation {
	r.mu.Lock()
	w := r.acks[ackKey{ws, conv, seq}]
	delete(r.acks, ackKey{ws, conv, seq})
	r.mu.Unlock()
	if w == nil {
		return nil // no other replica alive when it was published
	}
	return r.startWait(ctx, conv, w)
}

// confirmation is the wait for the replicas' answers to one event, each
// within confirmTimeout of its start; wait collects them.
type confirmation struct {
	r       *Replicator
	conv    string
	n       int
	results chan error
	stop    context.CancelFunc
}

// startWait starts waiting for w's answers: nil when only serving nodes
// were sent the event (no other replica is alive).
func (r *Replicator) startWait(ctx context.Context, conv string, w *ackWait) *confirmation {
	r.repairServing(w)
	if len(w.answers) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, confirmTimeout)
	c := &confirmation{r: r, conv: conv, n: len(w.answers), results: make(chan error, len(w.answers)), stop: cancel}
	for i, ch := range w.answers {
		go func() {
			var err error
			select {
			case err = <-ch:
			case <-ctx.Done():
				err = ctx.Err()
			}
			var gaps *GapsError
			if errors.As(err, &gaps) {
				err = r.repair(ctx, w.peers[i], gaps.Gaps)
			}
			c.results <- err
		}()
	}
	return c
}

// wait returns nil at the first replica's confirmation (nil c: nothing to
// wait for), else gateway.ErrUnconfirmed with every replica's error.
func (c *confirmation) wait() error {
	if c == nil {
		return nil
	}
	defer c.stop()
	var errs []error
	for range c.n {
		err := <-c.results
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	c.r.log.Warn("replication: no second replica confirmed an event", "conversation", c.conv, "err", errors.Join(errs...))
	return fmt.Errorf("%w: %v", gateway.ErrUnconfirmed, errors.Join(errs...))
}

// cancel gives up the wait (the change was not stored here).
func (c *confirmation) cancel() {
	if c != nil {
		c.stop()
	}
}

// repairServing sends each serving node that reports a gap what it lacks,
// in the background: the sender's ack does not wait for them.
func (r *Replicator) repairServing(w *ackWait) {
	for i, ch := range w.servingAnswers {
		go func() {
			ctx, cancel := context.WithTimeout(r.life, confirmTimeout)
			defer cancel()
			select {
			case err := <-ch:
				var gaps *GapsError
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
func (r *Replicator) repair(ctx context.Context, peer string, gaps []Gap) error {
	for _, g := range gaps {
		if g.Origin != r.st.Origin() {
			continue // not this node's to send
		}
		evs, err := r.st.OriginEvents(g.Workspace, g.Conversation, g.Origin, g.Next, 4096)
		if err != nil {
			return err
		}
		var batch []Event
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
		ch, ok := r.links.Enqueue(nil, peer, batch)
		if !ok {
			return fmt.Errorf("%w: %s", ErrLinkDown, peer)
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

// confirmExisting is Confirm for a message sent again (a retry): its event
// is queued to the replicas once more, which store it once.
func (r *Replicator) confirmExisting(ctx context.Context, ws, conv string, seq uint64) error {
	evs, _, err := r.st.Events(ws, conv, seq-1, 1)
	if err != nil || len(evs) == 0 || evs[0].Seq != seq || evs[0].Stamp.Origin != r.st.Origin() {
		// Not this node's event: it came from another replica, so two hold
		// it already.
		return nil
	}
	w := r.send(nil, evs[0])
	if w == nil {
		return nil
	}
	return r.startWait(ctx, conv, w).wait()
}

// sweep forgets answers nobody waited for (a change whose caller went away).
func (r *Replicator) sweep(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, w := range r.acks {
		if now.Sub(w.at) > time.Minute {
			delete(r.acks, k)
		}
	}
}
