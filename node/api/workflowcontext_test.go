package api

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/sharedctx"
	"github.com/parleynet/parley/workflow"
	"github.com/parleynet/parley/workflow/workflowtest"
)

// GET /v1/workflows/{id}/context shows an ended workflow's context: the
// entry the step's winner wrote, by whom, under which step, verifying;
// an unknown workflow is a 404. Every answer is checked against
// openapi.yaml.
func TestWorkflowContextRoute(t *testing.T) {
	var contractor atomic.Pointer[node.Node]
	m, worker := echoMesh(t, func(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
		cl, err := contractor.Load().TaskContext(task)
		if err != nil {
			return nil, err
		}
		if _, err := cl.Put(ctx, "stock.level", json.RawMessage(`7`)); err != nil {
			return nil, err
		}
		return task.Input, nil
	})
	contractor.Store(m.Nodes[1])
	n := m.Nodes[0]
	e := workflowtest.Engine(t, n)
	_, c := newTestServer(t, n, WithWorkflows(e))
	ctx := ctxT(t)
	run, err := c.StartWorkflow(ctx, WorkflowBody{Source: "version: 1\nsteps:\n  stock: {capability: echo, bid_window: 150ms, context: {writes: [stock.*]}}\n"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := e.Wait(ctx, run.ID); err != nil || r.State != workflow.StateCompleted {
		t.Fatalf("workflow: %+v, %v", r, err)
	}
	got, err := c.WorkflowContext(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != 1 {
		t.Fatalf("context %+v, want the one entry the step wrote", got)
	}
	en := got.Entries[0]
	if en.Key != "stock.level" || string(en.Value) != "7" || en.Writer != worker.ID || en.Step != "stock" || en.WriterName != "worker" ||
		!en.Verified || en.Written.IsZero() {
		t.Fatalf("entry %+v; want stock.level = 7 by the worker in step stock, verified", en)
	}
	if _, err := sharedctx.OpenStored(en.Signed, 0); err != nil {
		t.Fatalf("the entry's signed envelope: %v", err)
	}
	_, err = c.WorkflowContext(ctx, "nope")
	if ae := (*Error)(nil); !errors.As(err, &ae) || ae.Code != CodeNotFound {
		t.Fatalf("unknown workflow: %v, want not_found", err)
	}
}
