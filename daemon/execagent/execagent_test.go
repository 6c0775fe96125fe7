package execagent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	logging "github.com/ipfs/go-log/v2"

	"github.com/parleynet/parley/daemon/execagent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

func TestShellAgentWinsANegotiation(t *testing.T) {
	m := nodetest.NewMesh(t, 2)
	quoter := &execagent.Agent{Name: "quoter", Command: []string{"sh", "../../examples/shell/quote.sh"}, Timeout: 5 * time.Second}
	a, err := m.Nodes[1].AddAgent(node.AgentCard{Name: "quoter", Capabilities: []string{"quote"}}, quoter)
	if err != nil {
		t.Fatal(err)
	}
	for len(m.Nodes[0].TopicPeers("quote")) == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	out, err := m.Nodes[0].Request(context.Background(), negotiation.Need{Capability: "quote", Input: json.RawMessage(`{"sku":"bolt"}`)},
		negotiation.WithBidWindow(300*time.Millisecond), negotiation.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	var res struct {
		Quote int `json:"quote"`
	}
	if out.Winner != a.ID || json.Unmarshal(out.Result, &res) != nil || res.Quote != 42 {
		t.Fatalf("winner %s result %s; want the shell agent's quote", out.Winner, out.Result)
	}
	if out.Bids[0].Price != 3 || out.Bids[0].ETA != 500*time.Millisecond {
		t.Errorf("bid %+v, want the script's price 3 and eta 500ms", out.Bids[0])
	}
}

// logs captures what the package logs while a test runs.
func logs(t *testing.T) func() string {
	t.Helper()
	// The package logs at warn; the default level of a subsystem is error.
	prev, _ := logging.SubsystemLevelName("parley/exec")
	if err := logging.SetLogLevel("parley/exec", "info"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logging.SetLogLevel("parley/exec", prev) })
	pr := logging.NewPipeReader(logging.PipeFormat(logging.PlaintextOutput), logging.PipeLevel(logging.LevelInfo))
	var mu sync.Mutex
	var buf strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]byte, 4096)
		for {
			n, err := pr.Read(b)
			mu.Lock()
			buf.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { _ = pr.Close(); <-done })
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		return buf.String()
	}
}

// TestBadCommandsAreRefusalsAndFailures: what goes wrong with the command
// is logged here, with the detail; the requester, on another node, is told
// only that the agent failed — no path, no exit status, nothing the
// command printed on stderr.
func TestBadCommandsAreRefusalsAndFailures(t *testing.T) {
	call := negotiation.Call{Task: "t", Capability: "quote"}
	cases := []struct {
		name   string
		script string
		remote string // in the error the requester sees
		logged string // in the node's log
		noBid  bool
	}{
		{"refuses", `echo '{"refuse":"closed today"}'`, "closed today", "", true},
		{"exits non-zero", `echo boom /secret/path >&2; exit 3`, "agent x failed in its bid phase", "boom /secret/path", false},
		{"prints garbage", `echo hello`, "agent x failed in its bid phase", "not a reply", false},
		{"prints an unknown field", `echo '{"offer":1}'`, "agent x failed in its bid phase", "not a reply", false},
		{"times out", `sleep 5`, "agent x failed in its bid phase", "timed out after 300ms", false},
		{"prints nothing useful", `echo '{}'`, "agent x failed in its bid phase", "neither bid nor refuse", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logged := logs(t)
			a := &execagent.Agent{Name: "x", Command: []string{"sh", "-c", tc.script}, Timeout: 300 * time.Millisecond}
			_, err := a.Bid(context.Background(), call)
			if err == nil || !strings.Contains(err.Error(), tc.remote) || errors.Is(err, negotiation.ErrNoBid) != tc.noBid {
				t.Fatalf("Bid: %v; want an error containing %q (no-bid %v)", err, tc.remote, tc.noBid)
			}
			if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "exit status") {
				t.Errorf("the requester would see %q, which names local detail", err)
			}
			if tc.logged != "" {
				deadline := time.Now().Add(5 * time.Second)
				for !strings.Contains(logged(), tc.logged) {
					if time.Now().After(deadline) {
						t.Fatalf("the log lacks %q:\n%s", tc.logged, logged())
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	t.Run("execute error", func(t *testing.T) {
		a := &execagent.Agent{Name: "x", Command: []string{"sh", "-c", `echo '{"error":"out of stock"}'`}}
		if _, err := a.Work(context.Background(), negotiation.Task{Call: call}); err == nil || err.Error() != "out of stock" {
			t.Fatalf("Work: %v, want the agent's own error, passed on", err)
		}
	})
	t.Run("execute crash", func(t *testing.T) {
		a := &execagent.Agent{Name: "x", Command: []string{"sh", "-c", `echo 'panic at /home/me/x.py' >&2; exit 1`}}
		_, err := a.Work(context.Background(), negotiation.Task{Call: call})
		if err == nil || err.Error() != "agent x failed in its execute phase (the detail is in its node's log)" {
			t.Fatalf("Work: %v, want the generic failure", err)
		}
	})
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	for name, mode := range map[string]os.FileMode{"run.sh": 0o755, "plain.sh": 0o644} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name    string
		command []string
		want    string // "" means it runs
	}{
		{"on PATH", []string{"sh", "x.sh"}, ""},
		{"relative to the home", []string{"./run.sh"}, ""},
		{"absolute", []string{filepath.Join(dir, "run.sh")}, ""},
		{"not on PATH", []string{"no-such-program-here"}, `"no-such-program-here" is not on $PATH`},
		{"missing file", []string{"./gone.sh"}, filepath.Join(dir, "gone.sh") + " does not exist"},
		{"missing absolute", []string{"/nonexistent/bin/agent"}, "/nonexistent/bin/agent does not exist"},
		{"not executable", []string{"./plain.sh"}, "is not executable"},
		{"a directory", []string{dir}, "is a directory"},
		{"empty", nil, "exec is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := (&execagent.Agent{Name: "q", Command: tc.command, Dir: dir}).Check()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if !errors.Is(err, execagent.ErrNoCommand) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "agent q") {
				t.Fatalf("Check: %v, want ErrNoCommand naming agent q and %q", err, tc.want)
			}
		})
	}
}

// TestCounterPhase: a requester that counters every bid at a fraction of
// its price settles with a command agent at what the command answers in
// its counter phase; a command without one (quote.sh exits non-zero on the
// unknown phase) refuses, and its bid stands.
func TestCounterPhase(t *testing.T) {
	cases := []struct {
		script   string
		fraction float64
		want     float64
		reply    string
	}{
		{"haggle.sh", 0.9, 2.7, "accepted"}, // 2.7 ≥ its floor of 2.5
		{"haggle.sh", 0.5, 2.5, "revised"},  // 1.5: it answers with its floor
		{"quote.sh", 0.5, 3, "refused"},     // no counter phase: the bid stands
	}
	m := nodetest.NewMesh(t, 2)
	for i, tc := range cases {
		t.Run(fmt.Sprintf("%s at %g", tc.script, tc.fraction), func(t *testing.T) {
			capability := fmt.Sprintf("haggle%d", i)
			a := &execagent.Agent{Name: "seller", Command: []string{"sh", "../../examples/shell/" + tc.script}, Timeout: 5 * time.Second}
			id, err := m.Nodes[1].AddAgent(node.AgentCard{Name: capability, Capabilities: []string{capability}}, a)
			if err != nil {
				t.Fatal(err)
			}
			nodetest.WaitTopic(t, context.Background(), capability, m.Nodes[0])
			out, err := m.Nodes[0].Request(context.Background(), negotiation.Need{Capability: capability, Input: json.RawMessage(`{}`)},
				negotiation.WithBidWindow(500*time.Millisecond), negotiation.WithTimeout(10*time.Second), negotiation.WithStrategy(negotiation.CounterAt(tc.fraction, nil)))
			if err != nil {
				t.Fatalf("Request: %v", err)
			}
			if out.Winner != id.ID || len(out.Bids) != 1 || out.Bids[0].Price != tc.want {
				t.Fatalf("winner %s, bids %+v; want the command's bid at %g", out.WinnerName, out.Bids, tc.want)
			}
			if r := out.Bids[0].Rounds; len(r) != 1 || r[0].Reply != tc.reply {
				t.Errorf("rounds %+v, want one %s", r, tc.reply)
			}
			if tc.script == "haggle.sh" {
				var res struct {
					SoldAt float64 `json:"sold_at"`
				}
				if json.Unmarshal(out.Result, &res) != nil || res.SoldAt != tc.want {
					t.Errorf("result %s: the execute phase was not given the agreed price %g", out.Result, tc.want)
				}
			}
		})
	}
}
