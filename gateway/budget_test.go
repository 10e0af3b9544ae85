package gateway

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"parley/gateway/wire"
)

func budgetsFor(mod func(*Config)) *budgets {
	cfg := Config{}
	if mod != nil {
		mod(&cfg)
	}
	cfg.defaults()
	return newBudgets(&cfg)
}

// count takes from the budget until it refuses, and returns how many it took.
func count(b *budgets, ws, ip string, visitor bool, act action, now time.Time, max int) int {
	for i := 0; i < max; i++ {
		if b.take(ws, ip, visitor, act, now) != nil {
			return i
		}
	}
	return max
}

// TestOneAddressTakesItsShareOnly: the visitors of one address get at most
// AddressShare of a workspace's budget; another address then still gets
// the rest, and the refusal says rate_limited with a retry hint.
func TestOneAddressTakesItsShareOnly(t *testing.T) {
	b := budgetsFor(func(c *Config) {
		c.WorkspaceRate, c.WorkspaceBurst, c.AddressShare = 100, 100, 0.25
		c.IPMessageRate, c.IPMessageBurst = 1000, 1000
	})
	now := time.Now()
	if got := count(b, "ws", "10.0.0.1", true, actChange, now, 1000); got != 25 {
		t.Fatalf("one address took %d of 100, want 25", got)
	}
	e := b.take("ws", "10.0.0.1", true, actChange, now)
	if e == nil || e.Code != wire.CodeRateLimited || e.retry < 1 || e.retry > 1000 {
		t.Fatalf("refusal %+v, want rate_limited with a retry hint", e)
	}
	if got := count(b, "ws", "10.0.0.2", true, actChange, now, 1000); got != 25 {
		t.Fatalf("another address took %d, want its 25", got)
	}
	// Agents are not held to an address's share: they take what is left.
	if got := count(b, "ws", "10.0.0.1", false, actChange, now, 1000); got != 50 {
		t.Fatalf("agents took %d, want the 50 left", got)
	}
}

// TestRefusalCostsNothing: a frame the workspace's budget refuses gives
// back its address's token; a start takes from the start bucket and the
// workspace's budget, not from the message bucket.
func TestRefusalCostsNothing(t *testing.T) {
	b := budgetsFor(func(c *Config) {
		c.WorkspaceRate, c.WorkspaceBurst, c.AddressShare = 0.001, 2, 1
		c.IPMessageRate, c.IPMessageBurst = 0.001, 3
		c.IPStartRate, c.IPStartBurst = 0.001, 1
	})
	now := time.Now()
	if got := count(b, "ws", "10.0.0.1", true, actStart, now, 10); got != 1 {
		t.Fatalf("%d starts, want 1", got)
	}
	if got := count(b, "ws", "10.0.0.1", true, actChange, now, 10); got != 1 {
		t.Fatalf("%d messages after a start, want the workspace's 1 left", got)
	}
	// ws is spent; the address's 2 message tokens left are still there
	// for another workspace.
	if got := count(b, "other", "10.0.0.1", true, actChange, now, 10); got != 2 {
		t.Fatalf("%d messages in another workspace, want 2", got)
	}
}

// TestNodeTakesItsShareOfTheBudget: with WorkspaceShare a third, the node
// takes a third of the budget, and the whole again when it is alone.
func TestNodeTakesItsShareOfTheBudget(t *testing.T) {
	share := 1.0 / 3
	b := budgetsFor(func(c *Config) {
		c.WorkspaceRate, c.WorkspaceBurst, c.AddressShare = 300, 300, 1
		c.IPMessageRate, c.IPMessageBurst = 1e6, 1e6
		c.WorkspaceShare = func(string) float64 { return share }
	})
	now := time.Now()
	if got := count(b, "ws", "10.0.0.1", true, actChange, now, 1000); got != 100 {
		t.Fatalf("took %d of 300 with a third, want 100", got)
	}
	share = 1
	later := now.Add(budgetRefresh)
	// The second refilled a third of 300 (SetLimitAt keeps what was
	// earned at the old rate); the next second refills at 300/s.
	if got := count(b, "ws", "10.0.0.1", true, actChange, later, 1000); got != 100 {
		t.Fatalf("took %d when the share changed, want 100", got)
	}
	if got := count(b, "ws", "10.0.0.1", true, actChange, later.Add(time.Second), 1000); got != 300 {
		t.Fatalf("took %d a second later alone, want 300", got)
	}
}

// TestConversationCountsWithItsFirstMessage: a started conversation costs
// the plan nothing until its first message is stored; then it counts once.
func TestConversationCountsWithItsFirstMessage(t *testing.T) {
	t.Parallel()
	limits := &planLimits{counts: map[string][2]int64{}}
	e := newEnv(t, func(c *Config) { c.Limits, c.Meter = limits, limits })
	v, _ := e.visitor(t, "ws1", nil)
	for i := 0; i < 5; i++ {
		v.start()
	}
	conv := v.start()
	v.say(conv, "m-0000001", "first")
	v.say(conv, "m-0000001", "first") // a retry
	v.say(conv, "m-0000002", "second")
	w, _ := e.visitor(t, "ws1", nil)
	w.say(w.start(), "m-0000001", "another visitor")
	limits.mu.Lock()
	defer limits.mu.Unlock()
	if got := limits.counts["ws1"]; got != [2]int64{2, 3} {
		t.Fatalf("metered %v, want 2 conversations (6 started by one, 1 by another, 2 with a message), 3 messages", got)
	}
}

// TestClockNeverGoesBack: connections hand in times read before they
// waited for the lock, out of order; a bucket handed an earlier time must
// not refill the same stretch twice.
func TestClockNeverGoesBack(t *testing.T) {
	b := budgetsFor(func(c *Config) {
		c.WorkspaceRate, c.WorkspaceBurst, c.AddressShare = 1e6, 1e6, 1
		c.IPMessageRate, c.IPMessageBurst = 10, 10
	})
	start := time.Now()
	taken := 0
	// Ten seconds of frames, every other one stamped a second late.
	for i := 0; i < 1000; i++ {
		now := start.Add(time.Duration(i) * 10 * time.Millisecond)
		if i%2 == 1 {
			now = now.Add(-time.Second)
		}
		if b.take("ws", "10.0.0.1", true, actChange, now) == nil {
			taken++
		}
	}
	if taken > 10+10*10+1 {
		t.Fatalf("took %d in 10 s at 10 a second, bursts of 10", taken)
	}
}

// TestIdleBudgetsAreForgotten: the buckets of an address and a workspace
// unused for budgetIdle are dropped; those in use stay.
func TestIdleBudgetsAreForgotten(t *testing.T) {
	b := budgetsFor(nil)
	now := time.Now()
	b.take("old", "10.0.0.1", true, actChange, now)
	b.take("new", "10.0.0.2", true, actChange, now.Add(budgetIdle/2))
	b.take("new", "10.0.0.1", false, actChange, now.Add(budgetIdle/2))
	b.prune(now.Add(budgetIdle + time.Second))
	if _, ok := b.ips["10.0.0.1"]; ok {
		t.Error("an address idle since budgetIdle kept (agents' frames do not use it)")
	}
	if _, ok := b.ws["old"]; ok {
		t.Error("a workspace idle since budgetIdle kept")
	}
	if _, ok := b.ips["10.0.0.2"]; !ok || b.ws["new"] == nil || b.ws["new"].addrs["10.0.0.2"] == nil {
		t.Error("buckets in use dropped")
	}
}

// TestAddressPlanPart: the visitors of one address add at most
// IPPlanConversations conversations and IPPlanMessages messages to a
// workspace's plan counts in a window, each lowered to a tenth of the
// plan's monthly counts; past them their sends are refused rate_limited
// until the window ends, when the address has its part again. Another
// address, and agents, are not held to it; a send that stored nothing
// gives its place back.
func TestAddressPlanPart(t *testing.T) {
	b := budgetsFor(func(c *Config) {
		c.WorkspaceRate, c.WorkspaceBurst, c.AddressShare = 1e6, 1e6, 1
		c.IPMessageRate, c.IPMessageBurst = 1e6, 1e6
		c.IPPlanConversations, c.IPPlanMessages, c.IPPlanWindow = 50, 1000, time.Hour
		c.Plan = func(ws string) (int64, int64) {
			if ws == "free" {
				return 100, 5000
			}
			return 0, 0
		}
	})
	now := time.Date(2026, 12, 6, 11, 30, 0, 0, time.UTC)
	if got := count(b, "big", "10.0.0.1", true, actFirstSend, now, 1000); got != 50 {
		t.Fatalf("one address counted %d conversations, want its 50", got)
	}
	e := b.take("big", "10.0.0.1", true, actFirstSend, now)
	if e == nil || e.Code != wire.CodeRateLimited || e.retry != (30*time.Minute).Milliseconds() {
		t.Fatalf("refusal %+v, want rate_limited until the window ends (30 min)", e)
	}
	// Messages in conversations counted already: up to 1000 in all.
	if got := count(b, "big", "10.0.0.1", true, actSend, now, 2000); got != 950 {
		t.Fatalf("one address sent %d more messages, want 950", got)
	}
	// Edits, deletions and agents' sends add nothing to the plan.
	if got := count(b, "big", "10.0.0.1", true, actChange, now, 10); got != 10 {
		t.Fatalf("%d edits after the part is spent, want all 10", got)
	}
	if got := count(b, "big", "10.0.0.1", false, actChange, now, 10); got != 10 {
		t.Fatalf("%d agents' sends, want all 10", got)
	}
	if got := count(b, "big", "10.0.0.2", true, actFirstSend, now, 1000); got != 50 {
		t.Fatalf("another address counted %d conversations, want its 50", got)
	}
	// The free plan's 100 a month: a tenth a window.
	if got := count(b, "free", "10.0.0.1", true, actFirstSend, now, 1000); got != 10 {
		t.Fatalf("one address counted %d conversations of the free plan, want 10", got)
	}
	// A send that stored nothing gives back its place.
	b.giveBack("free", "10.0.0.1", actFirstSend, now)
	if got := count(b, "free", "10.0.0.1", true, actFirstSend, now, 10); got != 1 {
		t.Fatalf("%d conversations after a give-back, want 1", got)
	}
	// The next window: the part again, and a give-back of the last
	// window's changes nothing.
	next := now.Add(30 * time.Minute)
	b.giveBack("free", "10.0.0.1", actFirstSend, now)
	if got := count(b, "free", "10.0.0.1", true, actFirstSend, next, 1000); got != 10 {
		t.Fatalf("one address counted %d conversations in the next window, want 10", got)
	}
	b.prune(next)
	if _, ok := b.plans[planKey{"big", "10.0.0.1"}]; ok {
		t.Fatal("the last window's part kept after prune")
	}
}

// TestTakeAllocatesNothing: once an address's and a workspace's buckets
// exist, taking from them allocates nothing, a visitor's send (three
// buckets and the plan) or an agent's (one); rate.Limiter's ReserveN
// allocated a reservation per bucket.
func TestTakeAllocatesNothing(t *testing.T) {
	b := budgetsFor(func(c *Config) {
		c.WorkspaceRate, c.WorkspaceBurst = 1e9, 1e9
		c.IPMessageRate, c.IPMessageBurst = 1e9, 1e9
		c.IPPlanMessages = 1e12
	})
	now := time.Now()
	for _, c := range []struct {
		visitor bool
		act     action
	}{{true, actSend}, {false, actChange}} {
		if e := b.take("ws", "10.0.0.1", c.visitor, c.act, now); e != nil {
			t.Fatal(e)
		}
		allocs := testing.AllocsPerRun(200, func() {
			now = now.Add(time.Microsecond)
			if e := b.take("ws", "10.0.0.1", c.visitor, c.act, now); e != nil {
				t.Fatal(e)
			}
		})
		if allocs != 0 {
			t.Errorf("visitor=%v: %.1f allocations per take, want 0", c.visitor, allocs)
		}
	}
}

// BenchmarkTake: a visitor's send taken from its address's buckets, its
// share and its workspace's.
func BenchmarkTake(b *testing.B) {
	bs := budgetsFor(func(c *Config) {
		c.WorkspaceRate, c.WorkspaceBurst = 1e9, 1e9
		c.IPMessageRate, c.IPMessageBurst = 1e9, 1e9
		c.IPPlanMessages = 1 << 62
	})
	now := time.Now()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Microsecond)
		if e := bs.take("ws", "10.0.0.1", true, actSend, now); e != nil {
			b.Fatal(e)
		}
	}
}

// TestEmptyForIsReserveN: budgets.take checks every bucket with emptyFor
// before drawing on any with AllowN; the answer is ReserveN's on a bucket
// in the same state (refused when it would wait, or a second when it
// cannot reserve at all, as take answered when it reserved and then
// cancelled), a refusal leaves the bucket as it was, and a draw leaves it
// as ReserveN does. The reference is a limiter made anew at each step from
// what was done to ours that should last (rates, bursts and draws), so
// that no cancelled reservation's rounding is carried along. Random rates,
// bursts, steps of time (backwards too) and draws.
func TestEmptyForIsReserveN(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 2))
	limits := []rate.Limit{0, 0.01, 0.5, 1, 3, 20, 1e6, rate.Inf}
	for run := 0; run < 200; run++ {
		l0, b0 := limits[rng.IntN(len(limits))], rng.IntN(6)
		ours := rate.NewLimiter(l0, b0)
		var done []func(*rate.Limiter)
		reference := func() *rate.Limiter {
			l := rate.NewLimiter(l0, b0)
			for _, f := range done {
				f(l)
			}
			return l
		}
		now := time.Unix(1_700_000_000, 0)
		for step := 0; step < 150; step++ {
			set := now
			switch rng.IntN(10) {
			case 0:
				l := limits[rng.IntN(len(limits))]
				ours.SetLimitAt(set, l)
				done = append(done, func(r *rate.Limiter) { r.SetLimitAt(set, l) })
			case 1:
				b := rng.IntN(6)
				ours.SetBurstAt(set, b)
				done = append(done, func(r *rate.Limiter) { r.SetBurstAt(set, b) })
			}
			now = now.Add(time.Duration(rng.IntN(2_000_000_000)) - 100*time.Millisecond)
			at := now
			d := emptyFor(ours, now)
			ref := reference()
			r := ref.ReserveN(now, 1)
			want := r.DelayFrom(now)
			if !r.OK() {
				want = time.Second
			}
			if d != want {
				t.Fatalf("run %d step %d (limit %v burst %d): emptyFor %v, ReserveN waits %v", run, step, ours.Limit(), ours.Burst(), d, want)
			}
			if d == 0 {
				if !ours.AllowN(now, 1) {
					t.Fatalf("run %d step %d: no wait, yet AllowN refused", run, step)
				}
				done = append(done, func(r *rate.Limiter) { r.ReserveN(at, 1) })
			}
			after := reference()
			if a, b := ours.TokensAt(now), after.TokensAt(now); a != b && !(math.IsNaN(a) && math.IsNaN(b)) {
				t.Fatalf("run %d step %d: tokens %v, ReserveN's %v", run, step, a, b)
			}
		}
	}
}
