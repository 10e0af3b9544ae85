package bench

import (
	"encoding/json"
	"fmt"
	"html"
	"math"
	"os"
	"sort"
	"strings"
)

// WriteHTML writes a self-contained report: tables and inline SVG plots,
// no script, no stylesheet or font from elsewhere.
func (r *Result) WriteHTML(path string) error {
	return os.WriteFile(path, []byte(r.HTML()), 0o644)
}

// HTML renders the report.
func (r *Result) HTML() string {
	var b strings.Builder
	esc := html.EscapeString
	title := "Parley bench: " + r.Name
	fmt.Fprintf(&b, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>%s</title><style>
body{font-family:sans-serif;margin:24px;max-width:960px;color:#222}
table{border-collapse:collapse;margin:8px 0 18px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right;font-size:13px}
th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}
.ok{color:#060;font-weight:bold}.bad{color:#b00;font-weight:bold}.note{color:#666;font-size:12px}
pre{background:#f7f7f7;padding:8px;font-size:12px;overflow:auto}
</style></head><body>`, esc(title))
	fmt.Fprintf(&b, "<h1>%s</h1>", esc(title))
	cls := "ok"
	if !strings.HasPrefix(r.Verdict, "OK") {
		cls = "bad"
	}
	fmt.Fprintf(&b, `<p class="%s">%s</p>`, cls, esc(r.Verdict))
	fmt.Fprintf(&b, `<p class="note">run %s · %s → %s · %s, %d CPUs, %s · load average at start / end: %s · nodes: %s</p>`,
		esc(r.RunID), r.Started.Format("2006-01-02 15:04:05Z"), r.Finished.Format("15:04:05Z"),
		esc(r.Host.Hostname), r.Host.CPUs, esc(r.Host.GoVersion), esc(strings.Join(r.Host.LoadAvg, " / ")), esc(strings.Join(r.Nodes, ", ")))
	if r.Stopped != "" {
		fmt.Fprintf(&b, `<p class="bad">Stopped early (%s): partial result.</p>`, esc(r.Stopped))
	}
	if r.AuditError != "" {
		fmt.Fprintf(&b, `<p class="bad">Audit failed: %s</p>`, esc(r.AuditError))
	}

	// Summary.
	sc := r.Scenario
	b.WriteString("<h2>Load</h2><table><tr><th>figure</th><th>value</th></tr>")
	row := func(k, v string) { fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td></tr>", esc(k), esc(v)) }
	if sc != nil {
		row("visitors / agents / conversations", fmt.Sprintf("%d / %d / %d", sc.Visitors, sc.Agents, sc.Conversations))
		row("target rate (open loop)", fmt.Sprintf("%g msg/s, ramp-up %s, duration %s, body %d B", sc.Rate, sc.RampUp, sc.Duration, sc.MessageSize))
	}
	row("setup / send / drain", fmt.Sprintf("%.1fs / %.1fs / %.1fs", r.SetupSeconds, r.SendSeconds, r.DrainSeconds))
	row("issued / acked per second", fmt.Sprintf("%.0f / %.0f", r.Throughput.IssuedPerSec, r.Throughput.AckedPerSec))
	row("agent receipts per second", fmt.Sprintf("%.0f", r.Throughput.DeliveredPerSec))
	row("node CPU (send phase)", fmt.Sprintf("%.1f s → %.0f acked messages per CPU second", r.NodeCPUSeconds, r.AckedPerCPUSecond))
	b.WriteString("</table>")

	// Latency table.
	b.WriteString(`<h2>Latency</h2><p class="note">From each message's due time (open loop: a late send counts as latency). e2e: visitor send → agent receipt (every agent); ack: → durable ack; send_lag: the harness's own lateness in writing the frame; connect: dial + hello → welcome.</p>`)
	b.WriteString("<table><tr><th>ms</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>mean</th></tr>")
	for _, name := range []string{"e2e", "ack", "send_lag", "connect"} {
		p := r.Latency[name]
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%d</td><td>%.3g</td><td>%.3g</td><td>%.3g</td><td>%.3g</td><td>%.3g</td><td>%.3g</td></tr>",
			name, p.Count, p.P50, p.P90, p.P99, p.P999, p.Max, p.Mean)
	}
	b.WriteString("</table>")

	// Per transport, when there are several.
	if len(r.Transports) > 1 {
		b.WriteString(`<h2>By transport</h2><p class="note">connect and ack: the clients on that transport; e2e: receipts by agents on it. Errors and reconnects of its clients.</p>`)
		b.WriteString("<table><tr><th>transport</th><th>clients</th><th>connect p50 / p99</th><th>ack p50 / p99</th><th>e2e p50 / p99</th><th>reconnects</th><th>connect failures</th><th>errors</th></tr>")
		names := make([]string, 0, len(r.Transports))
		for n := range r.Transports {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			t := r.Transports[n]
			fmt.Fprintf(&b, "<tr><td>%s</td><td>%d</td><td>%.3g / %.3g</td><td>%.3g / %.3g</td><td>%.3g / %.3g</td><td>%d</td><td>%d</td><td>%s</td></tr>",
				esc(n), t.Clients, t.Connect.P50, t.Connect.P99, t.Ack.P50, t.Ack.P99, t.E2E.P50, t.E2E.P99, t.Reconnects, t.ConnectFailures, esc(fmt.Sprint(t.Errors)))
		}
		b.WriteString("</table>")
	}

	// Plots over time.
	var e2e50, e2e99, e2eMax, ack99, issued, acked, deliv []([2]float64)
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
	b.WriteString("<h2>Over time</h2>")
	b.WriteString(chart{Title: "Delivery latency per second (visitor → agent)", XLabel: "seconds since the send phase began", YLabel: "ms (log)", LogY: true,
		Series: []series{{Name: "e2e p50", Pts: e2e50}, {Name: "e2e p99", Pts: e2e99}, {Name: "e2e max", Pts: e2eMax}, {Name: "ack p99", Pts: ack99}},
		Events: r.Events}.svg())
	b.WriteString(chart{Title: "Throughput", XLabel: "seconds since the send phase began", YLabel: "messages/s",
		Series: []series{{Name: "issued/s", Pts: issued}, {Name: "acked/s", Pts: acked}, {Name: "delivered/s per agent", Pts: deliv}},
		Events: r.Events}.svg())
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
	b.WriteString(chart{Title: "CPU (100% = one core): nodes and the harness itself", XLabel: "seconds since the send phase began (negative: setup)", YLabel: "%", Series: cpu, Events: r.Events}.svg())
	b.WriteString(chart{Title: "Node resident memory", XLabel: "seconds since the send phase began", YLabel: "MiB", Series: rss, Events: r.Events}.svg())
	b.WriteString(chart{Title: "Node connections", XLabel: "seconds since the send phase began", YLabel: "connections", Series: conns, Events: r.Events}.svg())

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
	b.WriteString("<h2>Latency distribution</h2>")
	b.WriteString(chart{Title: "Latency by percentile (whole run, HDR histograms)", XLabel: "percentile", YLabel: "ms (log)", LogY: true, Series: ps,
		XTicks: []float64{0, 1, 2, 3, 4, 5, 6}, XNames: []string{"0", "90", "99", "99.9", "99.99", "99.999", "max"}}.svg())

	// Accounting.
	a := r.Accounting
	b.WriteString(`<h2>Every acknowledged message</h2><p class="note">By message id across reconnects and restarts. Lost: an agent never received it, or (audit) the node's history lacks it. Duplicated: it exists at two seqs, or a node's history holds it in two states (after merging its frames by id). Diverged: the nodes give it different ts. Redelivered: the same seq again after a resume (one event to the client).</p><table><tr><th>messages</th><th>count</th></tr>`)
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
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%v</td></tr>", esc(fmt.Sprint(kv[0])), kv[1])
	}
	b.WriteString("</table>")

	// Counts and errors.
	c := r.Counts
	b.WriteString("<h2>Connections and errors</h2><table><tr><th>event</th><th>count</th></tr>")
	for _, kv := range [][2]any{{"reconnects", c.Reconnects}, {"connect failures", c.ConnectFailures}, {"resumes answered", c.Resumes},
		{"connections dropped under a client", c.Drops}, {"dropped by reconnect storms", c.StormDrops}, {"visitors moved to another node (failover)", c.Failovers}, {"frames resent after reconnect", c.Resent}, {"dup acks (resends already stored)", c.DupAcks}} {
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%v</td></tr>", esc(fmt.Sprint(kv[0])), kv[1])
	}
	b.WriteString("</table>")
	if len(r.Errors) > 0 {
		b.WriteString("<table><tr><th>error code</th><th>count</th></tr>")
		keys := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "<tr><td>%s</td><td>%d</td></tr>", esc(k), r.Errors[k])
		}
		b.WriteString("</table>")
	} else {
		b.WriteString("<p>No errors.</p>")
	}
	if len(r.Events) > 0 {
		b.WriteString("<h2>Events</h2><table><tr><th>t (s)</th><th>what</th></tr>")
		for _, e := range r.Events {
			fmt.Fprintf(&b, "<tr><td>%.1f</td><td style='text-align:left'>%s</td></tr>", e.T, esc(e.What))
		}
		b.WriteString("</table>")
	}

	// Nodes.
	b.WriteString("<h2>Nodes</h2><table><tr><th>node</th><th>CPU s (send)</th><th>peak RSS</th><th>peak conns</th><th>failed scrapes</th></tr>")
	for _, n := range r.NodeMetrics {
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%.1f</td><td>%s</td><td>%.0f</td><td>%d</td></tr>", esc(n.Node), n.CPUSecondsSend, fmtBytes(n.PeakRSS), n.PeakConns, n.Failed)
	}
	if r.Harness.CPUSecondsSend > 0 {
		fmt.Fprintf(&b, "<tr><td>harness (this process)</td><td>%.1f</td><td>%s</td><td></td><td></td></tr>", r.Harness.CPUSecondsSend, fmtBytes(r.Harness.PeakRSS))
	}
	b.WriteString("</table>")
	for _, n := range r.NodeMetrics {
		if len(n.Histograms) == 0 {
			continue
		}
		fmt.Fprintf(&b, `<p class="note">%s's own histograms since it started (interpolated in Prometheus buckets):</p><table><tr><th>histogram</th><th>count</th><th>mean</th><th>p50</th><th>p90</th><th>p99</th></tr>`, esc(n.Node))
		names := make([]string, 0, len(n.Histograms))
		for k := range n.Histograms {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			h := n.Histograms[k]
			fmt.Fprintf(&b, "<tr><td>%s (%s)</td><td>%.0f</td><td>%.3g</td><td>%.3g</td><td>%.3g</td><td>%.3g</td></tr>", esc(k), esc(h.Unit), h.Count, h.Mean, h.P50, h.P90, h.P99)
		}
		b.WriteString("</table>")
	}

	if id := r.Idle; id != nil {
		b.WriteString("<h2>Idle connections</h2><table><tr><th>figure</th><th>value</th></tr>")
		row("opened / requested (failed)", fmt.Sprintf("%d / %d (%d)", id.Opened, id.Requested, id.Failed))
		row("source addresses", fmt.Sprint(id.SourceAddrs))
		row("opening took", fmt.Sprintf("%.1fs (connect p50 %.2f ms, p99 %.2f ms, max %.1f ms)", id.OpenSeconds, id.Connect.P50, id.Connect.P99, id.Connect.Max))
		row("node RSS before → after", fmt.Sprintf("%s → %s", fmtBytes(id.RSSBefore), fmtBytes(id.RSSAfter)))
		row("node RSS per idle connection", fmt.Sprintf("%.1f KiB", id.RSSPerConn/1024))
		row("node Go heap in use per connection", fmt.Sprintf("%.1f KiB", id.HeapPerConn/1024))
		row("node goroutines before → after", fmt.Sprintf("%.0f → %.0f", id.GoroutinesBefore, id.GoroutinesAfter))
		row("node connections after", fmt.Sprintf("%.0f", id.NodeConnsAfter))
		row("harness RSS", fmtBytes(id.HarnessRSS))
		row("connections lost before the end", fmt.Sprint(id.LostBeforeEnd))
		b.WriteString("</table>")
		if len(id.Errors) > 0 {
			ej, _ := json.Marshal(id.Errors)
			fmt.Fprintf(&b, "<p>Dial errors: %s</p>", esc(string(ej)))
		}
	}

	sj, _ := json.MarshalIndent(r.Scenario, "", "  ")
	fmt.Fprintf(&b, "<h2>Scenario</h2><pre>%s</pre>", esc(string(sj)))
	if r.Local != nil {
		lj, _ := json.MarshalIndent(r.Local, "", "  ")
		fmt.Fprintf(&b, "<h2>Local nodes</h2><pre>%s</pre>", esc(string(lj)))
	}
	b.WriteString("</body></html>\n")
	return b.String()
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
