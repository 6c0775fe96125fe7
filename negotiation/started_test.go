package negotiation_test

import (
	"testing"

	"github.com/parleynet/parley/negotiation"
)

// WithStarted hands over the task's ID once, before any bid is taken: a
// workflow ties its step to the task while it runs.
func TestWithStartedGivesTheTaskID(t *testing.T) {
	m, agents := newNegMesh(t, 2, agentSpec{node: 1, name: "worker", price: 1})
	var ids []string
	var bidsThen int32
	out, err := request(t, m.Nodes[0], `{"x":1}`, negotiation.WithStarted(func(id string) {
		ids = append(ids, id)
		bidsThen = agents["worker"].bids.Load()
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || ids[0] != out.Task || bidsThen != 0 {
		t.Fatalf("started with %v (%d bids by then), task %s", ids, bidsThen, out.Task)
	}
}
