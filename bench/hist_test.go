package bench

import (
	"math"
	"testing"
	"time"
)

func TestHDRPercentiles(t *testing.T) {
	h := NewHist()
	// 1..10000 µs, once each: p50 = 5 ms, p99 = 9.9 ms, max 10 ms.
	for us := 1; us <= 10000; us++ {
		RecordDur(h, time.Duration(us)*time.Microsecond)
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
	RecordDur(h, 2*time.Second)
	if p := Summarize(h); p.Max < 1999 || p.Max > 2001 || p.P99 > 10 {
		t.Errorf("outlier: %+v", p)
	}
	// Out of range values are clamped, not lost.
	RecordDur(h, -time.Second)
	RecordDur(h, 3*time.Hour)
	if got := h.TotalCount(); got != 10003 {
		t.Errorf("count after clamping %d", got)
	}
	if (Summarize(nil) != Percentiles{}) || (Summarize(NewHist()) != Percentiles{}) {
		t.Error("empty histogram not zero")
	}
	c := Curve(h)
	if len(c) != len(curveQuantiles) || c[len(c)-1].Percentile != 100 || c[len(c)-1].Ms < 3.5e6 {
		t.Errorf("curve %v", c)
	}
}
