package simulations

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Colours of the report's series. They are saturated on purpose: the
// report's image check tells a drawn series from axes, grid and text
// (greys) and from fault shading (pale) by its saturation.
var (
	blue      = color.RGBA{R: 0x1f, G: 0x66, B: 0xc4, A: 0xff}
	orange    = color.RGBA{R: 0xe0, G: 0x6c, B: 0x00, A: 0xff}
	red       = color.RGBA{R: 0xc6, G: 0x28, B: 0x28, A: 0xff}
	paleRed   = color.RGBA{R: 0xf6, G: 0xdc, B: 0xdc, A: 0xff}
	palePurpl = color.RGBA{R: 0xe8, G: 0xe0, B: 0xf4, A: 0xff}
)

// Axis kinds, written on each plot (data-x, data-y) so that a check of
// the rendered page knows which bounds its tick labels must keep.
const (
	axisTime     = "time"     // seconds since the workload began
	axisLatency  = "latency"  // milliseconds
	axisCategory = "category" // names, not numbers
	axisCount    = "count"
	axisFraction = "fraction"
)

// A figure is one plot and what a reader needs to read it.
type figure struct {
	ID      string
	Title   string
	Caption string // what the plot shows, in a sentence
	Note    string // a remark on the data, e.g. that all values are equal
	X, Y    string // axis kinds
	Legend  []legendEntry
	SVG     template.HTML
}

type legendEntry struct {
	Name  string
	Color string // CSS colour
	Kind  string // line, dash, bar or span
}

// A headline is one of the figures a reader looks at first.
type headline struct {
	Label, Value, Detail string
}

// detail is one row of the table of figures; only rows that apply to
// the run are made.
type detail struct {
	Name, Value string
}

// WriteReport writes one self-contained HTML page (inline SVG, no network
// needed) for a result: the scenario's headline figures first, then the
// plots that explain them, the table of figures and the fault timeline.
func WriteReport(w io.Writer, res *Result) error {
	s := res.Series
	if s == nil {
		s = &Series{}
	}
	var figs []figure
	for _, f := range []func(*Result, *Series) (*figure, error){
		overTimeFigure, downFigure, propagationFigure, negotiationFigure, dropsFigure,
	} {
		fig, err := f(res, s)
		if err != nil {
			return fmt.Errorf("report %s: %w", res.Scenario, err)
		}
		if fig != nil {
			figs = append(figs, *fig)
		}
	}
	return reportTemplate.Execute(w, struct {
		R         *Result
		Headlines []headline
		Details   []detail
		Figures   []figure
	}{res, headlines(res), details(res), figs})
}

// percent formats a ratio as a percentage that reads 100 % only when it
// is 1.
func percent(r float64) string {
	for _, prec := range []int{1, 2, 3, 4} {
		s := fmt.Sprintf("%.*f", prec, r*100)
		if r >= 1 || !strings.HasPrefix(s, "100") {
			return s + " %"
		}
	}
	return fmt.Sprintf("%.6f %%", r*100)
}

func ms(v float64) string { return fmt.Sprintf("%g ms", v) }

// headlines picks the figures a reader of this run wants first: what the
// scenario's fault did to the traffic, then delivery and latency.
func headlines(r *Result) []headline {
	var hs []headline
	in, neg := r.Intents, r.Negotiations
	if h := r.Hostile; h != nil {
		if in.Expected > 0 {
			hs = append(hs, headline{"honest intents delivered under attack", percent(in.DeliveryRatio),
				fmt.Sprintf("%d of %d deliveries", in.Delivered, in.Expected)})
		}
		if neg.Requested > 0 {
			hs = append(hs, headline{"honest negotiations completed under attack", percent(neg.SuccessRatio),
				fmt.Sprintf("%d of %d", neg.Completed, neg.Requested)})
		}
		hs = append(hs, headline{"bad intents delivered to an agent", fmt.Sprintf("%d", h.Delivered),
			fmt.Sprintf("of %d sent by %d hostile peers: %s rejected", h.Sent, h.Peers, percent(rejected(h)))})
	}
	if r.HealToFullS != nil {
		v, d := "never", "no intent published after the heal reached every node"
		if *r.HealToFullS >= 0 {
			v, d = fmt.Sprintf("%.2f s", *r.HealToFullS), "after the heal, an intent published then was the first to reach every node"
			if _, heal, ok := partitionSpan(r.Timeline); ok {
				d = fmt.Sprintf("the first intent to reach every node again was published %.2f s after the heal at %.2f s", *r.HealToFullS, heal)
			}
		}
		hs = append(hs, headline{"full delivery after the partition heals", v, d})
		if in.Expected > 0 {
			hs = append(hs, headline{"delivered within 1 s", percent(in.OnTimeRatio),
				fmt.Sprintf("in the end %s (%d of %d)", percent(in.DeliveryRatio), in.Delivered, in.Expected)})
		}
	}
	if in.Expected > 0 && r.Hostile == nil && r.HealToFullS == nil {
		hs = append(hs, headline{"intent delivery", percent(in.DeliveryRatio), fmt.Sprintf("%d of %d deliveries", in.Delivered, in.Expected)})
	}
	if in.Delivered > 0 {
		hs = append(hs, headline{"propagation p50 / p99", fmt.Sprintf("%g / %g ms", in.LatencyMs.P50, in.LatencyMs.P99),
			fmt.Sprintf("max %g ms", in.LatencyMs.Max)})
	}
	if neg.Requested > 0 && r.Hostile == nil {
		d := fmt.Sprintf("%d of %d requested", neg.Completed, neg.Requested)
		if neg.WithLiveAgent != neg.Requested {
			d += fmt.Sprintf("; with a live agent %d of %d", neg.CompletedWithLiveAgent, neg.WithLiveAgent)
		}
		hs = append(hs, headline{"negotiations completed", percent(neg.SuccessRatio), d})
	}
	if neg.Completed > 0 {
		hs = append(hs, headline{"negotiation p50 / p99", fmt.Sprintf("%g / %g ms", neg.LatencyMs.P50, neg.LatencyMs.P99),
			fmt.Sprintf("max %g ms", neg.LatencyMs.Max)})
	}
	return hs
}

func rejected(h *HostileStats) float64 {
	if h.Sent == 0 {
		return 1
	}
	return 1 - float64(h.Delivered)/float64(h.Sent)
}

func details(r *Result) []detail {
	var ds []detail
	in, neg := r.Intents, r.Negotiations
	if in.Published > 0 || in.Expected > 0 {
		ds = append(ds,
			detail{"intents", fmt.Sprintf("%d published, %d of %d deliveries (%.4f), %.4f within 1 s", in.Published, in.Delivered, in.Expected, in.DeliveryRatio, in.OnTimeRatio)},
			detail{"propagation", fmt.Sprintf("p50 %g ms, p90 %g, p99 %g, max %g", in.LatencyMs.P50, in.LatencyMs.P90, in.LatencyMs.P99, in.LatencyMs.Max)},
			detail{"received per node", fmt.Sprintf("%.1f intents, %.0f bytes", r.MessagesPerNode, r.BytesPerNode)},
			detail{"on the wire per node per intent", fmt.Sprintf("%.1f GossipSub RPCs, %.0f bytes (control and duplicates included)",
				in.PerIntent(in.RPCsPerNode), in.PerIntent(in.RPCBytesPerNode))})
	}
	if neg.Requested > 0 {
		ds = append(ds, detail{"negotiations", fmt.Sprintf("%d of %d completed (%.4f); with a live agent %d of %d",
			neg.Completed, neg.Requested, neg.SuccessRatio, neg.CompletedWithLiveAgent, neg.WithLiveAgent)})
		if neg.Completed > 0 {
			ds = append(ds, detail{"negotiation latency", fmt.Sprintf("p50 %g ms, p90 %g, p99 %g, max %g",
				neg.LatencyMs.P50, neg.LatencyMs.P90, neg.LatencyMs.P99, neg.LatencyMs.Max)})
		}
		if len(neg.Failures) > 0 {
			ds = append(ds, detail{"failures", countsText(neg.Failures)})
		}
	}
	if r.HealToFullS != nil {
		v := "never after the heal"
		if *r.HealToFullS >= 0 {
			v = fmt.Sprintf("full delivery %.2f s after the heal", *r.HealToFullS)
		}
		ds = append(ds, detail{"partition", v})
	}
	if h := r.Hostile; h != nil {
		ds = append(ds, detail{"hostile peers", fmt.Sprintf("%d sent %d bad intents (0.00–%.2f s); %d delivered to an agent (%d deliveries)",
			h.Peers, h.Sent, h.FloodEndS, h.Delivered, h.Deliveries)})
		if len(h.Dropped) > 0 {
			ds = append(ds, detail{"dropped by honest nodes", countsText(h.Dropped)})
		}
	}
	if b := r.Baseline; b != nil {
		ds = append(ds, detail{"raw GossipSub baseline", fmt.Sprintf("delivery %.4f, p99 %g ms, %.1f RPCs and %.0f bytes per node per intent, wall %.1f s, RSS %.0f MB",
			b.Intents.DeliveryRatio, b.Intents.LatencyMs.P99, b.Intents.PerIntent(b.Intents.RPCsPerNode), b.Intents.PerIntent(b.Intents.RPCBytesPerNode), b.WallS, b.RSSMB)})
	}
	return ds
}

// countsText lists counts by name, largest first.
func countsText(m map[string]int) string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		if m[names[i]] != m[names[j]] {
			return m[names[i]] > m[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// newPlot is a plot in the page's sans-serif face.
func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	sans := func(s *draw.TextStyle) { s.Font.Variant = "Sans" }
	for _, s := range []*draw.TextStyle{&p.Title.TextStyle, &p.X.Label.TextStyle, &p.Y.Label.TextStyle,
		&p.X.Tick.Label, &p.Y.Tick.Label, &p.Legend.TextStyle} {
		sans(s)
	}
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, x, y
	p.Title.Padding = vg.Points(6)
	p.Add(plotter.NewGrid())
	return p
}

// svg renders p for inline use: gonum's XML prolog and comment dropped.
func svg(p *plot.Plot) (template.HTML, error) {
	wt, err := p.WriterTo(8.5*vg.Inch, 3.3*vg.Inch, "svg")
	if err != nil {
		return "", fmt.Errorf("render plot %q: %w", p.Title.Text, err)
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		return "", fmt.Errorf("render plot %q: %w", p.Title.Text, err)
	}
	out := b.String()
	if i := strings.Index(out, "<svg"); i >= 0 {
		out = out[i:]
	}
	return template.HTML(out), nil //nolint:gosec // gonum's own SVG, with only our escaped text in it
}

func cssColor(c color.RGBA) string { return fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B) }

func line(xy plotter.XYs, c color.RGBA, dashed bool) (*plotter.Line, error) {
	l, err := plotter.NewLine(xy)
	if err != nil {
		return nil, err
	}
	l.Color, l.Width = c, vg.Points(1.5)
	if dashed {
		l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
	}
	return l, nil
}

// step turns samples into a step line that starts at 0, as fractions
// of total if total is positive.
func step(pts []Point, total float64) plotter.XYs {
	xy := plotter.XYs{{X: 0, Y: 0}}
	for _, pt := range pts {
		y := pt.Value
		if total > 0 {
			y = min(y/total, 1)
		}
		xy = append(xy, plotter.XY{X: pt.AtS, Y: xy[len(xy)-1].Y}, plotter.XY{X: pt.AtS, Y: y})
	}
	return xy
}

// span shades [from, to] over the whole height of the plot's data.
func span(from, to, height float64, c color.RGBA) (*plotter.Polygon, error) {
	pg, err := plotter.NewPolygon(plotter.XYs{{X: from, Y: 0}, {X: to, Y: 0}, {X: to, Y: height}, {X: from, Y: height}})
	if err != nil {
		return nil, err
	}
	pg.Color, pg.LineStyle.Width = c, 0
	return pg, nil
}

// endS is when the run's last sample or event was, for a common time axis.
func endS(r *Result, s *Series) float64 {
	end := 0.0
	for _, pts := range [][]Point{s.Deliveries, s.Completions, s.Down} {
		if len(pts) > 0 {
			end = max(end, pts[len(pts)-1].AtS)
		}
	}
	for _, e := range r.Timeline {
		end = max(end, e.AtS)
	}
	return end
}

// overTimeFigure shows delivery and completion as they happen, with the
// partition and the flood shaded. Fault labels go in the legend, so none
// overprints another however close they are.
func overTimeFigure(r *Result, s *Series) (*figure, error) {
	if len(s.Deliveries) == 0 && len(s.Completions) == 0 {
		return nil, nil
	}
	what, title := "Cumulative intent deliveries and completed negotiations, each as a fraction of its total,", "Delivery and completion over time"
	switch {
	case len(s.Completions) == 0:
		what, title = "Cumulative intent deliveries, as a fraction of all expected,", "Delivery over time"
	case len(s.Deliveries) == 0:
		what, title = "Cumulative completed negotiations, as a fraction of all requested,", "Completion over time"
	}
	fig := &figure{ID: "plot-over-time", Title: title, X: axisTime, Y: axisFraction,
		Caption: what + " against time since the workload began."}
	p := newPlot(fig.Title, "time since workload start (s)", "fraction of total")
	p.X.Min, p.Y.Min, p.Y.Max = 0, 0, 1.02
	p.X.Max = endS(r, s)
	// The shading goes first, under the lines.
	if cut, heal, ok := partitionSpan(r.Timeline); ok {
		pg, err := span(cut, heal, 1.02, paleRed)
		if err != nil {
			return nil, err
		}
		p.Add(pg)
		fig.Legend = append(fig.Legend, legendEntry{fmt.Sprintf("partition, %.2f–%.2f s", cut, heal), cssColor(paleRed), "span"})
	}
	if h := r.Hostile; h != nil && h.FloodEndS > 0 {
		pg, err := span(0, h.FloodEndS, 1.02, palePurpl)
		if err != nil {
			return nil, err
		}
		p.Add(pg)
		fig.Legend = append(fig.Legend, legendEntry{fmt.Sprintf("flood by %d hostile peers, 0.00–%.2f s", h.Peers, h.FloodEndS), cssColor(palePurpl), "span"})
	}
	if len(s.Deliveries) > 0 && r.Intents.Expected > 0 {
		l, err := line(step(s.Deliveries, float64(r.Intents.Expected)), blue, false)
		if err != nil {
			return nil, err
		}
		p.Add(l)
		fig.Legend = append(fig.Legend, legendEntry{fmt.Sprintf("intent deliveries (of %d expected)", r.Intents.Expected), cssColor(blue), "line"})
	}
	if len(s.Completions) > 0 && r.Negotiations.Requested > 0 {
		l, err := line(step(s.Completions, float64(r.Negotiations.Requested)), orange, true)
		if err != nil {
			return nil, err
		}
		p.Add(l)
		fig.Legend = append(fig.Legend, legendEntry{fmt.Sprintf("negotiations completed (of %d requested)", r.Negotiations.Requested), cssColor(orange), "dash"})
	}
	var err error
	fig.SVG, err = svg(p)
	return fig, err
}

// partitionSpan finds the cut and the heal on the timeline.
func partitionSpan(tl []Event) (cut, heal float64, ok bool) {
	cut = -1
	for _, e := range tl {
		switch {
		case strings.HasPrefix(e.What, "partition:"):
			cut = e.AtS
		case e.What == "partition healed" && cut >= 0:
			return cut, e.AtS, true
		}
	}
	return 0, 0, false
}

// downFigure shows churn as the number of nodes down, on the same time
// axis as the figure above it: a kill and a restart 0.1 s apart are two
// steps, not two labels on top of each other.
func downFigure(r *Result, s *Series) (*figure, error) {
	if len(s.Down) == 0 {
		return nil, nil
	}
	fig := &figure{ID: "plot-nodes-down", Title: "Nodes down (churn)", X: axisTime, Y: axisCount,
		Caption: "How many nodes were killed and not yet restarted; each step up is a kill, each step down a restart (listed in the fault timeline)."}
	p := newPlot(fig.Title, "time since workload start (s)", "nodes down")
	peak := 0.0
	for _, pt := range s.Down {
		peak = max(peak, pt.Value)
	}
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, endS(r, s), 0, peak+1
	p.Y.Tick.Marker = integerTicks{}
	xy := step(s.Down, 0)
	xy = append(xy, plotter.XY{X: p.X.Max, Y: xy[len(xy)-1].Y})
	l, err := line(xy, red, false)
	if err != nil {
		return nil, err
	}
	p.Add(l)
	fig.Legend = []legendEntry{{"nodes down", cssColor(red), "line"}}
	fig.SVG, err = svg(p)
	return fig, err
}

// integerTicks labels whole numbers only, for counts.
type integerTicks struct{}

func (integerTicks) Ticks(lo, hi float64) []plot.Tick {
	every := math.Max(1, math.Ceil((hi-lo)/8))
	var ts []plot.Tick
	for v := math.Ceil(lo/every) * every; v <= hi; v += every {
		ts = append(ts, plot.Tick{Value: v, Label: fmt.Sprintf("%g", v)})
	}
	return ts
}

func propagationFigure(r *Result, s *Series) (*figure, error) {
	d := s.IntentLatencies
	if len(d) == 0 {
		return nil, nil
	}
	d = slices.Clone(d)
	slices.Sort(d)
	fig := &figure{ID: "plot-propagation", Title: "Intent propagation (CDF)", X: axisLatency, Y: axisFraction,
		Caption: "The fraction of intent deliveries that arrived within a given time of publishing."}
	p := newPlot(fig.Title, "latency (ms)", "fraction of deliveries")
	xy := plotter.XYs{{X: 0, Y: 0}}
	for i, v := range d {
		x := float64(v.Microseconds()) / 1000
		xy = append(xy, plotter.XY{X: x, Y: xy[len(xy)-1].Y}, plotter.XY{X: x, Y: float64(i+1) / float64(len(d))})
	}
	last := xy[len(xy)-1].X
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, last*1.05, 0, 1.02
	l, err := line(xy, blue, false)
	if err != nil {
		return nil, err
	}
	p.Add(l)
	fig.Legend = []legendEntry{{fmt.Sprintf("%d deliveries", len(d)), cssColor(blue), "line"}}
	if d[0] == d[len(d)-1] {
		fig.Note = fmt.Sprintf("All %d deliveries took %s.", len(d), ms(last))
	}
	fig.SVG, err = svg(p)
	return fig, err
}

func negotiationFigure(r *Result, s *Series) (*figure, error) {
	if len(s.NegotiationLatencies) == 0 {
		return nil, nil
	}
	fig := &figure{ID: "plot-negotiation-latency", Title: "Negotiation latency", X: axisLatency, Y: axisCount,
		Caption: "How many completed negotiations took how long, from the call for proposals to the result."}
	p, note, err := histogram(fig.Title, s.NegotiationLatencies, "negotiations")
	if err != nil {
		return nil, err
	}
	fig.Note = note
	fig.Legend = []legendEntry{{"negotiations", cssColor(blue), "bar"}}
	fig.SVG, err = svg(p)
	return fig, err
}

// bins chooses a histogram's bars from the data. Virtual time makes
// latencies multiples of the link latency, often all equal: a few
// distinct values get a bar each, as wide as most of the gap between
// neighbours; many get evenly spaced bins (Freedman–Diaconis, between 5
// and 40). All values equal is one bar, a tenth of the plot wide.
func bins(v []float64) (bars []plotter.HistogramBin, lo, hi float64) {
	v = slices.Clone(v)
	slices.Sort(v)
	distinct := slices.Compact(slices.Clone(v))
	count := func(a, b float64, last bool) float64 {
		n := 0
		for _, x := range v {
			if x >= a && (x < b || last && x <= b) {
				n++
			}
		}
		return float64(n)
	}
	switch {
	case len(distinct) == 1:
		x := distinct[0]
		w := math.Max(math.Abs(x)*0.04, 1)
		return []plotter.HistogramBin{{Min: x - w, Max: x + w, Weight: float64(len(v))}}, x - 10*w, x + 10*w
	case len(distinct) <= 25:
		gap := math.Inf(1)
		for i := 1; i < len(distinct); i++ {
			gap = math.Min(gap, distinct[i]-distinct[i-1])
		}
		w := gap * 0.4
		for _, x := range distinct {
			bars = append(bars, plotter.HistogramBin{Min: x - w, Max: x + w, Weight: count(x, x, true)})
		}
		return bars, distinct[0] - gap, distinct[len(distinct)-1] + gap
	}
	lo, hi = v[0], v[len(v)-1]
	iqr := v[len(v)*3/4] - v[len(v)/4]
	n := int(math.Sqrt(float64(len(v))))
	if iqr > 0 {
		n = int(math.Ceil((hi - lo) / (2 * iqr / math.Cbrt(float64(len(v))))))
	}
	n = min(max(n, 5), 40)
	w := (hi - lo) / float64(n)
	for i := range n {
		a := lo + float64(i)*w
		bars = append(bars, plotter.HistogramBin{Min: a, Max: a + w, Weight: count(a, a+w, i == n-1)})
	}
	return bars, lo, hi
}

// histogram plots durations in milliseconds with bars chosen by bins, and
// says so when all are equal rather than drawing a wall.
func histogram(title string, d []time.Duration, what string) (*plot.Plot, string, error) {
	v := make([]float64, len(d))
	for i, x := range d {
		v[i] = float64(x.Microseconds()) / 1000
	}
	bars, lo, hi := bins(v)
	p := newPlot(title, "latency (ms)", what)
	h := &plotter.Histogram{Bins: bars, FillColor: blue}
	h.LineStyle.Width = 0
	p.Add(h)
	peak := 0.0
	for _, b := range bars {
		peak = max(peak, b.Weight)
	}
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = math.Max(0, lo), hi, 0, peak*1.2
	p.Y.Tick.Marker = integerTicks{}
	note := ""
	if len(bars) == 1 {
		note = fmt.Sprintf("All %d %s took %s: in virtual time every negotiation that takes the same path takes the same time.", len(v), what, ms(v[0]))
		lb, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: v[0], Y: peak * 1.02}}, Labels: []string{fmt.Sprintf("all %d at %s", len(v), ms(v[0]))}})
		if err != nil {
			return nil, "", err
		}
		for i := range lb.TextStyle {
			lb.TextStyle[i].Font.Variant = "Sans"
			lb.TextStyle[i].XAlign, lb.TextStyle[i].YAlign = draw.XCenter, draw.YBottom
		}
		p.Add(lb)
	}
	return p, note, nil
}

// dropsFigure shows what the honest nodes dropped of the flood, by reason.
func dropsFigure(r *Result, _ *Series) (*figure, error) {
	h := r.Hostile
	if h == nil || len(h.Dropped) == 0 {
		return nil, nil
	}
	fig := &figure{ID: "plot-drops", Title: "Bad intents dropped by honest nodes, by reason", X: axisCategory, Y: axisCount,
		Caption: fmt.Sprintf("Each honest node drops a bad intent that reaches it once; of %d sent, %d were delivered to an agent. "+
			"What is not counted here never reached a validator: it was lost in the attackers' own send queues or ignored from graylisted peers.", h.Sent, h.Delivered)}
	names := make([]string, 0, len(h.Dropped))
	for k := range h.Dropped {
		names = append(names, k)
	}
	sort.Strings(names)
	vals := make(plotter.Values, len(names))
	for i, k := range names {
		vals[i] = float64(h.Dropped[k])
	}
	p := newPlot(fig.Title, "reason", "intents dropped")
	bc, err := plotter.NewBarChart(vals, vg.Points(28))
	if err != nil {
		return nil, err
	}
	bc.Color, bc.LineStyle.Width = red, 0
	p.Add(bc)
	p.NominalX(names...)
	peak := slices.Max(vals)
	p.Y.Min, p.Y.Max = 0, peak*1.15
	p.Y.Tick.Marker = integerTicks{}
	fig.Legend = []legendEntry{{"drops", cssColor(red), "bar"}}
	fig.SVG, err = svg(p)
	return fig, err
}

var reportTemplate = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>parley sim: {{.R.Scenario}}</title>
<style>
body{font-family:sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
.headlines{display:flex;flex-wrap:wrap;gap:1em;margin:1.5em 0}
.headline{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;min-width:12em}
.headline .value{font-size:1.8em;font-weight:bold}
.headline .label{font-weight:bold}.headline .detail{color:#555;font-size:.9em}
table{border-collapse:collapse}td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
figure{margin:2em 0}figcaption{color:#444;margin:.3em 0}
.plot svg{display:block}
.legend{display:flex;flex-wrap:wrap;gap:1.2em;font-size:.9em;margin:.3em 0}
.key{display:inline-block;width:2em;height:.8em;vertical-align:middle;margin-right:.4em}
.key.line{border-top:2px solid;height:0}.key.dash{border-top:2px dashed;height:0}
.note{font-weight:bold}
</style>
</head><body>
<h1>parley sim — {{.R.Scenario}}</h1>
<p>{{.R.Nodes}} nodes, {{.R.Clock}} clock, seed {{.R.Seed}}; wall {{printf "%.1f" .R.WallS}} s, peak RSS {{printf "%.0f" .R.RSSMB}} MB.</p>
<div class="headlines">{{range .Headlines}}
<div class="headline"><div class="label">{{.Label}}</div><div class="value">{{.Value}}</div><div class="detail">{{.Detail}}</div></div>{{end}}
</div>
{{range .Figures}}<figure id="{{.ID}}">
<div class="plot" data-x="{{.X}}" data-y="{{.Y}}">{{.SVG}}</div>
<div class="legend">{{range .Legend}}<span><span class="key {{.Kind}}" style="{{if or (eq .Kind "line") (eq .Kind "dash")}}border-color:{{.Color}}{{else}}background:{{.Color}}{{end}}"></span>{{.Name}}</span>{{end}}</div>
{{if .Note}}<p class="note">{{.Note}}</p>{{end}}
<figcaption>{{.Caption}}</figcaption>
</figure>
{{end}}
<h2>Figures</h2>
<table>{{range .Details}}
<tr><th>{{.Name}}</th><td>{{.Value}}</td></tr>{{end}}
</table>
<h2>Fault timeline</h2>
{{if .R.Timeline}}<table><tr><th>at (s)</th><th>event</th></tr>{{range .R.Timeline}}<tr><td>{{printf "%.2f" .AtS}}</td><td>{{.What}}</td></tr>{{end}}</table>{{else}}<p>No faults.</p>{{end}}
</body></html>
`))
