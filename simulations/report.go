package simulations

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// WriteReport writes one self-contained HTML page (inline SVG plots, no
// network needed) for a result: propagation CDF, negotiation latency
// histogram, deliveries and completions over time, and the fault timeline.
func WriteReport(w io.Writer, res *Result) error {
	var plots []template.HTML
	add := func(p *plot.Plot, err error) error {
		if err != nil {
			return err
		}
		if p == nil {
			return nil
		}
		wt, err := p.WriterTo(6*vg.Inch, 3.5*vg.Inch, "svg")
		if err != nil {
			return fmt.Errorf("render plot: %w", err)
		}
		var b bytes.Buffer
		if _, err := wt.WriteTo(&b); err != nil {
			return err
		}
		plots = append(plots, template.HTML(b.String())) //nolint:gosec // gonum's own SVG
		return nil
	}
	s := res.Series
	if s == nil {
		s = &Series{}
	}
	for _, f := range []func() (*plot.Plot, error){
		func() (*plot.Plot, error) { return cdf("Intent propagation (CDF)", s.IntentLatencies) },
		func() (*plot.Plot, error) { return histogram("Negotiation latency", s.NegotiationLatencies) },
		func() (*plot.Plot, error) { return overTime(s, res.Timeline) },
	} {
		if err := add(f()); err != nil {
			return err
		}
	}
	return reportTemplate.Execute(w, struct {
		R     *Result
		Plots []template.HTML
	}{res, plots})
}

func cdf(title string, d []time.Duration) (*plot.Plot, error) {
	if len(d) == 0 {
		return nil, nil
	}
	d = slices.Clone(d)
	slices.Sort(d)
	pts := make(plotter.XYs, len(d))
	for i, v := range d {
		pts[i] = plotter.XY{X: float64(v.Microseconds()) / 1000, Y: float64(i+1) / float64(len(d))}
	}
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, "latency (ms)", "fraction of deliveries"
	l, err := plotter.NewLine(pts)
	if err != nil {
		return nil, err
	}
	p.Add(l, plotter.NewGrid())
	return p, nil
}

func histogram(title string, d []time.Duration) (*plot.Plot, error) {
	if len(d) == 0 {
		return nil, nil
	}
	v := make(plotter.Values, len(d))
	for i, x := range d {
		v[i] = float64(x.Microseconds()) / 1000
	}
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, "latency (ms)", "negotiations"
	h, err := plotter.NewHist(v, 20)
	if err != nil {
		return nil, err
	}
	p.Add(h)
	return p, nil
}

func overTime(s *Series, timeline []Event) (*plot.Plot, error) {
	if len(s.Deliveries) == 0 && len(s.Completions) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = "Deliveries and completions over time (faults marked)", "time since workload start (s)", "cumulative"
	p.Add(plotter.NewGrid())
	for _, series := range []struct {
		name string
		pts  []Point
	}{{"intent deliveries", s.Deliveries}, {"negotiations completed", s.Completions}} {
		if len(series.pts) == 0 {
			continue
		}
		xy := make(plotter.XYs, len(series.pts))
		for i, pt := range series.pts {
			xy[i] = plotter.XY{X: pt.AtS, Y: pt.Value}
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, err
		}
		if series.name != "intent deliveries" {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		}
		p.Add(l)
		p.Legend.Add(series.name, l)
	}
	if len(timeline) > 0 {
		xy := make(plotter.XYs, len(timeline))
		labels := make([]string, len(timeline))
		for i, e := range timeline {
			xy[i], labels[i] = plotter.XY{X: e.AtS, Y: 0}, e.What
		}
		sc, err := plotter.NewScatter(xy)
		if err != nil {
			return nil, err
		}
		p.Add(sc)
		p.Legend.Add("fault", sc)
		lb, err := plotter.NewLabels(plotter.XYLabels{XYs: xy, Labels: labels})
		if err == nil {
			p.Add(lb)
		}
	}
	p.Legend.Top = true
	return p, nil
}

var reportTemplate = template.Must(template.New("report").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>parley sim: {{.R.Scenario}}</title>
<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}table{border-collapse:collapse}td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}svg{display:block;margin:1em 0}</style>
</head><body>
<h1>parley sim — {{.R.Scenario}}</h1>
<p>{{.R.Nodes}} nodes, {{.R.Clock}} clock, seed {{.R.Seed}}; wall {{printf "%.1f" .R.WallS}} s, peak RSS {{printf "%.0f" .R.RSSMB}} MB.</p>
<table>
<tr><th>intents</th><td>{{.R.Intents.Published}} published, {{.R.Intents.Delivered}} of {{.R.Intents.Expected}} delivered ({{printf "%.4f" .R.Intents.DeliveryRatio}})</td></tr>
<tr><th>propagation</th><td>p50 {{.R.Intents.LatencyMs.P50}} ms, p90 {{.R.Intents.LatencyMs.P90}}, p99 {{.R.Intents.LatencyMs.P99}}, max {{.R.Intents.LatencyMs.Max}}</td></tr>
<tr><th>negotiations</th><td>{{.R.Negotiations.Completed}} of {{.R.Negotiations.Requested}} completed ({{printf "%.4f" .R.Negotiations.SuccessRatio}}); with a live agent {{.R.Negotiations.CompletedWithLiveAgent}} of {{.R.Negotiations.WithLiveAgent}}</td></tr>
<tr><th>negotiation latency</th><td>p50 {{.R.Negotiations.LatencyMs.P50}} ms, p99 {{.R.Negotiations.LatencyMs.P99}}</td></tr>
{{with .R.Baseline}}<tr><th>raw GossipSub baseline</th><td>delivery {{printf "%.4f" .Intents.DeliveryRatio}}, p99 {{.Intents.LatencyMs.P99}} ms, wall {{printf "%.1f" .WallS}} s, RSS {{printf "%.0f" .RSSMB}} MB</td></tr>{{end}}
</table>
{{range .Plots}}{{.}}{{end}}
<h2>Fault timeline</h2>
{{if .R.Timeline}}<table><tr><th>at (s)</th><th>event</th></tr>{{range .R.Timeline}}<tr><td>{{printf "%.2f" .AtS}}</td><td>{{.What}}</td></tr>{{end}}</table>{{else}}<p>No faults.</p>{{end}}
</body></html>
`))
