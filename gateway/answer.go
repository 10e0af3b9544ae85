package gateway

import (
	"sync"

	"parley/gateway/wire"
	"parley/store"
	"parley/tracing"

	"go.opentelemetry.io/otel/trace"
)

// A connection's changes are decided by its reader (conn.change calls the
// store's ApplyAsync, which gives the change its seq and publishes its
// event before it returns) and answered once durable, in the order they
// were taken: acks are not sent before the commit (and, on a node with
// peers, a second replica's confirmation) they report. No goroutine is
// started per change: while changes wait, one goroutine of the
// connection's (answerChanges) waits for each in turn (the store commits
// in the order changes are queued, so waiting in order costs nothing)
// and ends when none is left. Each change holds one of the connection's
// places in flight (Config.MaxInFlight) until answered.

// changeWait is a change handed to the store, waiting for its answer.
type changeWait struct {
	p     store.Pending // nil: nothing to wait for (err is the answer)
	err   error         // the store's refusal, final
	res   store.Result
	span  trace.Span // the change's, ended with its answer
	ref   string
	conv  string
	id    string
	taken takenChange
}

// queueAnswer queues w's answer after those of the changes taken before
// it, and starts the connection's answering goroutine if none runs; a
// change with nothing to wait for and none before it is answered at once.
func (c *conn) queueAnswer(w changeWait) {
	c.answerMu.Lock()
	if c.answering {
		c.answers = append(c.answers, w)
		c.answerMu.Unlock()
		return
	}
	if w.p == nil {
		c.answerMu.Unlock()
		if c.answer(&w) {
			c.srv.writers.start(c)
		}
		return
	}
	c.answering = true
	if c.answers == nil {
		c.answers = *answerQueues.Get().(*[]changeWait)
	}
	c.answers = append(c.answers, w)
	c.answerMu.Unlock()
	c.opsWG.Add(1)
	go c.answerChanges()
}

// answerQueues are the answering goroutines' queues (conn.answers and the
// batch being answered), cleared, kept while no change waits: a queue grown
// to a connection's 64 changes in flight is 26 KiB, and answering starts
// and ends with every burst.
var answerQueues = sync.Pool{New: func() any { q := make([]changeWait, 0, 16); return &q }}

// answerChanges answers the connection's changes in order as they become
// durable, until none is waiting. Its owner is the connection: it ends
// once every change queued is answered (each commit ends, with the store's
// close at the latest; a confirmation within its timeout), and the
// connection's end waits for it (opsWG).
func (c *conn) answerChanges() {
	defer c.opsWG.Done()
	bp := answerQueues.Get().(*[]changeWait)
	batch := *bp
	for {
		clear(batch)
		c.answerMu.Lock()
		if len(c.answers) == 0 {
			// Nothing is kept: an idle connection holds no queue (both
			// go back to the pool).
			*bp = batch[:0]
			answerQueues.Put(bp)
			q := c.answers[:0]
			c.answers = nil
			c.answering = false
			c.answerMu.Unlock()
			answerQueues.Put(&q)
			return
		}
		batch, c.answers = c.answers, batch[:0]
		c.answerMu.Unlock()
		// The acks are queued, then written by this goroutine in one
		// turn where the writer was idle, rather than handed to a
		// writer worker to wake; what is queued is written before a
		// wait for a change not yet durable, so that the acks of a
		// commit made do not wait for the next.
		own := false
		for i := range batch {
			if own && !settled(batch[i].p) {
				c.writeNow()
				own = false
			}
			own = c.answer(&batch[i]) || own
		}
		if own {
			c.writeNow()
		}
	}
}

// settled says whether p's Wait returns at once.
func settled(p store.Pending) bool { return p == nil || p.Done() }

// answer waits for w's commit, settles it and sends its ack or error, and
// gives back its place in flight. own says the ack was queued with the
// connection's writer left to the caller (conn.queueOut).
func (c *conn) answer(w *changeWait) (own bool) {
	res, err := w.res, w.err
	if err == nil {
		res, err = waited(res, w.p, nil)
	}
	c.srv.settle(&w.taken, res.Changed)
	if !(w.taken.kind == store.Send && res.Changed) && w.taken.first {
		c.uncountable(w.conv)
	}
	span := w.span
	if err != nil {
		werr := c.storeError(err)
		if span.IsRecording() {
			span.SetAttributes(tracing.Code(werr.Code))
			tracing.Fail(span, "not acknowledged")
		}
		c.replyErr(w.ref, werr)
	} else {
		if span.IsRecording() {
			span.SetAttributes(tracing.Seq(res.Seq), tracing.Dup(res.Dup))
		}
		created := res.Message.Created
		own = c.queueOut(&outItem{kind: outFrame, data: encodeAck(wire.Ack{Type: wire.TypeAck, Ref: w.ref, Conversation: w.conv, ID: w.id, Seq: res.Seq, TS: &created, Dup: res.Dup})})
	}
	span.End()
	<-c.ops
	c.opsWG.Done()
	return own
}
