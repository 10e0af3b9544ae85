package replication

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// linksCollector reports each outgoing link's backlog at every scrape.
type linksCollector struct {
	r            *Links
	backlog, lag *prometheus.Desc
}

// Collector reports, per peer, the frames queued to it or sent and not yet
// acknowledged (parley_replication_backlog_frames) and how long the oldest
// of them has waited (parley_replication_lag_seconds, 0 when none). A peer
// is listed once this node has sent it anything since it started.
func (r *Links) Collector() prometheus.Collector {
	return &linksCollector{r: r,
		backlog: prometheus.NewDesc("parley_replication_backlog_frames",
			"Replication frames (events, signals) queued to a peer or sent and not yet acknowledged.", []string{"peer"}, nil),
		lag: prometheus.NewDesc("parley_replication_lag_seconds",
			"How long the oldest frame queued to a peer or awaiting its ack has waited (0: none).", []string{"peer"}, nil),
	}
}

func (c *linksCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.backlog
	ch <- c.lag
}

func (c *linksCollector) Collect(ch chan<- prometheus.Metric) {
	c.r.mu.Lock()
	links := make([]*link, 0, len(c.r.links))
	for _, l := range c.r.links {
		links = append(links, l)
	}
	c.r.mu.Unlock()
	now := time.Now()
	for _, l := range links {
		n, oldest := l.backlog(now)
		ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(n), l.peer)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, oldest.Seconds(), l.peer)
	}
}
