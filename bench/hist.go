package bench

import (
	"math"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms record microseconds from 1 µs to 1 hour with three significant
// digits: every percentile is exact to 0.1 %.
const (
	histMin    = 1
	histMax    = int64(time.Hour / time.Microsecond)
	histDigits = 3
)

// NewHist is an empty histogram of that range and precision.
func NewHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

// RecordDur records d in microseconds, clamped into the histogram's range.
func RecordDur(h *hdrhistogram.Histogram, d time.Duration) {
	us := d.Microseconds()
	if us < histMin {
		us = histMin
	}
	if us > histMax {
		us = histMax
	}
	_ = h.RecordValue(us)
}

// Percentiles summarises a latency distribution, in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	Min   float64 `json:"min_ms"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Summarize reads the percentiles of h (zero when h is empty).
func Summarize(h *hdrhistogram.Histogram) Percentiles {
	if h == nil || h.TotalCount() == 0 {
		return Percentiles{}
	}
	ms := func(us int64) float64 { return round3(float64(us) / 1000) }
	return Percentiles{
		Count: h.TotalCount(),
		Min:   ms(h.Min()),
		Mean:  round3(h.Mean() / 1000),
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}

// CurvePoint is one point of a percentile distribution.
type CurvePoint struct {
	Percentile float64 `json:"p"`
	Ms         float64 `json:"ms"`
}

// curveQuantiles are the points of the percentile plots: dense towards the
// tail, where latency hides.
var curveQuantiles = []float64{0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999, 100}

// Curve returns the latency at each of curveQuantiles.
func Curve(h *hdrhistogram.Histogram) []CurvePoint {
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	out := make([]CurvePoint, 0, len(curveQuantiles))
	for _, q := range curveQuantiles {
		v := h.ValueAtQuantile(q)
		if q == 100 {
			v = h.Max()
		}
		out = append(out, CurvePoint{Percentile: q, Ms: round3(float64(v) / 1000)})
	}
	return out
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }
