package simulations_test

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"gonum.org/v1/plot/font"

	"github.com/parleynet/parley/simulations"
)

// A reported run: the result, its report, and how long the whole run
// took in virtual time (mesh, warmup, workload and drain), which bounds
// every time the report shows.
type reported struct {
	sc      simulations.Scenario
	res     *simulations.Result
	html    string
	elapsed time.Duration
	// progress is what the run reported, in order.
	progress []float64
}

var (
	reportsMu sync.Mutex
	reports   = map[string]*reported{}
)

// reportScenarios are the built-in scenarios at sizes that run in a
// second or two under -race, with every fault they have.
var reportScenarios = []string{"gossip", "supply-chain", "churn", "partition", "hostile"}

func smallScenario(t *testing.T, name string) simulations.Scenario {
	sc := small(t, name, 16)
	switch name {
	case "supply-chain", "churn":
		sc.Tasks.Count, sc.Tasks.Contractors = 10, 5
	case "hostile":
		sc.Tasks.Count, sc.Tasks.Contractors, sc.Hostile.Fraction, sc.Hostile.Rounds = 5, 4, 0.15, 30
	}
	if name != "partition" {
		// The partition's intents run on past the heal at 5 s.
		sc.Intents.Count = min(sc.Intents.Count, 12)
	}
	return sc
}

// report runs a scenario once per test binary and renders its report:
// several tests read the same run.
func report(t *testing.T, name string) *reported {
	t.Helper()
	reportsMu.Lock()
	defer reportsMu.Unlock()
	if r, ok := reports[name]; ok {
		return r
	}
	r := &reported{sc: smallScenario(t, name)}
	var err error
	synctest.Test(t, func(*testing.T) {
		start := time.Now()
		var mu sync.Mutex
		r.res, err = simulations.Run(context.Background(), r.sc, func(f float64) {
			mu.Lock()
			defer mu.Unlock()
			r.progress = append(r.progress, f)
		})
		r.elapsed = time.Since(start)
	})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var b bytes.Buffer
	if err := simulations.WriteReport(&b, r.res); err != nil {
		t.Fatalf("%s report: %v", name, err)
	}
	r.html = b.String()
	reports[name] = r
	return r
}

// The hostile peers' join used to be logged before the workload's start
// time was set, at 9,223,372,036 s; every event must fall within the run.
func TestTimelineWithinRun(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events int // at least
	}{
		{"supply-chain", 2}, {"churn", 2}, {"partition", 2}, {"hostile", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := report(t, tc.name)
			if len(r.res.Timeline) < tc.events {
				t.Fatalf("timeline %v: want at least %d events", r.res.Timeline, tc.events)
			}
			for _, e := range r.res.Timeline {
				if e.AtS < 0 || e.AtS > r.elapsed.Seconds() {
					t.Errorf("event %q at %g s: outside the run's %.1f s", e.What, e.AtS, r.elapsed.Seconds())
				}
			}
		})
	}
}

// Intents and tasks are published at once; progress used to be reported
// by each on its own, so the bar jumped back and forth.
func TestProgressOnlyGrows(t *testing.T) {
	r := report(t, "churn")
	p := r.progress
	if len(p) < r.sc.Intents.Count+r.sc.Tasks.Count || p[len(p)-1] != 1 {
		t.Fatalf("progress %v: want a step per intent and task, ending at 1", p)
	}
	for i := 1; i < len(p); i++ {
		if p[i] < p[i-1] {
			t.Fatalf("progress went back from %.2f to %.2f: %v", p[i-1], p[i], p)
		}
	}
}

func TestHostileFiguresReported(t *testing.T) {
	r := report(t, "hostile")
	h := r.res.Hostile
	if h == nil || h.Peers == 0 || h.Sent == 0 || h.Delivered != 0 || h.FloodEndS <= 0 || h.FloodEndS > r.elapsed.Seconds() {
		t.Fatalf("hostile figures %+v: want peers that sent bad intents over a span of the run, none delivered", h)
	}
	// The flood overlaps the honest workload: otherwise "under attack"
	// would measure nothing.
	if last := float64(r.sc.Intents.Count-1) * r.sc.Intents.Every.Seconds(); h.FloodEndS < last/2 {
		t.Errorf("flood over at %.2f s, the last honest intent at %.2f s: the traffic was not under attack", h.FloodEndS, last)
	}
	for _, want := range []string{"honest intents delivered under attack", "bad intents delivered to an agent",
		fmt.Sprintf("of %d sent by %d hostile peers", h.Sent, h.Peers), `id="plot-drops"`} {
		if !strings.Contains(r.html, want) {
			t.Errorf("hostile report lacks %q", want)
		}
	}
}

// headlineRE matches a headline figure's label and value.
var headlineRE = regexp.MustCompile(`<div class="headline"><div class="label">([^<]*)</div><div class="value">([^<]*)</div>`)

func TestReportHeadlineFirst(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first string
		value func(*simulations.Result) string
	}{
		{"gossip", "intent delivery", func(r *simulations.Result) string { return "100.0 %" }},
		{"supply-chain", "negotiations completed", nil},
		{"churn", "intent delivery", nil},
		{"partition", "full delivery after the partition heals", func(r *simulations.Result) string {
			if r.HealToFullS == nil || *r.HealToFullS < 0 {
				t.Fatalf("partition never healed: %v", r.HealToFullS)
			}
			return fmt.Sprintf("%.2f s", *r.HealToFullS)
		}},
		{"hostile", "honest intents delivered under attack", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := report(t, tc.name)
			m := headlineRE.FindAllStringSubmatchIndex(r.html, -1)
			if len(m) == 0 {
				t.Fatalf("no headline figures in the %s report", tc.name)
			}
			label, value := r.html[m[0][2]:m[0][3]], html.UnescapeString(r.html[m[0][4]:m[0][5]])
			if label != tc.first {
				t.Errorf("first headline %q, want %q", label, tc.first)
			}
			if tc.value != nil && value != tc.value(r.res) {
				t.Errorf("headline %q is %q, want %q", label, value, tc.value(r.res))
			}
			if fig := strings.Index(r.html, "<figure"); fig < 0 || m[len(m)-1][1] > fig {
				t.Errorf("headlines must come before the plots (first figure at %d)", fig)
			}
		})
	}
}

var rowRE = regexp.MustCompile(`<tr><th>([^<]*)</th><td>([^<]*)</td></tr>`)

// Rows such as "0 of 0 (0.0000)" must not appear where they do not apply.
func TestReportOmitsRowsThatDoNotApply(t *testing.T) {
	for _, tc := range []struct {
		name    string
		want    []string
		notWant []string
	}{
		{"gossip", []string{"intents", "propagation"}, []string{"negotiations", "negotiation latency", "partition", "hostile peers"}},
		{"supply-chain", []string{"negotiations", "negotiation latency"}, []string{"intents", "propagation", "received per node"}},
		{"partition", []string{"intents", "partition"}, []string{"negotiations"}},
		{"hostile", []string{"intents", "negotiations", "hostile peers"}, []string{"partition"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := report(t, tc.name)
			rows := map[string]string{}
			for _, m := range rowRE.FindAllStringSubmatch(r.html, -1) {
				rows[m[1]] = m[2]
				if strings.Contains(m[2], "0 of 0 ") {
					t.Errorf("row %q reads %q: it does not apply", m[1], m[2])
				}
			}
			for _, k := range tc.want {
				if _, ok := rows[k]; !ok {
					t.Errorf("no %q row in %v", k, rows)
				}
			}
			for _, k := range tc.notWant {
				if v, ok := rows[k]; ok {
					t.Errorf("row %q = %q does not apply to %s", k, v, tc.name)
				}
			}
		})
	}
}

// plotSVG returns the SVG of the plot with the given title.
func plotSVG(t *testing.T, page, title string) string {
	t.Helper()
	for _, svg := range regexp.MustCompile(`(?s)<svg .*?</svg>`).FindAllString(page, -1) {
		if strings.Contains(svg, ">"+title+"</text>") {
			return svg
		}
	}
	t.Fatalf("no plot %q in the report", title)
	return ""
}

// barRE matches a filled rectangle that is not the white background.
var barRE = regexp.MustCompile(`<path d="M([-\d.e]+),[-\d.e]+L([-\d.e]+),[^"]*" style="fill:#(?:[0-9A-E][0-9A-F]{5}|F[0-9A-F]{4}[0-9A-E])`)

// Latencies in virtual time are often all equal: the histogram used to
// be one bar as wide as the plot.
func TestHistogramBinsFromData(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		d := make([]time.Duration, len(v))
		for i, x := range v {
			d[i] = time.Duration(x) * time.Millisecond
		}
		return d
	}
	var spread []int
	for i := range 200 {
		spread = append(spread, 300+i*7%500)
	}
	for _, tc := range []struct {
		name           string
		lat            []time.Duration
		minBars, bars  int
		note           string
		maxBarFraction float64 // of the plot's width
	}{
		{"all equal", ms(600, 600, 600, 600, 600), 1, 1, "All 5 negotiations took 600 ms", 0.2},
		{"two values", ms(600, 650, 650), 2, 2, "", 0.3},
		{"spread", ms(spread...), 5, 40, "", 0.2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := &simulations.Result{Scenario: "test", Negotiations: simulations.NegotiationStats{Requested: len(tc.lat), Completed: len(tc.lat)},
				Series: &simulations.Series{NegotiationLatencies: tc.lat}}
			var b bytes.Buffer
			if err := simulations.WriteReport(&b, res); err != nil {
				t.Fatal(err)
			}
			svg := plotSVG(t, b.String(), "Negotiation latency")
			bars := barRE.FindAllStringSubmatch(svg, -1)
			if len(bars) < tc.minBars || len(bars) > max(tc.bars, tc.minBars) {
				t.Errorf("%d bars, want %d to %d", len(bars), tc.minBars, tc.bars)
			}
			width := svgWidth(t, svg)
			for _, m := range bars {
				a, _ := strconv.ParseFloat(m[1], 64)
				z, _ := strconv.ParseFloat(m[2], 64)
				if math.Abs(z-a) > tc.maxBarFraction*width {
					t.Errorf("a bar %.0f pt wide in a plot %.0f pt wide: a wall, not a histogram", math.Abs(z-a), width)
				}
			}
			if tc.note != "" && !strings.Contains(b.String(), tc.note) {
				t.Errorf("report does not say %q", tc.note)
			}
		})
	}
}

func svgWidth(t *testing.T, svg string) float64 {
	m := regexp.MustCompile(`<svg width="([\d.]+)pt"`).FindStringSubmatch(svg)
	if m == nil {
		t.Fatal("plot has no width")
	}
	w, _ := strconv.ParseFloat(m[1], 64)
	return w
}

// A box in an SVG plot's coordinates (y up).
type box struct{ x0, y0, x1, y1 float64 }

func (a box) overlaps(b box) bool {
	return math.Min(a.x1, b.x1)-math.Max(a.x0, b.x0) > 0.5 && math.Min(a.y1, b.y1)-math.Max(a.y0, b.y0) > 0.5
}

// crosses reports whether the segment p-q passes through the box.
func (a box) crosses(px, py, qx, qy float64) bool {
	// Liang–Barsky clipping of the segment against the box.
	t0, t1 := 0.0, 1.0
	dx, dy := qx-px, qy-py
	for _, e := range [][2]float64{{-dx, px - a.x0}, {dx, a.x1 - px}, {-dy, py - a.y0}, {dy, a.y1 - py}} {
		p, q := e[0], e[1]
		if p == 0 {
			if q < 0 {
				return false
			}
			continue
		}
		r := q / p
		if p < 0 {
			t0 = math.Max(t0, r)
		} else {
			t1 = math.Min(t1, r)
		}
		if t0 > t1 {
			return false
		}
	}
	return true
}

var (
	textRE = regexp.MustCompile(`<text x="([-\d.e]+)" y="([-\d.e]+)" transform="scale\(1, -1\)"\s+style="font-family:Liberation (\w+);[^"]*font-size:([\d.]+)px">([^<]*)</text>`)
	lineRE = regexp.MustCompile(`<path d="(M[^"]*)" style="fill:none;stroke:#[0-9A-F]+;stroke-width:([\d.]+)`)
	numRE  = regexp.MustCompile(`[-\d.e]+`)
)

// plotTexts returns the boxes of a plot's horizontal texts, measured with
// the fonts gonum laid them out with. The rotated axis label is left out.
func plotTexts(t *testing.T, svg string) ([]box, []string) {
	t.Helper()
	var boxes []box
	var texts []string
	for _, seg := range strings.Split(svg, "</g>") {
		if i := strings.Index(seg, `<g transform="rotate`); i >= 0 {
			seg = seg[:i]
		}
		for _, m := range textRE.FindAllStringSubmatch(seg, -1) {
			x, _ := strconv.ParseFloat(m[1], 64)
			y, _ := strconv.ParseFloat(m[2], 64)
			size, _ := strconv.ParseFloat(m[4], 64)
			s := html.UnescapeString(m[5])
			face := font.DefaultCache.Lookup(font.Font{Typeface: "Liberation", Variant: font.Variant(m[3])}, font.Length(size))
			ext := face.Extents()
			// Text runs on its baseline at -y in the plot's y-up frame.
			boxes = append(boxes, box{x, -y - float64(ext.Descent), x + float64(face.Width(s)), -y + float64(ext.Ascent)})
			texts = append(texts, s)
		}
	}
	return boxes, texts
}

// Fault labels used to be drawn at y = 0, so close events overprinted
// each other, and the legend sat on the curves. No text in a plot may
// overlap another, nor may a drawn line run through it.
func TestPlotTextsClear(t *testing.T) {
	for _, name := range []string{"churn", "partition", "hostile", "supply-chain"} {
		t.Run(name, func(t *testing.T) {
			r := report(t, name)
			svgs := regexp.MustCompile(`(?s)<svg .*?</svg>`).FindAllString(r.html, -1)
			if len(svgs) == 0 {
				t.Fatal("no plots")
			}
			for _, svg := range svgs {
				boxes, texts := plotTexts(t, svg)
				for i := range boxes {
					for j := i + 1; j < len(boxes); j++ {
						if boxes[i].overlaps(boxes[j]) {
							t.Errorf("%q and %q overprint each other", texts[i], texts[j])
						}
					}
				}
				for _, m := range lineRE.FindAllStringSubmatch(svg, -1) {
					if w, _ := strconv.ParseFloat(m[2], 64); w < 1 {
						continue // axes, ticks and grid
					}
					v := numRE.FindAllString(m[1], -1)
					for k := 0; k+3 < len(v); k += 2 {
						var p [4]float64
						for i := range p {
							p[i], _ = strconv.ParseFloat(v[k+i], 64)
						}
						for i, b := range boxes {
							if b.crosses(p[0], p[1], p[2], p[3]) {
								t.Errorf("a plotted line runs through %q", texts[i])
								break
							}
						}
					}
				}
			}
		})
	}
}
