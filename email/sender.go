// Package email mails a conversation's visitor through the workspace's own
// SMTP server (docs/operations.md, "E-mail"): the agents' replies the
// visitor has not seen, batched, once the visitor has left; the
// transcript, when asked for. Like the webhook dispatcher it reads the
// conversation's durable log (store.Logged) and sends from the first live
// replica of the conversation (webhook.Placement); the cursor of what was
// mailed is in the control plane (schema.RecordMail), shared by every
// replica, so a takeover after a kill -9 mails what was not mailed yet.
package email

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"parley/cluster/schema"
	"parley/crdt"
	"parley/ident"
	"parley/redact"
	"parley/store"
	"parley/webhook"

	"github.com/prometheus/client_golang/prometheus"
)

// Store is what the sender reads of the node's store (*store.Store).
type Store interface {
	Conversation(ws, id string) (store.Conversation, error)
	Conversations(ws, owner string) ([]store.Conversation, error)
	Logged(ws, conv string, after uint64, limit int) ([]store.LoggedEvent, bool, error)
	Reads(ws, conv string) (map[string]uint64, error)
}

// Control is what the sender reads of and writes to the control plane.
type Control interface {
	EmailWorkspaces() []string
	EmailSettings(ws string) (schema.EmailSettings, error)
	// EmailSecret is the SMTP password or API key in plaintext, nil
	// when none is set.
	EmailSecret(ws string) ([]byte, error)
	MailState(ws, conv string) (schema.MailState, error)
	Region(ws string) string
	Apply(ctx context.Context, cmd schema.Command) error
}

// Presence says whether a participant has a live connection anywhere in
// the cluster (*gateway.Server).
type Presence interface {
	Online(ws, participant string) bool
}

// Config configures New. Self, Store, Control, Members and Presence are
// required; every other field has a zero value that works.
type Config struct {
	Self     string
	Store    Store
	Control  Control
	Members  webhook.Members
	Presence Presence
	// Replicas is how many nodes hold a conversation. Zero: 3.
	Replicas int
	// Batch is how long after the first unseen reply the unseen replies
	// are mailed together. Zero: 2m.
	Batch time.Duration
	// TranscriptEvery is the least time between two transcripts of a
	// conversation. Zero: 10m.
	TranscriptEvery time.Duration
	// AllowPlaintext lets settings with tls none be used. Zero: refused.
	AllowPlaintext bool
	// Timeout bounds one SMTP session. Zero: 30s.
	Timeout time.Duration
	// BackoffMin and BackoffMax bound the wait after a temporary error,
	// doubling from BackoffMin. Zero: 5s (or BackoffMax when less) and
	// 30m.
	BackoffMin, BackoffMax time.Duration
	// RetryFor is how long a mail is retried after temporary errors
	// before it is given up (recorded failed). Zero: 24h.
	RetryFor time.Duration
	// Tick is how often due mails are looked for. Zero: 250ms.
	Tick time.Duration
	// Rescan is how often the sender looks whether the live members
	// changed, and then checks every conversation of the workspaces with
	// settings (a takeover); FullRescan every conversation regardless.
	// Zero: 2s and 1m.
	Rescan, FullRescan time.Duration
	// Registerer takes the metrics. Zero: a registry of their own.
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
	if c.Batch <= 0 {
		c.Batch = 2 * time.Minute
	}
	if c.TranscriptEvery <= 0 {
		c.TranscriptEvery = 10 * time.Minute
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 30 * time.Minute
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = min(5*time.Second, c.BackoffMax)
	}
	c.BackoffMax = max(c.BackoffMax, c.BackoffMin)
	if c.RetryFor <= 0 {
		c.RetryFor = 24 * time.Hour
	}
	if c.Tick <= 0 {
		c.Tick = 250 * time.Millisecond
	}
	if c.Rescan <= 0 {
		c.Rescan = 2 * time.Second
	}
	if c.FullRescan <= 0 {
		c.FullRescan = time.Minute
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

type convKey struct{ ws, conv string }

// pending is a conversation with mail to send: when to look again, and
// the failures of its current mail.
type pending struct {
	due      time.Time
	attempts int
	failing  time.Time // the first failure of the current mail
}

// Sender mails a node's share of the conversations: those it is the
// first live replica of. Notify tells it of changes without blocking; Run
// sends, one mail at a time, on its own goroutine.
type Sender struct {
	cfg   Config
	place webhook.Placement
	m     *metrics

	mu    sync.Mutex
	dirty map[convKey]bool
	wake  chan struct{}

	// pend is owned by Run's goroutine.
	pend map[convKey]*pending
}

// New makes a sender.
func New(cfg Config) *Sender {
	cfg.defaults()
	return &Sender{
		cfg:   cfg,
		place: webhook.Placement{Self: cfg.Self, Members: cfg.Members, Region: cfg.Control.Region, Replicas: cfg.Replicas},
		m:     newMetrics(cfg.Registerer),
		dirty: map[convKey]bool{},
		wake:  make(chan struct{}, 1),
		pend:  map[convKey]*pending{},
	}
}

// Notify tells the sender of committed (or about to be) events. It never
// blocks: the store calls it on its commit path.
func (s *Sender) Notify(evs []store.Event) {
	n := 0
	s.mu.Lock()
	for _, e := range evs {
		if e.Kind == store.EventMessage && e.Message.Role == ident.Visitor && !mailMessage(e.Message.ID) {
			continue // a visitor's chat: nothing to mail
		}
		s.dirty[convKey{e.Workspace, e.Conversation}] = true
		n++
	}
	s.mu.Unlock()
	if n > 0 {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func mailMessage(id string) bool {
	return strings.HasPrefix(id, ident.EmailMessagePrefix) || strings.HasPrefix(id, ident.TranscriptMessagePrefix)
}

// Run sends until ctx ends.
func (s *Sender) Run(ctx context.Context) error {
	tick := time.NewTicker(s.cfg.Tick)
	defer tick.Stop()
	rescan := time.NewTicker(s.cfg.Rescan)
	defer rescan.Stop()
	s.rescan()
	view, last := s.place.View(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
			s.mu.Lock()
			dirty := s.dirty
			s.dirty = map[convKey]bool{}
			s.mu.Unlock()
			for k := range dirty {
				s.look(k)
			}
		case <-rescan.C:
			if v := s.place.View(); v != view || time.Since(last) >= s.cfg.FullRescan {
				s.rescan()
				view, last = v, time.Now()
			}
		case <-tick.C:
			s.sendDue(ctx)
		}
	}
}

// look makes sure a conversation is checked at the next tick.
func (s *Sender) look(k convKey) {
	if p := s.pend[k]; p != nil {
		if p.attempts == 0 {
			p.due = time.Time{}
		}
		return
	}
	s.pend[k] = &pending{}
}

// rescan looks at every conversation this node sends for, of the
// workspaces with settings.
func (s *Sender) rescan() {
	for _, ws := range s.cfg.Control.EmailWorkspaces() {
		st, err := s.cfg.Control.EmailSettings(ws)
		if err != nil {
			continue
		}
		convs, err := s.cfg.Store.Conversations(ws, "")
		if err != nil {
			continue
		}
		for _, c := range convs {
			// Nothing written since the settings came: nothing to mail.
			if c.Updated >= st.Created.UnixMilli() && s.place.Sender(ws, c.ID) {
				s.look(convKey{ws, c.ID})
			}
		}
	}
}

// sendDue checks the conversations whose time came.
func (s *Sender) sendDue(ctx context.Context) {
	now := s.cfg.Now()
	var due []convKey
	for k, p := range s.pend {
		if !p.due.After(now) {
			due = append(due, k)
		}
	}
	slices.SortFunc(due, func(a, b convKey) int { return strings.Compare(a.ws+a.conv, b.ws+b.conv) })
	for _, k := range due {
		if ctx.Err() != nil {
			return
		}
		next, err := s.check(ctx, k, s.pend[k])
		if err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("email: conversation check", "workspace", k.ws, "conversation", k.conv, "err", err)
			next = now.Add(s.cfg.Rescan)
		}
		if next.IsZero() {
			delete(s.pend, k)
		} else {
			s.pend[k].due = next
		}
	}
}

// plan is what a conversation has to mail now.
type plan struct {
	conv    store.Conversation
	address string
	// replies not seen and not mailed, in log order, with the vector
	// covering them.
	replies []crdt.Message
	through map[string]uint64
	first   time.Time // the first reply's creation
	// transcript: a request not answered, the vector covering the
	// requests, and the visible messages.
	transcript bool
	requests   map[string]uint64
	visible    []crdt.Message
}

// read reads a conversation's log into a plan.
func (s *Sender) read(k convKey, st schema.EmailSettings, ms schema.MailState) (plan, error) {
	var p plan
	conv, err := s.cfg.Store.Conversation(k.ws, k.conv)
	if err != nil {
		return p, err
	}
	p.conv = conv
	reads, err := s.cfg.Store.Reads(k.ws, k.conv)
	if err != nil {
		return p, err
	}
	seen := reads[conv.Owner]
	var addrAt crdt.Message
	p.through = map[string]uint64{}
	p.requests = map[string]uint64{}
	msgs := map[string]crdt.Message{}
	var order []string
	for after := uint64(0); ; {
		evs, more, err := s.cfg.Store.Logged(k.ws, k.conv, after, 256)
		if err != nil {
			return p, err
		}
		for _, e := range evs {
			after = e.Seq
			m := e.Message
			if _, ok := msgs[m.ID]; !ok {
				order = append(order, m.ID)
			}
			msgs[m.ID] = m
			if e.Change != store.Send {
				continue
			}
			switch {
			case m.Author == conv.Owner && strings.HasPrefix(m.ID, ident.EmailMessagePrefix):
			case m.Author == conv.Owner && strings.HasPrefix(m.ID, ident.TranscriptMessagePrefix):
				if e.Stamp.OSeq > ms.Transcripts[e.Stamp.Origin] && !m.IsDeleted() {
					p.transcript = true
					p.requests[e.Stamp.Origin] = max(p.requests[e.Stamp.Origin], e.Stamp.OSeq)
				}
			case m.Role != ident.Visitor && !m.Internal && !m.IsDeleted() && e.Seq > seen &&
				e.Stamp.OSeq > ms.Mailed[e.Stamp.Origin] && m.Created.Wall >= st.Created.UnixMilli():
				p.replies = append(p.replies, m)
				p.through[e.Stamp.Origin] = max(p.through[e.Stamp.Origin], e.Stamp.OSeq)
				if p.first.IsZero() {
					p.first = time.UnixMilli(m.Created.Wall)
				}
			}
		}
		if !more {
			break
		}
	}
	for _, id := range order {
		m := msgs[id]
		if m.IsDeleted() || m.Internal {
			continue
		}
		if m.Author == conv.Owner && strings.HasPrefix(id, ident.EmailMessagePrefix) {
			if addrAt.ID == "" || addrAt.Less(m) {
				addrAt = m
			}
			continue
		}
		if mailMessage(id) {
			continue
		}
		p.visible = append(p.visible, m)
	}
	slices.SortFunc(p.visible, func(a, b crdt.Message) int {
		if a.Less(b) {
			return -1
		}
		return 1
	})
	// The replies as they are now (an edit since), still not deleted.
	p.replies = slices.DeleteFunc(p.replies, func(m crdt.Message) bool { return msgs[m.ID].IsDeleted() })
	for i, m := range p.replies {
		p.replies[i] = msgs[m.ID]
	}
	if addrAt.ID != "" && ident.EmailAddress(addrAt.Body) {
		p.address = addrAt.Body
	}
	return p, nil
}

// check mails what a conversation has due and says when to look again
// (zero: nothing left to mail).
func (s *Sender) check(ctx context.Context, k convKey, pd *pending) (time.Time, error) {
	now := s.cfg.Now()
	if !s.place.Sender(k.ws, k.conv) {
		return time.Time{}, nil // another node sends; a takeover rescans
	}
	st, err := s.cfg.Control.EmailSettings(k.ws)
	if err != nil {
		return time.Time{}, nil // no settings: nothing is mailed
	}
	ms, err := s.cfg.Control.MailState(k.ws, k.conv)
	if err != nil {
		return time.Time{}, nil
	}
	p, err := s.read(k, st, ms)
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, nil // erased, or not held here
	}
	if err != nil {
		return time.Time{}, err
	}
	if p.address == "" {
		return time.Time{}, nil
	}
	if p.transcript {
		if !ms.TranscriptAt.IsZero() && now.Sub(ms.TranscriptAt) < s.cfg.TranscriptEvery {
			// Rate-limited: the request is answered by nothing.
			s.record(ctx, k, schema.MailTranscript, schema.MailFailed, p.requests, fmt.Sprintf("rate limited: one transcript every %v", s.cfg.TranscriptEvery), 0)
		} else {
			m := mail{from: st.From, to: p.address, subject: "Your conversation transcript", id: idOf(k, schema.MailTranscript, p.requests),
				intro: "Here is the transcript of your conversation.", lines: p.visible, link: Link(st.SiteURL, k.conv), date: now}
			if again, done := s.deliver(ctx, k, pd, st, schema.MailTranscript, p.address, m, p.requests); !done {
				return again, nil
			}
		}
	}
	if len(p.replies) == 0 {
		return time.Time{}, nil
	}
	if due := p.first.Add(s.cfg.Batch); now.Before(due) && pd.attempts == 0 {
		return due, nil
	}
	if s.cfg.Presence.Online(k.ws, p.conv.Owner) {
		// The visitor is back: the replies reach the widget; look again
		// in a batch's time for any they leave unseen.
		return now.Add(s.cfg.Batch), nil
	}
	subject := "New reply to your conversation"
	if len(p.replies) > 1 {
		subject = fmt.Sprintf("%d new replies to your conversation", len(p.replies))
	}
	m := mail{from: st.From, to: p.address, subject: subject, id: idOf(k, schema.MailReplies, p.through),
		intro: "You have a reply to your conversation:", lines: p.replies, link: Link(st.SiteURL, k.conv), date: now}
	again, _ := s.deliver(ctx, k, pd, st, schema.MailReplies, p.address, m, p.through)
	return again, nil
}

// deliver sends one mail and records its outcome: done, or when to try
// again after a temporary error.
func (s *Sender) deliver(ctx context.Context, k convKey, pd *pending, st schema.EmailSettings, kind, to string, m mail, through map[string]uint64) (time.Time, bool) {
	now := s.cfg.Now()
	secret, err := s.cfg.Control.EmailSecret(k.ws)
	if err == nil {
		err = dialSMTP(ctx, st, secret, s.cfg.AllowPlaintext, s.cfg.Timeout, st.From, to, compose(m))
	}
	if ctx.Err() != nil {
		return now, false
	}
	if err == nil {
		s.m.sent.WithLabelValues(kind).Inc()
		s.cfg.Logger.Info("email: mail sent", "workspace", k.ws, "conversation", k.conv, "kind", kind, "messages", len(m.lines))
		s.record(ctx, k, kind, schema.MailSent, through, "", pd.attempts+1)
		*pd = pending{}
		return time.Time{}, true
	}
	msg := truncate(redactError(err), schema.MaxMailError)
	pd.attempts++
	if pd.failing.IsZero() {
		pd.failing = now
	}
	if Permanent(err) || now.Sub(pd.failing) >= s.cfg.RetryFor {
		s.m.failed.WithLabelValues(kind, "permanent").Inc()
		s.cfg.Logger.Warn("email: mail failed, not retried", "workspace", k.ws, "conversation", k.conv, "kind", kind, "attempts", pd.attempts, "err", msg)
		s.record(ctx, k, kind, schema.MailFailed, through, msg, pd.attempts)
		*pd = pending{}
		return time.Time{}, true
	}
	s.m.failed.WithLabelValues(kind, "temporary").Inc()
	s.cfg.Logger.Warn("email: mail failed, retried", "workspace", k.ws, "conversation", k.conv, "kind", kind, "attempts", pd.attempts, "err", msg)
	s.record(ctx, k, kind, schema.MailRetrying, nil, msg, pd.attempts)
	return now.Add(webhook.Backoff(pd.attempts, s.cfg.BackoffMin, s.cfg.BackoffMax)), false
}

// record writes a mail's outcome to the control plane. A failure to do
// so after a sent mail means another node may send it again (a
// duplicate, never a loss).
func (s *Sender) record(ctx context.Context, k convKey, kind, status string, through map[string]uint64, msg string, attempts int) {
	cmd := schema.RecordMail{Workspace: k.ws, Conversation: k.conv, Kind: kind, Status: status, Through: through, Error: msg, Attempts: attempts, At: s.cfg.Now().UTC()}
	for i := 0; i < 5; i++ {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := s.cfg.Control.Apply(cctx, cmd)
		cancel()
		if err == nil || ctx.Err() != nil {
			return
		}
		s.cfg.Logger.Warn("email: recording a mail", "workspace", k.ws, "conversation", k.conv, "err", err)
		if webhook.Sleep(ctx, time.Second) != nil {
			return
		}
	}
}

// idOf names a mail by what it covers: the same on every node.
func idOf(k convKey, kind string, through map[string]uint64) string {
	keys := make([]string, 0, len(through))
	for o, n := range through {
		keys = append(keys, fmt.Sprintf("%s=%d", o, n))
	}
	slices.Sort(keys)
	return strings.Join(append([]string{k.ws, k.conv, kind}, keys...), "\x00")
}

// redactError is err's text without the addresses an SMTP answer may
// quote: what is recorded in the control plane and logged holds none.
func redactError(err error) string {
	return strings.ReplaceAll(redact.String(err.Error()), "@", "[at]")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

type metrics struct {
	sent, failed *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_email_sent_total", Help: "Mails accepted by a workspace's SMTP server, by kind (replies, transcript).",
		}, []string{"kind"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_email_failed_total", Help: "Mail attempts that failed, by kind and class (temporary: retried; permanent: given up).",
		}, []string{"kind", "class"}),
	}
	reg.MustRegister(m.sent, m.failed)
	return m
}
