package mcp_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parleynet/parley/interop/mcp"
	"github.com/parleynet/parley/node/api"
	"github.com/parleynet/parley/workflow/workflowtest"
)

// withWorkflows gives the mesh's API a workflow engine on node 0, its
// context owned by the node's default agent, closed with the test.
func (ms *mesh) withWorkflows(t *testing.T) {
	t.Helper()
	n := ms.m.Nodes[0]
	ms.srv = api.NewServer(n, token, api.WithMCP(mcp.Mount("test")), api.WithWorkflows(workflowtest.Engine(t, n)))
}

// TestWorkflowTools: run_workflow runs a two-step workflow to its end,
// with a progress notification per step change; workflows lists it and
// workflow shows its steps' history; a bad file is a tool error with its
// file:line, and so are an unknown ID and a cancel of an ended workflow.
func TestWorkflowTools(t *testing.T) {
	ms := newMesh(t, nil)
	ms.withWorkflows(t)
	progress := newProgressLog(nil)
	cs := ms.connect(t, &sdk.ClientOptions{ProgressNotificationHandler: progress.handle})
	ctx := context.Background()
	src := "version: 1\nname: twice\nsteps:\n  a: {capability: echo, bid_window: 100ms, input: '{n: $input.n}'}\n" +
		"  b: {capability: echo, bid_window: 100ms, needs: [a], input: '{n: ($steps.a.output.n + 1)}'}\noutput: '$steps.b.output.n'\n"
	params := &sdk.CallToolParams{Name: "run_workflow", Arguments: map[string]any{"file": "twice.yaml", "source": src, "input": map[string]any{"n": 1}, "wait": true}}
	params.SetProgressToken("w1")
	res, err := cs.CallTool(ctx, params)
	if err != nil || res.IsError {
		t.Fatalf("run_workflow: %v %s", err, text(res))
	}
	wf := structured[mcp.Workflow](t, res)
	if out, _ := json.Marshal(wf.Output); wf.State != "completed" || string(out) != "2" || len(wf.Steps) != 2 {
		t.Fatalf("run_workflow: %+v; want completed with output 2", wf)
	}
	for _, st := range wf.Steps {
		if st.State != "completed" || len(st.Attempts) != 1 || st.Attempts[0].WinnerName != "worker" || st.Attempts[0].Task == "" {
			t.Fatalf("step %+v; want completed by the worker in one attempt", st)
		}
	}
	var msgs []string
	for _, p := range progress.until(t, "workflow "+wf.ID+" completed") {
		msgs = append(msgs, p.Message)
	}
	got := strings.Join(msgs, "\n")
	for _, want := range []string{"step a running", "step a completed (attempt 1: completed, worker)", "step b completed"} {
		if !strings.Contains(got, want) {
			t.Errorf("progress:\n%s\nwant a notification with %q", got, want)
		}
	}

	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "workflows", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("workflows: %v %s", err, text(res))
	}
	if list := structured[mcp.WorkflowsOut](t, res).Workflows; len(list) != 1 || list[0].ID != wf.ID || list[0].Done != 2 || list[0].Name != "twice" {
		t.Fatalf("workflows: %+v", list)
	}
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "workflow", Arguments: map[string]any{"workflow": wf.ID}})
	if err != nil || res.IsError {
		t.Fatalf("workflow: %v %s", err, text(res))
	}
	if shown := structured[mcp.Workflow](t, res); shown.State != "completed" || shown.Steps[1].Attempts[0].Task != wf.Steps[1].Attempts[0].Task {
		t.Fatalf("workflow: %+v", shown)
	}

	for _, tc := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"run_workflow", map[string]any{"file": "bad.yaml", "source": "version: 1\nsteps:\n  a: {capability: echo, needs: [b]}\n"}, `bad.yaml:3: step a: needs unknown step "b"`},
		{"run_workflow", map[string]any{"source": ""}, "source"},
		{"workflow", map[string]any{"workflow": "nope"}, "code not_found"},
		{"cancel_workflow", map[string]any{"workflow": wf.ID}, "already ended"},
	} {
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: tc.tool, Arguments: tc.args})
		if err != nil {
			t.Fatalf("%s %v: protocol error %v, want a tool error", tc.tool, tc.args, err)
		}
		if !res.IsError || !strings.Contains(text(res), tc.want) {
			t.Errorf("%s %v: isError %v, %q; want an error containing %q", tc.tool, tc.args, res.IsError, text(res), tc.want)
		}
	}
}
