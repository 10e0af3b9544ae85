package gateway

import (
	"math"
	"sync"
	"time"

	"parley/gateway/wire"

	"golang.org/x/time/rate"
)

// Budgets: what one client address and one workspace may spend on this
// node. A visitor's change (send, edit, delete) takes a token from its
// address's message bucket, from its address's share of the workspace's
// budget and from the workspace's budget; a start takes one from its
// address's start bucket and from the same two workspace buckets. Either
// all are taken or none (a refusal gives back what it took), so that a
// refused frame costs nobody else anything. Agents' frames take from the
// workspace's budget only: they are signed-in operators of the workspace,
// bounded per connection (FrameRate), and often behind the same office
// address as each other.
//
// The workspace's budget (WorkspaceRate, WorkspaceBurst) is cluster-wide:
// this node's part is WorkspaceShare's fraction of it, asked again at most
// every budgetRefresh.
//
// A visitor's send also draws on its address's part of the workspace's
// plan (IPPlanConversations, IPPlanMessages per IPPlanWindow): a message
// stored counts for the plan, and the first of a conversation counts the
// conversation too, so that an address writing steadily under the rates
// above still cannot use up the month's plan and lock out the workspace's
// other visitors. Past its part, the address's sends are refused until
// the window ends: served and not counted would make the plan's count a
// lie, and the address has had its share. A send that stores nothing (a
// resend of a stored one) gives back what it took (giveBack).

// budgetRefresh is how often a workspace's share of the budget is asked
// again.
const budgetRefresh = time.Second

// budgetIdle is how long an address's or a workspace's buckets are kept
// unused before they are forgotten: by then every bucket is full again
// (the slowest, starts, refills 20 in 100 s at the defaults) unless the
// configured rates are very low, when forgetting errs for the client.
const budgetIdle = 10 * time.Minute

type ipBudget struct {
	msgs, starts *rate.Limiter
	used         time.Time
}

type wsBudget struct {
	all     *rate.Limiter
	addrs   map[string]*addrShare // per client address: its share of all
	share   float64
	checked time.Time
	used    time.Time
}

type addrShare struct {
	lim  *rate.Limiter
	used time.Time
}

// planPart is what the visitors of one address added to a workspace's
// plan counts on this node in the window beginning at from.
type planPart struct {
	from        time.Time
	convs, msgs int64
}

// planKey names the part of one address in one workspace.
type planKey struct{ ws, ip string }

type budgets struct {
	cfg   *Config
	mu    sync.Mutex
	last  time.Time // the latest time take was given
	ips   map[string]*ipBudget
	ws    map[string]*wsBudget
	plans map[planKey]*planPart
}

func newBudgets(cfg *Config) *budgets {
	return &budgets{cfg: cfg, ips: map[string]*ipBudget{}, ws: map[string]*wsBudget{}, plans: map[planKey]*planPart{}}
}

// action is what a frame spends.
type action uint8

const (
	actChange action = iota // edit, delete, an agent's send
	actStart
	actSend      // a visitor's send: a message for the plan
	actFirstSend // a visitor's first send to a conversation: a conversation and a message
)

// planCost is what an action adds to the plan's counts.
func (a action) planCost() (convs, msgs int64) {
	switch a {
	case actSend:
		return 0, 1
	case actFirstSend:
		return 1, 1
	}
	return 0, 0
}

// take spends one token of every bucket the frame draws on, and for a
// visitor's send its place in the address's part of the plan, or none:
// it returns nil, or the rate_limited error naming the first bucket that
// is empty, with how long until it has a token again.
func (b *budgets) take(ws, ip string, visitor bool, act action, now time.Time) *wireError {
	var capConvs, capMsgs int64
	if visitor && act >= actSend {
		capConvs, capMsgs = b.planCaps(ws)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	// Connections read the clock before they queue for the lock, so their
	// times arrive out of order; a bucket handed an earlier time than its
	// last refills that stretch again. Never go back.
	if now.Before(b.last) {
		now = b.last
	}
	b.last = now
	w := b.workspace(ws, now)
	// Every bucket and the plan are checked before any is drawn on, all
	// under b.mu (which guards every bucket): a refusal takes nothing, so
	// nothing is given back, and drawing with AllowN allocates nothing
	// (ReserveN allocates its Reservation). At most three buckets, in an
	// array.
	type bucket struct {
		lim  *rate.Limiter
		what string
	}
	var buckets [3]bucket
	n := 0
	if visitor {
		a := b.ip(ip, now)
		if act == actStart {
			buckets[n] = bucket{a.starts, "conversation starts from your address"}
		} else {
			buckets[n] = bucket{a.msgs, "messages from your address"}
		}
		buckets[n+1] = bucket{b.addrShare(w, ip, now), "your address's share of the workspace's message rate"}
		n += 2
	}
	buckets[n] = bucket{w.all, "workspace message rate"}
	n++
	for _, bk := range buckets[:n] {
		if d := emptyFor(bk.lim, now); d > 0 {
			return rateLimited(bk.what, d)
		}
	}
	convs, msgs := act.planCost()
	var p *planPart
	if visitor && msgs > 0 {
		p = b.planPart(ws, ip, now)
		switch {
		case p.convs+convs > capConvs:
			return rateLimited("conversations counted for the plan from your address in this window", p.from.Add(b.cfg.IPPlanWindow).Sub(now))
		case p.msgs+msgs > capMsgs:
			return rateLimited("messages counted for the plan from your address in this window", p.from.Add(b.cfg.IPPlanWindow).Sub(now))
		}
	}
	for _, bk := range buckets[:n] {
		bk.lim.AllowN(now, 1) // has the token: checked above, under b.mu
	}
	if p != nil {
		p.convs += convs
		p.msgs += msgs
	}
	return nil
}

// emptyFor is how long until l has a token at now, 0 when it has one:
// what l.ReserveN(now, 1) would wait (a second when its burst is below
// one token, which ReserveN refuses outright).
func emptyFor(l *rate.Limiter, now time.Time) time.Duration {
	if l.Limit() == rate.Inf {
		return 0
	}
	if l.Burst() < 1 {
		return time.Second
	}
	tokens := l.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	if l.Limit() <= 0 {
		return rate.InfDuration
	}
	d := (1 - tokens) / float64(l.Limit()) * float64(time.Second)
	if d > float64(math.MaxInt64) {
		return rate.InfDuration
	}
	return time.Duration(d)
}

// giveBack returns what a visitor's send taken at took of its address's
// part of the plan, when it stored nothing. The rate buckets keep their
// tokens: the frame was served.
func (b *budgets) giveBack(ws, ip string, act action, took time.Time) {
	convs, msgs := act.planCost()
	if msgs == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.plans[planKey{ws, ip}]
	if p == nil || !p.from.Equal(b.window(took)) {
		return // a window gone by: the new one owes nothing
	}
	p.convs = max(p.convs-convs, 0)
	p.msgs = max(p.msgs-msgs, 0)
}

// planCaps is what one address may add to ws's plan counts in a window:
// the configured caps, lowered to IPPlanFraction of the plan's monthly
// counts.
func (b *budgets) planCaps(ws string) (convs, msgs int64) {
	convs, msgs = b.cfg.IPPlanConversations, b.cfg.IPPlanMessages
	if b.cfg.Plan == nil {
		return convs, msgs
	}
	pc, pm := b.cfg.Plan(ws)
	if pc > 0 {
		convs = min(convs, max(1, int64(float64(pc)*b.cfg.IPPlanFraction)))
	}
	if pm > 0 {
		msgs = min(msgs, max(1, int64(float64(pm)*b.cfg.IPPlanFraction)))
	}
	return convs, msgs
}

// window is the beginning of the plan window holding now.
func (b *budgets) window(now time.Time) time.Time {
	return now.Truncate(b.cfg.IPPlanWindow)
}

func (b *budgets) planPart(ws, ip string, now time.Time) *planPart {
	k := planKey{ws, ip}
	from := b.window(now)
	p := b.plans[k]
	if p == nil || !p.from.Equal(from) {
		p = &planPart{from: from}
		b.plans[k] = p
	}
	return p
}

// rateLimited is the refusal of a frame over a budget: retry_ms says when
// the bucket has a token again.
func rateLimited(what string, retry time.Duration) *wireError {
	ms := retry.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	e := errf(wire.CodeRateLimited, "too many %s: retry in %d ms", what, ms)
	e.retry = ms
	return e
}

func (b *budgets) ip(ip string, now time.Time) *ipBudget {
	a := b.ips[ip]
	if a == nil {
		a = &ipBudget{
			msgs:   rate.NewLimiter(rate.Limit(b.cfg.IPMessageRate), b.cfg.IPMessageBurst),
			starts: rate.NewLimiter(rate.Limit(b.cfg.IPStartRate), b.cfg.IPStartBurst),
		}
		b.ips[ip] = a
	}
	a.used = now
	return a
}

// workspace returns ws's buckets with this node's part of the budget,
// asking WorkspaceShare again when the last answer is older than
// budgetRefresh.
func (b *budgets) workspace(ws string, now time.Time) *wsBudget {
	w := b.ws[ws]
	if w == nil {
		share := b.share(ws)
		w = &wsBudget{
			all:   b.fraction(share),
			addrs: map[string]*addrShare{}, share: share, checked: now,
		}
		b.ws[ws] = w
	}
	w.used = now
	if now.Sub(w.checked) >= budgetRefresh {
		w.checked = now
		if share := b.share(ws); share != w.share {
			w.share = share
			b.resize(w.all, share, now)
			for _, a := range w.addrs {
				b.resize(a.lim, share*b.cfg.AddressShare, now)
			}
		}
	}
	return w
}

// share is this node's fraction of ws's budget, between 1% and all.
func (b *budgets) share(ws string) float64 {
	if b.cfg.WorkspaceShare == nil {
		return 1
	}
	return min(max(b.cfg.WorkspaceShare(ws), 0.01), 1)
}

func (b *budgets) addrShare(w *wsBudget, ip string, now time.Time) *rate.Limiter {
	a := w.addrs[ip]
	if a == nil {
		a = &addrShare{lim: b.fraction(w.share * b.cfg.AddressShare)}
		w.addrs[ip] = a
	}
	a.used = now
	return a.lim
}

// fraction is a new, full bucket of a fraction f of the workspace's
// budget; resize makes an existing one that fraction, keeping its tokens.
func (b *budgets) fraction(f float64) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(b.cfg.WorkspaceRate*f), scaledBurst(b.cfg.WorkspaceBurst, f))
}

func (b *budgets) resize(l *rate.Limiter, f float64, now time.Time) {
	l.SetLimitAt(now, rate.Limit(b.cfg.WorkspaceRate*f))
	l.SetBurstAt(now, scaledBurst(b.cfg.WorkspaceBurst, f))
}

// scaledBurst is a fraction of a burst, at least 1.
func scaledBurst(burst int, f float64) int {
	return max(1, int(float64(burst)*f+0.5))
}

// prune forgets the buckets of addresses and workspaces unused for
// budgetIdle.
func (b *budgets) prune(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := now.Add(-budgetIdle)
	for ip, a := range b.ips {
		if a.used.Before(old) {
			delete(b.ips, ip)
		}
	}
	for k, p := range b.plans {
		if !p.from.Add(b.cfg.IPPlanWindow).After(now) {
			delete(b.plans, k)
		}
	}
	for ws, w := range b.ws {
		if w.used.Before(old) {
			delete(b.ws, ws)
			continue
		}
		for ip, a := range w.addrs {
			if a.used.Before(old) {
				delete(w.addrs, ip)
			}
		}
	}
}
