package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"parley/bench/internal/harness"
	"parley/gateway/client"
	"parley/gateway/wire"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// IdleResult is what the idle-connection test measured.
type IdleResult struct {
	Requested   int              `json:"requested"`
	Opened      int              `json:"opened"`
	Failed      int              `json:"failed"`
	Errors      map[string]int64 `json:"errors,omitempty"`
	SourceAddrs int              `json:"source_addrs"`
	OpenSeconds float64          `json:"open_seconds"`
	Connect     Percentiles      `json:"connect"`
	// Node memory (summed over the nodes), before opening and after every
	// connection was open and settled: RSS the median of five scrapes a
	// second apart, Go heap in use the lowest of them (nearest the live heap).
	RSSBefore        float64 `json:"rss_before_bytes"`
	RSSAfter         float64 `json:"rss_after_bytes"`
	RSSPerConn       float64 `json:"rss_per_conn_bytes"`
	HeapBefore       float64 `json:"heap_inuse_before_bytes"`
	HeapAfter        float64 `json:"heap_inuse_after_bytes"`
	HeapPerConn      float64 `json:"heap_inuse_per_conn_bytes"`
	GoroutinesBefore float64 `json:"goroutines_before"`
	GoroutinesAfter  float64 `json:"goroutines_after"`
	NodeConnsAfter   float64 `json:"node_connections_after"`
	// The harness's own resident memory once every connection was open.
	HarnessRSS float64 `json:"harness_rss_bytes"`
	// Connections that ended before the run did.
	LostBeforeEnd int64 `json:"lost_before_end"`
	// StoppedAtRSS: opening stopped at the max_node_rss_mib guard.
	StoppedAtRSS bool `json:"stopped_at_rss,omitempty"`
}

// idleSet holds the idle connections: each says hello as a new visitor,
// then only pings every heartbeat.
type idleSet struct {
	mu     sync.Mutex
	conns  []*client.Conn
	res    IdleResult
	hist   *hdrhistogram.Histogram
	stop   context.CancelFunc
	pinger sync.WaitGroup
}

func openIdle(ctx, clientCtx context.Context, r *run, scr *scraper, before []NodeSample) (*idleSet, error) {
	cfg := r.sc.Idle
	srcs, err := ParseSourceAddrs(cfg.SourceAddrs)
	if err != nil {
		return nil, err
	}
	// Room for the connections and the harness's own files; with less
	// than that, the run would fail half way with "too many open files".
	if lim, err := RaiseNoFile(uint64(cfg.Connections) + 4096); err != nil && lim < uint64(cfg.Connections)+256 {
		return nil, fmt.Errorf("raising the open-files limit: %w", err)
	}
	s := &idleSet{hist: NewHist()}
	s.res.Requested = cfg.Connections
	s.res.SourceAddrs = len(srcs)
	s.res.Errors = map[string]int64{}
	for _, n := range before {
		s.res.RSSBefore += n.RSS
		s.res.HeapBefore += n.HeapInuse
		s.res.GoroutinesBefore += n.Goroutines
	}
	d := newDialer(srcs)
	hello := []byte(fmt.Sprintf(`{"type":"hello","v":1,"workspace":%q,"role":"visitor"}`, r.sc.Target.Workspace))
	// Keep them alive from the moment they are open: a ping per connection
	// per 8 s, spread. Opening them may take longer than the node lets a
	// connection stay silent (three heartbeats of 10 s; 19,500 TLS
	// handshakes on two busy cores took a minute).
	pctx, stopPing := context.WithCancel(clientCtx)
	s.stop = stopPing
	s.pinger.Add(1)
	go func() { defer s.pinger.Done(); s.ping(pctx, 8*time.Second) }()

	t0 := time.Now()
	interval := time.Duration(float64(time.Second) / cfg.ConnectRate)
	sem := make(chan struct{}, cfg.Concurrency)
	var wg sync.WaitGroup
	var failures atomic.Int64
	lastReport := time.Now()
	for i := 0; i < cfg.Connections && ctx.Err() == nil; i++ {
		if err := harness.SleepUntil(ctx, t0.Add(time.Duration(i)*interval)); err != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, dt, err := dialIdle(ctx, d, r.nodes[i%len(r.nodes)], i, hello)
			s.mu.Lock()
			defer s.mu.Unlock()
			if err != nil {
				failures.Add(1)
				s.res.Failed++
				s.res.Errors[errCode(err)]++
				return
			}
			RecordDur(s.hist, dt)
			s.conns = append(s.conns, c)
			s.res.Opened++
		}(i)
		if r.opts.Progress != nil && time.Since(lastReport) >= time.Second {
			lastReport = time.Now()
			s.mu.Lock()
			fmt.Fprintf(r.opts.Progress, "\ridle: %d/%d open, %d failed, %.0fs%s   ", s.res.Opened, cfg.Connections, s.res.Failed, time.Since(t0).Seconds(), r.nodeLine())
			s.mu.Unlock()
		}
		// Stop early when most dials fail: the node or the machine is full.
		if f := failures.Load(); f > 1000 && f > int64(i/2) {
			break
		}
		if lim := cfg.MaxNodeRSSMiB; lim > 0 && i%100 == 0 {
			if p := r.lastNodes.Load(); p != nil {
				var rss float64
				for _, n := range *p {
					rss += n.RSS
				}
				if rss > lim*(1<<20) {
					s.res.StoppedAtRSS = true
					if r.opts.Progress != nil {
						fmt.Fprintf(r.opts.Progress, "\nidle: node RSS %s passed max_node_rss_mib %.0f: no more connections\n", harness.FmtBytes(rss), lim)
					}
					break
				}
			}
		}
	}
	wg.Wait()
	s.res.OpenSeconds = round3(time.Since(t0).Seconds())
	s.res.Connect = Summarize(s.hist)

	if r.opts.Progress != nil {
		fmt.Fprintf(r.opts.Progress, "\ridle: %d open, %d failed in %.1fs; settling %s\n", s.res.Opened, s.res.Failed, s.res.OpenSeconds, cfg.Settle)
	}
	_ = harness.SleepCtx(ctx, cfg.Settle.D())
	// Five scrapes a second apart: the median RSS, and the lowest heap in
	// use (the node's garbage comes and goes with its GC cycles).
	var rss, heap, gor, conns []float64
	for i := 0; i < 5 && ctx.Err() == nil; i++ {
		var a, b, c, e float64
		for _, n := range scr.sample(ctx) {
			a += n.RSS
			b += n.HeapInuse
			c += n.Goroutines
			e += n.Conns
		}
		rss, heap, gor, conns = append(rss, a), append(heap, b), append(gor, c), append(conns, e)
		if i < 4 {
			_ = harness.SleepCtx(ctx, time.Second)
		}
	}
	s.res.RSSAfter, s.res.HeapAfter = harness.Median(rss), minOf(heap)
	s.res.GoroutinesAfter, s.res.NodeConnsAfter = harness.Median(gor), harness.Median(conns)
	if s.res.Opened > 0 {
		s.res.RSSPerConn = round3((s.res.RSSAfter - s.res.RSSBefore) / float64(s.res.Opened))
		s.res.HeapPerConn = round3((s.res.HeapAfter - s.res.HeapBefore) / float64(s.res.Opened))
	}
	s.res.HarnessRSS = selfRSS()
	if ctx.Err() != nil {
		return s, ctx.Err()
	}
	if s.res.Opened < cfg.Connections && !s.res.StoppedAtRSS {
		return s, fmt.Errorf("idle: opened %d of %d connections (errors: %v)", s.res.Opened, cfg.Connections, s.res.Errors)
	}
	return s, nil
}

// dialIdle opens connection i to the node at base and says hello; the
// connection then drops what the node sends (pongs).
func dialIdle(ctx context.Context, d *dialer, base string, i int, hello []byte) (*client.Conn, time.Duration, error) {
	t0 := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, err := client.DialWS(cctx, client.WSURL(base), client.Options{HTTPClient: d.clients[i%len(d.clients)], ReadLimit: 64 << 10, Queue: 4})
	if err != nil {
		return nil, 0, err
	}
	if err := c.Write(cctx, hello); err != nil {
		c.CloseNow()
		return nil, 0, err
	}
	if _, err := c.Answer(cctx, wire.TypeWelcome, "", nil); err != nil {
		c.CloseNow()
		return nil, 0, err
	}
	c.Discard()
	return c, time.Since(t0), nil
}

// ping writes a ping on every connection open once per period, spread
// evenly, until ctx ends; connections opened meanwhile join the next period.
func (s *idleSet) ping(ctx context.Context, period time.Duration) {
	ping := []byte(`{"type":"ping"}`)
	for ctx.Err() == nil {
		s.mu.Lock()
		conns := append([]*client.Conn(nil), s.conns...)
		s.mu.Unlock()
		t0 := time.Now()
		if len(conns) == 0 {
			// None open yet.
			_ = harness.SleepUntil(ctx, t0.Add(time.Second))
			continue
		}
		step := period / time.Duration(len(conns))
		for i, c := range conns {
			if i%256 == 0 {
				if harness.SleepUntil(ctx, t0.Add(time.Duration(i)*step)) != nil {
					return
				}
			}
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_ = c.Write(wctx, ping)
			cancel()
		}
		_ = harness.SleepUntil(ctx, t0.Add(period))
	}
}

func (s *idleSet) close() {
	if s == nil {
		return
	}
	if s.stop != nil {
		s.stop()
	}
	s.pinger.Wait()
	s.mu.Lock()
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(conns); i += 16 {
				conns[i].CloseNow()
			}
		}(w)
	}
	wg.Wait()
}

func (s *idleSet) result() *IdleResult {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res := s.res
	for _, c := range s.conns {
		select {
		case <-c.Done():
			res.LostBeforeEnd++
		default:
		}
	}
	return &res
}

func minOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	m := v[0]
	for _, x := range v[1:] {
		m = min(m, x)
	}
	return m
}

// selfRSS is this process's resident memory, from /proc (0 elsewhere).
func selfRSS() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseFloat(f[1], 64)
	return pages * float64(os.Getpagesize())
}

// RaiseNoFile raises this process's open-files limit to at least n (and
// to the hard limit, raising that too when allowed, as root). Processes it
// starts afterwards (local nodes) inherit the limit. It returns the limit
// in force.
func RaiseNoFile(n uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= n {
		return lim.Cur, nil
	}
	want := lim
	want.Cur = n
	if want.Max < n {
		want.Max = n
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		// Not allowed past the hard limit: take what there is.
		want = lim
		want.Cur = lim.Max
		if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err2 != nil {
			return lim.Cur, err2
		}
		return want.Cur, fmt.Errorf("open-files limit %d is below the %d needed, and the hard limit cannot be raised here (%v: raising it needs root with CAP_SYS_RESOURCE); every process, a local node included, is held to %d connections", want.Cur, n, err, want.Cur)
	}
	return want.Cur, nil
}
