package bench

import (
	"encoding/json"
	"fmt"
	"html"
	"os"
	"strings"
)

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadPeersResult reads a result written by PeersResult.WriteJSON.
func ReadPeersResult(path string) (*PeersResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r PeersResult
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Version != 1 || r.Scenario == nil || r.Summary == nil {
		return nil, fmt.Errorf("%s: not a peers result (version %d)", path, r.Version)
	}
	return &r, nil
}

// WriteHTML writes the self-contained side-by-side report.
func (r *PeersResult) WriteHTML(path string) error {
	return os.WriteFile(path, []byte(r.HTML()), 0o644)
}

var peerColor = map[string]string{PeerParley: "#1f77b4", PeerNATS: "#2ca02c", PeerCentrifugo: "#d62728"}

// HTML renders the report: the summary, the ratios, every run, and plots
// of the first complete run of each peer.
func (r *PeersResult) HTML() string {
	var b strings.Builder
	esc := html.EscapeString
	sc := r.Scenario
	title := "Parley and its peers: " + r.Name
	fmt.Fprintf(&b, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>%s</title><style>
body{font-family:sans-serif;margin:24px;max-width:960px;color:#222}
table{border-collapse:collapse;margin:8px 0 18px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right;font-size:13px}
th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}
.bad{color:#b00;font-weight:bold}.note{color:#666;font-size:12px}
</style></head><body>`, esc(title))
	fmt.Fprintf(&b, "<h1>%s</h1>", esc(title))
	fmt.Fprintf(&b, `<p>%d subscribers on one room, one publisher at %g messages/s (open loop) for %s, %d-byte messages, %d round(s); every run against a freshly started server, all on this machine, one after another.</p>`,
		sc.Subscribers, sc.Rate, sc.Duration, sc.MessageSize, sc.Runs)
	fmt.Fprintf(&b, `<p class="note">%s → %s · %s, %d CPUs, %s · load average at start / end: %s</p>`,
		r.Started.Format("2006-01-02 15:04:05Z"), r.Finished.Format("15:04:05Z"), esc(r.Host.Hostname), r.Host.CPUs, esc(r.Host.GoVersion), esc(strings.Join(r.Host.LoadAvg, " / ")))
	if err := r.Err(); err != nil {
		fmt.Fprintf(&b, `<p class="bad">%s</p>`, esc(err.Error()))
	}

	b.WriteString(`<h2 id="summary">Side by side (medians of complete runs)</h2><p class="note">Delivery latency: from each message's due time to its receipt by each subscriber. Receipts per CPU second: messages delivered (summed over subscribers) per second of the server's own CPU (utime + stime from /proc), from the first due time to the last receipt. Memory per connection: (server RSS with every subscriber connected and settled − RSS idle) ÷ subscribers.</p>`)
	b.WriteString("<table><tr><th>server</th><th>runs</th><th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>receipts per CPU s</th><th>memory per connection</th><th>RSS idle → connected</th><th>server CPU s</th><th>harness CPU s</th><th>worst delivery</th></tr>")
	for _, s := range r.Summary {
		fmt.Fprintf(&b, "<tr><td>%s %s</td><td>%d</td><td>%.3g</td><td>%.3g</td><td>%.3g</td><td>%.3g</td><td>%.0f</td><td>%.1f KiB</td><td>%s → %s</td><td>%.2f</td><td>%.2f</td><td>%.2f%%</td></tr>",
			esc(s.Peer), esc(s.Version), s.Runs, s.P50, s.P99, s.P999, s.Max, s.ReceiptsPerCPUSecond, s.MemPerConn/1024, fmtBytes(s.RSSIdle), fmtBytes(s.RSSConnected), s.ServerCPUSeconds, s.HarnessCPUSeconds, 100*s.MinDelivered)
	}
	b.WriteString("</table>")
	if len(r.Ratios) > 0 {
		b.WriteString(`<h2>Parley ÷ peer</h2><p class="note">Medians of the ratios within each round. p99: below 1 is Parley faster. Receipts per CPU second: above 1 is Parley doing more per core. Memory per connection: below 1 is Parley smaller.</p>`)
		b.WriteString("<table><tr><th>peer</th><th>rounds</th><th>delivery p99</th><th>receipts per CPU s</th><th>memory per connection</th></tr>")
		for _, x := range r.Ratios {
			fmt.Fprintf(&b, "<tr><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td></tr>", esc(x.Peer), x.Rounds, fmtRatio(x.P99), fmtRatio(x.Throughput), fmtRatio(x.Memory))
		}
		b.WriteString("</table>")
	}

	b.WriteString("<h2>Every run</h2><table><tr><th>round</th><th>server</th><th>connected</th><th>published</th><th>receipts</th><th>p50</th><th>p99</th><th>max</th><th>receipts per CPU s</th><th>KiB per conn</th><th>error</th></tr>")
	for _, f := range r.Runs {
		fmt.Fprintf(&b, "<tr><td>%d</td><td>%s</td><td>%d</td><td>%d</td><td>%d / %d</td><td>%.3g</td><td>%.3g</td><td>%.3g</td><td>%.0f</td><td>%.1f</td><td style='text-align:left'>%s</td></tr>",
			f.Round, esc(f.Peer), f.Connected, f.Published, f.Receipts, f.Expected, f.Latency.P50, f.Latency.P99, f.Latency.Max, f.ReceiptsPerCPUSecond, f.MemPerConn/1024, esc(f.Error))
	}
	b.WriteString("</table>")

	// Plots: the first complete run of each peer.
	var p99, p50, thr, cpu, rss, curve []series
	for _, peer := range sc.Peers {
		var f *FanoutResult
		for i := range r.Runs {
			if r.Runs[i].Peer == peer && r.Runs[i].Error == "" {
				f = &r.Runs[i]
				break
			}
		}
		if f == nil {
			continue
		}
		col := peerColor[peer]
		var a, m, t, c, mem, cv [][2]float64
		for _, iv := range f.Timeline {
			a = append(a, [2]float64{iv.T, nz(iv.P99)})
			m = append(m, [2]float64{iv.T, nz(iv.P50)})
			t = append(t, [2]float64{iv.T, float64(iv.Receipts)})
		}
		for _, s := range f.Server {
			c = append(c, [2]float64{s.T, s.CPUPercent})
			mem = append(mem, [2]float64{s.T, s.RSS / (1 << 20)})
		}
		for _, p := range f.Curve {
			cv = append(cv, [2]float64{ninesX(p.Percentile), nz(p.Ms)})
		}
		p99 = append(p99, series{Name: peer + " p99", Color: col, Pts: a})
		p50 = append(p50, series{Name: peer + " p50", Color: col, Pts: m})
		thr = append(thr, series{Name: peer, Color: col, Pts: t})
		cpu = append(cpu, series{Name: peer, Color: col, Pts: c})
		rss = append(rss, series{Name: peer, Color: col, Pts: mem})
		curve = append(curve, series{Name: peer, Color: col, Pts: cv})
	}
	b.WriteString(`<h2 id="plots">Over time (first complete run of each server)</h2>`)
	b.WriteString(chart{Title: "Delivery latency p99 per second", XLabel: "seconds since the first message was due", YLabel: "ms (log)", LogY: true, Series: p99}.svg())
	b.WriteString(chart{Title: "Delivery latency p50 per second", XLabel: "seconds since the first message was due", YLabel: "ms (log)", LogY: true, Series: p50}.svg())
	b.WriteString(chart{Title: "Receipts per second (summed over subscribers)", XLabel: "seconds since the first message was due", YLabel: "messages/s", Series: thr}.svg())
	b.WriteString(chart{Title: "Server CPU (100% = one core)", XLabel: "seconds since the first message was due (negative: connecting)", YLabel: "%", Series: cpu}.svg())
	b.WriteString(chart{Title: "Server resident memory", XLabel: "seconds since the first message was due (negative: connecting)", YLabel: "MiB", Series: rss}.svg())
	b.WriteString(chart{Title: "Delivery latency by percentile (whole run)", XLabel: "percentile", YLabel: "ms (log)", LogY: true, Series: curve,
		XTicks: []float64{0, 1, 2, 3, 4, 5, 6}, XNames: []string{"0", "90", "99", "99.9", "99.99", "99.999", "max"}}.svg())
	b.WriteString("</body></html>\n")
	return b.String()
}

func fmtRatio(v float64) string {
	if v == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", v)
}
