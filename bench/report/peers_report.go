package report

import (
	"fmt"
	"io"
	"strings"

	"parley/bench/peers"
)

// WritePeersFile writes the side-by-side report of a peers run to path.
func WritePeersFile(path string, r *peers.Result) error {
	return writeFile(path, func(w io.Writer) error { return Peers(w, r) })
}

var peerColor = map[string]string{peers.PeerParley: "#1f77b4", peers.PeerNATS: "#2ca02c", peers.PeerCentrifugo: "#d62728"}

// peersView is what the peers template reads.
type peersView struct {
	R       *peers.Result
	Title   string
	LoadAvg string
	Err     string
	Charts  []chartView
}

// Peers writes the self-contained side-by-side report to w: the summary,
// the ratios, every run, and plots of the first complete run of each
// peer. Every string of the result is escaped by html/template.
func Peers(w io.Writer, r *peers.Result) error {
	return peersTmpl.Execute(w, newPeersView(r))
}

func newPeersView(r *peers.Result) *peersView {
	sc := r.Scenario
	v := &peersView{R: r, Title: "Parley and its peers: " + r.Name, LoadAvg: strings.Join(r.Host.LoadAvg, " / ")}
	if err := r.Err(); err != nil {
		v.Err = err.Error()
	}
	// Plots: the first complete run of each peer.
	var p99, p50, thr, cpu, rss, curve []series
	for _, peer := range sc.Peers {
		var f *peers.FanoutResult
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
	v.Charts = []chartView{
		chart{Title: "Delivery latency p99 per second", XLabel: "seconds since the first message was due", YLabel: "ms (log)", LogY: true, Series: p99}.view(),
		chart{Title: "Delivery latency p50 per second", XLabel: "seconds since the first message was due", YLabel: "ms (log)", LogY: true, Series: p50}.view(),
		chart{Title: "Receipts per second (summed over subscribers)", XLabel: "seconds since the first message was due", YLabel: "messages/s", Series: thr}.view(),
		chart{Title: "Server CPU (100% = one core)", XLabel: "seconds since the first message was due (negative: connecting)", YLabel: "%", Series: cpu}.view(),
		chart{Title: "Server resident memory", XLabel: "seconds since the first message was due (negative: connecting)", YLabel: "MiB", Series: rss}.view(),
		chart{Title: "Delivery latency by percentile (whole run)", XLabel: "percentile", YLabel: "ms (log)", LogY: true, Series: curve,
			XTicks: []float64{0, 1, 2, 3, 4, 5, 6}, XNames: []string{"0", "90", "99", "99.9", "99.99", "99.999", "max"}}.view(),
	}
	return v
}

func fmtRatio(v float64) string {
	if v == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", v)
}
