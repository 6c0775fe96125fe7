package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSingleDaemonUsesItsOwnExecAgent: one daemon alone, with no peer,
// whose config.yaml runs examples/shell/haggle.sh as an agent: parley
// request on it completes with that agent, in-process; with --strategy
// counter:0.5 the script answers the counter in its counter phase, and
// the task settles at its revised price, each round shown and audited.
func TestSingleDaemonUsesItsOwnExecAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	bin := parleyBinary(t)
	script, err := filepath.Abs("../../examples/shell/haggle.sh")
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(t.TempDir(), "solo")
	initHome(t, bin, home)
	cfg := "agents:\n  - name: default\n  - name: haggler\n    capabilities: [haggle]\n    exec: [sh, " + script + "]\n"
	if err := os.WriteFile(filepath.Join(home, "config.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := runDaemon(t, bin, home, "--no-mdns")

	for _, tc := range []struct {
		strategy string
		price    float64
		reply    string // the counter round's, "" for none
	}{
		{"cheapest", 3, ""},
		{"counter:0.5", 2.5, "revised"}, // 1.5 asked; the script's floor is 2.5 (acceptance: execagent's TestCounterPhase)
	} {
		t.Run(tc.strategy, func(t *testing.T) {
			out, stderr, code := parley(t, bin, "request", "--home", home, "--capability", "haggle", "--input", `{"sku":"bolt"}`,
				"--bid-window", "300ms", "--timeout", "10s", "--strategy", tc.strategy, "--json")
			if code != 0 {
				t.Fatalf("request on a lone daemon with a capable agent: exit %d, %s", code, stderr)
			}
			var o struct {
				State      string `json:"state"`
				WinnerName string `json:"winner_name"`
				WinnerPeer string `json:"winner_peer"`
				Task       string `json:"task"`
				Result     struct {
					SoldAt float64 `json:"sold_at"`
				} `json:"result"`
				Bids []struct {
					Price  float64 `json:"price"`
					Rounds []struct {
						Reply string `json:"reply"`
					} `json:"rounds"`
				} `json:"bids"`
			}
			if err := json.Unmarshal([]byte(out), &o); err != nil || o.State != "completed" || o.WinnerName != "haggler" || o.WinnerPeer != d.peer {
				t.Fatalf("outcome %s (%v); want completed by haggler on this daemon", out, err)
			}
			if o.Result.SoldAt != tc.price || len(o.Bids) != 1 || o.Bids[0].Price != tc.price {
				t.Fatalf("settled at %g (bids %+v), want %g", o.Result.SoldAt, o.Bids, tc.price)
			}
			var replies []string
			for _, r := range o.Bids[0].Rounds {
				replies = append(replies, r.Reply)
			}
			if strings.Join(replies, ",") != tc.reply {
				t.Errorf("rounds %v, want %q", replies, tc.reply)
			}
			if tc.reply == "" {
				return
			}
			// The audit log has both sides of the counter round.
			tail, stderr, code := parley(t, bin, "audit", "tail", "--home", home, "-n", "200", "--json")
			if code != 0 {
				t.Fatalf("audit tail: %d %s", code, stderr)
			}
			kinds := map[string]int{}
			for _, l := range strings.Split(strings.TrimSpace(tail), "\n") {
				var r struct{ Kind, Task string }
				if json.Unmarshal([]byte(l), &r) == nil && r.Task == o.Task {
					kinds[r.Kind]++
				}
			}
			// Both sides record the counter and its answer, and the
			// self-call's award, commitment and result as for a remote one.
			for kind, want := range map[string]int{"counter": 2, "revision": 2, "award": 1, "commit": 2, "result": 2} {
				if kinds[kind] < want {
					t.Errorf("the audit log has %d %s records of the task, want %d (all: %v)", kinds[kind], kind, want, kinds)
				}
			}
		})
	}
	// The text output shows the round.
	out, stderr, code := parley(t, bin, "request", "--home", home, "--capability", "haggle", "--input", "{}", "--bid-window", "300ms", "--timeout", "10s", "--strategy", "counter:0.5")
	if code != 0 || !strings.Contains(out, "counter 1: price 1.5 eta 500ms → revised: price 2.5 eta 500ms") {
		t.Fatalf("request: exit %d, printed %q (%s), want the counter round", code, out, stderr)
	}
}
