package bench

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Plot is one chart of a scenario, written as a standalone SVG file: a
// title, labelled axes (units in the labels), a legend, and one line per
// series. Axes are logarithmic where the data spans decades.
type Plot struct {
	// File is the SVG's file name in the report folder ("classify.svg").
	File   string `json:"file"`
	Title  string `json:"title"`
	XLabel string `json:"x_label"`
	YLabel string `json:"y_label"`
	LogX   bool   `json:"log_x"`
	LogY   bool   `json:"log_y"`
	// Series are the lines, in legend order.
	Series []Series `json:"series"`
}

// Series is one line of a plot.
type Series struct {
	Name   string  `json:"name"`
	Points []Point `json:"points"`
}

// Point is one point of a series.
type Point struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// Geometry of a plot, in SVG user units.
const (
	svgW       = 1000
	svgH       = 480
	svgLeft    = 84
	svgRight   = svgW - 370 // the legend column is to the right
	svgTop     = 56
	svgBottom  = svgH - 64
	svgMarkers = 64 // series with more points are drawn without markers
)

var svgColors = []string{
	"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
	"#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
}

// axis maps data values to SVG coordinates along one axis.
type axis struct {
	log      bool
	lo, hi   float64 // in data units (log10 of them on a log axis)
	from, to float64 // SVG coordinates of lo and hi
}

func (a axis) pos(v float64) float64 {
	if a.log {
		v = math.Log10(v)
	}
	if a.hi == a.lo {
		return (a.from + a.to) / 2
	}
	return a.from + (v-a.lo)/(a.hi-a.lo)*(a.to-a.from)
}

// usable reports whether v can be drawn on the axis.
func (a axis) usable(v float64) bool {
	return !math.IsNaN(v) && !math.IsInf(v, 0) && (!a.log || v > 0)
}

// tick is one labelled position on an axis; minor ticks carry no label.
type tick struct {
	v     float64
	label string
}

// newAxis fits an axis to vals: whole decades on a log axis, a range
// from zero (or the minimum when it is negative) with round steps on a
// linear one. It returns the axis, its major ticks and its minor ticks.
func newAxis(vals []float64, log bool, from, to float64) (axis, []tick, []float64) {
	a := axis{log: log, from: from, to: to}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		if !a.usable(v) {
			continue
		}
		if log {
			v = math.Log10(v)
		}
		lo, hi = min(lo, v), max(hi, v)
	}
	if math.IsInf(lo, 1) { // nothing to draw
		lo, hi = 0, 1
	}
	var major []tick
	var minor []float64
	if log {
		lo, hi = math.Floor(lo), math.Ceil(hi)
		if hi == lo {
			hi++
		}
		a.lo, a.hi = lo, hi
		for d := lo; d <= hi; d++ {
			major = append(major, tick{math.Pow(10, d), fmtNum(math.Pow(10, d))})
			if d < hi {
				for m := 2.0; m < 10; m++ {
					minor = append(minor, m*math.Pow(10, d))
				}
			}
		}
		return a, major, minor
	}
	lo = min(lo, 0)
	if hi <= lo {
		hi = lo + 1
	}
	step := niceStep((hi - lo) / 5)
	lo = math.Floor(lo/step) * step
	hi = math.Ceil(hi/step) * step
	a.lo, a.hi = lo, hi
	for v := lo; v <= hi+step/2; v += step {
		major = append(major, tick{v, fmtNum(v)})
	}
	return a, major, minor
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// fmtNum formats a tick value short: 1.5k, 20M, 0.25.
func fmtNum(v float64) string {
	av := math.Abs(v)
	switch {
	case av == 0:
		return "0"
	case av >= 1e9:
		return trimFloat(v/1e9) + "G"
	case av >= 1e6:
		return trimFloat(v/1e6) + "M"
	case av >= 1e3:
		return trimFloat(v/1e3) + "k"
	default:
		return trimFloat(v)
	}
}

func trimFloat(v float64) string {
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// WriteSVG renders p as a standalone SVG document.
func (p *Plot) WriteSVG(w io.Writer) error {
	var xs, ys []float64
	for _, s := range p.Series {
		for _, pt := range s.Points {
			xs = append(xs, pt.X)
			ys = append(ys, pt.Y)
		}
	}
	ax, xMajor, xMinor := newAxis(xs, p.LogX, svgLeft, svgRight)
	ay, yMajor, yMinor := newAxis(ys, p.LogY, svgBottom, svgTop)

	var b bytes.Buffer
	esc := func(s string) string {
		var e bytes.Buffer
		_ = xml.EscapeText(&e, []byte(s))
		return e.String()
	}
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", svgW, svgH, svgW, svgH)
	fmt.Fprintf(&b, "<title>%s</title>\n", esc(p.Title))
	fmt.Fprintf(&b, "<desc>%s against %s%s</desc>\n", esc(p.YLabel), esc(p.XLabel), esc(axisNote(p.LogX, p.LogY)))
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="white"/>`+"\n", svgW, svgH)
	fmt.Fprintf(&b, `<text class="title" x="%d" y="28" text-anchor="middle" font-size="16" font-weight="bold">%s</text>`+"\n", (svgLeft+svgRight)/2, esc(p.Title))

	// Grid and ticks.
	b.WriteString(`<g class="grid" stroke="#e4e4e4" stroke-width="1">` + "\n")
	for _, v := range xMinor {
		x := ax.pos(v)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#f2f2f2"/>`+"\n", x, svgTop, x, svgBottom)
	}
	for _, v := range yMinor {
		y := ay.pos(v)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#f2f2f2"/>`+"\n", svgLeft, y, svgRight, y)
	}
	for _, t := range xMajor {
		x := ax.pos(t.v)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d"/>`+"\n", x, svgTop, x, svgBottom)
	}
	for _, t := range yMajor {
		y := ay.pos(t.v)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`+"\n", svgLeft, y, svgRight, y)
	}
	b.WriteString("</g>\n")
	b.WriteString(`<g class="ticks" fill="#333">` + "\n")
	for _, t := range xMajor {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", ax.pos(t.v), svgBottom+18, esc(t.label))
	}
	for _, t := range yMajor {
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", svgLeft-6, ay.pos(t.v)+4, esc(t.label))
	}
	b.WriteString("</g>\n")
	// Axes and their labels.
	fmt.Fprintf(&b, `<g class="axes" stroke="#333" stroke-width="1.2"><line x1="%d" y1="%d" x2="%d" y2="%d"/><line x1="%d" y1="%d" x2="%d" y2="%d"/></g>`+"\n",
		svgLeft, svgBottom, svgRight, svgBottom, svgLeft, svgTop, svgLeft, svgBottom)
	fmt.Fprintf(&b, `<text class="xlabel" x="%d" y="%d" text-anchor="middle" font-size="13">%s</text>`+"\n", (svgLeft+svgRight)/2, svgH-20, esc(p.XLabel+logSuffix(p.LogX)))
	fmt.Fprintf(&b, `<text class="ylabel" x="%d" y="%d" text-anchor="middle" font-size="13" transform="rotate(-90 %d %d)">%s</text>`+"\n",
		22, (svgTop+svgBottom)/2, 22, (svgTop+svgBottom)/2, esc(p.YLabel+logSuffix(p.LogY)))

	// Series.
	for i, s := range p.Series {
		color := svgColors[i%len(svgColors)]
		dash := ""
		if i >= len(svgColors) {
			dash = ` stroke-dasharray="6 3"`
		}
		fmt.Fprintf(&b, `<g class="series" stroke="%s" fill="%s"><title>%s</title>`+"\n", color, color, esc(s.Name))
		var pts []string
		for _, pt := range s.Points {
			if !ax.usable(pt.X) || !ay.usable(pt.Y) {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", ax.pos(pt.X), ay.pos(pt.Y)))
		}
		if len(pts) > 1 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke-width="2"%s points="%s"/>`+"\n", dash, strings.Join(pts, " "))
		}
		if len(pts) <= svgMarkers {
			for _, xy := range pts {
				x, y, _ := strings.Cut(xy, ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3"/>`+"\n", x, y)
			}
		}
		b.WriteString("</g>\n")
	}

	// Legend.
	fmt.Fprintf(&b, `<g class="legend" font-size="11"><rect x="%d" y="%d" width="%d" height="%d" fill="white" stroke="#999"/>`+"\n",
		svgRight+14, svgTop, svgW-svgRight-24, 12+18*len(p.Series))
	for i, s := range p.Series {
		color := svgColors[i%len(svgColors)]
		y := svgTop + 18 + 18*i
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", svgRight+22, y-4, svgRight+44, y-4, color)
		fmt.Fprintf(&b, `<text class="legend-entry" x="%d" y="%d">%s</text>`+"\n", svgRight+50, y, esc(s.Name))
	}
	b.WriteString("</g>\n</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

func logSuffix(log bool) string {
	if log {
		return " — log scale"
	}
	return ""
}

func axisNote(logX, logY bool) string {
	switch {
	case logX && logY:
		return " (both axes logarithmic)"
	case logX:
		return " (x axis logarithmic)"
	case logY:
		return " (y axis logarithmic)"
	}
	return ""
}
