package mcp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleynet/parley/discovery"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node/api"
	"github.com/parleynet/parley/tracing"
)

// The tools' inputs and outputs. The SDK derives each tool's JSON schemas
// from these types and checks inputs and outputs against them, so they
// are written for the wire: durations are Go duration strings, JSON
// values are any. Every any field has a jsonschema description: without
// one its schema is the boolean schema true, valid JSON Schema that the
// TypeScript SDK's tool list refuses (it wants an object).

// FindAgentsIn is find_agents' input.
type FindAgentsIn struct {
	Capability string `json:"capability" jsonschema:"the capability to find agents for, e.g. quote"`
	Timeout    string `json:"timeout,omitempty" jsonschema:"how long to look, a Go duration such as 5s; the daemon's default if empty"`
}

// FindAgentsOut is find_agents' output.
type FindAgentsOut struct {
	Agents []Card `json:"agents" jsonschema:"verified signed cards of agents offering the capability"`
}

// Card is a verified agent card.
type Card struct {
	Agent        string       `json:"agent" jsonschema:"the agent's did:key"`
	Name         string       `json:"name"`
	Capabilities []Capability `json:"capabilities"`
	Peer         string       `json:"peer" jsonschema:"the PeerID of the node hosting it"`
	Addrs        []string     `json:"addrs,omitempty"`
	Delegation   string       `json:"delegation" jsonschema:"the node's signed delegation of the agent, base64"`
	Expires      time.Time    `json:"expires"`
}

// Capability is one capability of a card.
type Capability struct {
	Name        string `json:"name"`
	Version     string `json:"version,omitempty"`
	Description string `json:"description,omitempty"`
}

// RequestIn is request's input: api.RequestBody as a model writes it.
type RequestIn struct {
	Capability string  `json:"capability" jsonschema:"the capability needed, e.g. quote"`
	Summary    any     `json:"summary,omitempty" jsonschema:"the public part of the call, seen by every bidder (any JSON)"`
	Input      any     `json:"input,omitempty" jsonschema:"the full task input, sent only to the winner (any JSON)"`
	Budget     float64 `json:"budget,omitempty" jsonschema:"the most to pay; 0 means no limit"`
	Agent      string  `json:"agent,omitempty" jsonschema:"the requesting hosted agent; the node's default agent if empty"`
	BidWindow  string  `json:"bid_window,omitempty" jsonschema:"how long bids are taken, a Go duration such as 2s"`
	Timeout    string  `json:"timeout,omitempty" jsonschema:"the whole task's deadline, a Go duration such as 30s"`
	Calls      int     `json:"calls,omitempty" jsonschema:"the most calls for proposals (retries); the node's default if 0"`
	Strategy   string  `json:"strategy,omitempty" jsonschema:"how bids are ranked: cheapest (default), fastest or weighted:PRICE,SECONDS"`
}

// Outcome is everything the requester learned from one task.
type Outcome struct {
	Task       string       `json:"task"`
	Capability string       `json:"capability"`
	State      string       `json:"state" jsonschema:"completed, failed or canceled"`
	Winner     string       `json:"winner,omitempty" jsonschema:"the winning agent's did:key"`
	WinnerName string       `json:"winner_name,omitempty"`
	WinnerPeer string       `json:"winner_peer,omitempty"`
	Rationale  string       `json:"rationale,omitempty" jsonschema:"why the winner was chosen"`
	Bids       []Bid        `json:"bids"`
	Result     any          `json:"result,omitempty" jsonschema:"the winner's result (any JSON)"`
	Reason     string       `json:"reason,omitempty" jsonschema:"why the task failed or was canceled"`
	Calls      int          `json:"calls"`
	Timings    Timings      `json:"timings"`
	History    []Transition `json:"history"`
}

// Bid is one bid of a task.
type Bid struct {
	Agent     string  `json:"agent"`
	Name      string  `json:"name,omitempty"`
	Peer      string  `json:"peer"`
	Price     float64 `json:"price"`
	ETA       string  `json:"eta" jsonschema:"a Go duration"`
	Rationale string  `json:"rationale,omitempty"`
	Call      int     `json:"call"`
	Rank      int     `json:"rank"`
	Status    string  `json:"status"`
	Note      string  `json:"note,omitempty"`
}

// Timings of a finished task, Go durations.
type Timings struct {
	Negotiation string `json:"negotiation"`
	Work        string `json:"work"`
	Total       string `json:"total"`
}

// Transition is one step of a task's history.
type Transition struct {
	State string    `json:"state"`
	At    time.Time `json:"at"`
	Note  string    `json:"note,omitempty"`
}

// PublishIn is publish's input.
type PublishIn struct {
	Capability string `json:"capability" jsonschema:"the topic's capability"`
	Kind       string `json:"kind,omitempty" jsonschema:"task, offer or event (default event)"`
	Payload    any    `json:"payload" jsonschema:"any JSON value"`
	Agent      string `json:"agent,omitempty" jsonschema:"the publishing hosted agent; the default agent if empty"`
	TTL        string `json:"ttl,omitempty" jsonschema:"how long the intent is valid, a Go duration; the node's default if empty"`
}

// Intent is a published intent as the node signed it.
type Intent struct {
	ID         string    `json:"id"`
	From       string    `json:"from" jsonschema:"the signing agent's did:key"`
	Origin     string    `json:"origin" jsonschema:"the PeerID of its node"`
	Kind       string    `json:"kind"`
	Capability string    `json:"capability"`
	Payload    any       `json:"payload" jsonschema:"any JSON value"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
}

// TasksIn is tasks' input.
type TasksIn struct {
	Limit int `json:"limit,omitempty" jsonschema:"at most this many, newest first; all the node keeps if 0"`
}

// TasksOut is tasks' output.
type TasksOut struct {
	Tasks []Task `json:"tasks" jsonschema:"the node's tasks, as requester and as contractor, newest first"`
}

// TaskIn names one task.
type TaskIn struct {
	Task string `json:"task" jsonschema:"the task's ID"`
}

// Task is a task as the node lists it, with its state history.
type Task struct {
	Task       string       `json:"task"`
	Role       string       `json:"role" jsonschema:"requester or contractor"`
	Capability string       `json:"capability"`
	Agent      string       `json:"agent" jsonschema:"this node's agent in the task"`
	AgentName  string       `json:"agent_name,omitempty"`
	Peer       string       `json:"peer,omitempty" jsonschema:"the other side: the winner or the requester"`
	PeerName   string       `json:"peer_name,omitempty"`
	State      string       `json:"state"`
	Updated    time.Time    `json:"updated"`
	History    []Transition `json:"history"`
	Outcome    *Outcome     `json:"outcome,omitempty" jsonschema:"a requester's task's outcome, once it ended"`
	Question   *Question    `json:"question,omitempty" jsonschema:"the winner's open question while the task is input-required (answer_task answers it)"`
}

// tools are the server's tools; client gives each call its API client.
type tools struct{ client ClientFunc }

func (t *tools) add(s *sdk.Server) {
	readOnly := &sdk.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: ptr(true)}
	sdk.AddTool(s, &sdk.Tool{
		Name:        "find_agents",
		Title:       "Find agents",
		Description: "Find agents in the mesh that offer a capability: their verified signed cards (agent DID, name, capabilities, hosting node).",
		Annotations: readOnly,
	}, t.findAgents)
	sdk.AddTool(s, &sdk.Tool{
		Name:  "request",
		Title: "Request work",
		Description: "Hire an agent for a capability: the node calls for bids in the mesh, awards the best one by the strategy, " +
			"sends the input to the winner alone and returns the outcome (bids, winner, result). Sends progress notifications " +
			"as the task moves (negotiating, working) when the call has a progress token. A task that fails is a tool error carrying the outcome.",
		Annotations: &sdk.ToolAnnotations{OpenWorldHint: ptr(true), DestructiveHint: ptr(false)},
	}, t.request)
	sdk.AddTool(s, &sdk.Tool{
		Name:        "publish",
		Title:       "Publish an intent",
		Description: "Sign and gossip an intent (event, offer or task) on a capability's topic as one of the node's agents.",
		Annotations: &sdk.ToolAnnotations{OpenWorldHint: ptr(true), DestructiveHint: ptr(false)},
	}, t.publish)
	sdk.AddTool(s, &sdk.Tool{
		Name:        "tasks",
		Title:       "List tasks",
		Description: "The node's tasks in both roles (requester, contractor), newest first, with their states and histories.",
		Annotations: readOnly,
	}, t.tasks)
	sdk.AddTool(s, &sdk.Tool{
		Name:        "task",
		Title:       "Show a task",
		Description: "One task's state and history, and its outcome once a requested task ended.",
		Annotations: readOnly,
	}, t.task)
	sdk.AddTool(s, &sdk.Tool{
		Name:        "cancel_task",
		Title:       "Cancel a task",
		Description: "Cancel a running task; the answer is the task right after the cancel was sent, which may not have taken effect yet.",
		Annotations: &sdk.ToolAnnotations{DestructiveHint: ptr(true), IdempotentHint: true},
	}, t.cancelTask)
	t.addWorkflows(s) // workflows.go
	t.addAnswer(s)    // answer.go
}

func ptr[T any](v T) *T { return &v }

// callerTrace puts the W3C trace context a client sent in the call's
// _meta.traceparent (OpenTelemetry's convention for MCP) into ctx, so the
// API client passes it on and the task joins the caller's trace. A bad
// one is ignored: it costs the caller its trace, never the call.
func callerTrace(ctx context.Context, req *sdk.CallToolRequest) context.Context {
	if req == nil || req.Params == nil {
		return ctx
	}
	tp, _ := req.Params.Meta["traceparent"].(string)
	sc, err := tracing.ParseTraceparent(tp)
	if err != nil {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

func (t *tools) findAgents(ctx context.Context, req *sdk.CallToolRequest, in FindAgentsIn) (*sdk.CallToolResult, FindAgentsOut, error) {
	var out FindAgentsOut
	c, err := t.client(req)
	if err != nil {
		return nil, out, err
	}
	var timeout time.Duration
	if in.Timeout != "" {
		if timeout, err = time.ParseDuration(in.Timeout); err != nil || timeout <= 0 {
			return nil, out, fmt.Errorf("timeout %q: want a positive Go duration such as \"5s\"", in.Timeout)
		}
	}
	cards, err := c.FindAgents(ctx, in.Capability, timeout)
	if err != nil {
		return nil, out, toolError("find agents for "+in.Capability, err)
	}
	out.Agents = make([]Card, 0, len(cards))
	for _, sc := range cards {
		out.Agents = append(out.Agents, cardOf(sc))
	}
	return nil, out, nil
}

func (t *tools) request(ctx context.Context, req *sdk.CallToolRequest, in RequestIn) (*sdk.CallToolResult, Outcome, error) {
	ctx = callerTrace(ctx, req)
	c, err := t.client(req)
	if err != nil {
		return nil, Outcome{}, err
	}
	body := api.RequestBody{Capability: in.Capability, Budget: in.Budget, Agent: in.Agent, BidWindow: in.BidWindow,
		Timeout: in.Timeout, Calls: in.Calls, Strategy: in.Strategy}
	for _, f := range []struct {
		v   any
		dst *json.RawMessage
	}{{in.Summary, &body.Summary}, {in.Input, &body.Input}} {
		if f.v != nil {
			if *f.dst, err = json.Marshal(f.v); err != nil {
				return nil, Outcome{}, err
			}
		}
	}
	// One progress notification per update of the task as it happens
	// (submitted, each call, working, the winner's progress notes), and
	// one for its end; progress counts them.
	token := req.Params.GetProgressToken()
	if token == nil { // nobody to tell: the plain request, no stream to read
		o, err := c.Request(ctx, body)
		return requestResult(in, o, err)
	}
	n := 0
	notify := func(msg string) {
		n++
		// A client that stopped listening does not stop the task: only a
		// cancel (or its going away) does.
		_ = req.Session.NotifyProgress(ctx, &sdk.ProgressNotificationParams{ProgressToken: token, Progress: float64(n), Message: msg})
	}
	o, err := c.RequestStream(ctx, body, func(u negotiation.Update) error {
		msg := fmt.Sprintf("task %s %s", u.Task, u.State)
		if u.Progress && u.Fraction > 0 {
			msg += fmt.Sprintf(" %.0f%%", 100*u.Fraction)
		}
		if u.Note != "" {
			msg += ": " + u.Note
		}
		if u.State == negotiation.StateWorking && !u.Progress && u.WinnerName != "" {
			msg += " (" + u.WinnerName + ")"
		}
		notify(msg)
		return nil
	})
	if o != nil {
		end := fmt.Sprintf("task %s %s", o.Task, o.State)
		if o.Reason != "" {
			end += ": " + o.Reason
		}
		notify(end)
	}
	return requestResult(in, o, err)
}

// requestResult is the request tool's answer to an outcome and error.
func requestResult(in RequestIn, o *negotiation.Outcome, err error) (*sdk.CallToolResult, Outcome, error) {
	if o == nil {
		return nil, Outcome{}, toolError("request "+in.Capability, err)
	}
	out := outcomeOf(o)
	if err == nil {
		return nil, out, nil
	}
	// A task that did not complete: a tool error, with the outcome (bids,
	// reason) both as text and as structured content.
	b, _ := json.Marshal(out)
	return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{
		&sdk.TextContent{Text: fmt.Sprintf("task %s %s: %s", o.Task, o.State, o.Reason)},
		&sdk.TextContent{Text: string(b)},
	}}, out, nil
}

func (t *tools) publish(ctx context.Context, req *sdk.CallToolRequest, in PublishIn) (*sdk.CallToolResult, Intent, error) {
	ctx = callerTrace(ctx, req)
	c, err := t.client(req)
	if err != nil {
		return nil, Intent{}, err
	}
	payload, err := json.Marshal(in.Payload)
	if err != nil {
		return nil, Intent{}, err
	}
	got, err := c.Publish(ctx, api.PublishRequest{Capability: in.Capability, Kind: intent.Kind(in.Kind), Payload: payload, Agent: in.Agent, TTL: in.TTL})
	if err != nil {
		return nil, Intent{}, toolError("publish on "+in.Capability, err)
	}
	return nil, Intent{ID: got.ID, From: string(got.From), Origin: got.Origin.String(), Kind: string(got.Kind), Capability: got.Capability,
		Payload: jsonValue(got.Payload), Created: got.Created, Expires: got.Expires}, nil
}

func (t *tools) tasks(ctx context.Context, req *sdk.CallToolRequest, in TasksIn) (*sdk.CallToolResult, TasksOut, error) {
	var out TasksOut
	c, err := t.client(req)
	if err != nil {
		return nil, out, err
	}
	if in.Limit < 0 {
		return nil, out, fmt.Errorf("limit %d: want ≥ 0", in.Limit)
	}
	list, err := c.Tasks(ctx)
	if err != nil {
		return nil, out, toolError("list tasks", err)
	}
	if in.Limit > 0 && len(list) > in.Limit {
		list = list[:in.Limit]
	}
	out.Tasks = make([]Task, 0, len(list))
	for _, ti := range list {
		out.Tasks = append(out.Tasks, taskOf(ti))
	}
	return nil, out, nil
}

func (t *tools) task(ctx context.Context, req *sdk.CallToolRequest, in TaskIn) (*sdk.CallToolResult, Task, error) {
	c, err := t.client(req)
	if err != nil {
		return nil, Task{}, err
	}
	ti, err := c.Task(ctx, in.Task)
	if err != nil {
		return nil, Task{}, toolError("task "+in.Task, err)
	}
	return nil, taskOf(*ti), nil
}

func (t *tools) cancelTask(ctx context.Context, req *sdk.CallToolRequest, in TaskIn) (*sdk.CallToolResult, Task, error) {
	c, err := t.client(req)
	if err != nil {
		return nil, Task{}, err
	}
	ti, err := c.CancelTask(ctx, in.Task)
	if err != nil {
		return nil, Task{}, toolError("cancel task "+in.Task, err)
	}
	return nil, taskOf(*ti), nil
}

func cardOf(sc *discovery.SignedCard) Card {
	c := Card{Agent: string(sc.Agent), Name: sc.Name, Capabilities: make([]Capability, 0, len(sc.Capabilities)), Peer: sc.Peer.String(),
		Addrs: sc.Addrs, Delegation: base64.StdEncoding.EncodeToString(sc.Delegation), Expires: sc.Expires}
	for _, k := range sc.Capabilities {
		c.Capabilities = append(c.Capabilities, Capability(k))
	}
	return c
}

func outcomeOf(o *negotiation.Outcome) Outcome {
	out := Outcome{Task: o.Task, Capability: o.Capability, State: string(o.State), Winner: string(o.Winner), WinnerName: o.WinnerName,
		Rationale: o.Rationale, Bids: make([]Bid, 0, len(o.Bids)), Result: jsonValue(o.Result), Reason: o.Reason, Calls: o.Calls,
		Timings: Timings{Negotiation: o.Timings.Negotiation.String(), Work: o.Timings.Work.String(), Total: o.Timings.Total.String()},
		History: history(o.History)}
	if o.WinnerPeer != "" {
		out.WinnerPeer = o.WinnerPeer.String()
	}
	for _, b := range o.Bids {
		out.Bids = append(out.Bids, Bid{Agent: string(b.Agent), Name: b.Name, Peer: b.Peer.String(), Price: b.Price, ETA: b.ETA.String(),
			Rationale: b.Rationale, Call: b.Call, Rank: b.Rank, Status: b.Status, Note: b.Note})
	}
	return out
}

func taskOf(ti negotiation.TaskInfo) Task {
	t := Task{Task: ti.Task, Role: string(ti.Role), Capability: ti.Capability, Agent: string(ti.Agent), AgentName: ti.AgentName,
		Peer: string(ti.Peer), PeerName: ti.PeerName, State: string(ti.State), Updated: ti.Updated, History: history(ti.History)}
	if ti.Outcome != nil {
		o := outcomeOf(ti.Outcome)
		t.Outcome = &o
	}
	if q := ti.Question; q != nil {
		t.Question = &Question{Note: q.Note, Schema: jsonValue(q.Schema), Ask: q.Ask}
	}
	return t
}

func history(h []negotiation.Transition) []Transition {
	out := make([]Transition, 0, len(h))
	for _, s := range h {
		out = append(out, Transition{State: string(s.State), At: s.At, Note: s.Note})
	}
	return out
}

// jsonValue decodes raw JSON for a structured output; nil if there is none.
func jsonValue(raw json.RawMessage) any {
	if len(raw) == 0 {
		return nil
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	return v
}
