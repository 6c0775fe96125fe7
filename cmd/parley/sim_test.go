package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSimCommand runs parley sim as a user would: a small gossip run with
// the raw baseline on each clock (the baseline must run on the run's own
// clock) and a report, and a bad scenario file.
func TestSimCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	dir := t.TempDir()
	bin := parleyBinary(t)
	report := filepath.Join(dir, "report.html")
	prof := filepath.Join(dir, "cpu.pprof")
	for _, clock := range []string{"virtual", "real"} {
		args := []string{"sim", "gossip", "--nodes", "40", "--clock", clock, "--json", "--baseline", "raw", "--report", report}
		if clock == "real" {
			args = append(args, "--cpuprofile", prof)
		}
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("parley sim --clock %s: %v", clock, err)
		}
		var res struct {
			Scenario string `json:"scenario"`
			Clock    string `json:"clock"`
			Intents  struct {
				DeliveryRatio float64 `json:"delivery_ratio"`
				LatencyMs     struct {
					P99 float64 `json:"p99"`
				} `json:"latency_ms"`
			} `json:"intents"`
			Baseline *struct {
				Clock   string `json:"clock"`
				Intents struct {
					DeliveryRatio float64 `json:"delivery_ratio"`
					OnTimeRatio   float64 `json:"on_time_ratio"`
				} `json:"intents"`
				WallS float64 `json:"wall_s"`
			} `json:"baseline"`
		}
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("sim --json printed %q: %v", out, err)
		}
		if res.Scenario != "gossip" || res.Clock != clock || res.Intents.DeliveryRatio != 1 || res.Intents.LatencyMs.P99 < 50 {
			t.Errorf("sim result %+v, want gossip in %s time, all delivered, p99 at least one 50 ms link", res, clock)
		}
		if res.Baseline == nil || res.Baseline.Clock != clock || res.Baseline.Intents.DeliveryRatio != 1 || res.Baseline.Intents.OnTimeRatio <= 0 || res.Baseline.WallS <= 0 {
			t.Errorf("baseline %+v, want the raw run measured in %s time", res.Baseline, clock)
		}
	}
	html, err := os.ReadFile(report)
	if err != nil || !strings.Contains(string(html), "<svg") {
		t.Errorf("report: %v, %d bytes; want a page with plots", err, len(html))
	}
	// go tool pprof reads a gzipped protobuf.
	if b, err := os.ReadFile(prof); err != nil || len(b) < 100 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("--cpuprofile: %v, %d bytes; want a gzipped pprof profile", err, len(b))
	}

	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("nodes: 10\nfrobnicate: true\n"), 0o600)
	cmd := exec.Command(bin, "sim", "--scenario", bad)
	msg, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "frobnicate") {
		t.Errorf("bad scenario: %v, %q; want an error naming the unknown field", err, msg)
	}
}

// TestSimStreams runs parley sim as a user piping it would: the result
// alone on stdout (the summary and the report's path, or clean JSON with
// --json), and on stderr, which is not a terminal here, no progress bar
// and no test harness's PASS: nothing at all when the run succeeds.
func TestSimStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	bin := parleyBinary(t)
	report := filepath.Join(t.TempDir(), "r.html")
	for _, tc := range []struct {
		name    string
		args    []string
		json    bool
		want    []string // lines stdout must have
		notWant []string // nor these
	}{
		{"text with report", []string{"gossip", "--nodes", "12", "--report", report}, false,
			[]string{"scenario gossip: 12 nodes", "intents:", "report:       " + report}, []string{"negotiations:"}},
		{"tasks only", []string{"supply-chain", "--nodes", "24"}, false,
			[]string{"negotiations:"}, []string{"intents:", "per node:", "report:"}},
		{"json", []string{"hostile", "--nodes", "12", "--json", "--report", report}, true, nil, nil},
		{"json with baseline", []string{"gossip", "--nodes", "12", "--json", "--baseline", "raw"}, true, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, append([]string{"sim"}, tc.args...)...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("parley sim %v: %v\n%s", tc.args, err, stderr.Bytes())
			}
			if stderr.Len() > 0 {
				t.Errorf("parley sim %v wrote %q to stderr; want nothing on success", tc.args, stderr.Bytes())
			}
			if tc.json {
				var res map[string]any
				dec := json.NewDecoder(&stdout)
				if err := dec.Decode(&res); err != nil || res["scenario"] == nil {
					t.Fatalf("stdout is not the result's JSON: %v", err)
				}
				if rest, _ := io.ReadAll(dec.Buffered()); len(bytes.TrimSpace(rest)) > 0 || len(bytes.TrimSpace(stdout.Bytes())) > 0 {
					t.Errorf("stdout has more than the JSON object: %q", rest)
				}
				return
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout %q lacks %q", stdout.String(), w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(stdout.String(), w) {
					t.Errorf("stdout %q has %q, which does not apply", stdout.String(), w)
				}
			}
		})
	}
}

// TestSimSizes runs the scenario at two sizes as a user measuring growth
// would: each run beside its raw baseline, the wire counted for both,
// fits and a report; and the sizes that cannot make a curve.
func TestSimSizes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	bin := parleyBinary(t)
	report := filepath.Join(t.TempDir(), "scaling.html")
	out, err := exec.Command(bin, "sim", "gossip", "--sizes", "24,12", "--json", "--report", report).Output()
	if err != nil {
		t.Fatalf("parley sim --sizes: %v", err)
	}
	var sc struct {
		Runs []struct {
			Nodes   int `json:"nodes"`
			Intents struct {
				DeliveryRatio   float64 `json:"delivery_ratio"`
				RPCBytesPerNode float64 `json:"rpc_bytes_per_node"`
			} `json:"intents"`
			Baseline *struct {
				Intents struct {
					RPCBytesPerNode float64 `json:"rpc_bytes_per_node"`
				} `json:"intents"`
			} `json:"baseline"`
		} `json:"runs"`
		Fits []struct {
			Figure, Of string
		} `json:"fits"`
	}
	if err := json.Unmarshal(out, &sc); err != nil {
		t.Fatalf("sim --sizes --json printed %q: %v", out, err)
	}
	if len(sc.Runs) != 2 || sc.Runs[0].Nodes != 12 || sc.Runs[1].Nodes != 24 {
		t.Fatalf("runs %+v, want 12 and 24 nodes in order", sc.Runs)
	}
	for _, r := range sc.Runs {
		if r.Intents.DeliveryRatio != 1 || r.Intents.RPCBytesPerNode <= 0 || r.Baseline == nil || r.Baseline.Intents.RPCBytesPerNode <= 0 {
			t.Errorf("run at %d nodes: %+v, want full delivery and wire bytes for parley and raw", r.Nodes, r)
		}
	}
	if len(sc.Fits) == 0 || len(sc.Fits)%2 != 0 {
		t.Errorf("fits %+v, want one per figure for parley and for raw", sc.Fits)
	}
	html, err := os.ReadFile(report)
	if n := strings.Count(string(html), "<svg"); err != nil || n != len(sc.Fits)/2 {
		t.Errorf("report: %v, %d plots; want one per figure (%d)", err, n, len(sc.Fits)/2)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sizes", "12"}, "two sizes"},
		{[]string{"--sizes", "12,12"}, "twice"},
		{[]string{"--sizes", "1,12"}, "at least 2"},
		{[]string{"--sizes", "12,24", "--nodes", "5"}, "not both"},
		{[]string{"--sizes", "12,24", "--cpuprofile", "x.pprof"}, "for one run"},
	} {
		msg, err := exec.Command(bin, append([]string{"sim", "gossip"}, tc.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(msg), tc.want) {
			t.Errorf("sim %v: %v, %q; want an error saying %q", tc.args, err, msg, tc.want)
		}
	}
}
