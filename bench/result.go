package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Result is everything a run measured; it is written as JSON and rendered
// as HTML.
type Result struct {
	Version  int          `json:"version"`
	Name     string       `json:"name"`
	RunID    string       `json:"run_id"`
	Started  time.Time    `json:"started"`
	Finished time.Time    `json:"finished"`
	Host     Host         `json:"host"`
	Scenario *Scenario    `json:"scenario"`
	Nodes    []string     `json:"nodes"`
	Local    *ClusterInfo `json:"local,omitempty"`
	// Stopped is empty when the run ended by itself, else "interrupted"
	// (SIGINT) or "timeout …": the result is then partial.
	Stopped    string `json:"stopped,omitempty"`
	Error      string `json:"error,omitempty"`
	AuditError string `json:"audit_error,omitempty"`
	Verdict    string `json:"verdict"`

	SetupSeconds float64 `json:"setup_seconds"`
	SendSeconds  float64 `json:"send_seconds"`
	DrainSeconds float64 `json:"drain_seconds"`
	Issued       int     `json:"issued"`

	// Latency: connect, ack, e2e (visitor send → agent receipt) and
	// send_lag (the harness's own lateness), all from the due time.
	Latency    map[string]Percentiles  `json:"latency"`
	Curves     map[string][]CurvePoint `json:"curves"`
	Throughput Throughput              `json:"throughput"`
	Counts     Counts                  `json:"counts"`
	Errors     map[string]int64        `json:"errors"`
	// Transports: connect, ack and e2e latencies, errors and reconnects
	// of each transport's clients.
	Transports map[string]TransportResult `json:"transports,omitempty"`
	Accounting Accounting                 `json:"accounting"`

	NodeCPUSeconds    float64      `json:"node_cpu_seconds"`     // all nodes, send phase
	AckedPerCPUSecond float64      `json:"acked_per_cpu_second"` // messages per node CPU second
	NodeMetrics       []NodeSeries `json:"node_metrics"`
	Harness           NodeSeries   `json:"harness"` // the harness's own CPU and memory
	Timeline          []Interval   `json:"timeline"`
	Events            []Event      `json:"events,omitempty"`
	Idle              *IdleResult  `json:"idle,omitempty"`
}

// Host describes the machine the harness ran on.
type Host struct {
	// LoadAvg is /proc/loadavg at the start and the end of the run: other
	// work on the machine shows here.
	LoadAvg   []string `json:"loadavg,omitempty"`
	Hostname  string   `json:"hostname"`
	CPUs      int      `json:"cpus"`
	GoVersion string   `json:"go"`
	OS        string   `json:"os"`
}

// Counts are the run's totals.
type Counts struct {
	Issued          int64 `json:"issued"`
	Written         int64 `json:"written"`
	Resent          int64 `json:"resent"`
	Acked           int64 `json:"acked"`
	DupAcks         int64 `json:"dup_acks"`
	Delivered       int64 `json:"delivered"` // first receipts, summed over agents
	Errors          int64 `json:"errors"`
	Reconnects      int64 `json:"reconnects"`
	ConnectFailures int64 `json:"connect_failures"`
	Resumes         int64 `json:"resumes"`
	Drops           int64 `json:"drops"`               // connections that ended under a client
	StormDrops      int64 `json:"storm_drops"`         // connections dropped by storms
	Failovers       int64 `json:"failovers,omitempty"` // visitors moved to another node (failover: true)
}

// Throughput is per second of the send phase.
type Throughput struct {
	IssuedPerSec    float64 `json:"issued_per_s"`
	AckedPerSec     float64 `json:"acked_per_s"`
	DeliveredPerSec float64 `json:"delivered_per_s"` // agent receipts
}

// verdict sums the run up in one line.
func verdict(r *Result) string {
	a := r.Accounting
	switch {
	case r.Error != "":
		return "FAILED: " + r.Error
	case a.Lost > 0 || a.Duplicated > 0:
		s := fmt.Sprintf("LOSS: of %d acknowledged messages, %d lost and %d duplicated", a.Acked, a.Lost, a.Duplicated)
		if a.NodesDisagree() {
			s += "; " + disagreement(a)
		}
		if a.HistoryAltered > 0 {
			s += fmt.Sprintf("; %d (message, node) pairs shown edited or deleted, which nobody did", a.HistoryAltered)
		}
		return s
	case a.NodesDisagree():
		return fmt.Sprintf("DIVERGED: of %d acknowledged messages, %d have another ts on some node; %s", a.Acked, a.Diverged, disagreement(a))
	case a.HistoryAltered > 0:
		return fmt.Sprintf("ALTERED: of %d acknowledged messages, %d are shown edited or deleted, which nobody did (%d message × node pairs): a node merged a second creation of an id as an edit", a.Acked, a.Altered, a.HistoryAltered)
	case r.AuditError != "":
		return fmt.Sprintf("UNVERIFIED: the audit of the node's history failed (%s); %d of %d acknowledged messages delivered to every agent", r.AuditError, a.Delivered, a.Acked)
	case r.Stopped != "":
		return fmt.Sprintf("PARTIAL (%s): %d acknowledged, none lost or duplicated so far", r.Stopped, a.Acked)
	case a.Acked == 0 && a.Issued > 0:
		return "FAILED: no message was acknowledged"
	case a.Issued == 0 && r.Idle != nil:
		s := fmt.Sprintf("OK: %d of %d idle connections open; node RSS %.1f KiB per connection", r.Idle.Opened, r.Idle.Requested, r.Idle.RSSPerConn/1024)
		if r.Idle.StoppedAtRSS {
			s += " (stopped opening at the max_node_rss_mib guard)"
		}
		return s
	case a.Issued == 0:
		return "OK: no messages in this scenario"
	}
	how := "delivered to every agent"
	if a.Agents == 0 {
		how = "acknowledged"
	}
	if a.Audited {
		how += " and stored exactly once"
	}
	if a.Audited && a.AuditedNodes > 1 {
		how += ", with one ts and one order on every node"
	}
	s := fmt.Sprintf("OK: %d of %d acknowledged messages %s; none lost, none duplicated", a.Delivered, a.Acked, how)
	if a.Unacked > 0 {
		s += fmt.Sprintf(" (%d sent but never acknowledged)", a.Unacked)
	}
	return s
}

// disagreement says how the audited nodes disagree.
func disagreement(a Accounting) string {
	return fmt.Sprintf("the nodes disagree: %d (message, node) pairs with another ts than the first node's, %d of %d conversations × nodes in another order",
		a.TSMismatches, a.OrderMismatches, a.ConversationsCompared*max(a.AuditedNodes-1, 0))
}

// WriteJSON writes the result to path.
func (r *Result) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadResult reads a result written by WriteJSON.
func ReadResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Version != 1 {
		return nil, fmt.Errorf("%s: result version %d, want 1", path, r.Version)
	}
	return &r, nil
}
