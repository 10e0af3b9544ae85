package report

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"sort"
	"strings"

	"parley/bench"
	"parley/bench/internal/harness"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

var funcs = template.FuncMap{
	"bytes": harness.FmtBytes,
	"ratio": fmtRatio,
	"kib":   func(v float64) float64 { return v / 1024 },
	"pct":   func(v float64) float64 { return 100 * v },
}

// The templates, parsed once: each page with the chart it draws.
var (
	runTmpl   = template.Must(template.New("run.tmpl").Funcs(funcs).ParseFS(templateFS, "templates/run.tmpl", "templates/chart.tmpl"))
	peersTmpl = template.Must(template.New("peers.tmpl").Funcs(funcs).ParseFS(templateFS, "templates/peers.tmpl", "templates/chart.tmpl"))
)

// writeFile renders into a buffer first: a template error leaves no
// half-written report.
func writeFile(path string, render func(io.Writer) error) error {
	var b bytes.Buffer
	if err := render(&b); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// WriteRunFile writes the report of a run to path.
func WriteRunFile(path string, r *bench.Result) error {
	return writeFile(path, func(w io.Writer) error { return Run(w, r) })
}

// row is a figure and its value, as printed.
type row struct{ K, V string }

// runView is what the run template reads: the result itself, and what
// is computed or ordered for display.
type runView struct {
	R            *bench.Result
	Title        string
	VerdictClass string
	LoadAvg      string
	Nodes        string
	Load         []row
	Latency      []latencyRow
	Transports   []transportRow
	OverTime     []chartView
	Distribution chartView
	Accounting   []row
	Counts       []row
	Errors       []errorRow
	NodeHists    []nodeHists
	Idle         []row
	IdleErrors   string
	ScenarioJSON string
	LocalJSON    string
}

type latencyRow struct {
	Name string
	P    bench.Percentiles
}

type transportRow struct {
	Name   string
	T      bench.TransportResult
	Errors string
}

type errorRow struct {
	Code  string
	Count int64
}

type nodeHists struct {
	Node string
	Rows []histRow
}

type histRow struct {
	Name string
	H    bench.PromHist
}

// Run writes the self-contained report of a run to w: tables and inline
// SVG plots, no script, no stylesheet or font from elsewhere. Every
// string of the result is escaped by html/template.
func Run(w io.Writer, r *bench.Result) error {
	return runTmpl.Execute(w, newRunView(r))
}

func newRunView(r *bench.Result) *runView {
	v := &runView{R: r, Title: "Parley bench: " + r.Name, VerdictClass: "ok",
		LoadAvg: strings.Join(r.Host.LoadAvg, " / "), Nodes: strings.Join(r.Nodes, ", ")}
	if !strings.HasPrefix(r.Verdict, "OK") {
		v.VerdictClass = "bad"
	}

	// Summary.
	sc := r.Scenario
	add := func(rows *[]row, k, val string) { *rows = append(*rows, row{k, val}) }
	if sc != nil {
		add(&v.Load, "visitors / agents / conversations", fmt.Sprintf("%d / %d / %d", sc.Visitors, sc.Agents, sc.Conversations))
		add(&v.Load, "target rate (open loop)", fmt.Sprintf("%g msg/s, ramp-up %s, duration %s, body %d B", sc.Rate, sc.RampUp, sc.Duration, sc.MessageSize))
	}
	add(&v.Load, "setup / send / drain", fmt.Sprintf("%.1fs / %.1fs / %.1fs", r.SetupSeconds, r.SendSeconds, r.DrainSeconds))
	add(&v.Load, "issued / acked per second", fmt.Sprintf("%.0f / %.0f", r.Throughput.IssuedPerSec, r.Throughput.AckedPerSec))
	add(&v.Load, "agent receipts per second", fmt.Sprintf("%.0f", r.Throughput.DeliveredPerSec))
	add(&v.Load, "node CPU (send phase)", fmt.Sprintf("%.1f s → %.0f acked messages per CPU second", r.NodeCPUSeconds, r.AckedPerCPUSecond))

	for _, name := range []string{"e2e", "ack", "send_lag", "connect"} {
		v.Latency = append(v.Latency, latencyRow{name, r.Latency[name]})
	}

	// Per transport, when there are several.
	if len(r.Transports) > 1 {
		names := make([]string, 0, len(r.Transports))
		for n := range r.Transports {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			t := r.Transports[n]
			v.Transports = append(v.Transports, transportRow{n, t, fmt.Sprint(t.Errors)})
		}
	}

	// Plots over time.
	var e2e50, e2e99, e2eMax, ack99, issued, acked, deliv [][2]float64
	agents := 1.0
	if sc != nil && sc.Agents > 0 {
		agents = float64(sc.Agents)
	}
	for _, iv := range r.Timeline {
		e2e50 = append(e2e50, [2]float64{iv.T, nz(iv.E2E.P50)})
		e2e99 = append(e2e99, [2]float64{iv.T, nz(iv.E2E.P99)})
		e2eMax = append(e2eMax, [2]float64{iv.T, nz(iv.E2E.Max)})
		ack99 = append(ack99, [2]float64{iv.T, nz(iv.Ack.P99)})
		issued = append(issued, [2]float64{iv.T, iv.Issued})
		acked = append(acked, [2]float64{iv.T, iv.Acked})
		deliv = append(deliv, [2]float64{iv.T, iv.Delivered / agents})
	}
	var cpu, rss, conns []series
	for i, n := range r.NodeMetrics {
		var c, m, k [][2]float64
		for _, s := range n.Samples {
			if !s.OK {
				c, m, k = append(c, [2]float64{s.T, math.NaN()}), append(m, [2]float64{s.T, math.NaN()}), append(k, [2]float64{s.T, math.NaN()})
				continue
			}
			c = append(c, [2]float64{s.T, s.CPUPercent})
			m = append(m, [2]float64{s.T, s.RSS / (1 << 20)})
			k = append(k, [2]float64{s.T, s.Conns})
		}
		name := fmt.Sprintf("node%d", i)
		cpu, rss, conns = append(cpu, series{Name: name, Pts: c}), append(rss, series{Name: name, Pts: m}), append(conns, series{Name: name, Pts: k})
	}
	var hc [][2]float64
	for _, s := range r.Harness.Samples {
		hc = append(hc, [2]float64{s.T, s.CPUPercent})
	}
	if len(hc) > 0 {
		cpu = append(cpu, series{Name: "harness", Color: "#999", Pts: hc})
	}
	v.OverTime = []chartView{
		chart{Title: "Delivery latency per second (visitor → agent)", XLabel: "seconds since the send phase began", YLabel: "ms (log)", LogY: true,
			Series: []series{{Name: "e2e p50", Pts: e2e50}, {Name: "e2e p99", Pts: e2e99}, {Name: "e2e max", Pts: e2eMax}, {Name: "ack p99", Pts: ack99}},
			Events: r.Events}.view(),
		chart{Title: "Throughput", XLabel: "seconds since the send phase began", YLabel: "messages/s",
			Series: []series{{Name: "issued/s", Pts: issued}, {Name: "acked/s", Pts: acked}, {Name: "delivered/s per agent", Pts: deliv}},
			Events: r.Events}.view(),
		chart{Title: "CPU (100% = one core): nodes and the harness itself", XLabel: "seconds since the send phase began (negative: setup)", YLabel: "%", Series: cpu, Events: r.Events}.view(),
		chart{Title: "Node resident memory", XLabel: "seconds since the send phase began", YLabel: "MiB", Series: rss, Events: r.Events}.view(),
		chart{Title: "Node connections", XLabel: "seconds since the send phase began", YLabel: "connections", Series: conns, Events: r.Events}.view(),
	}

	// Percentile distribution.
	var ps []series
	for _, name := range []string{"e2e", "ack", "connect"} {
		var pts [][2]float64
		for _, p := range r.Curves[name] {
			pts = append(pts, [2]float64{ninesX(p.Percentile), nz(p.Ms)})
		}
		if len(pts) > 0 {
			ps = append(ps, series{Name: name, Pts: pts})
		}
	}
	v.Distribution = chart{Title: "Latency by percentile (whole run, HDR histograms)", XLabel: "percentile", YLabel: "ms (log)", LogY: true, Series: ps,
		XTicks: []float64{0, 1, 2, 3, 4, 5, 6}, XNames: []string{"0", "90", "99", "99.9", "99.99", "99.999", "max"}}.view()

	// Accounting.
	a := r.Accounting
	for _, kv := range [][2]any{{"issued", a.Issued}, {"sent", a.Sent}, {"acknowledged", a.Acked}, {"sent, never acknowledged", a.Unacked},
		{"rejected with an error", a.Rejected}, {"delivered (every agent, once)", a.Delivered}, {"lost", a.Lost}, {"duplicated", a.Duplicated},
		{"diverged (another ts on some node)", a.Diverged}, {"altered (shown edited or deleted on some node)", a.Altered},
		{"lost at agents (message × agent)", a.LostAtAgents}, {"lost in store (audit)", a.LostInStore}, {"duplicated in store (audit)", a.DuplicatedInStore},
		{"stored though never acknowledged", a.StoredUnacked}, {"redelivered (same seq)", a.Redelivered}, {"history audited", a.Audited},
		{"history: deliver frames (all nodes)", a.HistoryFrames}, {"history: ids in several frames, one state (message × node)", a.HistoryRepeatedIDs},
		{"history: most frames of one id on one node", a.HistoryMaxFrames},
		{"history: shown edited or deleted, never done (message × node)", a.HistoryAltered},
		{"ts differs from the first node's (message × node)", a.TSMismatches},
		{"order by (ts, id) differs (conversation × node)", a.OrderMismatches}, {"conversations compared across nodes", a.ConversationsCompared},
		{"received again by an agent, same state (message × agent)", a.AgentRepeatsSameState},
		{"received again by an agent, another ts (message × agent)", a.AgentRepeatsOtherTS},
		{"received again by an agent, same ts, another body (message × agent)", a.AgentRepeatsOtherBody}} {
		add(&v.Accounting, fmt.Sprint(kv[0]), fmt.Sprint(kv[1]))
	}

	// Counts and errors.
	c := r.Counts
	for _, kv := range [][2]any{{"reconnects", c.Reconnects}, {"connect failures", c.ConnectFailures}, {"resumes answered", c.Resumes},
		{"connections dropped under a client", c.Drops}, {"dropped by reconnect storms", c.StormDrops}, {"visitors moved to another node (failover)", c.Failovers}, {"frames resent after reconnect", c.Resent}, {"dup acks (resends already stored)", c.DupAcks}} {
		add(&v.Counts, fmt.Sprint(kv[0]), fmt.Sprint(kv[1]))
	}
	keys := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v.Errors = append(v.Errors, errorRow{k, r.Errors[k]})
	}

	// Nodes' own histograms.
	for _, n := range r.NodeMetrics {
		if len(n.Histograms) == 0 {
			continue
		}
		names := make([]string, 0, len(n.Histograms))
		for k := range n.Histograms {
			names = append(names, k)
		}
		sort.Strings(names)
		nh := nodeHists{Node: n.Node}
		for _, k := range names {
			nh.Rows = append(nh.Rows, histRow{k, n.Histograms[k]})
		}
		v.NodeHists = append(v.NodeHists, nh)
	}

	if id := r.Idle; id != nil {
		add(&v.Idle, "opened / requested (failed)", fmt.Sprintf("%d / %d (%d)", id.Opened, id.Requested, id.Failed))
		add(&v.Idle, "source addresses", fmt.Sprint(id.SourceAddrs))
		add(&v.Idle, "opening took", fmt.Sprintf("%.1fs (connect p50 %.2f ms, p99 %.2f ms, max %.1f ms)", id.OpenSeconds, id.Connect.P50, id.Connect.P99, id.Connect.Max))
		add(&v.Idle, "node RSS before → after", fmt.Sprintf("%s → %s", harness.FmtBytes(id.RSSBefore), harness.FmtBytes(id.RSSAfter)))
		add(&v.Idle, "node RSS per idle connection", fmt.Sprintf("%.1f KiB", id.RSSPerConn/1024))
		add(&v.Idle, "node Go heap in use per connection", fmt.Sprintf("%.1f KiB", id.HeapPerConn/1024))
		add(&v.Idle, "node goroutines before → after", fmt.Sprintf("%.0f → %.0f", id.GoroutinesBefore, id.GoroutinesAfter))
		add(&v.Idle, "node connections after", fmt.Sprintf("%.0f", id.NodeConnsAfter))
		add(&v.Idle, "harness RSS", harness.FmtBytes(id.HarnessRSS))
		add(&v.Idle, "connections lost before the end", fmt.Sprint(id.LostBeforeEnd))
		if len(id.Errors) > 0 {
			ej, _ := json.Marshal(id.Errors)
			v.IdleErrors = string(ej)
		}
	}

	sj, _ := json.MarshalIndent(r.Scenario, "", "  ")
	v.ScenarioJSON = string(sj)
	if r.Local != nil {
		lj, _ := json.MarshalIndent(r.Local, "", "  ")
		v.LocalJSON = string(lj)
	}
	return v
}

// ninesX places a percentile on a "nines" axis: 90 → 1, 99 → 2, 99.9 → 3;
// 100 (the maximum) at 6.
func ninesX(p float64) float64 {
	if p >= 100 {
		return 6
	}
	return math.Min(5.5, -math.Log10(1-p/100))
}

// nz maps zero (no samples in the interval) to a gap in the line.
func nz(v float64) float64 {
	if v == 0 {
		return math.NaN()
	}
	return v
}
