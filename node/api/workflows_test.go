package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/workflow"
	"github.com/parleynet/parley/workflow/workflowtest"
)

// The workflow routes, every answer checked against openapi.yaml: start,
// list, get with the step's attempt, cancel of an ended one, bad files
// with file:line, unknown IDs.
func TestWorkflowRoutes(t *testing.T) {
	m, worker := echoMesh(t, nil)
	e := workflowtest.Engine(t, m.Nodes[0])
	_, c := newTestServer(t, m.Nodes[0], WithWorkflows(e))
	ctx := ctxT(t)

	src := "version: 1\nname: echo\nsteps:\n  say:\n    capability: echo\n    bid_window: 150ms\n    input: '{text: $input.text}'\n"
	run, err := c.StartWorkflow(ctx, WorkflowBody{File: "echo.yaml", Source: src, Input: json.RawMessage(`{"text":"hi"}`)})
	if err != nil {
		t.Fatal(err)
	}
	var got *workflow.Run
	for deadline := time.Now().Add(10 * time.Second); ; {
		if got, err = c.Workflow(ctx, run.ID); err != nil {
			t.Fatal(err)
		}
		if got.State.Ended() || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got.State != workflow.StateCompleted || string(got.Output) != `{"say":{"text":"hi"}}` {
		t.Fatalf("workflow %s (%s): output %s", got.State, got.Error, got.Output)
	}
	if a := got.Steps[0].Attempts; len(a) != 1 || a[0].Winner != worker.ID || a[0].Task == "" || a[0].Price != 1 {
		t.Fatalf("attempts %+v", a)
	}
	list, err := c.Workflows(ctx)
	if err != nil || len(list) != 1 || list[0].ID != run.ID || list[0].Done != 1 {
		t.Fatalf("list %+v, %v", list, err)
	}
	for _, tc := range []struct {
		name string
		call func() error
		code Code
		want string
	}{
		{"cancel ended", func() error { _, err := c.CancelWorkflow(ctx, run.ID); return err }, CodeConflict, "already ended"},
		{"get unknown", func() error { _, err := c.Workflow(ctx, "nope"); return err }, CodeNotFound, "unknown workflow"},
		{"cancel unknown", func() error { _, err := c.CancelWorkflow(ctx, "nope"); return err }, CodeNotFound, "unknown workflow"},
		{"bad file", func() error {
			_, err := c.StartWorkflow(ctx, WorkflowBody{File: "bad.yaml", Source: "version: 1\nsteps:\n  a: {capability: echo, needs: [b]}\n"})
			return err
		}, CodeBadRequest, `bad.yaml:3: step a: needs unknown step "b"`},
		{"no source", func() error { _, err := c.StartWorkflow(ctx, WorkflowBody{File: "x.yaml"}); return err }, CodeBadRequest, "source"},
		{"bad input", func() error {
			_, err := c.StartWorkflow(ctx, WorkflowBody{Source: "version: 1\ninput: {required: [text]}\nsteps:\n  a: {capability: echo}\n", Input: json.RawMessage(`{}`)})
			return err
		}, CodeBadRequest, `"text" is required`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ae *Error
			if !errors.As(err, &ae) || ae.Code != tc.code || !strings.Contains(ae.Message, tc.want) {
				t.Fatalf("err = %v, want %s with %q", err, tc.code, tc.want)
			}
		})
	}
}

// A running workflow is canceled through the API; it ends canceled.
func TestWorkflowCancelRoute(t *testing.T) {
	m, _ := echoMesh(t, func(ctx context.Context, _ negotiation.Task) (json.RawMessage, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	e := workflowtest.Engine(t, m.Nodes[0])
	_, c := newTestServer(t, m.Nodes[0], WithWorkflows(e))
	ctx := ctxT(t)
	run, err := c.StartWorkflow(ctx, WorkflowBody{Source: "version: 1\nsteps:\n  a: {capability: echo, bid_window: 100ms}\n"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CancelWorkflow(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	got, err := e.Wait(ctx, run.ID)
	if err != nil || got.State != workflow.StateCanceled {
		t.Fatalf("after cancel: %+v, %v", got, err)
	}
}

// Without an engine the routes answer 501.
func TestWorkflowRoutesOff(t *testing.T) {
	nodes := newTestNodes(t, 1)
	_, c := newTestServer(t, nodes[0])
	_, err := c.Workflows(ctxT(t))
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != CodeNotImplemented {
		t.Fatalf("err = %v, want not_implemented", err)
	}
}

// The event stream follows a workflow to its end: the first event is the
// workflow as it was, the last the completed one, and the stream closes.
func TestWorkflowEvents(t *testing.T) {
	m, _ := echoMesh(t, nil)
	e := workflowtest.Engine(t, m.Nodes[0])
	ts, c := newTestServer(t, m.Nodes[0], WithWorkflows(e))
	ctx := ctxT(t)
	run, err := c.StartWorkflow(ctx, WorkflowBody{Source: "version: 1\nsteps:\n  a: {capability: echo, bid_window: 150ms}\n  b: {capability: echo, bid_window: 150ms, needs: [a]}\n"})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/v1/workflows/"+run.ID+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body) // until the server closes it
	if err != nil {
		t.Fatal(err)
	}
	evs, err := parseEvents(body)
	if err != nil || len(evs) < 2 {
		t.Fatalf("%d events (%v):\n%s", len(evs), err, body)
	}
	var first, last workflow.Run
	if json.Unmarshal(evs[0].data, &first) != nil || json.Unmarshal(evs[len(evs)-1].data, &last) != nil {
		t.Fatalf("events:\n%s", body)
	}
	if first.State.Ended() || last.State != workflow.StateCompleted || last.ID != run.ID {
		t.Fatalf("first %s, last %s", first.State, last.State)
	}
	// The client follows it the same way (parley flow run --follow).
	var states []workflow.State
	if err := c.FollowWorkflow(ctx, run.ID, func(r *workflow.Run) error { states = append(states, r.State); return nil }); err != nil ||
		len(states) != 1 || states[0] != workflow.StateCompleted {
		t.Fatalf("follow an ended workflow: %v, %v", states, err)
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/v1/workflows/nope/events", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown workflow's events: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}
