package workflow_test

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

// A step whose strategy is counter:FRACTION makes its counter-offer
// through the engine: the contractor accepts it, and the attempt records
// the agreed price, not the bid.
func TestStepStrategyCounters(t *testing.T) {
	m := nodetest.NewMesh(t, 2)
	countered := make(chan negotiation.Counter, 1)
	if _, err := m.Nodes[1].AddAgent(node.AgentCard{Name: "carrier", Capabilities: []string{"shipping"}}, accepter{countered}); err != nil {
		t.Fatal(err)
	}
	waitTopic(t, m, "shipping")
	e, err := workflow.Open(workflow.Config{Path: filepath.Join(t.TempDir(), "workflows.db"), Node: m.Nodes[0]})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	src := "version: 1\nsteps:\n  ship:\n    capability: shipping\n    strategy: counter:0.8\n    bid_window: 150ms\n"
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	r, err := e.Submit(ctx, "counter.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r, err = e.Wait(ctx, r.ID); err != nil || r.State != workflow.StateCompleted {
		t.Fatalf("workflow %v, %v; want completed", r, err)
	}
	select {
	case c := <-countered:
		if c.Price != 8 || c.Round != 1 {
			t.Errorf("counter %+v, want €8 in round 1", c)
		}
	default:
		t.Fatal("the contractor was never countered")
	}
	if a := r.Steps[0].Attempts; len(a) != 1 || a[0].Price != 8 {
		t.Errorf("attempts %+v, want one at the agreed €8", a)
	}
}

func waitTopic(t *testing.T, m *nodetest.Mesh, capability string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); len(m.Nodes[0].TopicPeers(capability)) == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no node joined %s's topic", capability)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// accepter bids €10 and accepts every counter-offer, telling it on its
// channel.
type accepter struct{ countered chan negotiation.Counter }

func (accepter) Bid(context.Context, negotiation.Call) (negotiation.Bid, error) {
	return negotiation.Bid{Price: 10, ETA: 10 * time.Millisecond}, nil
}

func (accepter) Work(context.Context, negotiation.Task) (json.RawMessage, error) {
	return json.RawMessage(`{"ok":true}`), nil
}

func (a accepter) Counter(_ context.Context, _ negotiation.Call, c negotiation.Counter) (negotiation.Bid, error) {
	select {
	case a.countered <- c:
	default:
	}
	return negotiation.Bid{Price: c.Price, ETA: c.ETA}, nil
}
