package simulations_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

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
		r.res, err = simulations.Run(context.Background(), r.sc, nil)
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
}
