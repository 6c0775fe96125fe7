package a2a

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2asrv"

	"github.com/parleynet/parley/admission"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/tracing"
)

// executor is the gateway's a2asrv.AgentExecutor: one A2A task is one
// parley request, run through node.Request like POST /v1/tasks.
type executor struct{ g *Gateway }

// updateBuffer is how many updates wait for the A2A event loop; past it
// progress notes are dropped (states are not: the request's goroutine
// waits for them, briefly).
const updateBuffer = 64

func (e *executor) Execute(ctx context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		g := e.g
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			yield(nil, a2a.NewError(a2a.ErrServerError, "the gateway is closing"))
			return
		}
		g.wg.Add(1)
		g.mu.Unlock()
		defer g.wg.Done()
		if ec.StoredTask != nil {
			// A follow-up message to a task: the answer to its winner's
			// question (input.go). Otherwise parley's tasks take their
			// whole input up front.
			if !g.resume(ctx, ec, yield) {
				yield(nil, a2a.NewError(a2a.ErrUnsupportedOperation, "task "+string(ec.TaskID)+" asks for no input; send a new message (no taskId) for new work"))
			}
			return
		}
		need, opts, err := g.need(ec)
		if err != nil {
			yield(nil, err)
			return
		}
		if !yield(a2a.NewSubmittedTask(ec, ec.Message), nil) {
			return
		}
		// The client's W3C trace context (its traceparent header or gRPC
		// metadata) makes the negotiation part of the client's trace.
		if ec.ServiceParams != nil {
			if tp, ok := ec.ServiceParams.Get("traceparent"); ok && len(tp) > 0 {
				ctx = tracing.Extract(ctx, g.n.Tracing().Tracer("parley/a2a"), tp[0])
			}
		}
		r, err := g.start(ctx, ec.TaskID, need, opts)
		if err != nil {
			yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateFailed, a2a.NewMessageForTask(a2a.MessageRoleAgent, ec, a2a.NewTextPart(err.Error()))), nil)
			return
		}
		g.follow(ec, r, yield, blockingCall(ctx))
	}
}

// blocking marks the context of a SendMessage whose client waits for the
// task's end (guard.Before sets it).
type blocking struct{}

func blockingCall(ctx context.Context) bool { return ctx.Value(blocking{}) != nil }

// follow streams a run's updates to the execution: until the task ends,
// or until its winner asks a question, when the execution ends in
// input-required and the run waits, detached, for the client's answer.
//
// A blocking SendMessage (compact) sees no event before the end, so it
// gets fewer: no negotiating status (the task is submitted until a winner
// commits) and its completion as one task, the artifact with the final
// status. a2a-go deep-copies the whole task through encoding/gob two or
// three times per event, which was most of what the gateway added.
func (g *Gateway) follow(ec *a2asrv.ExecutorContext, r *run, yield func(a2a.Event, error) bool, compact bool) {
	open := true
	var said []*a2a.TaskStatusUpdateEvent // the statuses a compact end folds in
	for u := range r.updates {
		if u.State == negotiation.StateSubmitted || compact && u.State == negotiation.StateNegotiating {
			continue // the task itself, yielded before, says it is submitted
		}
		if u.State == negotiation.StateInputRequired && open && g.detach(ec.TaskID, r, u) {
			yield(inputRequired(ec, u, ""), nil)
			return
		}
		ev := statusOf(ec, u)
		if open && !yield(ev, nil) {
			open = false
			r.cancel() // the client or the server is gone; so is the task
		}
		if compact {
			said = append(said, ev)
		}
	}
	res := <-r.done
	g.mu.Lock()
	delete(g.live, ec.TaskID)
	g.mu.Unlock()
	if !open {
		return
	}
	out := res.out
	if out == nil {
		// Refused before any call went out: the policy or the
		// admission layer said no, or the node is closing.
		text := "refused: " + res.err.Error()
		if !errors.Is(res.err, admission.ErrDenied) {
			text = "the node could not run the request: " + res.err.Error()
		}
		ev := a2a.NewStatusUpdateEvent(ec, a2a.TaskStateRejected, a2a.NewMessageForTask(a2a.MessageRoleAgent, ec, a2a.NewTextPart(text)))
		if !errors.Is(res.err, admission.ErrDenied) {
			ev.Status.State = a2a.TaskStateFailed
		}
		yield(ev, nil)
		return
	}
	if out.State == negotiation.StateCompleted {
		if compact {
			yield(completedTask(ec, out, said), nil)
			return
		}
		if !yield(artifactOf(ec, out), nil) {
			return
		}
	}
	yield(finalStatus(ec, out), nil)
}

// completedTask is the task a2a-go would have made of the statuses said,
// the artifact and the final status: each earlier status's message in the
// history after the client's, their metadata merged, later keys winning.
func completedTask(ec *a2asrv.ExecutorContext, out *negotiation.Outcome, said []*a2a.TaskStatusUpdateEvent) *a2a.Task {
	end := finalStatus(ec, out)
	t := &a2a.Task{ID: ec.TaskID, ContextID: ec.ContextID, Status: end.Status, History: []*a2a.Message{ec.Message},
		Artifacts: []*a2a.Artifact{artifactOf(ec, out).Artifact}, Metadata: map[string]any{}}
	for _, ev := range said {
		if ev.Status.Message != nil {
			t.History = append(t.History, ev.Status.Message)
		}
		maps.Copy(t.Metadata, ev.Metadata)
	}
	maps.Copy(t.Metadata, end.Metadata)
	return t
}

// artifactOf is a completed outcome's result as an artifact.
func artifactOf(ec a2a.TaskInfoProvider, out *negotiation.Outcome) *a2a.TaskArtifactUpdateEvent {
	art := a2a.NewArtifactEvent(ec, resultPart(out.Result))
	art.Artifact.Name = "result"
	art.Artifact.Description = fmt.Sprintf("%s's result for %s", displayName(out), out.Capability)
	art.Artifact.Metadata = outcomeMeta(out)
	return art
}

// Cancel ends the parley task; the execution's own context is canceled
// by a2a-go once the canceled status is in. The status goes first: with
// an execution running, a2a-go sends it on that execution's queue, and
// the parley task ended first would end the execution, and close the
// queue, before the status got there.
func (e *executor) Cancel(_ context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		g := e.g
		g.mu.Lock()
		id := ""
		if r := g.live[ec.TaskID]; r != nil {
			id = r.task
		}
		g.mu.Unlock()
		msg := a2a.NewMessageForTask(a2a.MessageRoleAgent, ec, a2a.NewTextPart("canceled by the A2A client"))
		ev := a2a.NewStatusUpdateEvent(ec, a2a.TaskStateCanceled, msg)
		if id != "" {
			ev.Metadata = map[string]any{MetaTask: id}
		}
		yield(ev, nil)
		if id != "" {
			if err := g.n.CancelTask(id); err != nil && !errors.Is(err, negotiation.ErrAlreadyEnded) {
				log.Debugw("cancel", "task", id, "err", err)
			}
		}
	}
}

// need turns an A2A message into a parley Need. Its errors are A2A's
// invalid-params errors naming what is wrong.
func (g *Gateway) need(ec *a2asrv.ExecutorContext) (negotiation.Need, []negotiation.RequestOption, error) {
	var none negotiation.Need
	bad := func(format string, args ...any) error {
		return a2a.NewError(a2a.ErrInvalidParams, fmt.Sprintf(format, args...))
	}
	msg := ec.Message
	if msg == nil {
		return none, nil, bad("no message")
	}
	meta := func(k string) (any, bool) {
		if v, ok := msg.Metadata[k]; ok {
			return v, true
		}
		v, ok := ec.Metadata[k]
		return v, ok
	}
	capability := ""
	for _, k := range []string{MetaSkill, MetaCapability} {
		if v, ok := meta(k); ok {
			s, isStr := v.(string)
			if !isStr {
				return none, nil, bad("metadata %q: want a skill ID (a string), got %T", k, v)
			}
			capability = s
			break
		}
	}
	if capability == "" {
		if sk := g.skills(); len(sk) == 1 {
			capability = sk[0]
		} else {
			return none, nil, bad("name a skill in the message's metadata (%q); this node offers %s", MetaSkill, listOr(sk))
		}
	}
	if !g.offers(capability) {
		return none, nil, bad("skill %q: nobody offers it here; this node offers %s", capability, listOr(g.skills()))
	}
	need := negotiation.Need{Capability: capability}
	input, err := inputOf(msg.Parts)
	if err != nil {
		return none, nil, bad("message parts: %v", err)
	}
	if len(input) > g.cfg.MaxInput {
		return none, nil, bad("input of %d bytes is over the gateway's limit of %d bytes", len(input), g.cfg.MaxInput)
	}
	need.Input = input
	if v, ok := meta(MetaBudget); ok {
		b, isNum := v.(float64)
		if !isNum || b < 0 || math.IsInf(b, 0) || math.IsNaN(b) {
			return none, nil, bad("metadata %q: want a price ≥ 0, got %v", MetaBudget, v)
		}
		need.Budget = b
	}
	if v, ok := meta(MetaSummary); ok {
		b, err := json.Marshal(v)
		if err != nil || len(b) > g.cfg.MaxInput {
			return none, nil, bad("metadata %q: want small JSON", MetaSummary)
		}
		need.Summary = b
	}
	opts := slices.Clone(g.cfg.RequestOptions)
	if g.cfg.Agent != "" {
		opts = append(opts, negotiation.WithAgent(g.cfg.Agent))
	}
	if v, ok := meta(MetaBidWindow); ok {
		s, _ := v.(string)
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return none, nil, bad("metadata %q: want a positive Go duration such as \"500ms\", got %v", MetaBidWindow, v)
		}
		opts = append(opts, negotiation.WithBidWindow(d))
	}
	timeout := g.cfg.Timeout
	if v, ok := meta(MetaTimeout); ok {
		s, _ := v.(string)
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return none, nil, bad("metadata %q: want a positive Go duration such as \"30s\", got %v", MetaTimeout, v)
		}
		if g.cfg.Timeout > 0 {
			d = min(d, g.cfg.Timeout) // the client does not choose how long we hold a task
		}
		timeout = d
	}
	if timeout > 0 {
		opts = append(opts, negotiation.WithTimeout(timeout))
	}
	return need, opts, nil
}

// capabilityOf is the skill a message names, for the audit record.
func capabilityOf(p *a2a.SendMessageRequest) string {
	for _, k := range []string{MetaSkill, MetaCapability} {
		if s, ok := p.Message.Metadata[k].(string); ok {
			return s
		}
		if s, ok := p.Metadata[k].(string); ok {
			return s
		}
	}
	return ""
}

// inputOf is a task's input: the first data part's data, else the text
// (itself if it is JSON, else as a JSON string). Files are refused: a
// parley input is JSON.
func inputOf(parts a2a.ContentParts) (json.RawMessage, error) {
	return jsonOf(parts, "input", "the task's input", true)
}

// jsonOf is the JSON a message's parts carry: the first data part's
// data, else the text, as it is if jsonText and it is JSON, else as a
// JSON string. what and whole name the value in errors.
func jsonOf(parts a2a.ContentParts, what, whole string, jsonText bool) (json.RawMessage, error) {
	var texts []string
	for i, p := range parts {
		if p == nil {
			continue
		}
		switch c := p.Content.(type) {
		case a2a.Data:
			b, err := json.Marshal(c.Value)
			if err != nil {
				return nil, fmt.Errorf("part %d: %v", i, err)
			}
			return b, nil
		case a2a.Text:
			texts = append(texts, string(c))
		default:
			return nil, fmt.Errorf("part %d is a file (%T): send the %s as a data or text part", i, c, what)
		}
	}
	if len(texts) == 0 {
		return nil, fmt.Errorf("no data or text part: %s goes in one", whole)
	}
	text := strings.Join(texts, "\n")
	if jsonText && json.Valid([]byte(text)) {
		return json.RawMessage(text), nil
	}
	return json.Marshal(text)
}

// resultPart is a result as an artifact part: JSON as data, a JSON
// string as text.
func resultPart(r json.RawMessage) *a2a.Part {
	var v any
	if err := json.Unmarshal(r, &v); err != nil {
		return a2a.NewTextPart(string(r))
	}
	if s, ok := v.(string); ok {
		return a2a.NewTextPart(s)
	}
	p := a2a.NewDataPart(v)
	p.MediaType = "application/json"
	return p
}

// statusOf turns an update into an A2A status update. A2A has no
// negotiating state: the call and the bids are "working" with a note.
func statusOf(ec *a2asrv.ExecutorContext, u negotiation.Update) *a2a.TaskStatusUpdateEvent {
	text := ""
	meta := map[string]any{MetaTask: u.Task, "parley_state": string(u.State)}
	switch {
	case u.State == negotiation.StateNegotiating:
		text = "negotiating: " + u.Note
	case u.Progress:
		text = u.Note
		meta["fraction"] = u.Fraction
		meta["winner"] = string(u.Winner)
	default:
		text = fmt.Sprintf("%s won and is working", nameOr(u.WinnerName, string(u.Winner)))
		if strings.HasPrefix(u.Note, "answered") { // Answer's update (input.go)
			text = fmt.Sprintf("%s works on: %s", nameOr(u.WinnerName, string(u.Winner)), u.Note)
		}
		meta["winner"] = string(u.Winner)
	}
	ev := a2a.NewStatusUpdateEvent(ec, a2a.TaskStateWorking, a2a.NewMessageForTask(a2a.MessageRoleAgent, ec, a2a.NewTextPart(text)))
	ev.Metadata = meta
	return ev
}

// finalStatus is the outcome's terminal A2A status.
func finalStatus(ec a2a.TaskInfoProvider, out *negotiation.Outcome) *a2a.TaskStatusUpdateEvent {
	state, text := a2a.TaskStateFailed, out.Reason
	switch out.State {
	case negotiation.StateCompleted:
		state, text = a2a.TaskStateCompleted, fmt.Sprintf("done by %s (%s)", displayName(out), out.Rationale)
	case negotiation.StateCanceled:
		state = a2a.TaskStateCanceled
	}
	ev := a2a.NewStatusUpdateEvent(ec, state, a2a.NewMessageForTask(a2a.MessageRoleAgent, ec, a2a.NewTextPart(text)))
	ev.Metadata = outcomeMeta(out)
	return ev
}

func outcomeMeta(out *negotiation.Outcome) map[string]any {
	m := map[string]any{MetaTask: out.Task, "parley_state": string(out.State), "bids": len(out.Bids), "calls": out.Calls}
	if out.Winner != "" {
		m["winner"], m["winner_name"], m["winner_peer"] = string(out.Winner), out.WinnerName, out.WinnerPeer.String()
		for _, b := range out.Bids {
			if b.Agent == out.Winner && b.Status == "completed" {
				m["price"] = b.Price
			}
		}
	}
	if out.Reason != "" {
		m["reason"] = out.Reason
	}
	return m
}

func displayName(out *negotiation.Outcome) string { return nameOr(out.WinnerName, string(out.Winner)) }

func nameOr(name, id string) string {
	if name != "" {
		return name
	}
	return id
}

func listOr(skills []string) string {
	if len(skills) == 0 {
		return "no skills"
	}
	return strings.Join(skills, ", ")
}
