package gateway

import (
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

type budgets struct {
	cfg  *Config
	mu   sync.Mutex
	last time.Time // the latest time take was given
	ips  map[string]*ipBudget
	ws   map[string]*wsBudget
}

func newBudgets(cfg *Config) *budgets {
	return &budgets{cfg: cfg, ips: map[string]*ipBudget{}, ws: map[string]*wsBudget{}}
}

// action is what a frame spends.
type action uint8

const (
	actChange action = iota // send, edit, delete
	actStart
)

// take spends one token of every bucket the frame draws on, or none: it
// returns nil, or the rate_limited error naming the first bucket that is
// empty, with how long until it has a token again.
func (b *budgets) take(ws, ip string, visitor bool, act action, now time.Time) *wireError {
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
	type bucket struct {
		lim  *rate.Limiter
		what string
	}
	buckets := make([]bucket, 0, 3)
	if visitor {
		a := b.ip(ip, now)
		if act == actStart {
			buckets = append(buckets, bucket{a.starts, "conversation starts from your address"})
		} else {
			buckets = append(buckets, bucket{a.msgs, "messages from your address"})
		}
		buckets = append(buckets, bucket{b.addrShare(w, ip, now), "your address's share of the workspace's message rate"})
	}
	buckets = append(buckets, bucket{w.all, "workspace message rate"})
	taken := make([]*rate.Reservation, 0, len(buckets))
	for _, bk := range buckets {
		r := bk.lim.ReserveN(now, 1)
		if d := r.DelayFrom(now); !r.OK() || d > 0 {
			if !r.OK() {
				d = time.Second
			}
			r.CancelAt(now)
			for _, t := range taken {
				t.CancelAt(now)
			}
			return rateLimited(bk.what, d)
		}
		taken = append(taken, r)
	}
	return nil
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
