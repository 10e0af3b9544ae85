package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"parley/gateway/client"

	"golang.org/x/sync/errgroup"
)

// BenchmarkTransports compares WebSocket (ws), WebTransport (wt) and
// WebSocket over the node's own TLS (wss, on a second node serving HTTPS
// only) in one run, nodes built without -race, at several numbers of open
// connections; the clients run in the benchmark's process. Each connection
// is a visitor with a conversation of its own that pings every 10 s, as the
// widget does. Messages go out open loop at benchRate per second in total,
// round robin over the connections (one op = one message), and each comes
// back to its sender as a deliver frame. Reported per transport:
//
//   - p50-ms, p99-ms: from the client's write of send to its read of the
//     deliver, the node's fsync included;
//   - node-cpu-us/msg: the node process's user+system CPU per message, less
//     what it spends with the same connections idle (measured just before);
//   - node-idle-cpu-%: that idle cost (pings, and QUIC keep-alives);
//   - node-live-heap-mb: the node's live heap at its last garbage collection
//     during the run, with every connection open (from /metrics: the next
//     GC goal divided by 1+GOGC/100); compare it across connection counts;
//   - node-goroutines/conn: the goroutines opening the connections added.
//
// 10,000 connections run with PARLEY_BENCH_CONNS=10000:
//
//	PARLEY_BENCH_CONNS=10000 go test -run '^$' -bench Transports -benchtime 5000x -timeout 30m ./e2e/
func BenchmarkTransports(b *testing.B) {
	maxConns := 1000
	if v, err := strconv.Atoi(os.Getenv("PARLEY_BENCH_CONNS")); err == nil && v > 0 {
		maxConns = v
	}
	bin, err := benchBinary()
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{100, 1000, 10000} {
		if n > maxConns {
			continue
		}
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			node := startBenchNode(b, bin)
			// WebSocket over the node's own TLS, as a node without a
			// balancer in front serves it: a node serving HTTPS only.
			tlsNode := startBenchTLSNode(b, bin)
			for _, tr := range []string{"ws", "wt", "wss"} {
				// One pool of connections for every invocation of the
				// sub-benchmark (the framework runs it with N=1 first).
				var pool *benchPool
				b.Run(tr, func(b *testing.B) {
					if pool == nil {
						on := node
						if tr == "wss" {
							on = tlsNode
						}
						var err error
						if pool, err = newBenchPool(on, tr, n); err != nil {
							b.Fatal(err)
						}
					}
					pool.run(b)
				})
				if pool != nil {
					pool.close()
				}
			}
		})
	}
}

const (
	benchRate      = 1000 // messages per second, in total
	benchHeartbeat = 10 * time.Second
)

var (
	benchBinOnce sync.Once
	benchBin     string
	benchBinErr  error
)

// benchBinary builds the node without the race detector, once.
func benchBinary() (string, error) {
	benchBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "parley-bench-bin")
		if err != nil {
			benchBinErr = err
			return
		}
		benchBin = filepath.Join(dir, "parley")
		out, err := exec.Command("go", "build", "-o", benchBin, "../cmd/parley").CombinedOutput()
		if err != nil {
			benchBinErr = fmt.Errorf("building the node: %v: %s", err, out)
		}
	})
	return benchBin, benchBinErr
}

type benchNode struct {
	*nodeProc
	url    string
	wt     string // WebTransport URL
	hash   []byte // SHA-256 of its certificate
	client *http.Client
	tls    *tls.Config // wss://: what trusts the node's certificate
}

// benchNodeArgs lift the node's limits for the load of a benchmark.
var benchNodeArgs = []string{"-log-level", "warn", "-frame-rate", "100000", "-workspace-rate", "10000000", "-max-conns-per-ip", "1000000"}

func startBenchNode(b *testing.B, bin string) *benchNode {
	b.Helper()
	nd := startNodeBin(b, bin, b.TempDir(), benchNodeArgs...)
	n := &benchNode{nodeProc: nd, url: nd.URL, client: http.DefaultClient}
	resp, err := http.Get(n.url + "/v1/transport")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct {
		WebTransport struct {
			URL        string   `json:"url"`
			CertHashes []string `json:"cert_hashes"`
		} `json:"webtransport"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || len(info.WebTransport.CertHashes) == 0 {
		b.Fatalf("/v1/transport: %v %+v", err, info)
	}
	n.wt = info.WebTransport.URL
	n.hash, _ = base64.StdEncoding.DecodeString(info.WebTransport.CertHashes[0])
	return n
}

// startBenchTLSNode starts a node serving HTTPS only (its WebSockets over
// TLS, as a node without a balancer in front serves them).
func startBenchTLSNode(b *testing.B, bin string) *benchNode {
	b.Helper()
	nd, c := startTLSNode(b, bin, benchNodeArgs...)
	cfg := &tls.Config{RootCAs: c.pool}
	return &benchNode{nodeProc: nd, url: nd.URL, tls: cfg,
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}}
}

// cpu returns the node process's user+system CPU time so far.
func (n *benchNode) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.PID()))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// metric reads one sample of the node's /metrics.
func (n *benchNode) metric(sample string) float64 {
	resp, err := n.client.Get(n.url + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

type benchConn struct {
	write func([]byte) error
	close func()
	setup chan []byte // frames other than timed delivers, until ready
	ready atomic.Bool
	conv  string
	ended atomic.Value // why its frames ended (a string)
}

type benchPool struct {
	node  *benchNode
	tr    string
	conns []*benchConn // set once set up, before run
	live  []atomic.Pointer[benchConn]
	lat   latencies
	wt    *client.WTDialer
	stop  chan struct{}
	done  chan struct{}
	gor   float64 // goroutines added
	ready time.Time
}

type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) take() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.d
	l.d = nil
	return d
}

func (l *latencies) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

// record handles a frame a client read: a deliver whose body is
// "t=<unix ns>" is a timed message; other frames matter during set-up only.
func (p *benchPool) record(c *benchConn, raw []byte) {
	if bytes.Contains(raw, []byte(`"type":"deliver"`)) {
		var m struct {
			Message struct{ Body string }
		}
		if json.Unmarshal(raw, &m) == nil && strings.HasPrefix(m.Message.Body, "t=") {
			if ns, err := strconv.ParseInt(m.Message.Body[2:], 10, 64); err == nil {
				p.lat.add(time.Since(time.Unix(0, ns)))
				return
			}
		}
	}
	if !c.ready.Load() {
		select {
		case c.setup <- bytes.Clone(raw):
		default:
		}
	}
}

func newBenchPool(node *benchNode, tr string, n int) (*benchPool, error) {
	p := &benchPool{node: node, tr: tr, conns: make([]*benchConn, n), live: make([]atomic.Pointer[benchConn], n),
		stop: make(chan struct{}), done: make(chan struct{})}
	gor0 := node.metric("go_goroutines")
	// WebTransport clients share a few UDP sockets (as many browsers
	// behind one NAT would): one per connection would take 10,000
	// descriptors.
	if tr == "wt" {
		p.wt = client.NewWTDialer(client.WTConfig{CertHashes: [][]byte{node.hash}, LocalAddr: net.IPv4(127, 0, 0, 1), Sockets: 8})
	}
	// Connections ping from the moment they are up: setting up 10,000 takes
	// longer than the node lets a connection stay silent.
	go p.ping()
	var g errgroup.Group
	g.SetLimit(32)
	for i := range p.conns {
		g.Go(func() error {
			// A QUIC server refuses handshakes while 32 finished ones wait
			// to be accepted: a busy machine retries, as browsers do.
			var err error
			for attempt := range 5 {
				var c *benchConn
				if c, err = p.dial(i); err == nil {
					p.conns[i] = c
					p.live[i].Store(c)
					return nil
				}
				time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
			}
			return fmt.Errorf("%s connection %d: %w", tr, i, err)
		})
	}
	if err := g.Wait(); err != nil {
		p.close()
		return nil, err
	}
	p.gor = node.metric("go_goroutines") - gor0
	p.ready = time.Now()
	return p, nil
}

// ping sends each connection a ping every benchHeartbeat, spread evenly.
func (p *benchPool) ping() {
	defer close(p.done)
	t := time.NewTicker(benchHeartbeat / time.Duration(len(p.live)))
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-p.stop:
			return
		case <-t.C:
			if c := p.live[i%len(p.live)].Load(); c != nil {
				c.write([]byte(`{"type":"ping"}`))
			}
		}
	}
}

func (p *benchPool) dial(i int) (*benchConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := &benchConn{setup: make(chan []byte, 16)}
	var conn *client.Conn
	var err error
	switch p.tr {
	case "ws", "wss":
		conn, err = client.DialWS(ctx, client.WSURL(p.node.url), client.Options{TLS: p.node.tls})
	case "wt":
		conn, err = p.wt.Dial(ctx, p.node.wt, client.Options{})
	}
	if err != nil {
		return nil, err
	}
	c.write = func(b []byte) error { return conn.Write(context.Background(), b) }
	c.close = conn.CloseNow
	go func() {
		for f := range conn.Frames() {
			p.record(c, f.Raw)
		}
		c.ended.Store(fmt.Sprint(conn.Err()))
	}()
	await := func(typ string) (map[string]any, error) {
		for {
			select {
			case b := <-c.setup:
				var m map[string]any
				if json.Unmarshal(b, &m) == nil && m["type"] == typ {
					return m, nil
				}
				if m["type"] == "error" {
					return nil, fmt.Errorf("error frame %v", m)
				}
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for %s: %w", typ, ctx.Err())
			}
		}
	}
	fail := func(err error) (*benchConn, error) {
		c.close()
		return nil, err
	}
	if err := c.write([]byte(`{"type":"hello","v":1,"workspace":"demo","role":"visitor"}`)); err != nil {
		return fail(err)
	}
	if _, err := await("welcome"); err != nil {
		return fail(err)
	}
	if err := c.write([]byte(`{"type":"start","ref":"s"}`)); err != nil {
		return fail(err)
	}
	m, err := await("started")
	if err != nil {
		return fail(err)
	}
	c.conv = m["conversation"].(string)
	c.ready.Store(true)
	return c, nil
}

func (p *benchPool) close() {
	close(p.stop)
	<-p.done
	for _, c := range p.conns {
		if c != nil {
			c.close()
		}
	}
	if p.wt != nil {
		p.wt.Close()
	}
}

var benchSeq atomic.Uint64

func (p *benchPool) run(b *testing.B) {
	// The cost of the open connections alone, just before.
	const idle = 2 * time.Second
	c0 := p.node.cpu()
	time.Sleep(idle)
	idleRate := float64(p.node.cpu()-c0) / float64(idle)

	p.lat.take()
	interval := time.Second / benchRate
	cpu0 := p.node.cpu()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		// Open loop: message i is due at start + i*interval, whatever
		// happened before.
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		c := p.conns[i%len(p.conns)]
		frame := `{"type":"send","conversation":"` + c.conv + `","id":"m-` + fmt.Sprintf("%012d", benchSeq.Add(1)) +
			`","body":"t=` + strconv.FormatInt(time.Now().UnixNano(), 10) + `"}`
		if err := c.write([]byte(frame)); err != nil {
			b.Fatalf("%v (its frames ended: %v); the node's log ends:\n%s", err, c.ended.Load(), p.node.Tail(15))
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for p.lat.len() < b.N {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d delivered", p.lat.len(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := float64(p.node.cpu()-cpu0) - idleRate*float64(elapsed)
	lat := p.lat.take()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(cpu/float64(time.Microsecond)/float64(b.N), "node-cpu-us/msg")
	b.ReportMetric(idleRate*100, "node-idle-cpu-%")
	if last := p.node.metric("go_memstats_last_gc_time_seconds"); last > float64(p.ready.Unix()) {
		live := p.node.metric("go_memstats_next_gc_bytes") / (1 + p.node.metric("go_gc_gogc_percent")/100)
		b.ReportMetric(live/(1<<20), "node-live-heap-mb")
	}
	b.ReportMetric(p.gor/float64(len(p.conns)), "node-goroutines/conn")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}
