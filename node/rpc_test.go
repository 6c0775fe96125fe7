package node_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

func TestAskAnAgentDirectly(t *testing.T) {
	m := nodetest.NewMesh(t, 2)
	worker, err := m.Nodes[1].AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{"echo"}}, pricedWorker(1))
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Nodes[0].Ask(context.Background(), m.Nodes[1].ID(), worker.ID, "echo", json.RawMessage(`{"q":1}`), "")
	if err != nil || string(out) != `{"q":1}` {
		t.Fatalf("Ask = %s, %v; want the input echoed by the agent's Work", out, err)
	}
}
