package a2a_test

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2asrv"

	parleya2a "github.com/parleynet/parley/interop/a2a"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/sharedctx"
	"github.com/parleynet/parley/workflow"
)

// stocker is an A2A agent that knows nothing of parley but the context
// metadata: skill "reserve" reads the order's qty from parley.context and
// writes stock.reserved back in its artifact's metadata, its data saying
// what it saw; "overreach" writes a key its step was not granted, "bloat"
// a value over the node's limit, "garble" a parley.context that is no
// object.
type stocker struct{}

func (stocker) Execute(_ context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		if !yield(a2a.NewSubmittedTask(ec, ec.Message), nil) {
			return
		}
		meta := ec.Message.Metadata
		skill, _ := meta["skill"].(string)
		seen, _ := meta["parley.context"].(map[string]any)
		order, _ := seen["order"].(map[string]any)
		writes := map[string]any{"stock.reserved": order["qty"]}
		switch skill {
		case "overreach":
			writes = map[string]any{"price": 1}
		case "bloat":
			writes = map[string]any{"stock.note": strings.Repeat("x", 20<<10)}
		}
		art := a2a.NewArtifactEvent(ec, a2a.NewDataPart(map[string]any{"saw": seen, "may_write": meta["parley.context_writes"]}))
		art.Artifact.Metadata = map[string]any{"parley.context": writes}
		if skill == "garble" {
			art.Artifact.Metadata["parley.context"] = "stock.reserved=3"
		}
		if !yield(art, nil) {
			return
		}
		yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateCompleted, nil), nil)
	}
}

func (stocker) Cancel(_ context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateCanceled, nil), nil)
	}
}

// A remote A2A agent hosted as a contractor wins the middle step of a
// workflow: it gets the key the first step wrote (and no other) in its
// message's metadata, and the key it writes in its artifact's metadata
// reaches the next step, signed by the hosted agent. Writes its step
// was not granted, or over the limit, fail its task with the context's
// error and leave the context as it was; so does metadata that is no
// object of writes, with an error naming the key.
func TestA2AAgentSharedContext(t *testing.T) {
	base := serveA2A(t, "Stocker", stocker{}, []a2a.AgentSkill{{ID: "reserve", Name: "Reserve"}, {ID: "overreach", Name: "Overreach"}, {ID: "bloat", Name: "Bloat"}, {ID: "garble", Name: "Garble"}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	requester := loopbackNode(t, nil)
	contractor := loopbackNode(t, requester)
	ag, err := parleya2a.NewAgent(ctx, parleya2a.AgentConfig{Name: "stocker", URL: base, Price: 1, Context: contractor.TaskContext})
	if err != nil {
		t.Fatal(err)
	}
	defer ag.Close()
	hosted, err := contractor.AddAgent(node.AgentCard{Name: "stocker", Capabilities: ag.Capabilities()}, ag)
	if err != nil {
		t.Fatal(err)
	}
	// note writes its input's "write" to the context as "order", and
	// answers with its input.
	if _, err := contractor.AddAgent(node.AgentCard{Name: "clerk", Capabilities: []string{"note"}}, negotiation.HandlerFuncs{
		BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
			return negotiation.Bid{Price: 1}, nil
		},
		WorkFunc: func(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
			var in struct{ Write json.RawMessage }
			if err := json.Unmarshal(task.Input, &in); err != nil {
				return nil, err
			}
			if in.Write != nil {
				cl, err := contractor.TaskContext(task)
				if err != nil {
					return nil, err
				}
				if _, err := cl.Put(ctx, "order", in.Write); err != nil {
					return nil, err
				}
			}
			return task.Input, nil
		},
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"reserve", "note"} {
		if err := requester.WaitReady(ctx, c); err != nil {
			t.Fatal(err)
		}
	}

	src := []byte(`version: 1
steps:
  order: {capability: note, bid_window: 150ms, input: '{write: {qty: $input.qty}}', context: {writes: [order]}}
  reserve: {capability: reserve, bid_window: 150ms, needs: [order], context: {reads: [order], writes: [stock.*]}}
  check: {capability: note, bid_window: 150ms, needs: [reserve], input: '{reserved: $ctx["stock.reserved"]}', context: {reads: [stock.reserved]}}
output: '{reserved: $steps.check.output.reserved, saw: $steps.reserve.output}'
`)
	r, err := requester.RunWorkflow(ctx, filepath.Join(t.TempDir(), "workflows.db"), "stock.yaml", src, json.RawMessage(`{"qty":3}`))
	if err != nil {
		t.Fatalf("workflow: %v", err)
	}
	if want := `{"reserved":3,"saw":{"may_write":["stock.*"],"saw":{"order":{"qty":3}}}}`; r.State != workflow.StateCompleted || string(r.Output) != want {
		t.Fatalf("workflow %s (%s): output %s, want %s", r.State, r.Error, r.Output, want)
	}
	if w := r.Steps[1].Attempts[0].Winner; w != hosted.ID {
		t.Fatalf("the reserve step was won by %s, want the A2A agent %s", w, hosted.ID)
	}

	// The refused writes, on a context of the requester's own.
	owner, _ := requester.Agent("")
	home, err := requester.SharedContext().Open("wf-refused", owner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := home.Put("order", json.RawMessage(`{"qty":1}`)); err != nil {
		t.Fatal(err)
	}
	step := sharedctx.WithStep(ctx, sharedctx.Step{Workflow: "wf-refused", Reads: []string{"order"}, Writes: []string{"stock.*"}})
	for _, tc := range []struct{ skill, key, want string }{
		{"overreach", "price", sharedctx.ErrDenied.Error()},
		{"bloat", "stock.note", sharedctx.ErrTooLarge.Error()},
		{"garble", "stock.reserved", `metadata "parley.context" is a string, want an object`},
	} {
		out, err := requester.Request(step, negotiation.Need{Capability: tc.skill, Input: json.RawMessage(`{}`)},
			negotiation.WithBidWindow(150*time.Millisecond), negotiation.WithCalls(1))
		if !errors.Is(err, negotiation.ErrTaskFailed) || !strings.Contains(out.Reason, tc.want) {
			t.Errorf("%s: %v, reason %q; want the task failed with %q", tc.skill, err, out.Reason, tc.want)
		}
		if e, ok := home.Get(tc.key); ok {
			t.Errorf("%s: the context holds %s = %s, written by %s; want nothing", tc.skill, tc.key, e.Value, e.Writer)
		}
	}
}
