package report

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"

	"parley/bench"
)

// Ratio is one figure of two runs and B's value divided by A's.
type Ratio struct {
	Figure string  `json:"figure"`
	A      float64 `json:"a"`
	B      float64 `json:"b"`
	Ratio  float64 `json:"ratio"` // B/A; NaN when A is 0
	// Better says which direction is an improvement: "lower" or "higher".
	Better string `json:"better"`
}

// Compare lists the main figures of a and b.
func Compare(a, b *bench.Result) []Ratio {
	var out []Ratio
	add := func(name, better string, fa, fb float64) {
		r := math.NaN()
		if fa != 0 {
			r = fb / fa
		} else if fb == 0 {
			r = 1
		}
		out = append(out, Ratio{Figure: name, A: fa, B: fb, Ratio: r, Better: better})
	}
	for _, m := range []string{"e2e", "ack"} {
		pa, pb := a.Latency[m], b.Latency[m]
		add(m+" p50 ms", "lower", pa.P50, pb.P50)
		add(m+" p90 ms", "lower", pa.P90, pb.P90)
		add(m+" p99 ms", "lower", pa.P99, pb.P99)
		add(m+" p99.9 ms", "lower", pa.P999, pb.P999)
		add(m+" max ms", "lower", pa.Max, pb.Max)
	}
	add("connect p99 ms", "lower", a.Latency["connect"].P99, b.Latency["connect"].P99)
	add("acked msg/s", "higher", a.Throughput.AckedPerSec, b.Throughput.AckedPerSec)
	add("agent receipts/s", "higher", a.Throughput.DeliveredPerSec, b.Throughput.DeliveredPerSec)
	add("node CPU s (send phase)", "lower", a.NodeCPUSeconds, b.NodeCPUSeconds)
	add("acked msg per node CPU s", "higher", a.AckedPerCPUSecond, b.AckedPerCPUSecond)
	add("node peak RSS MiB", "lower", peakRSS(a)/(1<<20), peakRSS(b)/(1<<20))
	if a.Idle != nil || b.Idle != nil {
		var ia, ib bench.IdleResult
		if a.Idle != nil {
			ia = *a.Idle
		}
		if b.Idle != nil {
			ib = *b.Idle
		}
		add("idle conns opened", "higher", float64(ia.Opened), float64(ib.Opened))
		add("RSS per idle conn KiB", "lower", ia.RSSPerConn/1024, ib.RSSPerConn/1024)
	}
	add("errors", "lower", float64(a.Counts.Errors), float64(b.Counts.Errors))
	add("reconnects", "lower", float64(a.Counts.Reconnects), float64(b.Counts.Reconnects))
	add("lost", "lower", float64(a.Accounting.Lost), float64(b.Accounting.Lost))
	add("duplicated", "lower", float64(a.Accounting.Duplicated), float64(b.Accounting.Duplicated))
	return out
}

func peakRSS(r *bench.Result) float64 {
	var s float64
	for _, n := range r.NodeMetrics {
		s += n.PeakRSS
	}
	return s
}

// WriteComparison prints the ratios as a table.
func WriteComparison(w io.Writer, a, b *bench.Result, nameA, nameB string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "figure\tA\tB\tB/A\t\n")
	for _, r := range Compare(a, b) {
		mark := ""
		switch {
		case math.IsNaN(r.Ratio) || r.Ratio == 1:
		case (r.Ratio < 1) == (r.Better == "lower"):
			mark = " better"
		default:
			mark = " worse"
		}
		ratio := "-"
		if !math.IsNaN(r.Ratio) {
			ratio = fmt.Sprintf("%.3f", r.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s%s\t\n", r.Figure, fmtNum(r.A), fmtNum(r.B), ratio, mark)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "A: %s (%s, %s)\nB: %s (%s, %s)\n", nameA, a.Name, a.Started.Format("2006-01-02 15:04"), nameB, b.Name, b.Started.Format("2006-01-02 15:04"))
	return err
}
