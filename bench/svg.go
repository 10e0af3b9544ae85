package bench

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// series is one line of a chart.
type series struct {
	Name  string
	Color string
	Pts   [][2]float64 // x, y; NaN y breaks the line
}

// chart is an inline SVG line chart: no script, no external resources.
type chart struct {
	Title, XLabel, YLabel string
	Series                []series
	LogY                  bool
	Events                []Event // vertical markers at x = T
	W, H                  int
	// XTicks, when set, label the x axis at these values with these names
	// (the percentile plot's "nines").
	XTicks  []float64
	XNames  []string
	YFormat func(float64) string
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

func (c chart) svg() string {
	if c.W == 0 {
		c.W = 880
	}
	if c.H == 0 {
		c.H = 300
	}
	if c.YFormat == nil {
		c.YFormat = fmtNum
	}
	const ml, mr, mt, mb = 70, 20, 30, 45
	pw, ph := float64(c.W-ml-mr), float64(c.H-mt-mb)
	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for _, p := range s.Pts {
			if math.IsNaN(p[1]) || (c.LogY && p[1] <= 0) {
				continue
			}
			xmin, xmax = math.Min(xmin, p[0]), math.Max(xmax, p[0])
			ymin, ymax = math.Min(ymin, p[1]), math.Max(ymax, p[1])
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`, c.W, c.H, c.W, c.H)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="13" font-weight="bold">%s</text>`, ml, html.EscapeString(c.Title))
	if math.IsInf(xmin, 0) {
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#888">no data</text></svg>`, ml+10, mt+int(ph/2))
		return b.String()
	}
	if xmax == xmin {
		xmax = xmin + 1
	}
	if c.LogY {
		ymin = math.Pow(10, math.Floor(math.Log10(ymin)))
		ymax = math.Pow(10, math.Ceil(math.Log10(ymax)))
		if ymax == ymin {
			ymax = ymin * 10
		}
	} else {
		ymin = math.Min(0, ymin)
		ymax = niceCeil(ymax)
		if ymax == ymin {
			ymax = ymin + 1
		}
	}
	X := func(x float64) float64 { return float64(ml) + (x-xmin)/(xmax-xmin)*pw }
	Y := func(y float64) float64 {
		if c.LogY {
			return float64(mt) + ph - (math.Log10(y)-math.Log10(ymin))/(math.Log10(ymax)-math.Log10(ymin))*ph
		}
		return float64(mt) + ph - (y-ymin)/(ymax-ymin)*ph
	}
	// Grid and y ticks.
	var yt []float64
	if c.LogY {
		for v := ymin; v <= ymax*1.0001; v *= 10 {
			yt = append(yt, v)
		}
	} else {
		step := niceCeil((ymax - ymin) / 5)
		for v := ymin; v <= ymax+step/1e6; v += step {
			yt = append(yt, v)
		}
	}
	for _, v := range yt {
		y := Y(v)
		fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#e5e5e5"/>`, ml, float64(ml)+pw, y, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, ml-5, y+4, html.EscapeString(c.YFormat(v)))
	}
	// X ticks.
	if c.XTicks != nil {
		for i, v := range c.XTicks {
			if v < xmin || v > xmax {
				continue
			}
			x := X(v)
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" stroke="#e5e5e5"/>`, x, x, mt, float64(mt)+ph)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x, float64(mt)+ph+15, html.EscapeString(c.XNames[i]))
		}
	} else {
		step := niceCeil((xmax - xmin) / 8)
		for v := math.Ceil(xmin/step) * step; v <= xmax+step/1e6; v += step {
			x := X(v)
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" stroke="#f0f0f0"/>`, x, x, mt, float64(mt)+ph)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x, float64(mt)+ph+15, fmtNum(v))
		}
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`, ml, mt, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`, float64(ml)+pw/2, c.H-8, html.EscapeString(c.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(14 %.1f) rotate(-90)" text-anchor="middle">%s</text>`, float64(mt)+ph/2, html.EscapeString(c.YLabel))
	// Events.
	for _, e := range c.Events {
		if e.T < xmin || e.T > xmax {
			continue
		}
		x := X(e.T)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" stroke="#b00" stroke-dasharray="4 3"><title>%s</title></line>`, x, x, mt, float64(mt)+ph, html.EscapeString(fmt.Sprintf("%.1fs %s", e.T, e.What)))
	}
	// Lines.
	for i, s := range c.Series {
		col := s.Color
		if col == "" {
			col = palette[i%len(palette)]
		}
		var path strings.Builder
		pen := false
		for _, p := range s.Pts {
			if math.IsNaN(p[1]) || (c.LogY && p[1] <= 0) {
				pen = false
				continue
			}
			cmd := "L"
			if !pen {
				cmd = "M"
			}
			fmt.Fprintf(&path, "%s%.1f %.1f ", cmd, X(p[0]), Y(p[1]))
			pen = true
		}
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="1.6"/>`, path.String(), col)
		if len(s.Pts) <= 20 {
			for _, p := range s.Pts {
				if math.IsNaN(p[1]) || (c.LogY && p[1] <= 0) {
					continue
				}
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`, X(p[0]), Y(p[1]), col)
			}
		}
		// Legend.
		lx := ml + 10 + i*150
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="3" fill="%s"/><text x="%d" y="%d">%s</text>`, lx, mt+8, col, lx+16, mt+12, html.EscapeString(s.Name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v*0.9999 {
			return m * p
		}
	}
	return 10 * p
}

func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 1e9:
		return fmt.Sprintf("%.3gG", v/1e9)
	case a >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.3gk", v/1e3)
	case a >= 1:
		return fmt.Sprintf("%.4g", v)
	}
	return fmt.Sprintf("%.3g", v)
}
