package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"parley/cluster/membership"
	"parley/cluster/schema"
	"parley/store"

	"github.com/prometheus/client_golang/prometheus"
)

// PathProgress is the node link's route on which a conversation's
// replicas receive the progress of its sender (Dispatcher.HandleProgress).
const PathProgress = "/internal/v1/webhook-progress"

// Progress is how far one endpoint's events of one conversation were
// delivered, as the sending node shares it with the conversation's other
// replicas.
type Progress struct {
	Workspace    string            `json:"ws"`
	Conversation string            `json:"conv"`
	Webhook      string            `json:"hook"`
	Vec          map[string]uint64 `json:"vec,omitempty"`
	Created      bool              `json:"created,omitempty"`
}

// Store is what delivery reads of the node's store (*store.Store).
type Store interface {
	Conversation(ws, id string) (store.Conversation, error)
	Conversations(ws, owner string) ([]store.Conversation, error)
	Logged(ws, conv string, after uint64, limit int) ([]store.LoggedEvent, bool, error)
	OriginEvents(ws, conv, origin string, from uint64, limit int) ([]store.Event, error)
	SeqCovered(ws, conv string, have map[string]uint64) (uint64, error)
}

// Control is what delivery reads of and writes to the control plane.
type Control interface {
	// WebhookWorkspaces are the workspaces with an endpoint.
	WebhookWorkspaces() []string
	// HasWebhooks says whether ws has an endpoint, without allocating:
	// Notify asks it for every event.
	HasWebhooks(ws string) bool
	Webhooks(ws string) ([]schema.Webhook, error)
	// Secrets are the endpoint's secrets that sign at now, the current
	// one first.
	Secrets(ws, id string, now time.Time) ([][]byte, error)
	DeadLetters(ws, id string) ([]schema.DeadLetter, error)
	// Outbox is an endpoint's control-plane events not yet delivered, in
	// log order.
	Outbox(ws, id string) ([]schema.OutboxEntry, error)
	// Assignment is a conversation's assignment now: its operator ("":
	// none) and version.
	Assignment(ws, conv string) (string, uint64, error)
	// Region is the region ws is pinned to, "" when unpinned.
	Region(ws string) string
	Apply(ctx context.Context, cmd schema.Command) error
}

// Members are the nodes gossip sees alive (*membership.Membership).
type Members interface {
	Members() []membership.Member
}

// Peers reaches other nodes over the node link.
type Peers interface {
	Post(ctx context.Context, addr, path string, body []byte) ([]byte, error)
}

// Config configures New. Self, Store, Control, Members, Peers and Path are
// required; every other field has a zero value that works.
type Config struct {
	Self    string
	Store   Store
	Control Control
	Members Members
	Peers   Peers
	// Path is the node's webhook file (bbolt): the delivery cursors.
	Path string
	// Replicas is how many nodes hold a conversation (the replication
	// factor): its sender is the first of them alive. Zero: 3.
	Replicas int
	// AllowPrivate lets deliveries reach private, loopback and
	// link-local addresses (Forbidden). Zero: refused.
	AllowPrivate bool
	// Timeout bounds each delivery: connection, TLS, the answer's
	// headers and body. Zero: 10s.
	Timeout time.Duration
	// Concurrency bounds the deliveries in flight to one endpoint from
	// this node. Zero: 4.
	Concurrency int
	// RetryFor is how long after a change its event is retried before it
	// becomes a dead letter. Zero: 24h.
	RetryFor time.Duration
	// BackoffMin and BackoffMax bound the wait between two attempts: it
	// doubles from BackoffMin at each failure up to BackoffMax, and a
	// random part of it (jitter) spreads retries. Zero: 1s and 1h.
	BackoffMin, BackoffMax time.Duration
	// Rescan is how often the dispatcher looks whether the live members
	// changed, and then checks every conversation of a workspace with an
	// endpoint for events to send (a takeover), and dead letters for
	// redelivery. Zero: 5s.
	Rescan time.Duration
	// FullRescan is how often every conversation is checked even when the
	// members did not change (a change missed). Zero: 1m.
	FullRescan time.Duration
	// ShareEvery is how often progress is shared with the other replicas.
	// Zero: 1s.
	ShareEvery time.Duration
	// OutboxEvery is how often the control plane's outboxes are checked
	// for events to send. Zero: 500ms.
	OutboxEvery time.Duration
	// Registerer takes the delivery metrics. Zero: a registry of their
	// own, which nothing exports.
	Registerer prometheus.Registerer
	// Logger. Zero: slog.Default().
	Logger *slog.Logger
	// Now is the clock. Zero: time.Now.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.RetryFor <= 0 {
		c.RetryFor = 24 * time.Hour
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = time.Second
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = time.Hour
	}
	c.BackoffMax = max(c.BackoffMax, c.BackoffMin)
	if c.Rescan <= 0 {
		c.Rescan = 5 * time.Second
	}
	if c.FullRescan <= 0 {
		c.FullRescan = time.Minute
	}
	if c.ShareEvery <= 0 {
		c.ShareEvery = time.Second
	}
	if c.OutboxEvery <= 0 {
		c.OutboxEvery = 500 * time.Millisecond
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Dispatcher delivers a node's share of the webhook events: those of the
// conversations it is the sender of. Notify tells it of changes without
// blocking; Run delivers; Close closes its file after Run returned.
type Dispatcher struct {
	cfg    Config
	place  Placement
	cur    *cursors
	client *http.Client
	m      *metrics

	mu sync.Mutex
	// dirty are the conversations changed since the last pass, each with
	// the highest seq notified.
	dirty map[convKey]uint64
	// streams are the streams being delivered, one goroutine each.
	streams map[streamKey]*stream
	// sems bound each endpoint's deliveries in flight.
	sems map[string]chan struct{}
	// share is the progress not yet shared with the other replicas.
	share map[streamKey]cursor

	wake chan struct{}
	// busy: a redelivery pass or a share is under way (one at a time).
	redelivering, sharing atomic.Bool
	wg                    sync.WaitGroup
}

type convKey struct{ ws, conv string }

// stream is an endpoint's events of one conversation being delivered.
type stream struct {
	// again: a change came while it ran; want: the highest seq notified.
	again bool
	want  uint64
}

// New opens the node's webhook file.
func New(cfg Config) (*Dispatcher, error) {
	cfg.defaults()
	cur, err := openCursors(cfg.Path)
	if err != nil {
		return nil, err
	}
	return &Dispatcher{
		cfg:     cfg,
		place:   Placement{Self: cfg.Self, Members: cfg.Members, Region: cfg.Control.Region, Replicas: cfg.Replicas},
		cur:     cur,
		client:  newClient(cfg.Timeout, cfg.AllowPrivate),
		m:       newMetrics(cfg.Registerer),
		dirty:   map[convKey]uint64{},
		streams: map[streamKey]*stream{},
		sems:    map[string]chan struct{}{},
		share:   map[streamKey]cursor{},
		wake:    make(chan struct{}, 1),
	}, nil
}

// Close closes the webhook file; call it after Run returned.
func (d *Dispatcher) Close() error { return d.cur.close() }

// Notify tells the dispatcher of committed (or about to be) events. It
// never blocks: the store calls it on its commit path. Events of
// workspaces without an endpoint cost a lookup and nothing more: there is
// nothing to deliver (the pass Notify wakes would find no endpoint), and
// an endpoint added later is found by the rescans.
func (d *Dispatcher) Notify(evs []store.Event) {
	if !slices.ContainsFunc(evs, func(e store.Event) bool {
		return e.Kind == store.EventMessage && d.cfg.Control.HasWebhooks(e.Workspace)
	}) {
		return
	}
	n := 0
	d.mu.Lock()
	for _, e := range evs {
		if e.Kind != store.EventMessage {
			continue
		}
		k := convKey{e.Workspace, e.Conversation}
		d.dirty[k] = max(d.dirty[k], e.Seq)
		n++
	}
	d.mu.Unlock()
	if n > 0 {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// HandleProgress takes in another node's progress (the body of a
// PathProgress request).
func (d *Dispatcher) HandleProgress(body []byte) error {
	var ps []Progress
	if err := json.Unmarshal(body, &ps); err != nil {
		return fmt.Errorf("webhook progress: %w", err)
	}
	_, err := d.cur.mergeAll(ps)
	return err
}

// Run delivers until ctx ends, then waits for its deliveries to stop.
func (d *Dispatcher) Run(ctx context.Context) error {
	defer d.wg.Wait()
	rescan := time.NewTicker(d.cfg.Rescan)
	defer rescan.Stop()
	share := time.NewTicker(d.cfg.ShareEvery)
	defer share.Stop()
	outbox := time.NewTicker(d.cfg.OutboxEvery)
	defer outbox.Stop()
	d.rescan(ctx)
	view, last := d.view(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
			d.mu.Lock()
			dirty := d.dirty
			d.dirty = map[convKey]uint64{}
			d.mu.Unlock()
			for k, seq := range dirty {
				d.kickConversation(ctx, k, seq)
			}
		case <-rescan.C:
			// Reading every conversation costs: only when a takeover may
			// be due, or after FullRescan.
			if v := d.view(); v != view || time.Since(last) >= d.cfg.FullRescan {
				d.rescan(ctx)
				view, last = v, time.Now()
			}
			d.async(ctx, &d.redelivering, d.redeliver)
		case <-share.C:
			d.async(ctx, &d.sharing, d.shareProgress)
		case <-outbox.C:
			d.kickOutboxes(ctx)
		}
	}
}

// view names the live members, to tell when they change.
func (d *Dispatcher) view() string { return d.place.View() }

// async runs fn in a goroutine of the dispatcher's unless the last one
// flagged by busy still runs.
func (d *Dispatcher) async(ctx context.Context, busy *atomic.Bool, fn func(context.Context)) {
	if !busy.CompareAndSwap(false, true) {
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer busy.Store(false)
		fn(ctx)
	}()
}

// sender says whether this node sends a conversation's events
// (Placement.Sender).
func (d *Dispatcher) sender(ws, conv string) bool { return d.place.Sender(ws, conv) }

// replicas are the other nodes alive that hold a conversation.
func (d *Dispatcher) replicas(ws, conv string) []membership.Member { return d.place.Others(ws, conv) }

// outboxSender says whether this node sends a workspace's control-plane
// events: the first alive member by rendezvous on the workspace, in its
// region when it is pinned.
func (d *Dispatcher) outboxSender(ws string) bool {
	return d.place.Sends(ws, "webhook-outbox/"+ws, 1)
}

// sends says whether this node sends a stream's events.
func (d *Dispatcher) sends(k streamKey) bool {
	if k.conv == "" {
		return d.outboxSender(k.ws)
	}
	return d.sender(k.ws, k.conv)
}

// kickOutboxes starts the outbox streams with events this node sends.
// An outbox stream is a streamKey without conversation.
func (d *Dispatcher) kickOutboxes(ctx context.Context) {
	for _, ws := range d.cfg.Control.WebhookWorkspaces() {
		hooks, err := d.cfg.Control.Webhooks(ws)
		if err != nil || !d.outboxSender(ws) {
			continue
		}
		for _, h := range hooks {
			if h.Pending > 0 {
				d.kick(ctx, streamKey{ws, "", h.ID}, 0)
			}
		}
	}
}

// drainOutbox delivers an endpoint's control-plane events in log order,
// acknowledging each in the control plane once delivered (or dead).
func (d *Dispatcher) drainOutbox(ctx context.Context, k streamKey) error {
	if _, err := d.hook(k); err != nil {
		return err
	}
	box, err := d.cfg.Control.Outbox(k.ws, k.hook)
	if err != nil {
		return errStop
	}
	for _, e := range box {
		ev, err := outboxEvent(k.ws, e)
		if err != nil {
			return err
		}
		if err := d.deliver(ctx, k, ev); err != nil {
			return err
		}
		if err := d.cfg.Control.Apply(ctx, schema.AckWebhookOutbox{Workspace: k.ws, Webhook: k.hook, Through: e.Index}); err != nil {
			return fmt.Errorf("acknowledging the outbox: %w", err)
		}
	}
	return nil
}

func (d *Dispatcher) kickConversation(ctx context.Context, k convKey, seq uint64) {
	hooks, err := d.cfg.Control.Webhooks(k.ws)
	if err != nil || len(hooks) == 0 || !d.sender(k.ws, k.conv) {
		return
	}
	for _, h := range hooks {
		if conversational(h) {
			d.kick(ctx, streamKey{k.ws, k.conv, h.ID}, seq)
		}
	}
}

// conversational says whether an endpoint wants any of the events a
// conversation's log makes.
func conversational(h schema.Webhook) bool {
	return slices.ContainsFunc(h.Events, func(t string) bool {
		return t != schema.EventConversationAssigned && t != schema.EventVisitorErased
	})
}

// kick makes sure a stream is being delivered.
func (d *Dispatcher) kick(ctx context.Context, k streamKey, want uint64) {
	d.mu.Lock()
	if st := d.streams[k]; st != nil {
		st.again = true
		st.want = max(st.want, want)
		d.mu.Unlock()
		return
	}
	st := &stream{want: want}
	d.streams[k] = st
	d.mu.Unlock()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			err := d.drain(ctx, k, st)
			if err != nil && ctx.Err() == nil && !errors.Is(err, errStop) {
				d.cfg.Logger.Warn("webhook: stream stopped", "workspace", k.ws, "webhook", k.hook, "err", err)
			}
			d.mu.Lock()
			if err == nil && st.again && ctx.Err() == nil {
				st.again = false
				d.mu.Unlock()
				continue
			}
			delete(d.streams, k)
			d.mu.Unlock()
			return
		}
	}()
}

// errStop ends a stream quietly: the endpoint is gone, the conversation
// erased, or this node no longer sends it.
var errStop = errors.New("webhook: stream ends")

// rescan kicks every stream with events this node should send.
func (d *Dispatcher) rescan(ctx context.Context) {
	live := map[string]bool{}
	for _, ws := range d.cfg.Control.WebhookWorkspaces() {
		hooks, err := d.cfg.Control.Webhooks(ws)
		if err != nil || len(hooks) == 0 {
			continue
		}
		for _, h := range hooks {
			live[ws+"\x00"+h.ID] = true
		}
		convs, err := d.cfg.Store.Conversations(ws, "")
		if err != nil {
			continue
		}
		for _, c := range convs {
			if ctx.Err() != nil {
				return
			}
			if !d.sender(ws, c.ID) {
				continue
			}
			for _, h := range hooks {
				if !conversational(h) {
					continue
				}
				k := streamKey{ws, c.ID, h.ID}
				cur, err := d.cur.get(k)
				if err == nil && cur.Created && cur.Seq >= c.Head {
					continue
				}
				d.kick(ctx, k, 0)
			}
		}
	}
	if err := d.cur.drop(func(k streamKey) bool { return !live[k.ws+"\x00"+k.hook] }); err != nil {
		d.cfg.Logger.Warn("webhook: forgetting cursors", "err", err)
	}
}

// hook returns a stream's endpoint, errStop when it is gone.
func (d *Dispatcher) hook(k streamKey) (schema.Webhook, error) {
	hooks, err := d.cfg.Control.Webhooks(k.ws)
	if err != nil {
		return schema.Webhook{}, errStop
	}
	for _, h := range hooks {
		if h.ID == k.hook {
			return h, nil
		}
	}
	return schema.Webhook{}, errStop
}

// pageSize is how many events a stream reads at a time.
const pageSize = 64

// drain delivers a stream's events from its cursor to the end of the
// durable log, in order.
func (d *Dispatcher) drain(ctx context.Context, k streamKey, st *stream) error {
	if k.conv == "" {
		return d.drainOutbox(ctx, k)
	}
	h, err := d.hook(k)
	if err != nil {
		return err
	}
	if !d.sender(k.ws, k.conv) {
		return errStop
	}
	cur, err := d.cur.get(k)
	if err != nil {
		return err
	}
	conv, err := d.cfg.Store.Conversation(k.ws, k.conv)
	if errors.Is(err, store.ErrNotFound) {
		return errStop // erased, or not held here yet
	}
	if err != nil {
		return err
	}
	if len(cur.Vec) > 0 {
		// Another node's progress: start after what it covers.
		if s, err := d.cfg.Store.SeqCovered(k.ws, k.conv, cur.Vec); err == nil && s > cur.Seq {
			cur.Seq = s
		}
	}
	created := h.Created.UnixMilli()
	if !cur.Created {
		if h.Wants(schema.EventConversationCreated) && conv.Created >= created {
			ev, err := conversationEvent(conv)
			if err != nil {
				return err
			}
			if err := d.deliver(ctx, k, ev); err != nil {
				return err
			}
		}
		if h.Wants(schema.EventVisitorIdentified) && strings.HasPrefix(conv.Owner, "u:") && conv.Created >= created {
			ev, err := identifiedEvent(conv)
			if err != nil {
				return err
			}
			if err := d.deliver(ctx, k, ev); err != nil {
				return err
			}
		}
		cur.Created = true
		if err := d.save(k, cur); err != nil {
			return err
		}
	}
	waited := time.Duration(0)
	for {
		evs, more, err := d.cfg.Store.Logged(k.ws, k.conv, cur.Seq, pageSize)
		if errors.Is(err, store.ErrNotFound) {
			return errStop
		}
		if err != nil {
			return err
		}
		moved := false
		for _, e := range evs {
			typ := typeOf(e)
			if typ != "" && !cur.covers(e.Stamp.Origin, e.Stamp.OSeq) && h.Wants(typ) && changeTime(e).UnixMilli() >= created {
				ev, err := messageEvent(e, typ)
				if err != nil {
					return err
				}
				if err := d.deliver(ctx, k, ev); err != nil {
					return err
				}
				cur.advance(e)
				// Durable at once: a restart resends nothing delivered.
				if err := d.save(k, cur); err != nil {
					return err
				}
				continue
			}
			cur.advance(e)
			moved = true
		}
		if moved {
			if err := d.save(k, cur); err != nil {
				return err
			}
		}
		if more {
			continue
		}
		// An event notified may not be durable yet: wait for it a little
		// (the rescan catches what this gives up on).
		d.mu.Lock()
		want := st.want
		d.mu.Unlock()
		if cur.Seq >= want || waited >= 5*time.Second {
			return nil
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
		waited += 10 * time.Millisecond
	}
}

// save stores a stream's cursor and queues it to be shared.
func (d *Dispatcher) save(k streamKey, cur cursor) error {
	if err := d.cur.put(k, cur); err != nil {
		return err
	}
	d.mu.Lock()
	d.share[k] = cur.clone()
	d.mu.Unlock()
	return nil
}

// deliver sends one event until it is delivered or, retried for RetryFor
// after its change, recorded as a dead letter.
func (d *Dispatcher) deliver(ctx context.Context, k streamKey, ev event) error {
	if ev.at.IsZero() {
		ev.at = d.cfg.Now() // a change of a log entry without its time
	}
	for attempt := 1; ; attempt++ {
		h, err := d.hook(k)
		if err != nil {
			return err
		}
		if !d.sends(k) {
			return errStop
		}
		err = d.attempt(ctx, h, ev)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if d.cfg.Now().Sub(ev.at) >= d.cfg.RetryFor {
			letter := schema.DeadLetter{EventID: ev.id, Type: ev.typ, Conversation: ev.conv, Visitor: ev.visitor, Origin: ev.origin, OSeq: ev.oseq,
				Attempts: attempt, LastError: truncate(err.Error(), 512), Dead: d.cfg.Now().UTC()}
			aerr := d.cfg.Control.Apply(ctx, schema.AddDeadLetters{Workspace: k.ws, Webhook: k.hook, Letters: []schema.DeadLetter{letter}})
			if aerr == nil {
				d.m.dead.WithLabelValues(k.hook).Inc()
				d.cfg.Logger.Warn("webhook: event dead-lettered", "workspace", k.ws, "webhook", k.hook, "event", ev.id, "attempts", attempt, "err", err)
				return nil
			}
			d.cfg.Logger.Warn("webhook: recording a dead letter", "workspace", k.ws, "webhook", k.hook, "err", aerr)
		}
		g := d.m.retrying.WithLabelValues(k.hook)
		g.Inc()
		err = sleep(ctx, d.backoff(attempt))
		g.Dec()
		if err != nil {
			return err
		}
	}
}

// backoff is the wait after the nth failure (Backoff).
func (d *Dispatcher) backoff(n int) time.Duration {
	return Backoff(n, d.cfg.BackoffMin, d.cfg.BackoffMax)
}

func sleep(ctx context.Context, d time.Duration) error { return Sleep(ctx, d) }

// attempt POSTs an event once, within the endpoint's concurrency.
func (d *Dispatcher) attempt(ctx context.Context, h schema.Webhook, ev event) error {
	sem := d.sem(h.ID)
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-sem }()
	start := time.Now()
	err := d.post(ctx, h, ev)
	if err != nil {
		d.m.failed.WithLabelValues(h.ID).Inc()
		return err
	}
	d.m.delivered.WithLabelValues(h.ID).Inc()
	d.m.latency.WithLabelValues(h.ID).Observe(time.Since(start).Seconds())
	return nil
}

func (d *Dispatcher) sem(hook string) chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.sems[hook]
	if s == nil {
		s = make(chan struct{}, d.cfg.Concurrency)
		d.sems[hook] = s
	}
	return s
}

// post sends an event once: 2xx is delivered, anything else a failure.
func (d *Dispatcher) post(ctx context.Context, h schema.Webhook, ev event) error {
	now := d.cfg.Now()
	secrets, err := d.cfg.Control.Secrets(h.Workspace, h.ID, now)
	if err != nil {
		return fmt.Errorf("signing secrets: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(ev.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Parley-Webhooks/1")
	req.Header.Set(HeaderEventID, ev.id)
	req.Header.Set(HeaderEventType, ev.typ)
	req.Header.Set(HeaderSignature, Signature(now, ev.body, secrets))
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook: %s answered %s", h.URL, resp.Status)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// shareProgress sends the progress made since the last share to each
// conversation's other replicas.
func (d *Dispatcher) shareProgress(ctx context.Context) {
	d.mu.Lock()
	share := d.share
	d.share = map[streamKey]cursor{}
	d.mu.Unlock()
	byPeer := map[string][]Progress{}
	for k, c := range share {
		for _, m := range d.replicas(k.ws, k.conv) {
			byPeer[m.RaftAddr] = append(byPeer[m.RaftAddr], Progress{Workspace: k.ws, Conversation: k.conv, Webhook: k.hook, Vec: c.Vec, Created: c.Created})
		}
	}
	for addr, ps := range byPeer {
		b, err := json.Marshal(ps)
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = d.cfg.Peers.Post(cctx, addr, PathProgress, b)
		cancel()
		if err != nil && ctx.Err() == nil {
			// The peer catches up from the next share of those streams;
			// a takeover before then resends a little more.
			d.cfg.Logger.Debug("webhook: sharing progress", "peer", addr, "err", err)
		}
	}
}

// redeliver sends again the dead letters an operator marked, of the
// conversations this node sends, and resolves them.
func (d *Dispatcher) redeliver(ctx context.Context) {
	for _, ws := range d.cfg.Control.WebhookWorkspaces() {
		hooks, err := d.cfg.Control.Webhooks(ws)
		if err != nil {
			continue
		}
		for _, h := range hooks {
			letters, err := d.cfg.Control.DeadLetters(ws, h.ID)
			if err != nil {
				continue
			}
			var delivered, failed []string
			var lastErr string
			for _, l := range letters {
				k := streamKey{ws, l.Conversation, h.ID}
				if l.Origin == schema.OutboxOrigin {
					k.conv = ""
				}
				if !l.Redeliver || !d.sends(k) || len(delivered)+len(failed) == schema.MaxDeadLetterBatch {
					continue
				}
				ev, err := d.letterEvent(ws, l)
				if errors.Is(err, store.ErrNotFound) {
					delivered = append(delivered, l.EventID) // erased: nothing left to send
					continue
				}
				if err == nil {
					err = d.attempt(ctx, h, ev)
				}
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					failed = append(failed, l.EventID)
					lastErr = truncate(err.Error(), 512)
				} else {
					delivered = append(delivered, l.EventID)
				}
			}
			if len(delivered)+len(failed) == 0 {
				continue
			}
			if err := d.cfg.Control.Apply(ctx, schema.ResolveDeadLetters{Workspace: ws, Webhook: h.ID, Delivered: delivered, Failed: failed, Error: lastErr}); err != nil {
				d.cfg.Logger.Warn("webhook: resolving dead letters", "workspace", ws, "webhook", h.ID, "err", err)
			}
		}
	}
}

// letterEvent reads a dead letter's event again from the store, as it is
// now.
func (d *Dispatcher) letterEvent(ws string, l schema.DeadLetter) (event, error) {
	switch {
	case l.Origin == schema.OutboxOrigin:
		e := schema.OutboxEntry{Index: l.OSeq, Type: l.Type, Conversation: l.Conversation, Visitor: l.Visitor}
		if l.Type == schema.EventConversationAssigned {
			var err error
			if e.Operator, e.Version, err = d.cfg.Control.Assignment(ws, l.Conversation); err != nil {
				return event{}, err
			}
		}
		return outboxEvent(ws, e)
	case l.Type == schema.EventConversationCreated || l.Type == schema.EventVisitorIdentified:
		c, err := d.cfg.Store.Conversation(ws, l.Conversation)
		if err != nil {
			return event{}, err
		}
		if l.Type == schema.EventVisitorIdentified {
			return identifiedEvent(c)
		}
		return conversationEvent(c)
	}
	evs, err := d.cfg.Store.OriginEvents(ws, l.Conversation, l.Origin, l.OSeq, 1)
	if err != nil {
		return event{}, err
	}
	if len(evs) == 0 || evs[0].Stamp.OSeq != l.OSeq {
		return event{}, fmt.Errorf("event %s/%d of %s: %w", l.Origin, l.OSeq, l.Conversation, store.ErrNotFound)
	}
	change := store.Edit
	switch l.Type {
	case schema.EventMessageCreated:
		change = store.Send
	case schema.EventMessageDeleted:
		change = store.Delete
	}
	return messageEvent(store.LoggedEvent{Event: evs[0], Change: change}, l.Type)
}
