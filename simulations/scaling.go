package simulations

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"image/color"
	"io"
	"math"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg/draw"
)

// Scaling is one scenario run at growing sizes, each run beside the raw
// GossipSub baseline of the same size: how a node's cost grows with the
// mesh.
type Scaling struct {
	Scenario string    `json:"scenario"`
	Clock    string    `json:"clock"`
	Runs     []*Result `json:"runs"` // by size, each with its Baseline
	Fits     []Fit     `json:"fits"`
}

// A Fit is the growth of one figure with the number of nodes N, fitted by
// least squares: a·N^b on log–log axes; a + b·N for memory, where b is
// what each node adds; or a + b·log2 N for latencies, which grow with
// the hops an intent takes.
type Fit struct {
	Figure string  `json:"figure"`
	Of     string  `json:"of"` // parley or raw
	Model  string  `json:"model"`
	A      float64 `json:"a"`
	B      float64 `json:"b"`
	R2     float64 `json:"r2"`
}

// Fit models.
const (
	ModelPower  = "a·N^b"
	ModelLinear = "a + b·N"
	ModelLog    = "a + b·log2 N"
)

// At is the fitted figure at n nodes.
func (f Fit) At(n float64) float64 {
	switch f.Model {
	case ModelLog:
		return f.A + f.B*math.Log2(n)
	case ModelLinear:
		return f.A + f.B*n
	}
	return f.A * math.Pow(n, f.B)
}

// String says how the figure grows, e.g. "grows as N^0.02 (R² 0.98)".
func (f Fit) String() string {
	switch f.Model {
	case ModelLog:
		return fmt.Sprintf("%.3g + %.3g·log2 N (R² %.2f)", f.A, f.B, f.R2)
	case ModelLinear:
		return fmt.Sprintf("%.3g + %.3g·N (R² %.2f)", f.A, f.B, f.R2)
	}
	return fmt.Sprintf("%.3g·N^%.2f (R² %.2f)", f.A, f.B, f.R2)
}

// A scaled figure: how to read it from a run and from its baseline.
type scaledFigure struct {
	name, unit string
	model      string
	parley     func(*Result) float64
	raw        func(*Baseline, int) float64 // the baseline and its nodes
}

// scaledFigures are the figures a Scaling fits, in the order its table
// shows them.
var scaledFigures = []scaledFigure{
	{"peak RSS", "MB", ModelLinear,
		func(r *Result) float64 { return r.RSSMB },
		func(b *Baseline, _ int) float64 { return b.RSSMB }},
	{"GossipSub RPCs per node per intent", "RPCs", ModelPower,
		func(r *Result) float64 { return r.Intents.PerIntent(r.Intents.RPCsPerNode) },
		func(b *Baseline, _ int) float64 { return b.Intents.PerIntent(b.Intents.RPCsPerNode) }},
	{"bytes per node per intent", "bytes", ModelPower,
		func(r *Result) float64 { return r.Intents.PerIntent(r.Intents.RPCBytesPerNode) },
		func(b *Baseline, _ int) float64 { return b.Intents.PerIntent(b.Intents.RPCBytesPerNode) }},
	{"propagation p99", "ms", ModelLog,
		func(r *Result) float64 { return r.Intents.LatencyMs.P99 },
		func(b *Baseline, _ int) float64 { return b.Intents.LatencyMs.P99 }},
	{"CPU per delivered intent", "µs", ModelPower,
		func(r *Result) float64 { return r.Intents.CPUPerDeliveryUs },
		func(b *Baseline, _ int) float64 { return b.Intents.CPUPerDeliveryUs }},
	{"wall time", "s", ModelPower,
		func(r *Result) float64 { return r.WallS },
		func(b *Baseline, _ int) float64 { return b.WallS }},
}

// NewScaling fits how each figure grows over runs of one scenario at
// two or more sizes, each with its raw baseline.
func NewScaling(runs []*Result) (*Scaling, error) {
	if len(runs) < 2 {
		return nil, errors.New("scaling: want runs at two sizes or more")
	}
	runs = slices.Clone(runs)
	slices.SortFunc(runs, func(a, b *Result) int { return a.Nodes - b.Nodes })
	s := &Scaling{Scenario: runs[0].Scenario, Clock: runs[0].Clock, Runs: runs}
	for i, r := range runs {
		switch {
		case r.Baseline == nil:
			return nil, fmt.Errorf("scaling: the run at %d nodes has no raw baseline", r.Nodes)
		case r.Scenario != s.Scenario || r.Clock != s.Clock:
			return nil, fmt.Errorf("scaling: runs of %s (%s clock) and %s (%s clock): want one scenario on one clock", s.Scenario, s.Clock, r.Scenario, r.Clock)
		case i > 0 && r.Nodes == runs[i-1].Nodes:
			return nil, fmt.Errorf("scaling: two runs at %d nodes", r.Nodes)
		}
	}
	for _, f := range scaledFigures {
		p, q := s.series(f)
		s.Fits = append(s.Fits, fit(f.name, "parley", f.model, p), fit(f.name, "raw", f.model, q))
	}
	return s, nil
}

// series is a figure at each size, for parley and for raw.
func (s *Scaling) series(f scaledFigure) (parley, raw plotter.XYs) {
	for _, r := range s.Runs {
		n := float64(r.Nodes)
		parley = append(parley, plotter.XY{X: n, Y: f.parley(r)})
		raw = append(raw, plotter.XY{X: n, Y: f.raw(r.Baseline, r.Nodes)})
	}
	return parley, raw
}

// fit fits model to the points by least squares on the model's axes
// (log–log for a power law, log-x for a logarithm, linear for a line).
// Points at or below 0 cannot be on a power law's axes and are left out.
func fit(figure, of, model string, pts plotter.XYs) Fit {
	f := Fit{Figure: figure, Of: of, Model: model}
	var xs, ys []float64
	for _, p := range pts {
		switch {
		case model == ModelLog:
			xs, ys = append(xs, math.Log2(p.X)), append(ys, p.Y)
		case model == ModelLinear:
			xs, ys = append(xs, p.X), append(ys, p.Y)
		case p.Y > 0:
			xs, ys = append(xs, math.Log(p.X)), append(ys, math.Log(p.Y))
		}
	}
	if len(xs) < 2 {
		return f
	}
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx, sy, sxx, sxy = sx+xs[i], sy+ys[i], sxx+xs[i]*xs[i], sxy+xs[i]*ys[i]
	}
	if d := n*sxx - sx*sx; d != 0 {
		f.B = (n*sxy - sx*sy) / d
	}
	a := (sy - f.B*sx) / n
	var ssRes, ssTot float64
	for i := range xs {
		e := ys[i] - (a + f.B*xs[i])
		ssRes += e * e
		ssTot += (ys[i] - sy/n) * (ys[i] - sy/n)
	}
	f.R2 = 1
	if ssTot > 0 {
		f.R2 = 1 - ssRes/ssTot
	}
	f.A = a
	if model == ModelPower {
		f.A = math.Exp(a)
	}
	return f
}

// fitOf is the fit of a figure for parley or raw.
func (s *Scaling) fitOf(figure, of string) Fit {
	for _, f := range s.Fits {
		if f.Figure == figure && f.Of == of {
			return f
		}
	}
	return Fit{}
}

// WriteTable writes the figures at each size, parley beside raw, and
// their fitted growth, as a Markdown table (it reads as well in a
// terminal as in the README).
func (s *Scaling) WriteTable(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "| nodes |")
	for _, f := range scaledFigures {
		fmt.Fprintf(&b, " %s (%s), parley / raw |", f.name, f.unit)
	}
	fmt.Fprintf(&b, " delivery, parley / raw |\n|---:|")
	for range scaledFigures {
		fmt.Fprintf(&b, "---:|")
	}
	fmt.Fprintf(&b, "---:|\n")
	for _, r := range s.Runs {
		fmt.Fprintf(&b, "| %d |", r.Nodes)
		for _, f := range scaledFigures {
			fmt.Fprintf(&b, " %s / %s |", num(f.parley(r)), num(f.raw(r.Baseline, r.Nodes)))
		}
		fmt.Fprintf(&b, " %.4f / %.4f |\n", r.Intents.DeliveryRatio, r.Baseline.Intents.DeliveryRatio)
	}
	fmt.Fprintf(&b, "| growth |")
	for _, f := range scaledFigures {
		fmt.Fprintf(&b, " %s / %s |", s.fitOf(f.name, "parley"), s.fitOf(f.name, "raw"))
	}
	fmt.Fprintf(&b, " |\n")
	_, err := w.Write(b.Bytes())
	return err
}

// num prints a figure with three significant digits, without an exponent
// below a million.
func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%.3g", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// WriteScalingReport writes one self-contained HTML page: a plot per
// figure against N (log scale), parley beside raw with their fits, and
// the table.
func WriteScalingReport(w io.Writer, s *Scaling) error {
	var figs []figure
	for _, f := range scaledFigures {
		fig, err := s.figure(f)
		if err != nil {
			return fmt.Errorf("scaling report: %w", err)
		}
		figs = append(figs, *fig)
	}
	var table bytes.Buffer
	if err := s.WriteTable(&table); err != nil {
		return err
	}
	return scalingTemplate.Execute(w, struct {
		S       *Scaling
		Figures []figure
		Table   string
	}{s, figs, table.String()})
}

func (s *Scaling) figure(f scaledFigure) (*figure, error) {
	parley, raw := s.series(f)
	fp, fr := s.fitOf(f.name, "parley"), s.fitOf(f.name, "raw")
	fig := &figure{ID: "plot-" + slug(f.name), Title: fmt.Sprintf("%s (%s) against nodes", f.name, f.unit), X: axisCount, Y: axisCount,
		Caption: fmt.Sprintf("Points are runs; lines their fits. parley %s; raw GossipSub %s.", fp, fr)}
	p := newPlot(fig.Title, "nodes (log scale)", f.unit)
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	for _, c := range []struct {
		pts    plotter.XYs
		fit    Fit
		col    color.RGBA
		dashed bool
	}{{parley, fp, blue, false}, {raw, fr, orange, true}} {
		sc, err := plotter.NewScatter(c.pts)
		if err != nil {
			return nil, err
		}
		sc.Color, sc.Shape = c.col, draw.CircleGlyph{}
		var fitted plotter.XYs
		lo, hi := c.pts[0].X, c.pts[len(c.pts)-1].X
		for i := range 33 {
			n := lo * math.Pow(hi/lo, float64(i)/32)
			fitted = append(fitted, plotter.XY{X: n, Y: c.fit.At(n)})
		}
		l, err := line(fitted, c.col, c.dashed)
		if err != nil {
			return nil, err
		}
		p.Add(sc, l)
	}
	p.Y.Min = 0
	fig.Legend = []legendEntry{{"parley", cssColor(blue), "line"}, {"raw GossipSub", cssColor(orange), "dash"}}
	var err error
	fig.SVG, err = svg(p)
	return fig, err
}

func slug(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			b[i] = '-'
		}
	}
	return string(b)
}

var scalingTemplate = template.Must(template.New("scaling").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>parley sim: how {{.S.Scenario}} grows</title>
<style>
body{font-family:sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
figure{margin:2em 0}figcaption{color:#444;margin:.3em 0}
.plot svg{display:block}
.legend{display:flex;flex-wrap:wrap;gap:1.2em;font-size:.9em;margin:.3em 0}
.key{display:inline-block;width:2em;height:0;vertical-align:middle;margin-right:.4em;border-top:2px solid}
.key.dash{border-top-style:dashed}
pre{overflow-x:auto;font-size:.85em}
</style>
</head><body>
<h1>parley sim — how {{.S.Scenario}} grows</h1>
<p>{{len .S.Runs}} runs, {{.S.Clock}} clock, each beside raw GossipSub on the same topology and intents.</p>
{{range .Figures}}<figure id="{{.ID}}">
<div class="plot" data-x="{{.X}}" data-y="{{.Y}}">{{.SVG}}</div>
<div class="legend">{{range .Legend}}<span><span class="key {{.Kind}}" style="border-color:{{.Color}}"></span>{{.Name}}</span>{{end}}</div>
<figcaption>{{.Caption}}</figcaption>
</figure>
{{end}}
<h2>Table</h2>
<pre>{{.Table}}</pre>
</body></html>
`))
