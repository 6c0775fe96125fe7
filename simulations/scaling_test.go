package simulations

import (
	"math"
	"testing"

	"gonum.org/v1/plot/plotter"
)

// TestFit: each model recovers the law its points were made from.
func TestFit(t *testing.T) {
	ns := []float64{1000, 2000, 5000, 10000, 20000}
	for _, tc := range []struct {
		model string
		law   func(n float64) float64
		a, b  float64
	}{
		{ModelPower, func(n float64) float64 { return 3 * math.Pow(n, 0.5) }, 3, 0.5},
		{ModelLinear, func(n float64) float64 { return 120 + 1.1*n }, 120, 1.1},
		{ModelLog, func(n float64) float64 { return 40 + 25*math.Log2(n) }, 40, 25},
	} {
		var pts plotter.XYs
		for _, n := range ns {
			pts = append(pts, plotter.XY{X: n, Y: tc.law(n)})
		}
		f := fit("x", "parley", tc.model, pts)
		if math.Abs(f.A-tc.a) > 1e-6*math.Max(1, tc.a) || math.Abs(f.B-tc.b) > 1e-9*math.Max(1, tc.b) || f.R2 < 0.999999 {
			t.Errorf("%s: fit %+v, want a %g, b %g, R² 1", tc.model, f, tc.a, tc.b)
		}
		if got, want := f.At(1e6), tc.law(1e6); math.Abs(got-want) > 1e-6*want {
			t.Errorf("%s: at 1e6 %g, want %g", tc.model, got, want)
		}
	}
}

// TestNewScalingRefuses runs that cannot make a curve.
func TestNewScalingRefuses(t *testing.T) {
	b := &Baseline{}
	run := func(n int, clock string, base *Baseline) *Result {
		return &Result{Scenario: "gossip", Nodes: n, Clock: clock, Baseline: base}
	}
	for name, runs := range map[string][]*Result{
		"one size":    {run(10, "virtual", b)},
		"no baseline": {run(10, "virtual", b), run(20, "virtual", nil)},
		"two clocks":  {run(10, "virtual", b), run(20, "real", b)},
		"same size":   {run(10, "virtual", b), run(10, "virtual", b)},
	} {
		if _, err := NewScaling(runs); err == nil {
			t.Errorf("%s: NewScaling took it", name)
		}
	}
}
