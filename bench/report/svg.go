package report

import (
	"fmt"
	"math"
	"strings"

	"parley/bench"
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
	Events                []bench.Event // vertical markers at x = T
	W, H                  int
	// XTicks, when set, label the x axis at these values with these names
	// (the percentile plot's "nines").
	XTicks  []float64
	XNames  []string
	YFormat func(float64) string
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// chartView is a chart laid out for the "chart" template: every
// coordinate computed and formatted here, every string (titles, labels,
// series names, event texts) left to the template to escape.
type chartView struct {
	W, H, ML, MT     int
	Title            string
	NoData           bool
	NoDataX, NoDataY int
	YTicks           []yTick
	XTicks           []xTick
	XTickStroke      string
	PlotW, PlotH     string // the frame
	PlotB            string // y of the plot's bottom
	XLabelX          string
	XLabelY          int
	YLabelY          string
	XLabel, YLabel   string
	Events           []eventMark
	Lines            []lineView
}

type yTick struct{ X2, Y, LabelX, LabelY, Label string }

type xTick struct{ X, LabelY, Label string }

type eventMark struct{ X, Title string }

type lineView struct {
	Path, Color, Name string
	Dots              []dot
	LegendX, LegendY  int // the legend's swatch
	NameX, NameY      int
}

type dot struct{ CX, CY string }

func f1(v float64) string { return fmt.Sprintf("%.1f", v) }

// view lays the chart out.
func (c chart) view() chartView {
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
	v := chartView{W: c.W, H: c.H, ML: ml, MT: mt, Title: c.Title}
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
	if math.IsInf(xmin, 0) {
		v.NoData, v.NoDataX, v.NoDataY = true, ml+10, mt+int(ph/2)
		return v
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
	for _, t := range yt {
		y := Y(t)
		v.YTicks = append(v.YTicks, yTick{X2: f1(float64(ml) + pw), Y: f1(y), LabelX: fmt.Sprint(ml - 5), LabelY: f1(y + 4), Label: c.YFormat(t)})
	}
	// X ticks.
	if c.XTicks != nil {
		v.XTickStroke = "#e5e5e5"
		for i, t := range c.XTicks {
			if t < xmin || t > xmax {
				continue
			}
			v.XTicks = append(v.XTicks, xTick{X: f1(X(t)), LabelY: f1(float64(mt) + ph + 15), Label: c.XNames[i]})
		}
	} else {
		v.XTickStroke = "#f0f0f0"
		step := niceCeil((xmax - xmin) / 8)
		for t := math.Ceil(xmin/step) * step; t <= xmax+step/1e6; t += step {
			v.XTicks = append(v.XTicks, xTick{X: f1(X(t)), LabelY: f1(float64(mt) + ph + 15), Label: fmtNum(t)})
		}
	}
	v.PlotW, v.PlotH, v.PlotB = f1(pw), f1(ph), f1(float64(mt)+ph)
	v.XLabelX, v.XLabelY, v.XLabel = f1(float64(ml)+pw/2), c.H-8, c.XLabel
	v.YLabelY, v.YLabel = f1(float64(mt)+ph/2), c.YLabel
	// Events.
	for _, e := range c.Events {
		if e.T < xmin || e.T > xmax {
			continue
		}
		v.Events = append(v.Events, eventMark{X: f1(X(e.T)), Title: fmt.Sprintf("%.1fs %s", e.T, e.What)})
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
		l := lineView{Path: path.String(), Color: col, Name: s.Name}
		if len(s.Pts) <= 20 {
			for _, p := range s.Pts {
				if math.IsNaN(p[1]) || (c.LogY && p[1] <= 0) {
					continue
				}
				l.Dots = append(l.Dots, dot{CX: f1(X(p[0])), CY: f1(Y(p[1]))})
			}
		}
		// Legend.
		lx := ml + 10 + i*150
		l.LegendX, l.LegendY, l.NameX, l.NameY = lx, mt+8, lx+16, mt+12
		v.Lines = append(v.Lines, l)
	}
	return v
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
