package bench

import (
	"bytes"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHDRPercentiles(t *testing.T) {
	h := newHist()
	// 1..10000 µs, once each: p50 = 5 ms, p99 = 9.9 ms, max 10 ms.
	for us := 1; us <= 10000; us++ {
		recordDur(h, time.Duration(us)*time.Microsecond)
	}
	p := Summarize(h)
	check := func(name string, got, want float64) {
		if math.Abs(got-want)/want > 0.001 {
			t.Errorf("%s = %v ms, want %v ms (within 0.1%%)", name, got, want)
		}
	}
	if p.Count != 10000 {
		t.Errorf("count %d", p.Count)
	}
	check("p50", p.P50, 5)
	check("p90", p.P90, 9)
	check("p99", p.P99, 9.9)
	check("p99.9", p.P999, 9.99)
	check("max", p.Max, 10)
	check("min", p.Min, 0.001)
	check("mean", p.Mean, 5.0005)
	// One outlier shows at the max and nowhere else.
	recordDur(h, 2*time.Second)
	if p := Summarize(h); p.Max < 1999 || p.Max > 2001 || p.P99 > 10 {
		t.Errorf("outlier: %+v", p)
	}
	// Out of range values are clamped, not lost.
	recordDur(h, -time.Second)
	recordDur(h, 3*time.Hour)
	if got := h.TotalCount(); got != 10003 {
		t.Errorf("count after clamping %d", got)
	}
	if (Summarize(nil) != Percentiles{}) || (Summarize(newHist()) != Percentiles{}) {
		t.Error("empty histogram not zero")
	}
	c := Curve(h)
	if len(c) != len(curveQuantiles) || c[len(c)-1].Percentile != 100 || c[len(c)-1].Ms < 3.5e6 {
		t.Errorf("curve %v", c)
	}
}

func TestParseMetrics(t *testing.T) {
	in := `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
process_resident_memory_bytes 2.5e+07
parley_connections{transport="ws"} 100
parley_connections{transport="wt"} 5
parley_errors_total{code="a b}c"} 3
go_goroutines 42
`
	m, err := ParseMetrics(strings.NewReader(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m["process_cpu_seconds_total"] != 12.5 || m["process_resident_memory_bytes"] != 25e6 || m["parley_connections"] != 105 || m["parley_errors_total"] != 3 || m["go_goroutines"] != 42 {
		t.Errorf("%v", m)
	}
	m, _ = ParseMetrics(strings.NewReader(in), map[string]bool{"go_goroutines": true})
	if len(m) != 1 {
		t.Errorf("filter: %v", m)
	}
	if _, err := ParseMetrics(strings.NewReader("x{a=\"1\" 3\n"), nil); err == nil {
		t.Error("unterminated labels accepted")
	}
}

func sampleResult(scale float64) *Result {
	return &Result{Version: 1, Name: "s", Started: time.Unix(0, 0).UTC(),
		Scenario: &Scenario{Name: "s", Visitors: 10, Agents: 2, Rate: 100, Duration: Duration(time.Second)},
		Latency: map[string]Percentiles{
			"e2e":     {Count: 100, P50: 1 * scale, P90: 2 * scale, P99: 4 * scale, P999: 8 * scale, Max: 10 * scale},
			"ack":     {Count: 100, P50: 1, P90: 2, P99: 3, P999: 4, Max: 5},
			"connect": {Count: 12, P99: 1},
		},
		Curves:         map[string][]CurvePoint{"e2e": {{0, 0.5}, {50, 1}, {99, 4}, {100, 10}}},
		Throughput:     Throughput{AckedPerSec: 100, DeliveredPerSec: 200},
		NodeCPUSeconds: 2 * scale, AckedPerCPUSecond: 50 / scale,
		NodeMetrics: []NodeSeries{{Node: "http://n1", PeakRSS: 100 << 20, Samples: []NodeSample{
			{T: -1, OK: true, RSS: 50 << 20}, {T: 0, OK: true, CPUPercent: 40, RSS: 60 << 20, Conns: 12}, {T: 1, OK: false}, {T: 2, OK: true, CPUPercent: 50, RSS: 70 << 20, Conns: 12}}}},
		Timeline:   []Interval{{T: 1, Issued: 100, Acked: 99, Delivered: 198, E2E: Percentiles{P50: 1, P99: 4, Max: 9}}, {T: 2, Issued: 100, Acked: 100, Delivered: 200}},
		Events:     []Event{{T: 1.5, What: "kill -9 n1 <x>"}},
		Accounting: Accounting{Issued: 200, Acked: 199, Delivered: 199, Agents: 2, Audited: true},
		Errors:     map[string]int64{"rate_limited": 2},
		Idle:       &IdleResult{Requested: 10, Opened: 10, RSSPerConn: 8192 * scale},
		Transports: map[string]TransportResult{"ws": {Clients: 6, Connect: Percentiles{P50: 1.5}}, "wt": {Clients: 6, Errors: map[string]int64{"no_answer": 3}}},
	}
}

func TestCompare(t *testing.T) {
	a, b := sampleResult(1), sampleResult(2)
	got := map[string]Ratio{}
	for _, r := range Compare(a, b) {
		got[r.Figure] = r
	}
	for fig, want := range map[string]float64{"e2e p99 ms": 2, "e2e max ms": 2, "ack p99 ms": 1, "node CPU s (send phase)": 2, "acked msg per node CPU s": 0.5, "RSS per idle conn KiB": 2, "lost": 1} {
		if r, ok := got[fig]; !ok || math.Abs(r.Ratio-want) > 1e-9 {
			t.Errorf("%s: ratio %v, want %v", fig, r.Ratio, want)
		}
	}
	var out bytes.Buffer
	if err := WriteComparison(&out, a, b, "a.json", "b.json"); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, w := range []string{"figure", "e2e p99 ms", "2.000 worse", "acked msg per node CPU s", "0.500 worse", "A: a.json"} {
		if !strings.Contains(s, w) {
			t.Errorf("comparison lacks %q:\n%s", w, s)
		}
	}
	// Round trip through JSON files, as the compare command reads them.
	dir := t.TempDir()
	pa := filepath.Join(dir, "a.json")
	if err := a.WriteJSON(pa); err != nil {
		t.Fatal(err)
	}
	ra, err := ReadResult(pa)
	if err != nil {
		t.Fatal(err)
	}
	if ra.Latency["e2e"].P99 != 4 || ra.Scenario.Duration.D() != time.Second || ra.Idle.Opened != 10 {
		t.Errorf("round trip: %+v", ra)
	}
}

func TestHTMLSelfContained(t *testing.T) {
	h := sampleResult(1).HTML()
	for _, bad := range []string{"<script", "src=", "href=", "@import", "url("} {
		if strings.Contains(h, bad) {
			t.Errorf("report contains %q", bad)
		}
	}
	for _, want := range []string{"<svg", "Delivery latency per second", "Throughput", "CPU (100% = one core)", "Latency by percentile", "kill -9 n1 &lt;x&gt;", "rate_limited", "Idle connections", "By transport", "<td>wt</td><td>6</td>", "no_answer:3"} {
		if !strings.Contains(h, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}
