package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/parleynet/parley/simulations"
)

type simFlags struct {
	scenario string
	nodes    int
	clock    string
	seed     uint64
	json     bool
	report   string
	baseline string
	rawOnly  bool
	bare     bool
	// memprofile is where the heap profile goes; cpuprofile, the CPU's.
	memprofile, cpuprofile string
	// sizes, when set, runs the scenario once at each size.
	sizes []int
}

func (c *cli) simCmd() *cobra.Command {
	var f simFlags
	cmd := &cobra.Command{
		Use:   "sim [gossip|supply-chain|churn|partition|hostile]",
		Short: "Simulate a mesh of real nodes in one process and measure it",
		Long: `sim runs a scenario — a built-in one by name, or --scenario FILE (YAML) — on
go-libp2p's mocknet: real parley nodes, GossipSub, negotiations, churn,
partitions and hostile peers. With --clock virtual (the default) the run
lives in a testing/synctest bubble, so latencies are those of the modelled
links and a seed repeats; --clock real shows what the CPU costs. --baseline
raw runs the same topology and intents on raw GossipSub in a second
process, on the same clock, and prints both.`,
		Example: `  parley sim gossip --nodes 200
  parley sim partition --report partition.html
  parley sim gossip --nodes 1000 --clock real --baseline raw --json
  parley sim gossip --sizes 1000,2000,5000,10000 --report scaling.html`,
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: simulations.BuiltinNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("log-level") {
				c.logLevel = "error"
				if err := c.setupLogging(false); err != nil {
					return err
				}
			}
			return c.sim(cmd, args, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.scenario, "scenario", "", "scenario YAML file")
	fl.IntVar(&f.nodes, "nodes", 0, "override the scenario's number of nodes")
	fl.StringVar(&f.clock, "clock", "virtual", "virtual or real")
	fl.Uint64Var(&f.seed, "seed", 0, "override the scenario's seed")
	fl.BoolVar(&f.json, "json", false, "print one JSON object")
	fl.StringVar(&f.report, "report", "", "write a self-contained HTML report to this file")
	fl.StringVar(&f.baseline, "baseline", "", "raw: also run the topology and intents on raw GossipSub")
	fl.StringVar(&f.memprofile, "memprofile", "", "write a heap profile (go tool pprof) to this file at the end of the workload, every node still up")
	fl.StringVar(&f.cpuprofile, "cpuprofile", "", "write a CPU profile (go tool pprof) of the parley nodes' run, setup included, to this file (the raw baseline's process is not in it)")
	fl.BoolVar(&f.bare, "bare", false, "run the nodes without the audit log a daemon keeps (lighter than what ships)")
	fl.IntSliceVar(&f.sizes, "sizes", nil, "run at each of these numbers of nodes (e.g. 1000,2000,5000), each beside its raw baseline, and print how the cost grows")
	fl.BoolVar(&f.rawOnly, "raw-only", false, "run only the raw baseline and print it as JSON (used by --baseline)")
	_ = fl.MarkHidden("raw-only")
	return cmd
}

func (c *cli) sim(cmd *cobra.Command, args []string, f simFlags) error {
	var (
		sc  simulations.Scenario
		err error
	)
	switch {
	case f.scenario != "" && len(args) > 0:
		return fmt.Errorf("give a scenario name or --scenario, not both")
	case f.scenario != "":
		sc, err = simulations.Load(f.scenario)
	case len(args) == 1:
		sc, err = simulations.Builtin(args[0])
	default:
		sc, err = simulations.Builtin("gossip")
	}
	if err != nil {
		return err
	}
	if len(f.sizes) > 0 {
		return c.simSizes(cmd, args, f)
	}
	if cmd.Flags().Changed("nodes") {
		if f.nodes < 2 {
			return fmt.Errorf("--nodes %d: want at least 2", f.nodes)
		}
		sc.Nodes = f.nodes
	}
	if cmd.Flags().Changed("seed") {
		sc.Seed = f.seed
	}
	if f.bare {
		sc.Bare = true
	}
	if err := sc.Validate(); err != nil {
		return fmt.Errorf("scenario %s: %w", sc.Name, err)
	}
	if f.clock != "virtual" && f.clock != "real" {
		return fmt.Errorf("--clock %q: want virtual or real", f.clock)
	}
	if f.baseline != "" && f.baseline != "raw" {
		return fmt.Errorf("--baseline %q: the only baseline is raw", f.baseline)
	}
	if f.report != "" {
		// Fail before a long run, not after it.
		fh, err := os.Create(f.report)
		if err != nil {
			return fmt.Errorf("--report: %w", err)
		}
		fh.Close()
	}

	if f.rawOnly {
		if f.clock == "real" {
			b, err := simulations.RunRawReal(cmd.Context(), sc)
			if err != nil {
				return err
			}
			return json.NewEncoder(c.out).Encode(b)
		}
		simulations.RunRawVirtual(sc, func(b *simulations.Baseline, err error) error {
			if err != nil {
				return err
			}
			return json.NewEncoder(c.out).Encode(b)
		})
		return nil // not reached: RunRawVirtual exits
	}

	// The baseline runs first, in its own process, so its wall time and
	// RSS are its own (and a virtual run exits when it is done).
	var base *simulations.Baseline
	if f.baseline == "raw" {
		if base, err = rawBaseline(cmd, sc, f.clock); err != nil {
			return fmt.Errorf("raw baseline: %w", err)
		}
	}
	// A bar redrawn with carriage returns is for a person watching a
	// terminal; in a file or a pipe it is noise, so there is none.
	var progress simulations.Progress
	end := func() {}
	if isTerminal(os.Stderr) {
		bar := progressbar.NewOptions(1000, progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription(fmt.Sprintf("%s, %d nodes, %s clock", sc.Name, sc.Nodes, f.clock)),
			progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100_000_000))
		progress = func(done float64) { _ = bar.Set(int(done * 1000)) }
		end = func() { _ = bar.Finish() }
	}
	if f.memprofile != "" {
		// The run reports 1 while every node is still up: the heap at
		// its fullest.
		shown := progress
		progress = func(done float64) {
			if shown != nil {
				shown(done)
			}
			if done == 1 {
				writeHeapProfile(f.memprofile)
			}
		}
	}
	stopCPU := func() {}
	if f.cpuprofile != "" {
		fh, err := os.Create(f.cpuprofile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(fh); err != nil {
			fh.Close()
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		stopCPU = func() {
			pprof.StopCPUProfile()
			if err := fh.Close(); err != nil {
				fmt.Fprintf(os.Stderr, "parley: --cpuprofile: %v\n", err)
			}
		}
	}
	finish := func(res *simulations.Result, err error) error {
		stopCPU()
		end()
		if err != nil {
			return err
		}
		res.Baseline = base
		return c.simOutput(res, f)
	}
	if f.clock == "virtual" {
		simulations.RunVirtual(sc, progress, finish)
		return nil // not reached: RunVirtual exits
	}
	return finish(simulations.RunReal(cmd.Context(), sc, progress))
}

// simOutput prints the result on stdout: the JSON alone with --json, else
// the summary and where the report is.
func (c *cli) simOutput(res *simulations.Result, f simFlags) error {
	if f.report != "" {
		fh, err := os.Create(f.report)
		if err != nil {
			return fmt.Errorf("--report: %w", err)
		}
		if err := simulations.WriteReport(fh, res); err != nil {
			fh.Close()
			return fmt.Errorf("--report: %w", err)
		}
		if err := fh.Close(); err != nil {
			return fmt.Errorf("--report: %w", err)
		}
	}
	if f.json {
		enc := json.NewEncoder(c.out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	if err := printSim(c.out, res); err != nil {
		return err
	}
	if f.report != "" {
		_, err := fmt.Fprintf(c.out, "report:       %s\n", f.report)
		return err
	}
	return nil
}

// simSizes runs the scenario at each of f.sizes, each run (and its raw
// baseline) in a process of its own, so that each run's wall time and
// RSS are its own, and prints how the figures grow.
func (c *cli) simSizes(cmd *cobra.Command, args []string, f simFlags) error {
	switch {
	case cmd.Flags().Changed("nodes"):
		return fmt.Errorf("--sizes sets the number of nodes of each run: give it or --nodes, not both")
	case f.memprofile != "" || f.cpuprofile != "":
		return fmt.Errorf("--sizes runs several processes: --memprofile and --cpuprofile are for one run")
	case f.baseline != "" && f.baseline != "raw":
		return fmt.Errorf("--baseline %q: the only baseline is raw", f.baseline)
	case len(f.sizes) < 2:
		return fmt.Errorf("--sizes %v: want two sizes or more to see growth", f.sizes)
	}
	for i, n := range f.sizes {
		if n < 2 {
			return fmt.Errorf("--sizes: %d nodes: want at least 2", n)
		}
		if slices.Contains(f.sizes[:i], n) {
			return fmt.Errorf("--sizes: %d is there twice", n)
		}
	}
	if f.clock != "virtual" && f.clock != "real" {
		return fmt.Errorf("--clock %q: want virtual or real", f.clock)
	}
	if f.report != "" {
		fh, err := os.Create(f.report)
		if err != nil {
			return fmt.Errorf("--report: %w", err)
		}
		fh.Close()
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	base := []string{"sim", "--clock", f.clock, "--json", "--baseline", "raw"}
	if f.scenario != "" {
		base = append(base, "--scenario", f.scenario)
	}
	if cmd.Flags().Changed("seed") {
		base = append(base, "--seed", fmt.Sprint(f.seed))
	}
	if f.bare {
		base = append(base, "--bare")
	}
	base = append(base, args...)
	var runs []*simulations.Result
	for _, n := range f.sizes {
		child := exec.CommandContext(cmd.Context(), self, append(base, "--nodes", fmt.Sprint(n))...)
		var out bytes.Buffer
		child.Stdout, child.Stderr = &out, os.Stderr
		if err := child.Run(); err != nil {
			return fmt.Errorf("the run at %d nodes: %w", n, err)
		}
		var res simulations.Result
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			return fmt.Errorf("the run at %d nodes printed: %w", n, err)
		}
		runs = append(runs, &res)
		if isTerminal(os.Stderr) {
			fmt.Fprintf(os.Stderr, "%d nodes: delivery %.4f, wall %.1f s, RSS %.0f MB\n", n, res.Intents.DeliveryRatio, res.WallS, res.RSSMB)
		}
	}
	sc, err := simulations.NewScaling(runs)
	if err != nil {
		return err
	}
	if f.report != "" {
		fh, err := os.Create(f.report)
		if err != nil {
			return fmt.Errorf("--report: %w", err)
		}
		if err := errors.Join(simulations.WriteScalingReport(fh, sc), fh.Close()); err != nil {
			return fmt.Errorf("--report: %w", err)
		}
	}
	if f.json {
		enc := json.NewEncoder(c.out)
		enc.SetIndent("", "  ")
		return enc.Encode(sc)
	}
	fmt.Fprintf(c.out, "scenario %s, %s clock, parley / raw GossipSub at each size:\n\n", sc.Scenario, sc.Clock)
	if err := sc.WriteTable(c.out); err != nil {
		return err
	}
	if f.report != "" {
		_, err := fmt.Fprintf(c.out, "\nreport:       %s\n", f.report)
		return err
	}
	return nil
}

// rawBaseline runs the baseline in a child process, so its wall time and
// peak RSS are its own, on the same clock as the run it is compared with.
func rawBaseline(cmd *cobra.Command, sc simulations.Scenario, clock string) (*simulations.Baseline, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp("", "parley-sim-*.yaml")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if err := writeScenario(tmp, sc); err != nil {
		return nil, err
	}
	child := exec.CommandContext(cmd.Context(), self, "sim", "--raw-only", "--clock", clock, "--scenario", tmp.Name())
	var out bytes.Buffer
	child.Stdout, child.Stderr = &out, os.Stderr
	if err := child.Run(); err != nil {
		return nil, err
	}
	var b simulations.Baseline
	if err := json.Unmarshal(out.Bytes(), &b); err != nil {
		return nil, fmt.Errorf("baseline output: %w", err)
	}
	return &b, nil
}

func writeScenario(f *os.File, sc simulations.Scenario) error {
	data, err := simulations.MarshalScenario(sc)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Close()
}

// writeHeapProfile writes the live heap to path, after a collection; a
// failure is said on stderr and does not fail the run.
func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err == nil {
		runtime.GC()
		err = errors.Join(pprof.WriteHeapProfile(f), f.Close())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "parley: --memprofile: %v\n", err)
	}
}

func printSim(w io.Writer, r *simulations.Result) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "scenario %s: %d nodes, %s clock, seed %d — wall %.1f s, peak RSS %.0f MB\n", r.Scenario, r.Nodes, r.Clock, r.Seed, r.WallS, r.RSSMB)
	fmt.Fprintf(&b, "nodes ran:    policy %s; admission %s; audit %s\n", r.Setup.Policy, r.Setup.Admission, r.Setup.Audit)
	// Only lines that apply to the scenario: a run without intents has
	// no "0 of 0 delivered".
	in := r.Intents
	if in.Published > 0 || in.Expected > 0 {
		fmt.Fprintf(&b, "intents:      %d published, %d of %d delivered (ratio %.4f); latency p50 %.1f ms, p90 %.1f, p99 %.1f, max %.1f\n",
			in.Published, in.Delivered, in.Expected, in.DeliveryRatio, in.LatencyMs.P50, in.LatencyMs.P90, in.LatencyMs.P99, in.LatencyMs.Max)
	}
	if n := r.Negotiations; n.Requested > 0 {
		fmt.Fprintf(&b, "negotiations: %d of %d completed (%.4f), with a live agent %d of %d; latency p50 %.1f ms, p99 %.1f\n",
			n.Completed, n.Requested, n.SuccessRatio, n.CompletedWithLiveAgent, n.WithLiveAgent, n.LatencyMs.P50, n.LatencyMs.P99)
	}
	if w := r.Workflows; w != nil {
		fmt.Fprintf(&b, "workflows:    %d of %d completed (%.4f); cycle time p50 %.1f ms, p99 %.1f\n",
			w.Completed, w.Submitted, w.SuccessRatio, w.CycleMs.P50, w.CycleMs.P99)
	}
	if in.Published > 0 || in.Expected > 0 {
		fmt.Fprintf(&b, "per node:     %.1f intents, %.0f bytes received; on the wire %.1f GossipSub RPCs, %.0f bytes per intent published\n",
			r.MessagesPerNode, r.BytesPerNode, in.PerIntent(in.RPCsPerNode), in.PerIntent(in.RPCBytesPerNode))
		fmt.Fprintf(&b, "CPU:          %.1f s from the workload's start, %.0f µs per delivered intent\n", in.CPUSeconds, in.CPUPerDeliveryUs)
	}
	if h := r.HealToFullS; h != nil && *h >= 0 {
		fmt.Fprintf(&b, "partition:    full delivery %.2f s after the heal\n", *h)
	} else if h != nil {
		fmt.Fprintf(&b, "partition:    no intent published after the heal reached every node\n")
	}
	if h := r.Hostile; h != nil {
		fmt.Fprintf(&b, "hostile:      %d peers sent %d bad intents over %.2f s; %d delivered to an agent\n", h.Peers, h.Sent, h.FloodEndS, h.Delivered)
	}
	if bl := r.Baseline; bl != nil {
		bi := bl.Intents
		fmt.Fprintf(&b, "raw baseline: delivery %.4f, p50 %.1f ms, p99 %.1f ms, CPU %.0f µs per delivery, %.0f wire bytes per node per intent, wall %.1f s, RSS %.0f MB\n",
			bi.DeliveryRatio, bi.LatencyMs.P50, bi.LatencyMs.P99, bi.CPUPerDeliveryUs, bi.PerIntent(bi.RPCBytesPerNode), bl.WallS, bl.RSSMB)
		fmt.Fprintf(&b, "parley/raw:   p50 %.2fx, p99 %.2fx, CPU per delivery %.2fx, wire bytes %.2fx, wall %.2fx, RSS %.2fx\n",
			ratio(in.LatencyMs.P50, bi.LatencyMs.P50), ratio(in.LatencyMs.P99, bi.LatencyMs.P99),
			ratio(in.CPUPerDeliveryUs, bi.CPUPerDeliveryUs), ratio(in.RPCBytesPerNode, bi.RPCBytesPerNode), r.WallS/bl.WallS, r.RSSMB/bl.RSSMB)
	}
	for _, e := range slices.Clone(r.Timeline) {
		fmt.Fprintf(&b, "  at %6.2f s  %s\n", e.AtS, e.What)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
