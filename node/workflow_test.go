package node_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
	"github.com/parleynet/parley/workflow"
)

// RunWorkflow runs a two-step workflow to its end in one call, the second
// step's input built from the first's output.
func TestRunWorkflow(t *testing.T) {
	m := nodetest.NewMesh(t, 2)
	if _, err := m.Nodes[1].AddAgent(node.AgentCard{Name: "doubler", Capabilities: []string{"double"}}, negotiation.HandlerFuncs{
		BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
			return negotiation.Bid{Price: 1}, nil
		},
		WorkFunc: func(_ context.Context, t negotiation.Task) (json.RawMessage, error) {
			var in struct{ N int }
			if err := json.Unmarshal(t.Input, &in); err != nil {
				return nil, err
			}
			return json.Marshal(map[string]int{"n": 2 * in.N})
		},
	}); err != nil {
		t.Fatal(err)
	}
	for len(m.Nodes[0].TopicPeers("double")) == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	src := []byte("version: 1\nsteps:\n  a: {capability: double, bid_window: 150ms, input: '{n: $input.n}'}\n" +
		"  b: {capability: double, bid_window: 150ms, needs: [a], input: '$steps.a.output'}\noutput: '$steps.b.output.n'\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := m.Nodes[0].RunWorkflow(ctx, filepath.Join(t.TempDir(), "workflows.db"), "double.yaml", src, json.RawMessage(`{"n":3}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.State != workflow.StateCompleted || string(r.Output) != "12" {
		t.Fatalf("workflow %s (%s): output %s", r.State, r.Error, r.Output)
	}
}
