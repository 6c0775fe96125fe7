package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSimCommand runs parley sim as a user would: a small virtual-clock
// gossip run with the raw baseline and a report, and a bad scenario file.
func TestSimCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	dir := t.TempDir()
	bin := parleyBinary(t)
	report := filepath.Join(dir, "report.html")
	out, err := exec.Command(bin, "sim", "gossip", "--nodes", "40", "--json", "--baseline", "raw", "--report", report).Output()
	if err != nil {
		t.Fatalf("parley sim: %v", err)
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
			Intents struct {
				DeliveryRatio float64 `json:"delivery_ratio"`
			} `json:"intents"`
			WallS float64 `json:"wall_s"`
		} `json:"baseline"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("sim --json printed %q: %v", out, err)
	}
	if res.Scenario != "gossip" || res.Clock != "virtual" || res.Intents.DeliveryRatio != 1 || res.Intents.LatencyMs.P99 < 50 {
		t.Errorf("sim result %+v, want gossip in virtual time, all delivered, p99 at least one 50 ms link", res)
	}
	if res.Baseline == nil || res.Baseline.Intents.DeliveryRatio != 1 || res.Baseline.WallS <= 0 {
		t.Errorf("baseline %+v, want the raw run measured", res.Baseline)
	}
	html, err := os.ReadFile(report)
	if err != nil || !strings.Contains(string(html), "<svg") {
		t.Errorf("report: %v, %d bytes; want a page with plots", err, len(html))
	}

	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("nodes: 10\nfrobnicate: true\n"), 0o600)
	cmd := exec.Command(bin, "sim", "--scenario", bad)
	msg, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "frobnicate") {
		t.Errorf("bad scenario: %v, %q; want an error naming the unknown field", err, msg)
	}
}
