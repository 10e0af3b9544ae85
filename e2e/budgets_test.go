package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"parley/gateway/client"
	"parley/gateway/wire"
	"parley/ident"
	"parley/internal/eventually"
)

// Budgets (docs/protocol.md, *Budgets*): per-address limits of visitors'
// messages and starts, the address's share of the workspace's budget, the
// workspace's budget across the cluster, and plan counts that a flood of
// one address cannot use up. Every client here is bound to a source
// address of its own in 127.0.0.0/8, as visitors behind different
// addresses are.

// dialFrom connects to a node from a source address.
func dialFrom(t testing.TB, ctx context.Context, nd *nodeProc, ip string) *client.Conn {
	t.Helper()
	c, err := client.DialWS(ctx, client.WSURL(nd.URL), client.Options{Queue: dialQueue, LocalAddr: net.ParseIP(ip)})
	if err != nil {
		t.Fatalf("dial %s from %s: %v", nd.Addr, ip, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// visitorFrom connects a visitor of ws from ip: a new anonymous one when
// as is zero, else the same visitor on another connection.
func visitorFrom(t testing.TB, ctx context.Context, nd *nodeProc, ip, ws string, as wire.Welcome) (*client.Conn, wire.Welcome) {
	t.Helper()
	c := dialFrom(t, ctx, nd, ip)
	w, err := c.Hello(ctx, wire.Hello{Workspace: ws, Role: ident.Visitor, VisitorID: as.VisitorID, VisitorSig: as.VisitorSig}, nil)
	if err != nil {
		t.Fatalf("hello from %s: %v", ip, err)
	}
	return c, w
}

// tally counts the answers to a connection's sends.
type tally struct {
	sent, acked, limited, other atomic.Int64
	// noRetry counts rate_limited answers without a retry hint.
	noRetry atomic.Int64
	// steady counts what was taken with its answer between steadyFrom
	// and steadyTo (zero: not counted).
	steady               atomic.Int64
	steadyFrom, steadyTo time.Time
}

// taken is what passed the budgets: acknowledged, or stored and not yet
// confirmed by a second replica (unavailable).
func (t *tally) taken() int64 { return t.acked.Load() + t.other.Load() }

func (t *tally) answered() int64 { return t.acked.Load() + t.limited.Load() + t.other.Load() }

// flood sends into conv every period until the deadline, each frame with
// a new id, and counts the answers until ctx ends.
func flood(ctx context.Context, wg *sync.WaitGroup, c *client.Conn, conv, prefix string, every time.Duration, until time.Time, tl *tally) {
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			f, err := c.Next(ctx)
			if err != nil {
				return
			}
			if now := time.Now(); f.Type == wire.TypeAck || f.Type == wire.TypeError && f.Code != wire.CodeRateLimited {
				if now.After(tl.steadyFrom) && now.Before(tl.steadyTo) {
					tl.steady.Add(1)
				}
			}
			switch f.Type {
			case wire.TypeAck:
				tl.acked.Add(1)
			case wire.TypeError:
				if e := f.AsError(); e.Code == wire.CodeRateLimited {
					tl.limited.Add(1)
					if e.Retry <= 0 {
						tl.noRetry.Add(1)
					}
				} else {
					tl.other.Add(1)
				}
			}
		}
	}()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; time.Now().Before(until); i++ {
			ref := fmt.Sprintf("f%d", i)
			if err := c.Send(ctx, map[string]any{"type": "send", "ref": ref, "conversation": conv, "id": fmt.Sprintf("%s-%06d", prefix, i), "body": "flood"}); err != nil {
				return
			}
			tl.sent.Add(1)
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}()
}

// endFlood waits for the flood to end at until and for every frame of it
// to be answered, then stops the readers. It returns how long the sending
// lasted and the window in which every frame was taken or refused: from
// begin to the last answer, longer than the sending when the node lags
// behind on a busy machine (the budgets refill meanwhile), in seconds.
func endFlood(t *testing.T, begin, until time.Time, stop context.CancelFunc, wg *sync.WaitGroup, tallies ...*tally) (sending, window float64) {
	t.Helper()
	for time.Now().Before(until) {
		time.Sleep(100 * time.Millisecond)
	}
	sending = time.Since(begin).Seconds()
	eventually.Holds(t, 30*time.Second, "every flooded frame answered", func() error {
		for i, tl := range tallies {
			if a, s := tl.answered(), tl.sent.Load(); a < s {
				return fmt.Errorf("tally %d: %d of %d answered", i, a, s)
			}
		}
		return nil
	})
	window = time.Since(begin).Seconds()
	stop()
	wg.Wait()
	return sending, window
}

// TestFloodFromOneAddressLeavesTheWorkspaceToOthers: 40 connections from
// one address flood a workspace whose budget is 100 messages a second;
// a visitor from another address meanwhile sends 16 messages, one every
// 250 ms, and every one is acknowledged; the flooding address got no more
// than its address's budget (20 a second, bursts of 100). Before the
// per-address budgets the flood was all acknowledged up to the
// workspace's budget, and the visitor's messages refused.
func TestFloodFromOneAddressLeavesTheWorkspaceToOthers(t *testing.T) {
	tc := startCluster(t, 1, "-workspace-rate", "100", "-ip-message-rate", "20", "-ip-message-burst", "100", "-address-share", "0.25")
	nd := tc.nodes[0]
	mustAPI(t, nd, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "business"}, nil)
	ctx := testCtx(t, 120*time.Second)

	first, me := visitorFrom(t, ctx, nd, "127.0.0.2", "acme", wire.Welcome{})
	conv, err := first.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const conns, floodFor = 40, 8 * time.Second
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	tallies := make([]*tally, conns)
	begin := time.Now()
	until := begin.Add(floodFor)
	for i := range conns {
		c := first
		if i > 0 {
			c, _ = visitorFrom(t, ctx, nd, "127.0.0.2", "acme", me)
		}
		tallies[i] = &tally{}
		// 15 frames a second per connection: within the connection's
		// frame limit (20), 600 a second from the address.
		flood(fctx, &wg, c, conv, fmt.Sprintf("fl%02d", i), time.Second/15, until, tallies[i])
	}

	// The visitor comes once the flood has had 2 s to fill the budget.
	time.Sleep(2 * time.Second)
	v, _ := visitorFrom(t, ctx, nd, "127.0.0.3", "acme", wire.Welcome{})
	vconv, err := v.Start(ctx)
	if err != nil {
		t.Fatalf("the visitor's start during the flood: %v", err)
	}
	refused := 0
	for i := range 16 {
		if _, err := v.Say(ctx, vconv, fmt.Sprintf("visitor-%04d", i), "hello, anyone?"); err != nil {
			var ce *client.Error
			if !errors.As(err, &ce) {
				t.Fatal(err)
			}
			refused++
			t.Logf("visitor's message %d: %v", i, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	sendTime, floodTime := endFlood(t, begin, until, stop, &wg, tallies...)
	var sent, taken, limited, noRetry, other int64
	for _, tl := range tallies {
		other += tl.other.Load()
		sent += tl.sent.Load()
		taken += tl.taken()
		limited += tl.limited.Load()
		noRetry += tl.noRetry.Load()
	}
	t.Logf("sent for %.1fs", sendTime)
	t.Logf("flood from one address: %d sent in %.1fs, %d taken (%d of them not acknowledged), %d rate_limited; the visitor: %d of 16 refused", sent, floodTime, taken, other, limited, refused)
	if refused > 0 {
		t.Errorf("%d of the visitor's 16 messages refused during the flood", refused)
	}
	// The address's budget: a burst of 100, then 20 a second. Bounded
	// generously (30 a second and 60 more) against a slow machine's
	// stretched clock; without the limit the flood takes the workspace's
	// 100 a second.
	if limit := int64(160 + 30*floodTime); taken > limit {
		t.Errorf("the flooding address had %d messages taken in %.1fs, want at most %d", taken, floodTime, limit)
	}
	if limited == 0 || noRetry > 0 {
		t.Errorf("%d of the flood refused rate_limited, %d of them without retry_ms", limited, noRetry)
	}
}

// TestStartFloodDoesNotUseUpThePlan: 110 starts from one address, over 11
// connections, on the free plan (100 conversations a month): the address's
// start budget takes 20 of them (and one every 5 s), and only the
// conversations that get a message count for the plan; a visitor from
// another address then starts a conversation and writes 15 messages, all
// acknowledged. Before, the 110 starts counted 110 conversations and the
// visitor was refused over_limit.
func TestStartFloodDoesNotUseUpThePlan(t *testing.T) {
	tc := startCluster(t, 1, "-usage-interval", "200ms", "-ip-start-rate", "0.2", "-ip-start-burst", "20")
	nd := tc.nodes[0]
	mustAPI(t, nd, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "free"}, nil)
	ctx := testCtx(t, 120*time.Second)

	var mu sync.Mutex
	var started []string
	var limited, withMessage int
	var wg sync.WaitGroup
	for i := range 11 {
		c, _ := visitorFrom(t, ctx, nd, "127.0.0.2", "acme", wire.Welcome{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []string
			for j := range 10 {
				ref := fmt.Sprintf("s%d-%d", i, j)
				if err := c.Send(ctx, wire.Ref{Type: wire.TypeStart, Ref: ref}); err != nil {
					t.Error(err)
					return
				}
				f, err := c.Await(ctx, func(f client.Frame) bool { return f.Ref == ref }, nil)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				switch {
				case f.Type == wire.TypeStarted:
					started = append(started, f.Conversation)
					mine = append(mine, f.Conversation)
				case f.Type == wire.TypeError && f.AsError().Code == wire.CodeRateLimited:
					limited++
				default:
					t.Errorf("start %s: %s", ref, f.Raw)
				}
				mu.Unlock()
			}
			// A message in the first conversation each flooding visitor
			// started: those count, the empty ones do not.
			if len(mine) > 0 {
				if _, err := c.Say(ctx, mine[0], fmt.Sprintf("flood-%04d", i), "spam"); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				withMessage++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("110 starts from one address: %d started, %d rate_limited, %d of them with a message", len(started), limited, withMessage)
	if len(started) > 30 {
		t.Errorf("%d of 110 starts from one address taken, want at most the burst of 20 and a few more", len(started))
	}

	anotherVisitorChats(t, ctx, tc, nd, int64(withMessage), int64(withMessage))
}

// clusterFlood is what a flood through several nodes got.
type clusterFlood struct {
	sent, taken int64
	perNode     []int64
	// steady is what was taken from warm seconds after the start to the
	// end of the sending, past the buckets' first bursts.
	steady          int64
	sending, window float64 // seconds: the sending; until the last answer
	warm            time.Duration
}

// floodThrough floods workspace ws through each node from 3 addresses of
// its own, 15 frames a second each, for dur, and counts what was taken.
func floodThrough(t *testing.T, ctx context.Context, nodes []*nodeProc, ws string, dur, warm time.Duration) clusterFlood {
	t.Helper()
	// Every node knows the workspace before the flood begins.
	for _, nd := range nodes {
		eventually.Holds(t, 10*time.Second, "workspace on "+nd.Addr, func() error {
			c, err := client.DialWS(ctx, client.WSURL(nd.URL), client.Options{})
			if err != nil {
				return err
			}
			defer c.CloseNow()
			_, err = c.Hello(ctx, wire.Hello{Workspace: ws, Role: ident.Visitor}, nil)
			return err
		})
	}
	type conn struct {
		c          *client.Conn
		conv, name string
	}
	var conns []conn
	for i, nd := range nodes {
		for a := range 3 {
			ip := fmt.Sprintf("127.0.0.%d", 10+3*i+a)
			c, _ := visitorFrom(t, ctx, nd, ip, ws, wire.Welcome{})
			conv, err := c.Start(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, conn{c, conv, fmt.Sprintf("n%d-a%d", i+1, a)})
		}
	}
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	var tallies []*tally
	begin := time.Now()
	until := begin.Add(dur)
	for _, cn := range conns {
		tl := &tally{steadyFrom: begin.Add(warm), steadyTo: until}
		tallies = append(tallies, tl)
		flood(fctx, &wg, cn.c, cn.conv, cn.name, time.Second/15, until, tl)
	}
	r := clusterFlood{perNode: make([]int64, len(nodes)), warm: warm}
	r.sending, r.window = endFlood(t, begin, until, stop, &wg, tallies...)
	for i, tl := range tallies {
		r.sent += tl.sent.Load()
		r.taken += tl.taken()
		r.perNode[i/3] += tl.taken()
		r.steady += tl.steady.Load()
	}
	t.Logf("%d sent for %.1fs through %d nodes, %d taken in %.1fs (per node %v), %.1f a second; from %s on: %.1f a second",
		r.sent, r.sending, len(nodes), r.taken, r.window, r.perNode, float64(r.taken)/r.window, warm, r.steadyRate())
	return r
}

func (r clusterFlood) steadyRate() float64 {
	return float64(r.steady) / (r.sending - r.warm.Seconds())
}

// TestWorkspaceBudgetHoldsAcrossTheCluster: a workspace's budget of 30
// messages a second (bursts of 60) on a cluster of 3 nodes, flooded
// through every node from several addresses at 45 frames a second per
// node: the cluster takes about 30 a second in all, each node its third.
// The bound allows 40 % over the budget and the bursts: before the budget
// was shared, each node took the whole of it, 90 a second in all.
func TestWorkspaceBudgetHoldsAcrossTheCluster(t *testing.T) {
	tc := startCluster(t, 3, "-workspace-rate", "30", "-address-share", "1")
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "business"}, nil)
	ctx := testCtx(t, 120*time.Second)
	r := floodThrough(t, ctx, tc.nodes, "acme", 12*time.Second, 4*time.Second)
	// The bursts: 60 in all, 20 a node. The three starts took 3 more.
	if hi := int64(1.4*30*r.window) + 63; r.taken > hi {
		t.Errorf("the cluster took %d messages in %.1fs, want at most %d (budget 30/s, bursts 60, 40 %% over)", r.taken, r.window, hi)
	}
	if lo := int64(0.6 * 30 * r.sending); r.taken < lo {
		t.Errorf("the cluster took %d messages in %.1fs, want at least %d", r.taken, r.sending, lo)
	}
}

// TestWorkspaceBudgetAfterANodeDies: of 3 nodes sharing a workspace's
// budget of 30 a second, one is killed (SIGKILL); once gossip has noticed,
// the two left take half each: the cluster still takes about 30 a second,
// not 20 (the dead node's third lost) nor 60 (each the whole).
func TestWorkspaceBudgetAfterANodeDies(t *testing.T) {
	tc := startCluster(t, 3, "-workspace-rate", "30", "-address-share", "1")
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "business"}, nil)
	ctx := testCtx(t, 120*time.Second)
	tc.nodes[2].Kill9(t)
	for _, nd := range tc.nodes[:2] {
		tc.waitAlive(t, nd, 2, 30*time.Second)
	}
	r := floodThrough(t, ctx, tc.nodes[:2], "acme", 14*time.Second, 4*time.Second)
	// The bursts: 30 a node at half the budget, and the starts.
	if hi := int64(1.4*30*r.window) + 66; r.taken > hi {
		t.Errorf("two nodes took %d messages in %.1fs, want at most %d (budget 30/s, bursts 60, 40 %% over)", r.taken, r.window, hi)
	}
	// Past the bursts: 30 a second with the dead node's part taken over,
	// 20 without; the bound lies between.
	if rate := r.steadyRate(); rate < 25 {
		t.Errorf("two nodes took %.1f messages a second past the bursts, want about 30 (the dead node's third taken over)", rate)
	}
}

// TestAddressBudgetsBehindATrustedProxy: behind a proxy listed in
// -trusted-proxies each visitor's budget is their own address's, from
// X-Forwarded-For: one who spends theirs leaves another's whole, though
// both come through the proxy's address. Visitors behind one address
// without such a proxy (an office's NAT) share its budget.
func TestAddressBudgetsBehindATrustedProxy(t *testing.T) {
	tc := startCluster(t, 1, "-trusted-proxies", "127.0.0.5/32", "-ip-message-rate", "0.5", "-ip-message-burst", "10")
	nd := tc.nodes[0]
	mustAPI(t, nd, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "business"}, nil)
	ctx := testCtx(t, 60*time.Second)
	visitor := func(ip, forwardedFor string) (*client.Conn, string) {
		h := http.Header{}
		if forwardedFor != "" {
			h.Set("X-Forwarded-For", forwardedFor)
		}
		c, err := client.DialWS(ctx, client.WSURL(nd.URL), client.Options{Queue: dialQueue, LocalAddr: net.ParseIP(ip), Header: h})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		if _, err := c.Hello(ctx, wire.Hello{Workspace: "acme", Role: ident.Visitor}, nil); err != nil {
			t.Fatal(err)
		}
		conv, err := c.Start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c, conv
	}
	// says sends n messages one after the other and counts those taken.
	says := func(c *client.Conn, conv, prefix string, n int) (taken int) {
		for i := range n {
			_, err := c.Say(ctx, conv, fmt.Sprintf("msg-%s-%04d", prefix, i), "hello")
			var ce *client.Error
			switch {
			case err == nil:
				taken++
			case errors.As(err, &ce) && ce.Code == wire.CodeRateLimited:
			default:
				t.Fatalf("%s %d: %v", prefix, i, err)
			}
		}
		return taken
	}
	a, aconv := visitor("127.0.0.5", "203.0.113.1")
	b, bconv := visitor("127.0.0.5", "203.0.113.2")
	if got := says(a, aconv, "a", 20); got < 10 || got > 12 {
		t.Errorf("a visitor behind the proxy had %d of 20 taken, want their address's burst of 10 (and a refill or two)", got)
	}
	if got := says(b, bconv, "b", 10); got != 10 {
		t.Errorf("another visitor behind the proxy had %d of 10 taken, want all: their address's budget is their own", got)
	}
	// Behind an office's address, with no trusted proxy: one budget.
	c, cconv := visitor("127.0.0.7", "")
	d, dconv := visitor("127.0.0.7", "")
	taken := says(c, cconv, "c", 10) + says(d, dconv, "d", 10)
	if taken < 10 || taken > 12 {
		t.Errorf("two visitors behind one address had %d of 20 taken, want the address's burst of 10 (and a refill or two)", taken)
	}
}

// TestSteadyFloodCannotExhaustThePlan: one address, its rate limits raised
// so that nothing slows it down, writes 110 conversations with a message
// each and 600 more messages into a workspace on the free plan (100
// conversations, 5,000 messages a month). Its part of the plan is a tenth
// of the month a day (below the defaults of -ip-plan-conversations and
// -ip-plan-messages): 10 conversations and 500 messages are counted, the
// rest refused rate_limited with retry_ms until the day ends, and a
// visitor of another address then starts a conversation and chats, every
// message acknowledged. Before, every one of the flood's conversations
// counted, the plan was used up at the 100th, and the visitor was refused
// over_limit.
func TestSteadyFloodCannotExhaustThePlan(t *testing.T) {
	tc := startCluster(t, 1, "-usage-interval", "200ms",
		"-ip-start-rate", "100", "-ip-start-burst", "200", "-ip-message-rate", "1000", "-ip-message-burst", "1000",
		"-ip-plan-conversations", "50", "-ip-plan-messages", "1000", "-ip-plan-fraction", "0.1") // the defaults
	nd := tc.nodes[0]
	mustAPI(t, nd, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "free"}, nil)
	ctx := testCtx(t, 120*time.Second)

	// outcome sorts a send's answer: acknowledged, refused rate_limited
	// (with retry_ms, until the day ends), or anything else.
	var mu sync.Mutex
	var acked, limited, other int
	var minRetry time.Duration
	outcome := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		var ce *client.Error
		switch {
		case err == nil:
			acked++
		case errors.As(err, &ce) && ce.Code == wire.CodeRateLimited && ce.Retry > 0:
			limited++
			if minRetry == 0 || ce.Retry < minRetry {
				minRetry = ce.Retry
			}
		default:
			other++
			t.Logf("flood: %v", err)
		}
	}
	// 110 conversations with a message each, from 11 visitors (each
	// connection's frames within its frame limit's burst).
	var wg sync.WaitGroup
	var me wire.Welcome // a visitor of the flood with a conversation counted: conv
	var conv string
	for i := range 11 {
		c, w := visitorFrom(t, ctx, nd, "127.0.0.2", "acme", wire.Welcome{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 10 {
				cv, err := c.Start(ctx)
				if err != nil {
					outcome(err)
					continue
				}
				_, err = c.Say(ctx, cv, fmt.Sprintf("conv-%02d-%02d", i, j), "spam")
				outcome(err)
				if err == nil {
					mu.Lock()
					me, conv = w, cv
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	convAcked, convLimited := acked, limited
	t.Logf("110 conversations from one address: %d with a message taken, %d refused rate_limited, %d otherwise", acked, limited, other)
	if conv == "" {
		t.Fatal("no conversation of the flood counted")
	}
	// 600 more messages, into a conversation counted already, over 12
	// connections.
	for i := range 12 {
		c, _ := visitorFrom(t, ctx, nd, "127.0.0.2", "acme", me)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				_, err := c.Say(ctx, conv, fmt.Sprintf("msg-%02d-%02d", i, j), "spam")
				outcome(err)
			}
		}()
	}
	wg.Wait()
	t.Logf("600 messages more: %d taken, %d refused rate_limited (retry_ms at least %s), %d otherwise", acked-convAcked, limited-convLimited, minRetry, other)
	if convAcked != 10 {
		t.Errorf("the flooding address had %d conversations counted, want its part of the free plan, 10", convAcked)
	}
	if acked != 500 || other != 0 {
		t.Errorf("the flooding address had %d messages taken and %d otherwise answered, want its part of the free plan, 500, and the rest rate_limited", acked, other)
	}
	if minRetry < time.Minute && time.Until(time.Now().UTC().Truncate(24*time.Hour).Add(24*time.Hour)) > 2*time.Minute {
		t.Errorf("retry_ms %s, want until the day ends", minRetry)
	}

	anotherVisitorChats(t, ctx, tc, nd, int64(convAcked), int64(acked))
}

// anotherVisitorChats waits for a flood's counts (convs conversations,
// msgs messages) to reach the control plane, then has a visitor of another
// address start a conversation on nd and write 15 messages: every one is
// acknowledged, and counted, and the workspace is not over its plan.
func anotherVisitorChats(t *testing.T, ctx context.Context, tc *testCluster, nd *nodeProc, convs, msgs int64) {
	t.Helper()
	var u struct {
		Usage struct {
			Conversations int64 `json:"conversations"`
			Messages      int64 `json:"messages"`
		} `json:"usage"`
		OverLimit string `json:"over_limit"`
	}
	// The flood's counts reach the control plane before the visitor comes.
	eventually.Holds(t, 20*time.Second, "the flood's usage reported", func() error {
		mustAPI(t, nd, "GET", "/v1/admin/workspaces/acme/usage", tc.root, nil, &u)
		if u.Usage.Messages != msgs {
			return fmt.Errorf("usage %+v", u.Usage)
		}
		return nil
	})
	t.Logf("usage after the flood: %+v", u.Usage)
	v, _ := visitorFrom(t, ctx, nd, "127.0.0.3", "acme", wire.Welcome{})
	vconv, err := v.Start(ctx)
	if err != nil {
		t.Fatalf("the visitor's start after the flood: %v", err)
	}
	for i := range 15 {
		if _, err := v.Say(ctx, vconv, fmt.Sprintf("visitor-%04d", i), "hello, anyone?"); err != nil {
			t.Fatalf("the visitor's message %d after the flood: %v", i, err)
		}
	}
	eventually.Holds(t, 20*time.Second, "usage reported", func() error {
		mustAPI(t, nd, "GET", "/v1/admin/workspaces/acme/usage", tc.root, nil, &u)
		if u.Usage.Messages != msgs+15 {
			return fmt.Errorf("usage %+v", u.Usage)
		}
		return nil
	})
	if u.Usage.Conversations != convs+1 || u.OverLimit != "" {
		t.Fatalf("usage %+v, over_limit %q: want %d conversations (the flood's counted and the visitor's)", u.Usage, u.OverLimit, convs+1)
	}
}
