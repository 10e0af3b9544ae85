package node

import (
	"time"

	"parley/cluster"

	"github.com/prometheus/client_golang/prometheus"
)

// raftCollector reports the control plane's Raft state at each scrape, from
// one Stats call, so the figures of a scrape agree with each other.
type raftCollector struct {
	ctl                                                    *control
	leader, term, lastLog, commit, applied, snapshot       *prometheus.Desc
	voters, nonvoters, lastContact, restores, stateByLabel *prometheus.Desc
}

func newRaftCollector(ctl *control) *raftCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("parley_raft_"+name, help, labels, nil)
	}
	return &raftCollector{
		ctl:          ctl,
		leader:       d("leader", "1 if this node is the Raft leader."),
		term:         d("term", "Current Raft term."),
		lastLog:      d("last_log_index", "Last entry in the local Raft log."),
		commit:       d("commit_index", "Last entry this node knows committed."),
		applied:      d("applied_index", "Last entry applied to the local state."),
		snapshot:     d("last_snapshot_index", "Index of the last snapshot."),
		voters:       d("voters", "Voters in the Raft configuration."),
		nonvoters:    d("nonvoters", "Non-voters in the Raft configuration."),
		lastContact:  d("last_leader_contact_seconds", "Time since this node last heard from the leader (0 on the leader)."),
		restores:     d("snapshots_restored_total", "Snapshots loaded into the state, at start and when far behind."),
		stateByLabel: d("state", "1 for this node's Raft state.", "state"),
	}
}

func (r *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{r.leader, r.term, r.lastLog, r.commit, r.applied, r.snapshot,
		r.voters, r.nonvoters, r.lastContact, r.restores, r.stateByLabel} {
		ch <- d
	}
}

func (r *raftCollector) Collect(ch chan<- prometheus.Metric) {
	s := r.ctl.c.Stats()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	leader := 0.0
	if s.State == "Leader" {
		leader = 1
	}
	g(r.leader, leader)
	g(r.term, float64(s.Term))
	g(r.lastLog, float64(s.LastLogIndex))
	g(r.commit, float64(s.CommitIndex))
	g(r.applied, float64(s.StateIndex))
	g(r.snapshot, float64(s.LastSnapshotIndex))
	g(r.voters, float64(s.Voters))
	g(r.nonvoters, float64(s.Nonvoters))
	contact := -1.0
	if last := r.ctl.c.LastLeaderContact(); !last.IsZero() {
		contact = time.Since(last).Seconds()
	}
	g(r.lastContact, contact)
	ch <- prometheus.MustNewConstMetric(r.restores, prometheus.CounterValue, float64(s.SnapshotsRestored))
	g(r.stateByLabel, 1, s.State)
}

// raftApplyMetrics implements cluster.Observer.
type raftApplyMetrics struct {
	latency prometheus.Histogram
	errors  *prometheus.CounterVec
}

func newRaftApplyMetrics(reg prometheus.Registerer) *raftApplyMetrics {
	m := &raftApplyMetrics{
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "parley_raft_apply_seconds",
			Help:    "Control-plane writes from proposal to applied, forwarding to the leader included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_raft_apply_errors_total", Help: "Control-plane writes that failed, by error code.",
		}, []string{"code"}),
	}
	reg.MustRegister(m.latency, m.errors)
	return m
}

func (m *raftApplyMetrics) ObserveApply(d time.Duration, err error) {
	m.latency.Observe(d.Seconds())
	if err != nil {
		m.errors.WithLabelValues(cluster.ErrorCode(err)).Inc()
	}
}
