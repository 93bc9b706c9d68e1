package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// A small hand-written SVG writer for the scenarios' charts: line charts and
// grouped bar charts, with axes, ticks and a legend. No dependencies.

const (
	svgW, svgH             = 720, 360
	padL, padR, padT, padB = 64, 170, 36, 48
)

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"}

type line struct {
	Name  string
	Pts   [][2]float64
	Dash  bool
	Color string // "" picks from the palette
}

type bars struct {
	Name  string
	Vals  []float64 // one per group
	Color string
}

type svg struct{ b strings.Builder }

func (s *svg) f(format string, a ...any) { fmt.Fprintf(&s.b, format, a...) }

func (s *svg) open(title string) {
	s.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", svgW, svgH, svgW, svgH)
	s.f(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	s.f(`<text x="%d" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", padL, html.EscapeString(title))
}

// niceMax rounds v up to a round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6
// or 8 times a power of ten), so the axis ends near the data.
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func num(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// axes draws the frame, y ticks and labels; it returns the y scale.
func (s *svg) axes(xLabel, yLabel string, yMax float64) func(float64) float64 {
	x0, y0, x1, y1 := padL, svgH-padB, svgW-padR, padT
	y := func(v float64) float64 { return float64(y0) - v/yMax*float64(y0-y1) }
	for i := 0; i <= 5; i++ {
		v := yMax * float64(i) / 5
		s.f(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", x0, y(v), x1, y(v))
		s.f(`<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-6, y(v)+4, num(v))
	}
	s.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0, y0, x1, y0)
	s.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0, y0, x0, y1)
	s.f(`<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", (x0+x1)/2, svgH-10, html.EscapeString(xLabel))
	s.f(`<text x="16" y="%d" text-anchor="middle" transform="rotate(-90 16 %d)">%s</text>`+"\n", (y0+y1)/2, (y0+y1)/2, html.EscapeString(yLabel))
	return y
}

func (s *svg) legend(i int, name, color string, dash bool) {
	x, y := svgW-padR+14, padT+10+18*i
	d := ""
	if dash {
		d = ` stroke-dasharray="6 4"`
	}
	s.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"%s/>`+"\n", x, y, x+22, y, color, d)
	s.f(`<text x="%d" y="%d">%s</text>`+"\n", x+28, y+4, html.EscapeString(name))
}

func colorOf(c string, i int) string {
	if c != "" {
		return c
	}
	return palette[i%len(palette)]
}

// lineChart writes a line chart of ls.
func lineChart(w io.Writer, title, xLabel, yLabel string, ls []line) error {
	var s svg
	s.open(title)
	xMax, yMax := 0.0, 0.0
	for _, l := range ls {
		for _, p := range l.Pts {
			xMax, yMax = max(xMax, p[0]), max(yMax, p[1])
		}
	}
	xMax, yMax = niceMax(xMax), niceMax(yMax*1.05)
	y := s.axes(xLabel, yLabel, yMax)
	x0, x1, y0 := padL, svgW-padR, svgH-padB
	x := func(v float64) float64 { return float64(x0) + v/xMax*float64(x1-x0) }
	for i := 0; i <= 5; i++ {
		v := xMax * float64(i) / 5
		s.f(`<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x(v), y0+16, num(v))
	}
	for i, l := range ls {
		c := colorOf(l.Color, i)
		var pts []string
		for _, p := range l.Pts {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p[0]), y(p[1])))
		}
		d := ""
		if l.Dash {
			d = ` stroke-dasharray="6 4"`
		}
		s.f(`<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", c, d, strings.Join(pts, " "))
		s.legend(i, l.Name, c, l.Dash)
	}
	s.f("</svg>\n")
	_, err := io.WriteString(w, s.b.String())
	return err
}

// barChart writes grouped bars: one group per label, one bar per series.
// ref, if positive, draws a dashed reference line at that value, named
// refName.
func barChart(w io.Writer, title, yLabel string, groups []string, bs []bars, ref float64, refName string) error {
	var s svg
	s.open(title)
	yMax := ref
	for _, b := range bs {
		for _, v := range b.Vals {
			yMax = max(yMax, v)
		}
	}
	yMax = niceMax(yMax * 1.05)
	y := s.axes("", yLabel, yMax)
	x0, x1, y0 := padL, svgW-padR, svgH-padB
	gw := float64(x1-x0) / float64(len(groups))
	bw := gw * 0.8 / float64(len(bs))
	for g, label := range groups {
		gx := float64(x0) + gw*float64(g) + gw*0.1
		for i, b := range bs {
			v := b.Vals[g]
			s.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s</title></rect>`+"\n",
				gx+bw*float64(i), y(v), bw-1, float64(y0)-y(v), colorOf(b.Color, i),
				html.EscapeString(b.Name), html.EscapeString(label), num(v))
		}
		s.f(`<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", gx+gw*0.4, y0+16, html.EscapeString(label))
	}
	for i, b := range bs {
		s.legend(i, b.Name, colorOf(b.Color, i), false)
	}
	if ref > 0 {
		s.f(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="black" stroke-dasharray="6 4"/>`+"\n", x0, y(ref), x1, y(ref))
		s.legend(len(bs), refName, "black", true)
	}
	s.f("</svg>\n")
	_, err := io.WriteString(w, s.b.String())
	return err
}
