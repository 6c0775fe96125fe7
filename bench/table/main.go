// Command table reads the outputs bench/run wrote to a directory — `go
// test -bench` text (*.txt) and `parley sim --json` results (sim-*.json)
// — and prints one Markdown table: each of the README's performance
// figures beside the baseline measured in the same run, their ratio and
// the target.
//
//	go run ./bench/table bench/out/20261201T2300
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/parleynet/parley/simulations"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: table DIR (the directory bench/run wrote)")
		os.Exit(2)
	}
	if err := run(os.Stdout, os.Args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "table: %v\n", err)
		os.Exit(1)
	}
}

func run(w io.Writer, dir string) error {
	bs := benchmarks{}
	txts, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return err
	}
	for _, p := range txts {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		err = bs.read(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	sims := map[string]simulations.Result{}
	jsons, err := filepath.Glob(filepath.Join(dir, "sim-*.json"))
	if err != nil {
		return err
	}
	for _, p := range jsons {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var r simulations.Result
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		sims[strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "sim-"), ".json")] = r
	}
	if len(bs) == 0 && len(sims) == 0 {
		return fmt.Errorf("%s: no benchmark output (*.txt) or sim result (sim-*.json)", dir)
	}
	fmt.Fprintln(w, "| figure | parley | baseline | ratio | target |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- |")
	for _, r := range figures(bs, sims) {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", r.what, r.value, r.base, r.ratio, r.target)
	}
	return nil
}

// benchmarks holds every value a benchmark reported, by name (without
// the -GOMAXPROCS suffix) and unit, in the order read.
type benchmarks map[string]map[string][]float64

var procs = regexp.MustCompile(`-\d+$`)

// read takes the result lines of `go test -bench` output: a name, the
// iterations, then value–unit pairs.
func (bs benchmarks) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := procs.ReplaceAllString(f[0], "")
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return fmt.Errorf("benchmark line %q: value %q: %w", sc.Text(), f[i], err)
			}
			if bs[name] == nil {
				bs[name] = map[string][]float64{}
			}
			bs[name][f[i+1]] = append(bs[name][f[i+1]], v)
		}
	}
	return sc.Err()
}

var errMissing = errors.New("not run")

// median is the median of a benchmark's values in unit.
func (bs benchmarks) median(name, unit string) (float64, int, error) {
	vs := slices.Clone(bs[name][unit])
	if len(vs) == 0 {
		return 0, 0, errMissing
	}
	slices.Sort(vs)
	m := vs[len(vs)/2]
	if len(vs)%2 == 0 {
		m = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
	}
	return m, len(vs), nil
}

type row struct{ what, value, base, ratio, target string }

// A pair is a benchmark compared with its baseline, both in ns/op.
type pair struct {
	what, name, base string
	target           float64 // the ratio's bound; 0 for none
}

func figures(bs benchmarks, sims map[string]simulations.Result) []row {
	var rows []row
	for _, p := range []pair{
		{"negotiation (two nodes, loopback TCP) ÷ its floor", "BenchmarkNegotiation/tracing=off", "BenchmarkNegotiationFloor", 1.2},
		{"negotiation ÷ a raw libp2p stream round trip", "BenchmarkNegotiation/tracing=off", "BenchmarkRawStreamRoundTrip", 0},
		{"negotiation, tracing on ÷ off", "BenchmarkNegotiation/tracing=on", "BenchmarkNegotiation/tracing=off", 1.10},
		{"intent gossip to 49 nodes ÷ raw GossipSub", "BenchmarkIntentGossip/tracing=off", "BenchmarkRawGossip", 1.3},
		{"intent gossip, tracing on ÷ off", "BenchmarkIntentGossip/tracing=on", "BenchmarkIntentGossip/tracing=off", 1.05},
		{"intent seal + open ÷ bare libp2p record", "BenchmarkSealOpen", "BenchmarkSealOpenLibp2pBaseline", 0},
		{"shared context write ÷ a plain ask", "BenchmarkContextWrite", "BenchmarkContextAskBaseline", 0},
	} {
		rows = append(rows, pairRow(bs, p))
	}
	rows = append(rows, auditRow(bs), a2aRow(bs))
	for _, m := range []struct {
		what, name, unit, base string
		target                 float64
		max                    bool // every run must meet the target
		ms                     bool // the value is milliseconds, not a ratio
	}{
		{"MCP `request` tool overhead over the API, Streamable HTTP", "BenchmarkRequest/http", "overhead-ms", "api-ms", 5, false, true},
		{"MCP `request` tool overhead, HTTP with progress", "BenchmarkRequest/http-progress", "overhead-ms", "api-ms", 5, false, true},
		{"MCP `request` tool overhead, as `parley mcp` (stdio)", "BenchmarkRequest/stdio-like", "overhead-ms", "api-ms", 5, false, true},
		{"workflow a → (b ∥ c) → d ÷ critical-path floor", "BenchmarkWorkflowLatency", "x-floor", "3-requests-ms", 1.2, false, false},
		{"negotiation latency, 10 bidders, 50 ms links ÷ floor", "BenchmarkNegotiationLatency", "x-floor", "", 1.2, false, false},
		{"honest p99 under an invalid flood ÷ calm", "BenchmarkHostileFlood", "p99-flood/calm", "", 2, true, false},
		{"honest p99 under a Sybil swarm ÷ calm", "BenchmarkSybilFlood", "p99-flood/calm", "rated-unread/abusive", 2, true, false},
	} {
		tg := target(m.target)
		if m.ms {
			tg += " ms"
		}
		v, n, err := bs.median(m.name, m.unit)
		if err != nil {
			rows = append(rows, row{m.what, "not run", "", "", tg})
			continue
		}
		value := fmt.Sprintf("%.3g (median of %d)", v, n)
		if m.max {
			vs := bs[m.name][m.unit]
			parts := make([]string, len(vs))
			for i, x := range vs {
				parts[i] = fmt.Sprintf("%.2g", x)
			}
			value, v = strings.Join(parts, ", "), slices.Max(vs)
		}
		base := ""
		if m.base != "" {
			if b, _, err := bs.median(m.name, m.base); err == nil {
				base = fmt.Sprintf("%s %.4g", m.base, b)
			}
		}
		r := row{m.what, value, base, met(v, m.target), tg}
		if m.ms {
			r.value, r.ratio = fmt.Sprintf("%.2f ms (median of %d)", v, n), "met"
			if v > m.target {
				r.ratio = "**not met**"
			}
		}
		rows = append(rows, r)
	}
	var rates []string
	for _, n := range []int{1, 4, 16} {
		v, _, err := bs.median(fmt.Sprintf("BenchmarkNegotiationConcurrent/requesters=%d", n), "negotiations/s")
		if err != nil {
			rates = append(rates, "–")
			continue
		}
		rates = append(rates, fmt.Sprintf("%.0f", v))
	}
	rows = append(rows, row{"negotiations/s with 1 / 4 / 16 requesters", strings.Join(rates, " / "), "", "", ""})
	if r, ok := sims["gossip-real"]; ok && r.Baseline != nil {
		in, bi := r.Intents, r.Baseline.Intents
		what := fmt.Sprintf("`sim gossip --nodes %d --clock real`", r.Nodes)
		rows = append(rows,
			row{what + " p99 (ms)", fmt.Sprintf("%.0f (delivery %.4f)", in.LatencyMs.P99, in.DeliveryRatio), fmt.Sprintf("raw %.0f (delivery %.4f)", bi.LatencyMs.P99, bi.DeliveryRatio),
				met(in.LatencyMs.P99/bi.LatencyMs.P99, 1.3), target(1.3)},
			row{what + " CPU per delivered intent (µs)", fmt.Sprintf("%.0f", in.CPUPerDeliveryUs), fmt.Sprintf("raw %.0f", bi.CPUPerDeliveryUs),
				met(in.CPUPerDeliveryUs/bi.CPUPerDeliveryUs, 1.5), target(1.5)})
	}
	return rows
}

func pairRow(bs benchmarks, p pair) row {
	v, n, err := bs.median(p.name, "ns/op")
	b, m, berr := bs.median(p.base, "ns/op")
	if err != nil || berr != nil {
		return row{p.what, "not run", "", "", target(p.target)}
	}
	return row{p.what, fmt.Sprintf("%s (median of %d)", dur(v), n), fmt.Sprintf("%s (median of %d)", dur(b), m), met(v/b, p.target), target(p.target)}
}

// auditRow shows how much of a negotiation is its wait on the audit log,
// beside the floor's raw writes and fsyncs of the records it needs.
func auditRow(bs benchmarks) row {
	const what = "negotiation's wait on its audit logs ÷ the floor's durable records"
	v, n, err := bs.median("BenchmarkNegotiation/tracing=off", "audit-µs/op")
	b, m, berr := bs.median("BenchmarkNegotiationFloor", "disk-µs/op")
	if err != nil || berr != nil {
		return row{what, "not run", "", "", ""}
	}
	return row{what, fmt.Sprintf("%s (median of %d)", dur(v*1e3), n), fmt.Sprintf("%s (median of %d)", dur(b*1e3), m), met(v/b, 0), ""}
}

// a2aRow compares what the A2A gateway adds over a direct a2a-go call
// with the negotiation's own cost, as issue #13 asks.
func a2aRow(bs benchmarks) row {
	const what = "A2A SendMessage: gateway − direct ÷ the negotiation"
	gw, _, e1 := bs.median("BenchmarkA2A/gateway", "ns/op")
	direct, _, e2 := bs.median("BenchmarkA2A/direct", "ns/op")
	neg, _, e3 := bs.median("BenchmarkA2A/negotiation", "ns/op")
	if e1 != nil || e2 != nil || e3 != nil {
		return row{what, "not run", "", "", target(1)}
	}
	return row{what, fmt.Sprintf("%s added (gateway %s)", dur(gw-direct), dur(gw)), fmt.Sprintf("direct %s; negotiation %s", dur(direct), dur(neg)),
		met((gw-direct)/neg, 1), target(1)}
}

func dur(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.3g ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.3g µs", ns/1e3)
	}
	return fmt.Sprintf("%.3g ns", ns)
}

func target(t float64) string {
	if t == 0 {
		return ""
	}
	return fmt.Sprintf("≤ %g", t)
}

// met prints a ratio and, against a target, whether it is met.
func met(r, t float64) string {
	s := fmt.Sprintf("%.2f×", r)
	switch {
	case t == 0:
		return s
	case r <= t:
		return s + " (met)"
	}
	return "**" + s + " (not met)**"
}
