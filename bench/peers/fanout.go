package peers

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"parley/bench"
	"parley/bench/internal/harness"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sync/errgroup"
)

// FanoutScenario is the fan-out the peers comparison runs against Parley
// and its peers alike: Subscribers connections on one room (a Parley
// workspace's agents, a NATS subject, a Centrifugo channel), one publisher
// sending MessageSize-byte messages at Rate per second, open loop, for
// Duration. Every message carries its index; its delivery latency is
// measured from the time it was due, so a stalled server shows as latency.
type FanoutScenario struct {
	// Name labels the run.
	Name string `yaml:"name" json:"name"`
	// Subscribers on the room (1..50,000).
	Subscribers int `yaml:"subscribers" json:"subscribers"`
	// Rate is publishes per second (open loop).
	Rate float64 `yaml:"rate" json:"rate"`
	// Duration of the send phase (at most 10m).
	Duration bench.Duration `yaml:"duration" json:"duration"`
	// MessageSize is the payload in bytes (32..4000). Zero: 128.
	MessageSize int `yaml:"message_size" json:"message_size"`
	// ConnectRate paces opening the subscribers, per second. Zero: 1000.
	ConnectRate float64 `yaml:"connect_rate" json:"connect_rate"`
	// Settle is the wait with every subscriber connected before the
	// server's memory is read. Zero: 2s.
	Settle bench.Duration `yaml:"settle" json:"settle"`
	// Drain bounds the wait for deliveries after the send phase. Zero: 5s.
	Drain bench.Duration `yaml:"drain" json:"drain"`
	// Peers run, in this order in each round: parley, nats, centrifugo.
	// Zero: all three.
	Peers []string `yaml:"peers" json:"peers"`
	// Runs is the number of rounds; each runs every peer once against a
	// freshly started server. Zero: 1.
	Runs int `yaml:"runs" json:"runs"`
}

// Peer names.
const (
	PeerParley     = "parley"
	PeerNATS       = "nats"
	PeerCentrifugo = "centrifugo"
)

var allPeers = []string{PeerParley, PeerNATS, PeerCentrifugo}

// LoadFanoutScenario reads, defaults and validates a fan-out scenario.
func LoadFanoutScenario(path string) (*FanoutScenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s FanoutScenario
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s.Defaults()
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

// Defaults fills zero fields.
func (s *FanoutScenario) Defaults() {
	if s.Name == "" {
		s.Name = "fanout"
	}
	if s.MessageSize == 0 {
		s.MessageSize = 128
	}
	if s.ConnectRate == 0 {
		s.ConnectRate = 1000
	}
	if s.Settle == 0 {
		s.Settle = bench.Duration(2 * time.Second)
	}
	if s.Drain == 0 {
		s.Drain = bench.Duration(5 * time.Second)
	}
	if len(s.Peers) == 0 {
		s.Peers = slices.Clone(allPeers)
	}
	if s.Runs == 0 {
		s.Runs = 1
	}
}

// Validate reports every impossible field at once.
func (s *FanoutScenario) Validate() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if s.Subscribers < 1 || s.Subscribers > 50_000 {
		bad("subscribers: %d, want 1..50000", s.Subscribers)
	}
	if !(s.Rate > 0 && s.Rate <= 10_000) {
		bad("rate: %g, want 0 < rate <= 10000", s.Rate)
	}
	if s.Duration <= 0 || s.Duration.D() > 10*time.Minute {
		bad("duration: %s, want 0 < duration <= 10m", s.Duration)
	}
	if s.MessageSize < fanoutHeader || s.MessageSize > bench.MaxBodyBytes {
		bad("message_size: %d, want %d..%d", s.MessageSize, fanoutHeader, bench.MaxBodyBytes)
	}
	if s.ConnectRate < 0 {
		bad("connect_rate: %g, want > 0", s.ConnectRate)
	}
	if s.Settle < 0 || s.Drain < 0 || s.Drain.D() > 5*time.Minute {
		bad("settle, drain: want >= 0, drain <= 5m")
	}
	if s.Runs < 0 || s.Runs > 10 {
		bad("runs: %d, want 1..10", s.Runs)
	}
	seen := map[string]bool{}
	for _, p := range s.Peers {
		if !slices.Contains(allPeers, p) {
			bad("peers: unknown peer %q (want %v)", p, allPeers)
		}
		if seen[p] {
			bad("peers: %q twice", p)
		}
		seen[p] = true
	}
	if n := s.Messages() * s.Subscribers; n > 200_000_000 {
		bad("messages × subscribers: %d, at most 200,000,000 receipts per run", n)
	}
	return errors.Join(errs...)
}

// Messages is the number of publishes of one run.
func (s *FanoutScenario) Messages() int {
	return max(1, int(s.Rate*s.Duration.D().Seconds()))
}

// A fan-out payload is "~pb:" + 16 hex digits of the message index + ";"
// then filler to MessageSize: ASCII that needs no escaping in JSON or
// NATS, found by a byte search in any protocol's frame.
const (
	fanoutMarker = "~pb:"
	fanoutHeader = len(fanoutMarker) + 16 + 1
)

// fanoutPayload appends message k's payload of size n to buf.
func fanoutPayload(buf []byte, k uint64, n int) []byte {
	buf = append(buf[:0], fanoutMarker...)
	var h [8]byte
	for i := range h {
		h[i] = byte(k >> (56 - 8*i))
	}
	buf = hex.AppendEncode(buf, h[:])
	buf = append(buf, ';')
	for len(buf) < n {
		buf = append(buf, 'x')
	}
	return buf
}

// fanoutIndex finds the message index in a frame holding a payload.
func fanoutIndex(b []byte) (uint64, bool) {
	i := bytes.Index(b, []byte(fanoutMarker))
	if i < 0 || len(b) < i+fanoutHeader || b[i+fanoutHeader-1] != ';' {
		return 0, false
	}
	var h [8]byte
	if _, err := hex.Decode(h[:], b[i+len(fanoutMarker):i+fanoutHeader-1]); err != nil {
		return 0, false
	}
	var k uint64
	for _, c := range h {
		k = k<<8 | uint64(c)
	}
	return k, true
}

// fanoutDriver speaks one server's protocol for the fan-out.
type fanoutDriver interface {
	// subscribe opens subscriber i and returns once the server has
	// confirmed the subscription. The subscriber's goroutines call
	// onMessage with each message pushed to the room (the bytes are valid
	// during the call only) until Close, which waits for them.
	subscribe(ctx context.Context, i int, onMessage func([]byte)) (io.Closer, error)
	// publisher opens the connection the messages are published on.
	publisher(ctx context.Context) (fanoutPublisher, error)
}

// fanoutPublisher publishes messages to the room.
type fanoutPublisher interface {
	publish(ctx context.Context, payload []byte) error
	io.Closer
}

// fanoutRecorder counts receipts per message and records latency from
// each message's due time, for the run and per second.
type fanoutRecorder struct {
	start    time.Time
	interval time.Duration
	counts   []atomic.Int32
	total    atomic.Int64
	foreign  atomic.Int64 // frames with no payload of this run

	mu      sync.Mutex
	hist    *hdrhistogram.Histogram
	perSec  []*hdrhistogram.Histogram // by receipt second since start
	lastRcv time.Time
}

func newFanoutRecorder(start time.Time, rate float64, messages, seconds int) *fanoutRecorder {
	r := &fanoutRecorder{start: start, interval: time.Duration(float64(time.Second) / rate),
		counts: make([]atomic.Int32, messages), hist: bench.NewHist(), perSec: make([]*hdrhistogram.Histogram, seconds)}
	return r
}

func (r *fanoutRecorder) due(k int) time.Time { return r.start.Add(time.Duration(k) * r.interval) }

// receive records one subscriber's receipt of the frame b.
func (r *fanoutRecorder) receive(b []byte) {
	now := time.Now()
	k, ok := fanoutIndex(b)
	if !ok || k >= uint64(len(r.counts)) {
		r.foreign.Add(1)
		return
	}
	r.counts[k].Add(1)
	r.total.Add(1)
	d := now.Sub(r.due(int(k)))
	sec := int(now.Sub(r.start) / time.Second)
	r.mu.Lock()
	bench.RecordDur(r.hist, d)
	if sec >= 0 && sec < len(r.perSec) {
		if r.perSec[sec] == nil {
			r.perSec[sec] = bench.NewHist()
		}
		bench.RecordDur(r.perSec[sec], d)
	}
	if now.After(r.lastRcv) {
		r.lastRcv = now
	}
	r.mu.Unlock()
}

// FanoutInterval is one second of a fan-out run, by receipt time.
type FanoutInterval struct {
	T        float64 `json:"t"`
	Receipts int64   `json:"receipts"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
}

func (r *fanoutRecorder) timeline() []FanoutInterval {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []FanoutInterval
	for i, h := range r.perSec {
		iv := FanoutInterval{T: float64(i)}
		if h != nil {
			p := bench.Summarize(h)
			iv.Receipts, iv.P50, iv.P99, iv.Max = p.Count, p.P50, p.P99, p.Max
		}
		out = append(out, iv)
	}
	// Trailing empty seconds say nothing.
	for len(out) > 0 && out[len(out)-1].Receipts == 0 {
		out = out[:len(out)-1]
	}
	return out
}

// complete is the number of messages every subscriber received.
func (r *fanoutRecorder) complete(subs int) (all, over int) {
	for i := range r.counts {
		switch c := int(r.counts[i].Load()); {
		case c == subs:
			all++
		case c > subs:
			over++
		}
	}
	return all, over
}

// FanoutResult is one run of the fan-out against one server.
type FanoutResult struct {
	Peer    string `json:"peer"`
	Round   int    `json:"round"`
	Version string `json:"version"`
	Error   string `json:"error,omitempty"`

	Subscribers   int   `json:"subscribers"`
	Connected     int   `json:"connected"`
	Issued        int   `json:"issued"`
	Published     int   `json:"published"`
	PublishErrors int   `json:"publish_errors"`
	Receipts      int64 `json:"receipts"`
	Expected      int64 `json:"expected"`
	// Complete messages reached every subscriber; Overdelivered reached
	// some subscriber twice.
	Complete      int `json:"complete"`
	Overdelivered int `json:"overdelivered"`

	ConnectSeconds float64            `json:"connect_seconds"`
	Latency        bench.Percentiles  `json:"latency"` // due → receipt, every subscriber
	Curve          []bench.CurvePoint `json:"curve"`
	Timeline       []FanoutInterval   `json:"timeline"`

	// Window is the measured span: from the first message's due time to
	// the last receipt (or the end of the drain). Server CPU is counted
	// over it.
	WindowSeconds        float64 `json:"window_seconds"`
	ServerCPUSeconds     float64 `json:"server_cpu_seconds"`
	ReceiptsPerCPUSecond float64 `json:"receipts_per_cpu_second"` // msgs/s per core
	ReceiptsPerSecond    float64 `json:"receipts_per_second"`
	HarnessCPUSeconds    float64 `json:"harness_cpu_seconds"`

	RSSIdle      float64 `json:"rss_idle"`      // server started, nobody connected
	RSSConnected float64 `json:"rss_connected"` // every subscriber connected, settled
	RSSPeak      float64 `json:"rss_peak"`
	MemPerConn   float64 `json:"mem_per_conn"` // (connected − idle) / subscribers, bytes

	Server []harness.ProcSample `json:"server"` // T from the first due time
}

// Delivered is the fraction of expected receipts that arrived.
func (f *FanoutResult) Delivered() float64 {
	if f.Expected == 0 {
		return 0
	}
	return float64(f.Receipts) / float64(f.Expected)
}

// fanoutRun is one run against a started server.
type fanoutRun struct {
	sc     *FanoutScenario
	drv    fanoutDriver
	server *harness.ProcSampler
	log    func(format string, a ...any)
}

// run connects, measures idle and connected memory, publishes open loop,
// drains and closes every connection. The server is the caller's.
func (fr *fanoutRun) run(ctx context.Context, res *FanoutResult) error {
	sc := fr.sc
	logf := fr.log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	res.Subscribers = sc.Subscribers
	// Idle memory: a moment after start, the median of three reads.
	var idle []float64
	for range 3 {
		st, err := fr.server.Sample(time.Now())
		if err != nil {
			return fmt.Errorf("server stats: %w", err)
		}
		idle = append(idle, st.RSS)
		if err := harness.SleepCtx(ctx, 300*time.Millisecond); err != nil {
			return err
		}
	}
	res.RSSIdle = harness.Median(idle)

	sctx, stopSampler := context.WithCancel(ctx)
	var swg sync.WaitGroup
	swg.Go(func() { fr.server.Run(sctx) })
	defer func() { stopSampler(); swg.Wait() }()

	// Receipts before the recorder exists (none expected) are dropped.
	var rec atomic.Pointer[fanoutRecorder]
	onMessage := func(b []byte) {
		if r := rec.Load(); r != nil {
			r.receive(b)
		}
	}
	var (
		subsMu sync.Mutex
		subs   []io.Closer
	)
	defer func() {
		subsMu.Lock()
		defer subsMu.Unlock()
		closeAll(subs)
	}()
	t0 := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(64)
	every := time.Duration(float64(time.Second) / sc.ConnectRate)
	for i := 0; i < sc.Subscribers; i++ {
		if err := harness.SleepUntil(gctx, t0.Add(time.Duration(i)*every)); err != nil {
			break
		}
		g.Go(func() error {
			cctx, cancel := context.WithTimeout(gctx, 15*time.Second)
			defer cancel()
			c, err := fr.drv.subscribe(cctx, i, onMessage)
			if err != nil {
				return fmt.Errorf("subscriber %d: %w", i, err)
			}
			subsMu.Lock()
			subs = append(subs, c)
			subsMu.Unlock()
			return nil
		})
	}
	err := g.Wait()
	subsMu.Lock()
	res.Connected = len(subs)
	subsMu.Unlock()
	res.ConnectSeconds = time.Since(t0).Seconds()
	if err != nil {
		return err
	}
	logf("%d subscribers in %.1fs", res.Connected, res.ConnectSeconds)
	pub, err := fr.drv.publisher(ctx)
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	defer pub.Close()
	if err := harness.SleepCtx(ctx, sc.Settle.D()); err != nil {
		return err
	}
	st, err := fr.server.Sample(time.Now())
	if err != nil {
		return fmt.Errorf("server stats: %w", err)
	}
	res.RSSConnected = st.RSS
	res.MemPerConn = (res.RSSConnected - res.RSSIdle) / float64(sc.Subscribers)

	// The send phase, open loop.
	n := sc.Messages()
	res.Issued, res.Expected = n, int64(n)*int64(sc.Subscribers)
	start := time.Now().Add(200 * time.Millisecond)
	seconds := int((sc.Duration.D()+sc.Drain.D())/time.Second) + 3
	r := newFanoutRecorder(start, sc.Rate, n, seconds)
	rec.Store(r)
	fr.server.SetRef(start)
	if err := harness.SleepUntil(ctx, start); err != nil {
		return err
	}
	cpu0, err := fr.server.Sample(time.Now())
	if err != nil {
		return fmt.Errorf("server stats: %w", err)
	}
	self0 := harness.SelfCPUSeconds()
	buf := make([]byte, 0, sc.MessageSize)
	var pubErr error
	for k := 0; k < n; k++ {
		if err := harness.SleepUntil(ctx, r.due(k)); err != nil {
			return err
		}
		buf = fanoutPayload(buf, uint64(k), sc.MessageSize)
		if err := pub.publish(ctx, buf); err != nil {
			res.PublishErrors++
			if pubErr == nil {
				pubErr = err
				logf("publish %d: %v", k, err)
			}
			continue
		}
		res.Published++
	}
	// Drain: until every receipt is in, or the drain ends.
	deadline := time.Now().Add(sc.Drain.D())
	for r.total.Load() < res.Expected && time.Now().Before(deadline) {
		if err := harness.SleepCtx(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	end := time.Now()
	r.mu.Lock()
	if r.total.Load() >= res.Expected && !r.lastRcv.IsZero() {
		end = r.lastRcv
	}
	r.mu.Unlock()
	cpu1, err := fr.server.Sample(time.Now())
	if err != nil {
		return fmt.Errorf("server stats: %w", err)
	}
	res.HarnessCPUSeconds = harness.SelfCPUSeconds() - self0
	res.WindowSeconds = end.Sub(start).Seconds()
	res.ServerCPUSeconds = cpu1.CPUSeconds - cpu0.CPUSeconds
	res.Receipts = r.total.Load()
	if res.ServerCPUSeconds > 0 {
		res.ReceiptsPerCPUSecond = float64(res.Receipts) / res.ServerCPUSeconds
	}
	if res.WindowSeconds > 0 {
		res.ReceiptsPerSecond = float64(res.Receipts) / res.WindowSeconds
	}
	r.mu.Lock()
	res.Latency, res.Curve = bench.Summarize(r.hist), bench.Curve(r.hist)
	r.mu.Unlock()
	res.Timeline = r.timeline()
	res.Complete, res.Overdelivered = r.complete(sc.Subscribers)
	stopSampler()
	swg.Wait()
	res.Server = fr.server.Series()
	res.RSSPeak = fr.server.PeakRSS()
	if res.Published == 0 && pubErr != nil {
		return fmt.Errorf("every publish failed: %w", pubErr)
	}
	return nil
}

// closeAll closes connections concurrently (a few at a time).
func closeAll(cs []io.Closer) {
	var g errgroup.Group
	g.SetLimit(64)
	for _, c := range cs {
		g.Go(func() error { c.Close(); return nil })
	}
	_ = g.Wait()
}
