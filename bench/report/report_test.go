package report

import (
	"bytes"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"parley/bench"
	"parley/bench/peers"
)

func sampleResult(scale float64) *bench.Result {
	return &bench.Result{Version: 1, Name: "s", Started: time.Unix(0, 0).UTC(),
		Scenario: &bench.Scenario{Name: "s", Visitors: 10, Agents: 2, Rate: 100, Duration: bench.Duration(time.Second)},
		Latency: map[string]bench.Percentiles{
			"e2e":     {Count: 100, P50: 1 * scale, P90: 2 * scale, P99: 4 * scale, P999: 8 * scale, Max: 10 * scale},
			"ack":     {Count: 100, P50: 1, P90: 2, P99: 3, P999: 4, Max: 5},
			"connect": {Count: 12, P99: 1},
		},
		Curves:         map[string][]bench.CurvePoint{"e2e": {{Percentile: 0, Ms: 0.5}, {Percentile: 50, Ms: 1}, {Percentile: 99, Ms: 4}, {Percentile: 100, Ms: 10}}},
		Throughput:     bench.Throughput{AckedPerSec: 100, DeliveredPerSec: 200},
		NodeCPUSeconds: 2 * scale, AckedPerCPUSecond: 50 / scale,
		NodeMetrics: []bench.NodeSeries{{Node: "http://n1", PeakRSS: 100 << 20, Samples: []bench.NodeSample{
			{T: -1, OK: true, RSS: 50 << 20}, {T: 0, OK: true, CPUPercent: 40, RSS: 60 << 20, Conns: 12}, {T: 1, OK: false}, {T: 2, OK: true, CPUPercent: 50, RSS: 70 << 20, Conns: 12}}}},
		Timeline:   []bench.Interval{{T: 1, Issued: 100, Acked: 99, Delivered: 198, E2E: bench.Percentiles{P50: 1, P99: 4, Max: 9}}, {T: 2, Issued: 100, Acked: 100, Delivered: 200}},
		Events:     []bench.Event{{T: 1.5, What: "kill -9 n1 <x>"}},
		Accounting: bench.Accounting{Issued: 200, Acked: 199, Delivered: 199, Agents: 2, Audited: true},
		Errors:     map[string]int64{"rate_limited": 2},
		Idle:       &bench.IdleResult{Requested: 10, Opened: 10, RSSPerConn: 8192 * scale},
		Transports: map[string]bench.TransportResult{"ws": {Clients: 6, Connect: bench.Percentiles{P50: 1.5}}, "wt": {Clients: 6, Errors: map[string]int64{"no_answer": 3}}},
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
	ra, err := bench.ReadResult(pa)
	if err != nil {
		t.Fatal(err)
	}
	if ra.Latency["e2e"].P99 != 4 || ra.Scenario.Duration.D() != time.Second || ra.Idle.Opened != 10 {
		t.Errorf("round trip: %+v", ra)
	}
}

func TestHTMLSelfContained(t *testing.T) {
	h := runHTML(t, sampleResult(1))
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

func runHTML(t *testing.T, r *bench.Result) string {
	t.Helper()
	var b strings.Builder
	if err := Run(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func peersHTML(t *testing.T, r *peers.Result) string {
	t.Helper()
	var b strings.Builder
	if err := Peers(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// hostile breaks out of text, of a quoted attribute and of an SVG title
// when written into HTML unescaped.
const hostile = `<script>alert(1)</script>"'><img src=x onerror=alert(2)></title>`

// hostileRun puts hostile into every string of a run result that the
// report prints: a result file may come from anywhere (parley-bench
// report reads it back).
func hostileRun() *bench.Result {
	r := sampleResult(1)
	r.Name, r.RunID, r.Verdict, r.Stopped, r.AuditError = "n"+hostile, "id"+hostile, "FAILED: "+hostile, "st"+hostile, "ae"+hostile
	r.Host = bench.Host{Hostname: "h" + hostile, CPUs: 2, GoVersion: "go" + hostile, LoadAvg: []string{"l" + hostile}}
	r.Nodes = []string{"http://n1" + hostile}
	r.Errors = map[string]int64{"e" + hostile: 3}
	r.Events = append(r.Events, bench.Event{T: 1.2, What: "w" + hostile})
	r.NodeMetrics[0].Node = "nm" + hostile
	r.NodeMetrics[0].Histograms = map[string]bench.PromHist{"h" + hostile: {Unit: "u" + hostile, Count: 3}}
	r.Transports["t"+hostile] = bench.TransportResult{Clients: 1, Errors: map[string]int64{"te" + hostile: 1}}
	r.Idle.Errors = map[string]int64{"de" + hostile: 1}
	r.Scenario.Name = "sc" + hostile
	r.Local = &bench.ClusterInfo{}
	return r
}

func hostilePeers() *peers.Result {
	p := "p" + hostile
	f := peers.FanoutResult{Peer: p, Round: 1, Version: "v" + hostile, Error: "err" + hostile, Receipts: 1, Expected: 2,
		Timeline: []peers.FanoutInterval{{T: 0, Receipts: 1, P50: 1, P99: 2}, {T: 1, Receipts: 1, P50: 1, P99: 2}}}
	ok := peers.FanoutResult{Peer: p, Round: 2, Version: "v" + hostile, Receipts: 2, Expected: 2,
		Timeline: []peers.FanoutInterval{{T: 0, Receipts: 1, P50: 1, P99: 2}, {T: 1, Receipts: 1, P50: 1, P99: 2}}}
	return &peers.Result{Version: 1, Name: "n" + hostile, Host: bench.Host{Hostname: "h" + hostile, GoVersion: "go" + hostile, LoadAvg: []string{"l" + hostile}},
		Scenario: &peers.FanoutScenario{Name: "sc" + hostile, Peers: []string{p}, Runs: 2}, Runs: []peers.FanoutResult{f, ok},
		Summary: []peers.PeerSummary{{Peer: p, Version: "v" + hostile}}, Ratios: []peers.PeerRatio{{Peer: p, P99: 2}}}
}

// TestReportsEscapeResultStrings: every string a result carries is
// escaped in both reports, in text, in attributes and in the SVG plots
// (legends, event titles). The reports were built with fmt and
// html.EscapeString before html/template, and escaped these too (checked
// against that code): the test keeps it so.
func TestReportsEscapeResultStrings(t *testing.T) {
	for name, h := range map[string]string{"run": runHTML(t, hostileRun()), "peers": peersHTML(t, hostilePeers())} {
		for _, bad := range []string{"<script", "<img", "</title>\"", `"'>`} {
			if strings.Contains(h, bad) {
				i := strings.Index(h, bad)
				t.Errorf("%s report holds %q unescaped: …%s…", name, bad, h[max(0, i-80):min(len(h), i+80)])
			}
		}
		// Escaped, the strings are still there, once per place they are
		// printed: at least in the title, the heading and the plots.
		if n := strings.Count(h, "&lt;script&gt;alert(1)&lt;/script&gt;"); n < 5 {
			t.Errorf("%s report shows the hostile string escaped %d times", name, n)
		}
	}
}

// TestPeersHTML: the side-by-side report has the ratios, the plots and
// the failed run's error, and nothing from elsewhere.
func TestPeersHTML(t *testing.T) {
	fr := func(peer string, round int, p99 float64, err string) peers.FanoutResult {
		return peers.FanoutResult{Peer: peer, Round: round, Latency: bench.Percentiles{P50: p99 / 2, P99: p99}, Error: err, Receipts: 10, Expected: 10,
			Timeline: []peers.FanoutInterval{{T: 0, Receipts: 5, P50: 1, P99: p99}, {T: 1, Receipts: 5, P50: 1, P99: p99}}}
	}
	res := &peers.Result{Version: 1, Name: "x", Scenario: &peers.FanoutScenario{Peers: []string{"parley", "nats", "centrifugo"}, Runs: 1},
		Runs:    []peers.FanoutResult{fr("parley", 1, 10, ""), fr("nats", 1, 5, ""), fr("centrifugo", 1, 0, "crashed")},
		Summary: []peers.PeerSummary{{Peer: "parley", Runs: 1, P99: 10}, {Peer: "nats", Runs: 1, P99: 5}, {Peer: "centrifugo"}},
		Ratios:  []peers.PeerRatio{{Peer: "nats", P99: 2, Rounds: 1}, {Peer: "centrifugo"}}}
	h := peersHTML(t, res)
	for _, want := range []string{"Parley ÷ peer", "<td>nats</td><td>1</td><td>2.00×</td>", "<td>centrifugo</td><td>0</td><td>n/a</td>", "<svg", "crashed", `stroke="#2ca02c"`, "Delivery latency by percentile"} {
		if !strings.Contains(h, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(h, "<script") || strings.Contains(h, "http://") && !strings.Contains(h, `xmlns="http://www.w3.org/2000/svg"`) {
		t.Error("report not self-contained")
	}
}
