package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
	"github.com/parleynet/parley/policy"
)

func mustPolicy(t *testing.T, yaml string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func pricedWorker(price float64) negotiation.Handler {
	return negotiation.HandlerFuncs{
		BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
			return negotiation.Bid{Price: price, ETA: time.Millisecond}, nil
		},
		WorkFunc: func(_ context.Context, t negotiation.Task) (json.RawMessage, error) { return t.Input, nil },
	}
}

// govMesh is a requester (node 0, with policy p0) and two contractors
// priced 1 (node 1, policy p1) and 5 (node 2).
func govMesh(t *testing.T, p0, p1 *policy.Policy) *nodetest.Mesh {
	t.Helper()
	m := nodetest.NewMesh(t, 3, nodetest.WithConfig(func(i int, c *node.Config) {
		switch i {
		case 0:
			c.Policy = p0
		case 1:
			c.Policy = p1
		}
	}))
	for i, price := range map[int]float64{1: 1, 2: 5} {
		if _, err := m.Nodes[i].AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{"job"}}, pricedWorker(price)); err != nil {
			t.Fatal(err)
		}
	}
	for len(m.Nodes[0].TopicPeers("job")) < 2 {
		time.Sleep(20 * time.Millisecond)
	}
	return m
}

func ask(n *node.Node, timeout time.Duration) (*negotiation.Outcome, error) {
	return n.Request(context.Background(), negotiation.Need{Capability: "job", Input: json.RawMessage(`"x"`)},
		negotiation.WithBidWindow(300*time.Millisecond), negotiation.WithTimeout(timeout))
}

func winnerPrice(out *negotiation.Outcome) float64 {
	for _, b := range out.Bids {
		if b.Agent == out.Winner {
			return b.Price
		}
	}
	return -1
}

func TestPolicyShapesNegotiations(t *testing.T) {
	cases := []struct {
		name      string
		p0, p1    string
		wantPrice float64 // the winning price, or 0 if the request is refused
		wantErr   string
	}{
		{"contractor may not offer job", "", "agents: {worker: {offer: [other]}}", 5, ""},
		{"cheapest bid within the price cap", "budgets: {max_price_per_task: 2}", "", 1, ""},
		{"requester may not request job", "agents: {default: {request: [other]}, agent: {request: [other]}}", "", 0, "may not request"},
		{"both bids over the cap", "budgets: {max_price_per_task: 0.5}", "", 0, "no contractor completed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p0, p1 *policy.Policy
			if tc.p0 != "" {
				p0 = mustPolicy(t, tc.p0)
			}
			if tc.p1 != "" {
				p1 = mustPolicy(t, tc.p1)
			}
			m := govMesh(t, p0, p1)
			out, err := ask(m.Nodes[0], 10*time.Second)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Request: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Request: %v", err)
			}
			if got := winnerPrice(out); got != tc.wantPrice {
				t.Fatalf("winning price %g, want %g (bids %+v)", got, tc.wantPrice, out.Bids)
			}
		})
	}
}

func TestApprovalHoldsTheAward(t *testing.T) {
	rule := "approvals: [{name: big-jobs, stage: award, capability: job}]"
	t.Run("approved", func(t *testing.T) {
		m := govMesh(t, mustPolicy(t, rule), nil)
		go func() {
			for {
				if a := m.Nodes[0].Approvals(); len(a) > 0 {
					if a[0].Rule != "big-jobs" || a[0].Stage != "award" {
						t.Errorf("pending approval %+v", a[0])
					}
					_ = m.Nodes[0].Decide(a[0].ID, true, "test")
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		if _, err := ask(m.Nodes[0], 10*time.Second); err != nil {
			t.Fatalf("approved request: %v", err)
		}
		// The metrics tell tasks a human approved from the others.
		mfs, err := m.Nodes[0].Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() == "parley_tasks_completed_total" {
				for _, s := range mf.GetMetric() {
					got[s.GetLabel()[0].GetValue()] = s.GetCounter().GetValue()
				}
			}
		}
		if got["human"] != 1 || got["none"] != 0 {
			t.Errorf("parley_tasks_completed_total by approval = %v, want human 1, none 0", got)
		}
	})
	t.Run("no answer means deny", func(t *testing.T) {
		m := govMesh(t, mustPolicy(t, rule), nil)
		_, err := ask(m.Nodes[0], 2*time.Second)
		if !errors.Is(err, negotiation.ErrTaskFailed) {
			t.Fatalf("unanswered approval: %v, want the task failed", err)
		}
		if got := len(m.Nodes[0].Approvals()); got != 0 {
			t.Errorf("%d approvals still pending after the deadline", got)
		}
	})
}

func TestRateLimitDropsAFloodingOrigin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := nodetest.NewMesh(t, 2, nodetest.WithConfig(func(i int, c *node.Config) {
		if i == 1 {
			c.Policy = mustPolicy(t, "rate_limits: {intents_per_origin: {per_second: 1, burst: 3}}")
		}
	}))
	sub, err := m.Nodes[1].Subscribe(ctx, "chat")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	nodetest.WaitTopic(t, ctx, "chat", m.Nodes[1])
	for len(m.Nodes[0].TopicPeers("chat")) == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	for range 10 {
		publish(t, ctx, m.Nodes[0], "chat", `{}`)
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.Nodes[1].Stats().Dropped["rate_agent"] < 7 {
		if time.Now().After(deadline) {
			t.Fatalf("drops %v, want 7 rate limited of 10 with a burst of 3", m.Nodes[1].Stats().Dropped)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
