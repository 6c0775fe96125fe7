package execagent_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

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

func TestBadCommandsAreRefusalsAndFailures(t *testing.T) {
	call := negotiation.Call{Task: "t", Capability: "quote"}
	cases := []struct {
		name   string
		script string
		want   string
		noBid  bool
	}{
		{"refuses", `echo '{"refuse":"closed today"}'`, "closed today", true},
		{"exits non-zero", `echo boom >&2; exit 3`, "boom", false},
		{"prints garbage", `echo hello`, "not a reply", false},
		{"prints an unknown field", `echo '{"offer":1}'`, "not a reply", false},
		{"times out", `sleep 5`, "timed out", false},
		{"prints nothing useful", `echo '{}'`, "neither bid nor refuse", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := &execagent.Agent{Name: "x", Command: []string{"sh", "-c", tc.script}, Timeout: 300 * time.Millisecond}
			_, err := a.Bid(context.Background(), call)
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, negotiation.ErrNoBid) != tc.noBid {
				t.Fatalf("Bid: %v; want an error containing %q (no-bid %v)", err, tc.want, tc.noBid)
			}
		})
	}
	t.Run("execute error", func(t *testing.T) {
		a := &execagent.Agent{Name: "x", Command: []string{"sh", "-c", `echo '{"error":"out of stock"}'`}}
		if _, err := a.Work(context.Background(), negotiation.Task{Call: call}); err == nil || err.Error() != "out of stock" {
			t.Fatalf("Work: %v, want the agent's error", err)
		}
	})
}
