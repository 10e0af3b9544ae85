package node

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics implements the gateway's and the store's measurement interfaces
// on a registry of the node's own (no global registry).
type metrics struct {
	reg         *prometheus.Registry
	conns       *prometheus.GaugeVec
	connsTotal  *prometheus.CounterVec
	framesIn    *prometheus.CounterVec
	messagesIn  *prometheus.CounterVec
	messagesOut *prometheus.CounterVec
	delivery    *prometheus.HistogramVec
	errors      *prometheus.CounterVec
	relays      *prometheus.CounterVec
	commit      prometheus.Histogram
	batch       prometheus.Histogram
	commitErrs  prometheus.Counter
	scrub       prometheus.Histogram
	scrubTotal  prometheus.Histogram
	scrubPages  prometheus.Counter
	scrubErrs   prometheus.Counter
	// delivered holds the children of messagesOut and delivery for each
	// transport, looked up once: Delivered runs for every frame written
	// to every recipient.
	delivered map[string]deliveredBy
}

type deliveredBy struct {
	out      prometheus.Counter
	delivery prometheus.Observer
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "parley_connections", Help: "Open client connections.",
		}, []string{"transport"}),
		connsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_connections_total", Help: "Client connections accepted.",
		}, []string{"transport"}),
		framesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_frames_in_total", Help: "Frames read from clients.",
		}, []string{"transport"}),
		messagesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_messages_in_total", Help: "Messages sent by clients.",
		}, []string{"transport"}),
		messagesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_messages_out_total", Help: "Message events written to clients.",
		}, []string{"transport"}),
		delivery: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "parley_delivery_seconds",
			Help:    "From a change reaching the node to its event written to a recipient.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"transport"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_errors_total", Help: "Error frames sent, by wire code.",
		}, []string{"code"}),
		relays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_relays_total",
			Help: "Client connections relayed to a node serving their workspace's region, by outcome (opened, failed).",
		}, []string{"outcome"}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parley_store_commit_seconds", Help: "Store group-commit latency, fsync included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parley_store_batch_size", Help: "Changes per store commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		commitErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_store_commit_errors_total", Help: "Failed store commits.",
		}),
		scrub: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "parley_store_scrub_pause_seconds",
			Help:    "How long a scrub of the store's free pages held up its writer.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		scrubTotal: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "parley_store_scrub_seconds",
			Help:    "Store scrubs, from start to end, waits for older readers included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		scrubPages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_store_scrub_pages_total", Help: "Free pages of the store's file overwritten with zeros.",
		}),
		scrubErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_store_scrub_errors_total", Help: "Store scrubs that failed or were cut short.",
		}),
	}
	m.reg.MustRegister(m.conns, m.connsTotal, m.framesIn, m.messagesIn, m.messagesOut,
		m.delivery, m.errors, m.relays, m.commit, m.batch, m.commitErrs,
		m.scrub, m.scrubTotal, m.scrubPages, m.scrubErrs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, outcome := range []string{"opened", "failed"} { // gateway/relay.go's
		m.relays.WithLabelValues(outcome) // exported from the start, at 0
	}
	m.delivered = map[string]deliveredBy{}
	for _, t := range []string{"ws", "wt"} { // the gateway's transports' names
		m.delivered[t] = deliveredBy{m.messagesOut.WithLabelValues(t), m.delivery.WithLabelValues(t)}
	}
	return m
}

func (m *metrics) ConnOpened(t string) {
	m.conns.WithLabelValues(t).Inc()
	m.connsTotal.WithLabelValues(t).Inc()
}
func (m *metrics) ConnClosed(t string)  { m.conns.WithLabelValues(t).Dec() }
func (m *metrics) FrameIn(t string)     { m.framesIn.WithLabelValues(t).Inc() }
func (m *metrics) MessageIn(t string)   { m.messagesIn.WithLabelValues(t).Inc() }
func (m *metrics) Error(code string)    { m.errors.WithLabelValues(code).Inc() }
func (m *metrics) Relay(outcome string) { m.relays.WithLabelValues(outcome).Inc() }

func (m *metrics) Delivered(t string, d time.Duration) {
	if by, ok := m.delivered[t]; ok {
		by.out.Inc()
		by.delivery.Observe(d.Seconds())
		return
	}
	m.messagesOut.WithLabelValues(t).Inc()
	m.delivery.WithLabelValues(t).Observe(d.Seconds())
}

func (m *metrics) ObserveCommit(d time.Duration, ops int, err error) {
	if err != nil {
		m.commitErrs.Inc()
	}
	m.commit.Observe(d.Seconds())
	m.batch.Observe(float64(ops))
}

func (m *metrics) ObserveScrub(pause, total time.Duration, pages int, err error) {
	if err != nil {
		m.scrubErrs.Inc()
	}
	m.scrub.Observe(pause.Seconds())
	m.scrubTotal.Observe(total.Seconds())
	m.scrubPages.Add(float64(pages))
}
