package a2a

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2asrv"
	"github.com/a2aproject/a2a-go/v2/a2asrv/taskstore"

	"github.com/parleynet/parley/negotiation"
)

// A parley task whose winner asks its requester a question becomes an A2A
// task in TASK_STATE_INPUT_REQUIRED, the question its status message.
// a2a-go ends an execution there, so the parley request is not the
// execution's: it is a run the gateway owns (its goroutine is in g.wg,
// canceled by Close), kept in g.live while it lasts. The client's next
// SendMessage with the task's ID starts a new execution that answers the
// question (a data part's data, or the text as a JSON string) and follows
// the same run on. A run that ends while no execution follows it (a
// cancel, the deadline) writes its end to the task store itself.

// MetaQuestionSchema is where an input-required status carries the
// question's schema hint (any JSON), if it has one.
const MetaQuestionSchema = "parley_answer_schema"

// result is how a run's request ended.
type result struct {
	out *negotiation.Outcome
	err error
}

// run is one parley request for an A2A task. The fields below updates are
// g.mu's.
type run struct {
	updates chan negotiation.Update // closed when the request returns
	done    chan result             // the request's end, once
	ended   chan struct{}           // closed once the run is over, its end stored if detached
	cancel  context.CancelFunc

	task     string              // the parley task, once made
	attached bool                // an execution follows the updates
	finished bool                // the request returned
	question *negotiation.Update // the open question, while detached
}

// start runs a parley request for A2A task id, owned by the gateway. The
// runs alive at once, attached or waiting for an answer, are bounded by
// MaxLive.
func (g *Gateway) start(ctx context.Context, id a2a.TaskID, need negotiation.Need, opts []negotiation.RequestOption) (*run, error) {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx)) // the trace, not the execution's end
	r := &run{updates: make(chan negotiation.Update, updateBuffer), done: make(chan result, 1), ended: make(chan struct{}), cancel: cancel, attached: true}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		cancel()
		return nil, errors.New("the gateway is closing")
	}
	if len(g.live) >= g.cfg.MaxLive {
		g.mu.Unlock()
		cancel()
		return nil, fmt.Errorf("%d tasks are running or waiting for input, the gateway's limit (a2a.max_live); try again later", g.cfg.MaxLive)
	}
	g.live[id] = r
	g.wg.Add(1)
	g.mu.Unlock()
	stop := context.AfterFunc(g.ctx, cancel)
	opts = append(opts, negotiation.WithUpdates(func(u negotiation.Update) {
		g.mu.Lock()
		if u.State == negotiation.StateSubmitted {
			r.task = u.Task // for Cancel
		}
		attached := r.attached
		g.mu.Unlock()
		if u.Progress {
			if !attached {
				return // nobody follows the task; only its states matter
			}
			select {
			case r.updates <- u:
			default: // a slow client loses progress notes, not the task
			}
			return
		}
		select {
		case r.updates <- u:
		case <-rctx.Done():
		}
	}))
	go func() {
		defer g.wg.Done()
		defer close(r.ended)
		defer stop()
		defer cancel()
		out, err := g.n.Request(rctx, need, opts...)
		close(r.updates)
		r.done <- result{out, err}
		g.mu.Lock()
		r.finished = true
		detached := !r.attached
		if detached {
			delete(g.live, id)
		}
		g.mu.Unlock()
		if detached {
			g.finalize(id, out, err)
		}
	}()
	return r, nil
}

// cancelWaiting is the gateway's RequestHandler below a2a-go's call
// interceptors (so the guard still admits and audits every call): it
// cancels a task that waits for an answer itself. No execution follows
// such a task, but a2a-go may still be cleaning up the one that ended at
// the question, and would then send the cancel to that execution and
// fail it as not cancelable (a2a-go's own TODO in its task executor).
type cancelWaiting struct {
	a2asrv.RequestHandler
	g *Gateway
}

func (h cancelWaiting) CancelTask(ctx context.Context, req *a2a.CancelTaskRequest) (*a2a.Task, error) {
	g := h.g
	g.mu.Lock()
	r := g.live[req.ID]
	waiting := r != nil && !r.attached && r.question != nil
	task := ""
	if waiting {
		task = r.task
	}
	g.mu.Unlock()
	if !waiting {
		return h.RequestHandler.CancelTask(ctx, req)
	}
	if err := g.n.CancelTask(task); err != nil && !errors.Is(err, negotiation.ErrAlreadyEnded) {
		return nil, a2a.NewError(a2a.ErrServerError, "cancel: "+err.Error())
	}
	select { // the run stores its end (finalize), or an answer took it on
	case <-r.ended:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	st, err := g.store.Get(ctx, req.ID)
	if err != nil {
		return nil, err
	}
	return st.Task, nil
}

// detach lets an execution end at a question: the run waits for the
// client's answer. False if the request has ended meanwhile (its end is
// still to be read).
func (g *Gateway) detach(id a2a.TaskID, r *run, u negotiation.Update) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r.finished {
		return false
	}
	r.attached, r.question = false, &u
	return true
}

// resume serves a follow-up message to task ec.TaskID: the answer to its
// winner's open question, then the task's updates as before. It returns
// false if the task waits for no answer.
func (g *Gateway) resume(ctx context.Context, ec *a2asrv.ExecutorContext, yield func(a2a.Event, error) bool) bool {
	g.mu.Lock()
	r := g.live[ec.TaskID]
	if r == nil || r.attached || r.finished || r.question == nil {
		g.mu.Unlock()
		return false
	}
	q := *r.question
	r.attached, r.question = true, nil
	task := r.task
	g.mu.Unlock()
	refuse := func(why string) {
		if g.detach(ec.TaskID, r, q) {
			yield(inputRequired(ec, q, why), nil)
			return
		}
		g.follow(ec, r, yield, false) // it ended meanwhile: say how
	}
	var input json.RawMessage
	var err error
	if ec.Message != nil {
		input, err = answerOf(ec.Message.Parts)
	} else {
		err = errors.New("no message")
	}
	switch {
	case err != nil:
		refuse("the answer was not taken (" + err.Error() + ")")
		return true
	case len(input) > g.cfg.MaxInput:
		refuse(fmt.Sprintf("the answer was not taken (%d bytes, over the gateway's limit of %d)", len(input), g.cfg.MaxInput))
		return true
	}
	if err := g.n.AnswerTask(ctx, task, input); err != nil && !errors.Is(err, negotiation.ErrNoQuestion) {
		// ErrNoQuestion: the task moved on (it ended, say); follow says how.
		refuse("the answer was not taken (" + err.Error() + ")")
		return true
	}
	g.follow(ec, r, yield, false)
	return true
}

// answerOf is an answer from a follow-up message's parts: the first data
// part's data, else the text as a JSON string (an answer to a question is
// what the person typed, not a JSON document).
func answerOf(parts a2a.ContentParts) (json.RawMessage, error) {
	return jsonOf(parts, "answer", "the answer", false)
}

// inputRequired is the A2A status of a task whose winner asks: the
// question is the status message (and why an earlier answer was not
// taken, if one was not), its schema hint in the metadata.
func inputRequired(ec a2a.TaskInfoProvider, u negotiation.Update, why string) *a2a.TaskStatusUpdateEvent {
	note := u.Note
	if u.Question != nil {
		note = u.Question.Note
	}
	if why != "" {
		note = why + "; the question stands: " + note
	}
	ev := a2a.NewStatusUpdateEvent(ec, a2a.TaskStateInputRequired, a2a.NewMessageForTask(a2a.MessageRoleAgent, ec, a2a.NewTextPart(note)))
	ev.Metadata = map[string]any{MetaTask: u.Task, "parley_state": string(u.State), "winner": string(u.Winner)}
	if u.Question != nil {
		ev.Metadata["ask"] = u.Question.Ask
		var schema any
		if len(u.Question.Schema) > 0 && json.Unmarshal(u.Question.Schema, &schema) == nil {
			ev.Metadata[MetaQuestionSchema] = schema
		}
	}
	return ev
}

// finalize writes the end of a run no execution followed (canceled, or
// past its deadline while waiting for an answer) to the task store, so
// GetTask and ListTasks show it. A task a2a-go already ended stays so.
func (g *Gateway) finalize(id a2a.TaskID, out *negotiation.Outcome, err error) {
	ctx := context.Background()
	st, gerr := g.store.Get(ctx, id)
	if gerr != nil || st.Task.Status.State.Terminal() {
		return
	}
	t := st.Task
	if out == nil {
		t.Status = a2a.TaskStatus{State: a2a.TaskStateFailed, Message: a2a.NewMessageForTask(a2a.MessageRoleAgent, t, a2a.NewTextPart("the node could not run the request: "+fmt.Sprint(err)))}
	} else {
		if out.State == negotiation.StateCompleted {
			t.Artifacts = append(t.Artifacts, artifactOf(t, out).Artifact)
		}
		t.Status = finalStatus(t, out).Status
	}
	now := time.Now()
	t.Status.Timestamp = &now
	if _, err := g.store.Update(ctx, &taskstore.UpdateRequest{Task: t, PrevVersion: st.Version}); err != nil {
		log.Debugw("a2a task end not stored", "task", id, "err", err)
	}
}

// answerRemote is an A2A-backed contractor's side of a remote agent in
// TASK_STATE_INPUT_REQUIRED: its status message is the question put to
// the requester (Task.Ask), and the answer is the follow-up message to
// the same remote task (a JSON string as a text part, other JSON as a
// data part) with the first message's metadata. The requester's node
// bounds the questions and the wait.
func (a *Agent) answerRemote(ctx context.Context, t negotiation.Task, id a2a.TaskID, contextID string, meta map[string]any, st a2a.TaskStatus) (*a2a.SendMessageRequest, error) {
	note := clip(textOf(st.Message), maxQuestion)
	if t.Ask == nil {
		return nil, fmt.Errorf("the A2A agent asks for more (%s) and the requester's node takes no questions", note)
	}
	if id == "" {
		return nil, fmt.Errorf("the A2A agent asks for more (%s) outside a task", note)
	}
	if note == "" {
		note = "the A2A agent asks for more input"
	}
	answer, err := t.Ask(ctx, note, nil)
	if err != nil {
		return nil, fmt.Errorf("the A2A agent asked %q; no answer from the requester: %w", note, err)
	}
	var v any
	if err := json.Unmarshal(answer, &v); err != nil {
		return nil, fmt.Errorf("the requester's answer: %w", err)
	}
	part := a2a.NewDataPart(v)
	if s, ok := v.(string); ok {
		part = a2a.NewTextPart(s)
	}
	msg := a2a.NewMessageForTask(a2a.MessageRoleUser, a2a.TaskInfo{TaskID: id, ContextID: contextID}, part)
	msg.Metadata = maps.Clone(meta) // the first message's: the skill, the task, its context
	return &a2a.SendMessageRequest{Message: msg}, nil
}

// maxQuestion bounds a remote agent's question passed on to the
// requester: under the requester's own bound (negotiation's default).
const maxQuestion = negotiation.DefaultMaxQuestion - 16
