package simulations_test

import (
	"context"
	"os"
	"runtime"
	"testing"
	"testing/synctest"

	"github.com/parleynet/parley/simulations"
)

// TestMain works around a Go 1.26 runtime bug (golang/go#78156): in a
// race build, the timers of a synctest bubble share one race-detector
// context, and two threads firing the same bubble's channel timers at once
// (runtime.(*timer).maybeRunChan → unlockAndRun) use it together and crash
// ThreadSanitizer — a SIGSEGV in __tsan::SlotLock or a "CHECK failed", in
// about one run in four here with both cores busy. Go 1.27 gives each P
// its own context for bubble timers too. With one P, only one thread runs
// Go code at a time, so the shared context is never used concurrently;
// the race detector still sees every unsynchronised access, since it
// tracks happens-before, not simultaneity.
func TestMain(m *testing.M) {
	if raceEnabled {
		runtime.GOMAXPROCS(1)
	}
	os.Exit(m.Run())
}

func small(t *testing.T, name string, nodes int) simulations.Scenario {
	t.Helper()
	sc, err := simulations.Builtin(name)
	if err != nil {
		t.Fatal(err)
	}
	sc.Nodes = nodes
	return sc
}

func run(t *testing.T, sc simulations.Scenario) *simulations.Result {
	t.Helper()
	var res *simulations.Result
	var err error
	synctest.Test(t, func(*testing.T) { res, err = simulations.Run(context.Background(), sc, nil) })
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestGossipDeliversToAll(t *testing.T) {
	sc := small(t, "gossip", 60)
	res := run(t, sc)
	if res.Intents.Published != sc.Intents.Count || res.Intents.DeliveryRatio != 1 {
		t.Fatalf("intents %+v, want all %d delivered to all", res.Intents, sc.Intents.Count)
	}
	if res.Intents.LatencyMs.P50 < 50 {
		t.Errorf("p50 latency %.1f ms is below one 50 ms link: the clock is not virtual", res.Intents.LatencyMs.P50)
	}
	// The nodes ran as shipped, and the result says so.
	if res.Setup.Audit == "off" || res.Setup.Policy == "" {
		t.Errorf("setup %+v: want every node with its audit log and the default policy", res.Setup)
	}
	if res.Intents.CPUSeconds <= 0 || res.Intents.CPUPerDeliveryUs <= 0 {
		t.Errorf("CPU %.3f s, %.1f µs per delivery: want both measured", res.Intents.CPUSeconds, res.Intents.CPUPerDeliveryUs)
	}
	sc.Bare = true
	if bare := run(t, sc); bare.Setup.Audit != "off" || bare.Intents.DeliveryRatio != 1 {
		t.Errorf("bare run: setup %+v, delivery %.4f; want audit off, all delivered", bare.Setup, bare.Intents.DeliveryRatio)
	}
}

func TestSameSeedSameMetrics(t *testing.T) {
	sc := small(t, "gossip", 30)
	a, b := run(t, sc), run(t, sc)
	// Counts and the body of the latency distribution repeat exactly.
	// Messages that arrive at the same virtual instant are ordered by the
	// Go scheduler, so which copy a node forwards first can move the tail
	// (p99, max) by one link latency between runs.
	ai, bi := a.Intents, b.Intents
	link := float64(sc.Latency.Milliseconds())
	tail := func(x, y float64) bool { return x-y <= link && y-x <= link }
	if ai.Published != bi.Published || ai.Delivered != bi.Delivered || ai.Expected != bi.Expected ||
		ai.LatencyMs.P50 != bi.LatencyMs.P50 || a.MessagesPerNode != b.MessagesPerNode ||
		!tail(ai.LatencyMs.P99, bi.LatencyMs.P99) || !tail(ai.LatencyMs.Max, bi.LatencyMs.Max) {
		t.Fatalf("two runs with seed %d differ:\n%+v\n%+v", sc.Seed, ai, bi)
	}
}

func TestSupplyChainWithChurnCompletes(t *testing.T) {
	sc := small(t, "supply-chain", 40)
	sc.Tasks.Contractors = 10
	sc.Tasks.Count = 20
	res := run(t, sc)
	n := res.Negotiations
	if n.WithLiveAgent == 0 || float64(n.CompletedWithLiveAgent)/float64(n.WithLiveAgent) < 0.99 {
		t.Fatalf("negotiations %+v: want >= 99%% of tasks with a live agent completed", n)
	}
	if len(res.Timeline) == 0 {
		t.Error("churn left no events on the timeline")
	}
}

func TestPartitionLowersDeliveryAndHeals(t *testing.T) {
	sc := small(t, "partition", 40)
	res := run(t, sc)
	if res.Intents.OnTimeRatio >= 0.95 {
		t.Errorf("on-time delivery %.3f with 30%% of the nodes cut off for 3 s of 10; want it lowered (timeline %v)", res.Intents.OnTimeRatio, res.Timeline)
	}
	if res.HealToFullS == nil || *res.HealToFullS < 0 || *res.HealToFullS > 5 {
		t.Fatalf("after the heal, full delivery took %v s; want within 5 s (timeline %v)", res.HealToFullS, res.Timeline)
	}
}

func TestHostileIntentsNeverDelivered(t *testing.T) {
	sc := small(t, "hostile", 30)
	sc.Tasks.Count, sc.Tasks.Contractors = 5, 5
	res := run(t, sc)
	if res.Intents.Unexpected != 0 {
		t.Fatalf("%d hostile intents were delivered", res.Intents.Unexpected)
	}
	if res.Intents.DeliveryRatio != 1 || res.Negotiations.Completed != res.Negotiations.Requested {
		t.Fatalf("honest traffic under attack: intents %+v, negotiations %+v", res.Intents, res.Negotiations)
	}
}

// Workflows run by their requesters' nodes complete while a tenth of the
// contractors are killed and restarted: a step whose winner dies is
// re-awarded or retried on another agent.
func TestWorkflowScenarioUnderChurn(t *testing.T) {
	sc := small(t, "workflow", 40)
	sc.Tasks.Contractors, sc.Workflows.Count = 10, 10
	res := run(t, sc)
	w := res.Workflows
	if w == nil || w.Submitted != sc.Workflows.Count || w.SuccessRatio < 0.99 || w.CycleMs.P50 <= 0 {
		t.Fatalf("workflows %+v (timeline %v): want all %d completed, with cycle times", w, res.Timeline, sc.Workflows.Count)
	}
}
