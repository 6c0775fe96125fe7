package execagent_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/daemon/execagent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
	"github.com/parleynet/parley/sharedctx"
)

// TestExecAgentSharedContext: an exec agent (examples/shell/stock.sh) gets the keys its step reads
// in the execute request and writes the context through its reply; the
// requester's replica holds the write, signed by the exec agent. For a
// task without a context, it gets none and its context writes fail it.
func TestExecAgentSharedContext(t *testing.T) {
	m := nodetest.NewMesh(t, 2)
	req, host := m.Nodes[0], m.Nodes[1]
	stock := &execagent.Agent{Name: "stock", Command: []string{"sh", "../../examples/shell/stock.sh"}, Timeout: 5 * time.Second, Context: host.TaskContext}
	a, err := host.AddAgent(node.AgentCard{Name: "stock", Capabilities: []string{"stock"}}, stock)
	if err != nil {
		t.Fatal(err)
	}
	for len(req.TopicPeers("stock")) == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	owner, _ := req.Agent("")
	home, err := req.SharedContext().Open("wf-1", owner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := home.Put("order", json.RawMessage(`3`)); err != nil {
		t.Fatal(err)
	}
	if _, err := home.Put("secret", json.RawMessage(`"not for the stock step"`)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	step := sharedctx.WithStep(ctx, sharedctx.Step{Workflow: "wf-1", Reads: []string{"order"}, Writes: []string{"stock.*"}})
	opts := []negotiation.RequestOption{negotiation.WithBidWindow(200 * time.Millisecond), negotiation.WithTimeout(10 * time.Second), negotiation.WithCalls(1)}
	out, err := req.Request(step, negotiation.Need{Capability: "stock"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out.Result); got != `{"saw":{"order":3},"may_write":["stock.*"]}` {
		t.Fatalf("the command saw %s; want only the declared key", got)
	}
	e, ok := home.Get("stock.level")
	if !ok || string(e.Value) != "7" || e.Writer != a.ID {
		t.Fatalf("stock.level = %+v; want 7 written by the exec agent %s", e, a.ID)
	}
	if _, err := sharedctx.OpenStored(e.Signed, 0); err != nil {
		t.Fatalf("the exec agent's entry does not verify: %v", err)
	}

	// No step, no context: the command sees none, and its write fails the task.
	out, err = req.Request(ctx, negotiation.Need{Capability: "stock"}, opts...)
	if err == nil || !strings.Contains(out.Reason, "has none") {
		t.Fatalf("a task without a context: %v, reason %q", err, out.Reason)
	}
}
