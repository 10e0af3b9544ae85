package bench

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// metric names a latency the recorder keeps a histogram of.
type metric int

const (
	mConnect metric = iota // dial + hello until welcome
	mAck                   // due time until ack (durable)
	mE2E                   // due time until an agent receives the message
	mLag                   // due time until the harness wrote the frame: its own lateness
	nMetrics
)

var metricNames = [nMetrics]string{"connect", "ack", "e2e", "send_lag"}

// recorder collects latencies, counters and errors from every virtual
// client, and cuts them into one-second intervals for the timeline.
type recorder struct {
	mu       sync.Mutex
	total    [nMetrics]*hdrhistogram.Histogram
	interval [nMetrics]*hdrhistogram.Histogram
	errors   map[string]int64

	issued      atomic.Int64 // handed to visitors by the scheduler
	written     atomic.Int64 // send frames written (first writes)
	resent      atomic.Int64 // send frames written again after a reconnect
	acked       atomic.Int64 // first acks
	dupAcks     atomic.Int64 // acks with dup:true
	delivered   atomic.Int64 // first receipts by an agent
	errorsN     atomic.Int64
	reconnects  atomic.Int64 // successful connects after the first
	connFails   atomic.Int64 // dial or hello failures
	resumes     atomic.Int64 // resumed frames received
	drops       atomic.Int64 // connections ended under a client (not by the harness)
	stormDrops  atomic.Int64 // connections dropped by reconnect storms
	failovers   atomic.Int64 // visitors moved to another node (Scenario.Failover)
	clientConns atomic.Int64 // client connections open now

	timeline []Interval
	last     snapshot

	byTransport map[string]*transportRec // under mu
}

// transportRec is what the recorder keeps per transport (ws, wt): the
// latencies of the clients using it (connect and ack by the client's own
// transport, e2e by the receiving agent's), errors and reconnects.
type transportRec struct {
	clients    int64
	hist       [mE2E + 1]*hdrhistogram.Histogram // connect, ack, e2e
	errors     map[string]int64
	reconnects int64
	connFails  int64
}

// TransportResult is what one transport's clients measured.
type TransportResult struct {
	Clients         int64            `json:"clients"`
	Connect         Percentiles      `json:"connect"`
	Ack             Percentiles      `json:"ack"` // visitors on this transport
	E2E             Percentiles      `json:"e2e"` // receipts by agents on this transport
	Errors          map[string]int64 `json:"errors,omitempty"`
	Reconnects      int64            `json:"reconnects"`
	ConnectFailures int64            `json:"connect_failures"`
}

// tr returns the record of transport name. Lock held.
func (r *recorder) tr(name string) *transportRec {
	t := r.byTransport[name]
	if t == nil {
		t = &transportRec{errors: map[string]int64{}}
		for i := range t.hist {
			t.hist[i] = NewHist()
		}
		r.byTransport[name] = t
	}
	return t
}

// client counts a client of transport tr.
func (r *recorder) client(tr string) {
	r.mu.Lock()
	r.tr(tr).clients++
	r.mu.Unlock()
}

// recordOn records a latency of a client on transport tr: in the run's
// histograms and, for connect, ack and e2e, in the transport's.
func (r *recorder) recordOn(tr string, m metric, d time.Duration) {
	r.mu.Lock()
	RecordDur(r.total[m], d)
	RecordDur(r.interval[m], d)
	if m <= mE2E {
		RecordDur(r.tr(tr).hist[m], d)
	}
	r.mu.Unlock()
}

// errorOn counts an error of a client on transport tr.
func (r *recorder) errorOn(tr, code string) {
	if code == "" {
		code = "unknown"
	}
	r.error(code)
	r.mu.Lock()
	r.tr(tr).errors[code]++
	r.mu.Unlock()
}

// reconnectOn counts a reconnect (ok) or a failed connect of a client on
// transport tr.
func (r *recorder) reconnectOn(tr string, ok bool) {
	if ok {
		r.reconnects.Add(1)
	} else {
		r.connFails.Add(1)
	}
	r.mu.Lock()
	if ok {
		r.tr(tr).reconnects++
	} else {
		r.tr(tr).connFails++
	}
	r.mu.Unlock()
}

// transports summarises each transport.
func (r *recorder) transports() map[string]TransportResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]TransportResult{}
	for name, t := range r.byTransport {
		tr := TransportResult{Clients: t.clients, Connect: Summarize(t.hist[mConnect]), Ack: Summarize(t.hist[mAck]),
			E2E: Summarize(t.hist[mE2E]), Reconnects: t.reconnects, ConnectFailures: t.connFails}
		if len(t.errors) > 0 {
			tr.Errors = map[string]int64{}
			for k, v := range t.errors {
				tr.Errors[k] = v
			}
		}
		out[name] = tr
	}
	return out
}

type snapshot struct {
	at                                time.Time
	issued, written, acked, delivered int64
	errors, reconnects, resent        int64
}

// Interval is one second of a run.
type Interval struct {
	T           float64     `json:"t"` // seconds since the send phase began (negative: setup)
	Issued      float64     `json:"issued_per_s"`
	Written     float64     `json:"written_per_s"`
	Acked       float64     `json:"acked_per_s"`
	Delivered   float64     `json:"delivered_per_s"` // agent receipts (each agent counts)
	Errors      int64       `json:"errors"`
	Reconnects  int64       `json:"reconnects"`
	Resent      int64       `json:"resent"`
	ClientConns int64       `json:"client_conns"`
	E2E         Percentiles `json:"e2e"`
	Ack         Percentiles `json:"ack"`
}

func newRecorder() *recorder {
	r := &recorder{errors: map[string]int64{}, byTransport: map[string]*transportRec{}}
	for i := range r.total {
		r.total[i] = NewHist()
		r.interval[i] = NewHist()
	}
	return r
}

func (r *recorder) record(m metric, d time.Duration) {
	r.mu.Lock()
	RecordDur(r.total[m], d)
	RecordDur(r.interval[m], d)
	r.mu.Unlock()
}

func (r *recorder) error(code string) {
	if code == "" {
		code = "unknown"
	}
	r.errorsN.Add(1)
	r.mu.Lock()
	r.errors[code]++
	r.mu.Unlock()
}

func (r *recorder) snap(now time.Time) snapshot {
	return snapshot{at: now, issued: r.issued.Load(), written: r.written.Load(), acked: r.acked.Load(),
		delivered: r.delivered.Load(), errors: r.errorsN.Load(), reconnects: r.reconnects.Load(), resent: r.resent.Load()}
}

// tick closes the current interval (t is its end, in seconds since the
// send phase began) and returns it.
func (r *recorder) tick(now time.Time, t float64) Interval {
	cur := r.snap(now)
	r.mu.Lock()
	prev := r.last
	r.last = cur
	iv := Interval{T: round3(t), ClientConns: r.clientConns.Load(),
		E2E: Summarize(r.interval[mE2E]), Ack: Summarize(r.interval[mAck])}
	for _, h := range r.interval {
		h.Reset()
	}
	r.mu.Unlock()
	if prev.at.IsZero() {
		return iv
	}
	dt := cur.at.Sub(prev.at).Seconds()
	if dt <= 0 {
		dt = 1
	}
	per := func(a, b int64) float64 { return round3(float64(a-b) / dt) }
	iv.Issued = per(cur.issued, prev.issued)
	iv.Written = per(cur.written, prev.written)
	iv.Acked = per(cur.acked, prev.acked)
	iv.Delivered = per(cur.delivered, prev.delivered)
	iv.Errors = cur.errors - prev.errors
	iv.Reconnects = cur.reconnects - prev.reconnects
	iv.Resent = cur.resent - prev.resent
	r.mu.Lock()
	r.timeline = append(r.timeline, iv)
	r.mu.Unlock()
	return iv
}

func (r *recorder) start(now time.Time) {
	r.mu.Lock()
	r.last = r.snap(now)
	r.mu.Unlock()
}

func (r *recorder) summary(m metric) (Percentiles, []CurvePoint) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Summarize(r.total[m]), Curve(r.total[m])
}

func (r *recorder) errorCounts() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int64, len(r.errors))
	for k, v := range r.errors {
		out[k] = v
	}
	return out
}

func (r *recorder) intervals() []Interval {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]Interval(nil), r.timeline...)
	sort.Slice(out, func(i, j int) bool { return out[i].T < out[j].T })
	return out
}
