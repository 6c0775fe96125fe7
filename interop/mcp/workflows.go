package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parleynet/parley/node/api"
	"github.com/parleynet/parley/workflow"
)

// The workflow tools: run_workflow, workflows, workflow, cancel_workflow.
// Like the task tools they call the API's /v1/workflows routes, so a
// workflow an LLM starts is the node's own, run through the same
// admission, policy and audit as `parley flow run`.

// RunWorkflowIn is run_workflow's input.
type RunWorkflowIn struct {
	Source string `json:"source" jsonschema:"the workflow file's YAML text (version: 1, steps: …)"`
	File   string `json:"file,omitempty" jsonschema:"the name errors give the file (file:line: reason); workflow.yaml if empty"`
	Input  any    `json:"input,omitempty" jsonschema:"the workflow input (any JSON; {} if absent)"`
	Wait   bool   `json:"wait,omitempty" jsonschema:"wait for the workflow's end, with a progress notification per step change; otherwise answer once it started"`
}

// WorkflowIn names one workflow.
type WorkflowIn struct {
	Workflow string `json:"workflow" jsonschema:"the workflow's ID"`
}

func (in WorkflowIn) check() error {
	if strings.TrimSpace(in.Workflow) == "" {
		return fmt.Errorf("workflow: the workflow's ID is required (the workflows tool lists them)")
	}
	return nil
}

// WorkflowsIn is workflows' input.
type WorkflowsIn struct {
	Limit int `json:"limit,omitempty" jsonschema:"at most this many, newest first; all the node keeps if 0"`
}

// WorkflowsOut is workflows' output.
type WorkflowsOut struct {
	Workflows []WorkflowSummary `json:"workflows" jsonschema:"the node's workflows, newest first"`
}

// WorkflowSummary is a workflow as workflows lists it.
type WorkflowSummary struct {
	ID      string    `json:"id"`
	Name    string    `json:"name,omitempty"`
	State   string    `json:"state" jsonschema:"running, compensating, completed, failed or canceled"`
	Steps   int       `json:"steps"`
	Done    int       `json:"done" jsonschema:"steps completed, skipped or compensated"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	Error   string    `json:"error,omitempty"`
}

// Workflow is one workflow: its state, each step's history and, from the
// workflow tool (and run_workflow once waited for), its shared context.
type Workflow struct {
	ID      string         `json:"id"`
	Name    string         `json:"name,omitempty"`
	File    string         `json:"file"`
	State   string         `json:"state" jsonschema:"running, compensating, completed, failed or canceled"`
	Error   string         `json:"error,omitempty" jsonschema:"why it failed or was canceled"`
	Input   any            `json:"input,omitempty" jsonschema:"the workflow input (any JSON)"`
	Output  any            `json:"output,omitempty" jsonschema:"the workflow output once completed (any JSON)"`
	Created time.Time      `json:"created"`
	Updated time.Time      `json:"updated"`
	Resumed int            `json:"resumed" jsonschema:"how often a restarted node took it up again"`
	Steps   []WorkflowStep `json:"steps"`
	Context []ContextEntry `json:"context,omitempty" jsonschema:"the shared context's entries, each checked again by the node"`
}

// WorkflowStep is one step's state and history.
type WorkflowStep struct {
	Name         string        `json:"name"`
	Capability   string        `json:"capability"`
	Needs        []string      `json:"needs"`
	State        string        `json:"state" jsonschema:"pending, running, completed, skipped, failed, canceled, compensated or compensation_failed"`
	Approved     bool          `json:"approved,omitempty"`
	Output       any           `json:"output,omitempty" jsonschema:"the step's result (any JSON)"`
	Error        string        `json:"error,omitempty"`
	Started      string        `json:"started,omitempty" jsonschema:"RFC 3339"`
	Ended        string        `json:"ended,omitempty" jsonschema:"RFC 3339"`
	Attempts     []Attempt     `json:"attempts" jsonschema:"each negotiation of the step"`
	Compensation *Compensation `json:"compensation,omitempty" jsonschema:"the run of its compensate: step, once one began"`
}

// Compensation is the run of a step's compensate: step.
type Compensation struct {
	Capability string    `json:"capability"`
	State      string    `json:"state"`
	Output     any       `json:"output,omitempty" jsonschema:"its result (any JSON)"`
	Error      string    `json:"error,omitempty"`
	Attempts   []Attempt `json:"attempts"`
}

// Attempt is one negotiation of a step.
type Attempt struct {
	N          int     `json:"n"`
	Task       string  `json:"task,omitempty" jsonschema:"the task ID (the task tool shows it)"`
	State      string  `json:"state" jsonschema:"a task state, or interrupted (the node stopped)"`
	Winner     string  `json:"winner,omitempty" jsonschema:"the winning agent's did:key"`
	WinnerName string  `json:"winner_name,omitempty"`
	WinnerPeer string  `json:"winner_peer,omitempty"`
	Price      float64 `json:"price,omitempty"`
	Bids       int     `json:"bids"`
	Started    string  `json:"started" jsonschema:"RFC 3339"`
	Ended      string  `json:"ended,omitempty" jsonschema:"RFC 3339"`
	Error      string  `json:"error,omitempty"`
}

// ContextEntry is one key of a workflow's shared context.
type ContextEntry struct {
	Key        string    `json:"key"`
	Value      any       `json:"value" jsonschema:"the key's value (any JSON)"`
	Writer     string    `json:"writer" jsonschema:"the did:key of the agent that signed it"`
	WriterName string    `json:"writer_name,omitempty" jsonschema:"the name of the step's winner that wrote it"`
	Step       string    `json:"step,omitempty" jsonschema:"the step whose winner wrote it; absent for the requester's own writes"`
	Task       string    `json:"task,omitempty"`
	Written    time.Time `json:"written" jsonschema:"the writer's clock when it signed"`
	Verified   bool      `json:"verified" jsonschema:"its signature and body verify now"`
	Error      string    `json:"error,omitempty" jsonschema:"why it does not verify"`
}

func (t *tools) addWorkflows(s *sdk.Server) {
	readOnly := &sdk.ToolAnnotations{ReadOnlyHint: true}
	sdk.AddTool(s, &sdk.Tool{
		Name:  "run_workflow",
		Title: "Run a workflow",
		Description: "Start a workflow on the node from its YAML text: multi-step work whose steps are each a negotiation in the mesh, " +
			"with needs:, jq inputs, retries, approvals, compensations and a shared context. A bad file is a tool error listing " +
			"file:line: reason. Answers with the workflow's ID once it started, or with wait, at its end (with its shared context), " +
			"sending a progress notification per step change when the call has a progress token; a workflow that does not complete " +
			"is then a tool error carrying it. Canceling the call ends the wait, not the workflow (cancel_workflow does).",
		Annotations: &sdk.ToolAnnotations{OpenWorldHint: ptr(true), DestructiveHint: ptr(false)},
	}, t.runWorkflow)
	sdk.AddTool(s, &sdk.Tool{
		Name:        "workflows",
		Title:       "List workflows",
		Description: "The node's workflows, newest first, with their states and how many steps are done.",
		Annotations: readOnly,
	}, t.workflows)
	sdk.AddTool(s, &sdk.Tool{
		Name:  "workflow",
		Title: "Show a workflow",
		Description: "One workflow's state, each step's history (attempts, tasks, winners, prices, times, errors) and its shared " +
			"context: every entry with its writer, the step that wrote it, when, and whether its signature verifies.",
		Annotations: readOnly,
	}, t.workflow)
	sdk.AddTool(s, &sdk.Tool{
		Name:        "cancel_workflow",
		Title:       "Cancel a workflow",
		Description: "Cancel a running workflow: its running steps are canceled and its completed steps compensated, latest first; the answer is the workflow right after the cancel was sent.",
		Annotations: &sdk.ToolAnnotations{DestructiveHint: ptr(true), IdempotentHint: true},
	}, t.cancelWorkflow)
}

func (t *tools) runWorkflow(ctx context.Context, req *sdk.CallToolRequest, in RunWorkflowIn) (*sdk.CallToolResult, Workflow, error) {
	ctx = callerTrace(ctx, req)
	c, err := t.client(req)
	if err != nil {
		return nil, Workflow{}, err
	}
	body := api.WorkflowBody{File: in.File, Source: in.Source}
	if body.File == "" {
		body.File = "workflow.yaml"
	}
	if in.Input != nil {
		if body.Input, err = json.Marshal(in.Input); err != nil {
			return nil, Workflow{}, fmt.Errorf("input: %w", err)
		}
	}
	run, err := c.StartWorkflow(ctx, body)
	if err != nil {
		return nil, Workflow{}, toolError("run workflow "+body.File, err)
	}
	if !in.Wait {
		return nil, workflowOf(run), nil
	}
	// One notification per step change as it happens (a step starting, a
	// new attempt, a winner, its end) and one for the workflow's end.
	token := req.Params.GetProgressToken()
	n := 0
	notify := func(msg string) {
		if token == nil {
			return
		}
		n++
		// A client that stopped listening does not stop the workflow:
		// only cancel_workflow does.
		_ = req.Session.NotifyProgress(ctx, &sdk.ProgressNotificationParams{ProgressToken: token, Progress: float64(n), Message: msg})
	}
	seen := map[string]string{}
	last := run
	err = c.FollowWorkflow(ctx, run.ID, func(r *workflow.Run) error {
		last = r
		for _, st := range r.Steps {
			if note := stepNote(st); seen[st.Name] != note {
				seen[st.Name] = note
				notify(fmt.Sprintf("workflow %s: %s", r.ID, note))
			}
		}
		return nil
	})
	if err != nil {
		return nil, Workflow{}, toolError("follow workflow "+run.ID, err)
	}
	end := fmt.Sprintf("workflow %s %s", last.ID, last.State)
	if last.Error != "" {
		end += ": " + last.Error
	}
	notify(end)
	out := workflowOf(last)
	if out.Context, err = contextOf(ctx, c, last.ID); err != nil {
		return nil, Workflow{}, toolError("workflow "+last.ID+"'s context", err)
	}
	if last.State == workflow.StateCompleted {
		return nil, out, nil
	}
	b, _ := json.Marshal(out)
	return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{
		&sdk.TextContent{Text: end},
		&sdk.TextContent{Text: string(b)},
	}}, out, nil
}

// stepNote says where a step is: its state, attempt and winner.
func stepNote(st workflow.StepRun) string {
	note := fmt.Sprintf("step %s %s", st.Name, st.State)
	if n := len(st.Attempts); n > 0 {
		a := st.Attempts[n-1]
		note += fmt.Sprintf(" (attempt %d: %s", a.N, a.State)
		if a.WinnerName != "" {
			note += ", " + a.WinnerName
		}
		note += ")"
	}
	if st.Error != "" {
		note += ": " + st.Error
	}
	if cp := st.Compensation; cp != nil {
		note += "; compensation " + string(cp.State)
	}
	return note
}

func (t *tools) workflows(ctx context.Context, req *sdk.CallToolRequest, in WorkflowsIn) (*sdk.CallToolResult, WorkflowsOut, error) {
	var out WorkflowsOut
	c, err := t.client(req)
	if err != nil {
		return nil, out, err
	}
	if in.Limit < 0 {
		return nil, out, fmt.Errorf("limit %d: want ≥ 0", in.Limit)
	}
	list, err := c.Workflows(ctx)
	if err != nil {
		return nil, out, toolError("list workflows", err)
	}
	if in.Limit > 0 && len(list) > in.Limit {
		list = list[:in.Limit]
	}
	out.Workflows = make([]WorkflowSummary, 0, len(list))
	for _, s := range list {
		out.Workflows = append(out.Workflows, WorkflowSummary{ID: s.ID, Name: s.Name, State: string(s.State), Steps: s.Steps, Done: s.Done,
			Created: s.Created, Updated: s.Updated, Error: s.Error})
	}
	return nil, out, nil
}

func (t *tools) workflow(ctx context.Context, req *sdk.CallToolRequest, in WorkflowIn) (*sdk.CallToolResult, Workflow, error) {
	c, err := t.client(req)
	if err != nil {
		return nil, Workflow{}, err
	}
	if err := in.check(); err != nil {
		return nil, Workflow{}, err
	}
	run, err := c.Workflow(ctx, in.Workflow)
	if err != nil {
		return nil, Workflow{}, toolError("workflow "+in.Workflow, err)
	}
	out := workflowOf(run)
	if out.Context, err = contextOf(ctx, c, run.ID); err != nil {
		return nil, Workflow{}, toolError("workflow "+in.Workflow+"'s context", err)
	}
	return nil, out, nil
}

func (t *tools) cancelWorkflow(ctx context.Context, req *sdk.CallToolRequest, in WorkflowIn) (*sdk.CallToolResult, Workflow, error) {
	c, err := t.client(req)
	if err != nil {
		return nil, Workflow{}, err
	}
	if err := in.check(); err != nil {
		return nil, Workflow{}, err
	}
	run, err := c.CancelWorkflow(ctx, in.Workflow)
	if err != nil {
		return nil, Workflow{}, toolError("cancel workflow "+in.Workflow, err)
	}
	return nil, workflowOf(run), nil
}

// contextOf is a workflow's shared context as the tools show it.
func contextOf(ctx context.Context, c *api.Client, id string) ([]ContextEntry, error) {
	wc, err := c.WorkflowContext(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make([]ContextEntry, 0, len(wc.Entries))
	for _, e := range wc.Entries {
		out = append(out, ContextEntry{Key: e.Key, Value: jsonValue(e.Value), Writer: string(e.Writer), WriterName: e.WriterName, Step: e.Step,
			Task: e.Task, Written: e.Written, Verified: e.Verified, Error: e.Error})
	}
	return out, nil
}

func workflowOf(r *workflow.Run) Workflow {
	w := Workflow{ID: r.ID, Name: r.Name, File: r.File, State: string(r.State), Error: r.Error, Input: jsonValue(r.Input),
		Output: jsonValue(r.Output), Created: r.Created, Updated: r.Updated, Resumed: r.Resumed, Steps: make([]WorkflowStep, 0, len(r.Steps))}
	for _, st := range r.Steps {
		ws := WorkflowStep{Name: st.Name, Capability: st.Capability, Needs: append([]string{}, st.Needs...), State: string(st.State),
			Approved: st.Approved, Output: jsonValue(st.Output), Error: st.Error, Started: stamp(st.Started), Ended: stamp(st.Ended),
			Attempts: attemptsOf(st.Attempts)}
		if cp := st.Compensation; cp != nil {
			ws.Compensation = &Compensation{Capability: cp.Capability, State: string(cp.State), Output: jsonValue(cp.Output), Error: cp.Error,
				Attempts: attemptsOf(cp.Attempts)}
		}
		w.Steps = append(w.Steps, ws)
	}
	return w
}

func attemptsOf(as []workflow.Attempt) []Attempt {
	out := make([]Attempt, 0, len(as))
	for _, a := range as {
		at := Attempt{N: a.N, Task: a.Task, State: a.State, Winner: string(a.Winner), WinnerName: a.WinnerName, Price: a.Price,
			Bids: a.Bids, Started: a.Started.Format(time.RFC3339Nano), Ended: stamp(a.Ended), Error: a.Error}
		if a.WinnerPeer != "" {
			at.WinnerPeer = a.WinnerPeer.String()
		}
		out = append(out, at)
	}
	return out
}

// stamp is an optional time as the tools write it: RFC 3339, "" if unset
// (a plain string schema, where a *time.Time would be a nullable one).
func stamp(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.Format(time.RFC3339Nano)
}
