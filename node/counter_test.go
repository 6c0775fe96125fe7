package node_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

// haggler bids 3 and accepts any counter.
type haggler struct{ negotiation.Handler }

func (haggler) Counter(_ context.Context, _ negotiation.Call, c negotiation.Counter) (negotiation.Bid, error) {
	return negotiation.Bid{Price: c.Price, ETA: c.ETA, Rationale: "deal"}, nil
}

// TestPolicyBudgetSeesTheFinalPrice: the requester's policy caps a task
// at 2; a bid of 3 is over it, but countered at half and accepted it is
// awarded at 1.5 — the policy judges the price agreed, not the first.
func TestPolicyBudgetSeesTheFinalPrice(t *testing.T) {
	cases := []struct {
		strategy  negotiation.Strategy
		wantPrice float64 // 0: refused by the policy
	}{
		{negotiation.Cheapest(), 0},
		{negotiation.CounterAt(0.5, nil), 1.5},
	}
	m := nodetest.NewMesh(t, 2, nodetest.WithConfig(func(i int, c *node.Config) {
		if i == 0 {
			c.Policy = mustPolicy(t, "budgets: {max_price_per_task: 2}")
		}
	}))
	if _, err := m.Nodes[1].AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{"job"}}, haggler{pricedWorker(3)}); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitTopic(t, context.Background(), "job", m.Nodes[0])
	for _, tc := range cases {
		t.Run(tc.strategy.Name(), func(t *testing.T) {
			out, err := m.Nodes[0].Request(context.Background(), negotiation.Need{Capability: "job", Input: json.RawMessage(`"x"`)},
				negotiation.WithBidWindow(300*time.Millisecond), negotiation.WithTimeout(10*time.Second), negotiation.WithCalls(1),
				negotiation.WithStrategy(tc.strategy))
			if tc.wantPrice == 0 {
				if err == nil || !strings.Contains(out.Reason, "was not awarded") {
					t.Fatalf("Request: %v (%+v); want the award refused by the budget", err, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("Request: %v", err)
			}
			if got := winnerPrice(out); got != tc.wantPrice {
				t.Fatalf("awarded at %g, want %g (bids %+v)", got, tc.wantPrice, out.Bids)
			}
		})
	}
}
