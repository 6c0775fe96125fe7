//go:build linux

package simulations_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html"
	"image"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// measureJS runs in the rendered page and writes, into a <pre>, where
// each plot and each of its texts landed: what a reader's browser drew,
// not what the report meant to draw.
const measureJS = `<script>
(function () {
  var out = {height: document.documentElement.scrollHeight, plots: []};
  document.querySelectorAll('svg').forEach(function (svg, i) {
    var r = svg.getBoundingClientRect(), d = svg.closest('.plot') || {dataset: {}}, f = svg.closest('figure');
    var p = {id: f ? f.id : 'svg ' + i, x: d.dataset.x || '', y: d.dataset.y || '', rect: [r.left + scrollX, r.top + scrollY, r.width, r.height], texts: []};
    svg.querySelectorAll('text').forEach(function (t) {
      var b = t.getBoundingClientRect();
      p.texts.push({s: t.textContent, r: [b.left + scrollX, b.top + scrollY, b.width, b.height]});
    });
    out.plots.push(p);
  });
  var pre = document.createElement('pre');
  pre.id = 'measured';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>`

type rect [4]float64 // left, top, width, height in CSS pixels

type measured struct {
	Height int `json:"height"`
	Plots  []struct {
		ID    string `json:"id"`
		X     string `json:"x"`
		Y     string `json:"y"`
		Rect  rect   `json:"rect"`
		Texts []struct {
			S string `json:"s"`
			R rect   `json:"r"`
		} `json:"texts"`
	} `json:"plots"`
}

// chromium runs headless Chromium on one page with its own profile and
// in its own process group, and kills the group when it is done or the
// test's deadline passes: Chromium leaves helper processes behind.
func chromium(t *testing.T, bin, profile string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--headless", "--no-sandbox", "--disable-gpu",
		"--no-first-run", "--disable-crash-reporter", "--disable-breakpad", "--hide-scrollbars",
		"--force-device-scale-factor=1", "--user-data-dir=" + profile}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers outliving the browser
	}
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// saturated tells a plotted series (the report draws them in saturated
// colours) from white, the greys of axes, grid and text, and the pale
// shading of faults.
func saturated(img image.Image, x, y int) bool {
	r, g, b, _ := img.At(x, y).RGBA()
	hi, lo := max(r, g, b)>>8, min(r, g, b)>>8
	return hi-lo >= 80
}

func countSaturated(img image.Image, r rect, inset float64) (n, area int) {
	b := img.Bounds()
	x0, y0 := max(int(math.Ceil(r[0]+inset)), b.Min.X), max(int(math.Ceil(r[1]+inset)), b.Min.Y)
	x1, y1 := min(int(r[0]+r[2]-inset), b.Max.X), min(int(r[1]+r[3]-inset), b.Max.Y)
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			area++
			if saturated(img, x, y) {
				n++
			}
		}
	}
	return n, area
}

func overlap(a, b rect) float64 {
	w := math.Min(a[0]+a[2], b[0]+b[2]) - math.Max(a[0], b[0])
	h := math.Min(a[1]+a[3], b[1]+b[3]) - math.Max(a[1], b[1])
	if w <= 0 || h <= 0 {
		return 0
	}
	return w * h
}

type tick struct {
	v float64
	r rect
}

// axisTicks finds a plot's numeric tick labels: the x axis's share a
// baseline, the lowest row with two or more; the y axis's are right
// aligned, the leftmost column with two or more.
func axisTicks(ts []tick) (xs, ys []tick) {
	group := func(key func(tick) float64, better func(a, b float64) bool) []tick {
		groups := map[int][]tick{}
		for _, t := range ts {
			k := int(math.Round(key(t) / 2))
			groups[k] = append(groups[k], t)
		}
		var best []tick
		bestKey := 0.0
		for _, g := range groups {
			if len(g) >= 2 && (best == nil || better(key(g[0]), bestKey)) {
				best, bestKey = g, key(g[0])
			}
		}
		return best
	}
	xs = group(func(t tick) float64 { return t.r[1] + t.r[3] }, func(a, b float64) bool { return a > b })
	ys = group(func(t tick) float64 { return t.r[0] + t.r[2] }, func(a, b float64) bool { return a < b })
	sort.Slice(xs, func(i, j int) bool { return xs[i].r[0] < xs[j].r[0] })
	sort.Slice(ys, func(i, j int) bool { return ys[i].r[1] > ys[j].r[1] }) // bottom up
	return xs, ys
}

// TestReportRendersInChromium renders each scenario's report in headless
// Chromium and checks what a reader sees: every plot has a series drawn
// in it and is not one solid wall, no text overprints another or sits on
// a series, and every axis has finite, increasing tick labels within the
// run (no 9.2e9 s on a time axis).
func TestReportRendersInChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (Debian package chromium: apt-get install -y chromium); the rendered-report check needs it")
	}
	for _, name := range reportScenarios {
		t.Run(name, func(t *testing.T) {
			r := report(t, name)
			dir := t.TempDir()
			page := filepath.Join(dir, "report.html")
			probe := filepath.Join(dir, "probe.html")
			if err := os.WriteFile(page, []byte(r.html), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(probe, []byte(strings.Replace(r.html, "</body>", measureJS+"</body>", 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			profile := filepath.Join(dir, "profile")
			dom := chromium(t, bin, profile, "--window-size=1000,800", "--dump-dom", "file://"+probe)
			_, js, ok := strings.Cut(string(dom), `<pre id="measured">`)
			js, _, ok2 := strings.Cut(js, "</pre>")
			if !ok || !ok2 {
				t.Fatalf("the page's measurements are missing from Chromium's DOM:\n%.2000s", dom)
			}
			var m measured
			if err := json.Unmarshal([]byte(html.UnescapeString(js)), &m); err != nil {
				t.Fatalf("measurements: %v", err)
			}
			if len(m.Plots) == 0 {
				t.Fatal("the report has no plots")
			}
			shot := filepath.Join(dir, "report.png")
			chromium(t, bin, profile, "--window-size=1000,"+strconv.Itoa(m.Height), "--screenshot="+shot, "file://"+page)
			f, err := os.Open(shot)
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(f)
			f.Close()
			if err != nil {
				t.Fatalf("screenshot: %v", err)
			}
			defer func() {
				if t.Failed() {
					// Kept with go test -artifacts.
					for _, p := range []string{page, shot} {
						if b, err := os.ReadFile(p); err == nil {
							_ = os.WriteFile(filepath.Join(t.ArtifactDir(), filepath.Base(p)), b, 0o600)
						}
					}
				}
			}()
			for _, p := range m.Plots {
				if p.X == "" {
					// A plot that does not say what its axes are: read
					// it from their labels.
					for _, tx := range p.Texts {
						if strings.Contains(tx.S, "(s)") {
							p.X = "time"
						}
						if strings.Contains(tx.S, "(ms)") {
							p.X = "latency"
						}
					}
				}
				checkPlot(t, r, img, p.ID, p.X, p.Y, p.Rect, p.Texts)
			}
		})
	}
}

func checkPlot(t *testing.T, r *reported, img image.Image, id, xKind, yKind string, area rect, texts []struct {
	S string `json:"s"`
	R rect   `json:"r"`
}) {
	t.Helper()
	if area[2] < 100 || area[3] < 100 {
		t.Errorf("%s: plot drawn %gx%g px", id, area[2], area[3])
		return
	}
	drawn, total := countSaturated(img, area, 0)
	if drawn < 150 {
		t.Errorf("%s: %d pixels of a series drawn: the plot is empty", id, drawn)
	}
	if float64(drawn) > 0.5*float64(total) {
		t.Errorf("%s: %d of %d pixels are series: a wall, not a plot", id, drawn, total)
	}
	var ticks []tick
	for i, a := range texts {
		if n, _ := countSaturated(img, a.R, 1); n > 3 {
			t.Errorf("%s: %d series pixels under %q: a series runs through it", id, n, a.S)
		}
		for _, b := range texts[i+1:] {
			if overlap(a.R, b.R) > 1 {
				t.Errorf("%s: %q and %q overprint each other", id, a.S, b.S)
			}
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(a.S), 64); err == nil {
			ticks = append(ticks, tick{v, a.R})
		}
	}
	xs, ys := axisTicks(ticks)
	for _, ax := range []struct {
		name, kind string
		ts         []tick
	}{{"x", xKind, xs}, {"y", yKind, ys}} {
		if ax.kind == "category" || ax.kind == "" && len(ax.ts) < 2 {
			continue // names, or an axis this check cannot tell
		}
		if len(ax.ts) < 2 {
			t.Errorf("%s: %s axis (%s) has %d numeric tick labels, want at least 2", id, ax.name, ax.kind, len(ax.ts))
			continue
		}
		lo, hi := bounds(r, ax.kind)
		for i, tk := range ax.ts {
			if math.IsNaN(tk.v) || math.IsInf(tk.v, 0) || tk.v < lo || tk.v > hi {
				t.Errorf("%s: %s tick %g outside [%g, %g] for a %s axis", id, ax.name, tk.v, lo, hi, ax.kind)
			}
			if i > 0 && tk.v <= ax.ts[i-1].v {
				t.Errorf("%s: %s ticks do not increase: %g then %g", id, ax.name, ax.ts[i-1].v, tk.v)
			}
		}
	}
}

// bounds are what an axis of a kind may show for this run.
func bounds(r *reported, kind string) (lo, hi float64) {
	res := r.res
	switch kind {
	case "time":
		return 0, r.elapsed.Seconds()
	case "latency":
		return 0, 2*math.Max(res.Intents.LatencyMs.Max, res.Negotiations.LatencyMs.Max) + 1
	case "fraction":
		return 0, 1
	case "":
		return 0, math.MaxFloat64
	case "count":
		n := float64(max(res.Nodes, res.Negotiations.Requested, res.Intents.Expected))
		if h := res.Hostile; h != nil {
			n = math.Max(n, float64(h.Sent))
		}
		return 0, 2*n + 2
	}
	panic(errors.New("unknown axis kind " + kind))
}
