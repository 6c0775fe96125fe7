package negotiation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/parleynet/parley/negotiation/frame"
)

// A winner that needs more input asks its requester on the task's stream:
//
//	contractor ── ask{task, note, schema?, round} ──▶ requester   (task: input-required)
//	contractor ◀── answer{task, input, round} ────── requester   (task: working again)
//
// or the requester cancels. Both sides bound it: at most MaxAsks questions
// a task (a requester resets a winner that asks more), MaxQuestion bytes of
// note and schema, MaxAnswer bytes of answer, one question open at a time.
// The wait is bounded by the task's deadline alone: the requester's node
// chose it (the contractor clamped it), and the winner's keepalives go on
// while it waits, so neither side's progress timeout ends a task whose
// requester is still thinking. A requester's node says it answers in its
// call (cfp.Asks); a winner of an older node's call gets no Task.Ask.

// Defaults of the ask bounds (Config.MaxAsks, MaxQuestion, MaxAnswer).
const (
	DefaultMaxAsks     = 3
	DefaultMaxQuestion = 4 << 10
	DefaultMaxAnswer   = 64 << 10
)

// asker is an awarded contract's side of questions: the handler's Ask
// sends one and waits; the stream's reader delivers the answer.
type asker struct {
	c    *contract
	wctx context.Context // the work's: its deadline bounds every wait
	send func(typ string, w wire) error

	mu sync.Mutex // one question at a time, in the order asked
	n  int

	omu     sync.Mutex
	open    bool
	answers chan json.RawMessage // one slot: at most one question is open
}

func newAsker(c *contract, wctx context.Context, send func(string, wire) error) *asker {
	return &asker{c: c, wctx: wctx, send: send, answers: make(chan json.RawMessage, 1)}
}

// checkQuestion names what is wrong with a question, or returns nil.
func checkQuestion(note string, schema json.RawMessage, limit int) error {
	switch {
	case note == "":
		return fmt.Errorf("%w: a question needs a note", ErrBadQuestion)
	case !utf8.ValidString(note):
		return fmt.Errorf("%w: the note is not UTF-8", ErrBadQuestion)
	case len(note)+len(schema) > limit:
		return fmt.Errorf("question of %d bytes (note and schema), limit %d: %w", len(note)+len(schema), limit, ErrTooLarge)
	case len(schema) > 0 && !json.Valid(schema):
		return fmt.Errorf("%w: the schema is not valid JSON", ErrBadQuestion)
	}
	return nil
}

// ask is Task.Ask: it records the question, sends it and waits for the
// answer, the work's end or ctx.
func (a *asker) ask(ctx context.Context, note string, schema json.RawMessage) (json.RawMessage, error) {
	c, s := a.c, a.c.s
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n >= s.cfg.MaxAsks {
		return nil, fmt.Errorf("task %s: %w (limit %d)", c.call.Task, ErrTooManyAsks, s.cfg.MaxAsks)
	}
	if err := checkQuestion(note, schema, s.cfg.MaxQuestion); err != nil {
		return nil, fmt.Errorf("task %s: %w", c.call.Task, err)
	}
	if err := a.wctx.Err(); err != nil {
		return nil, context.Cause(a.wctx)
	}
	a.n++
	ev := Event{Kind: "ask", Role: RoleContractor, Task: c.call.Task, Capability: c.call.Capability, Agent: c.agent.ID,
		Other: c.call.Requester, Peer: c.call.RequesterPeer, Rationale: fmt.Sprintf("question %d: %s", a.n, note)}
	if err := s.auditIn(ctx, ev); err != nil {
		return nil, fmt.Errorf("task %s: the question could not be recorded: %w", c.call.Task, err)
	}
	q := &Question{Note: note, Schema: schema, Ask: a.n, At: time.Now()}
	c.mu.Lock()
	c.question = q
	c.mu.Unlock()
	c.hist.set(StateInputRequired, "asked: "+clip(note))
	a.omu.Lock()
	select {
	case <-a.answers: // an answer to an earlier question that gave up
	default:
	}
	a.open = true
	a.omu.Unlock()
	defer func() {
		a.omu.Lock()
		a.open = false
		a.omu.Unlock()
		c.mu.Lock()
		c.question = nil
		c.mu.Unlock()
	}()
	if err := a.send(msgAsk, wire{Task: c.call.Task, Note: note, Schema: schema, Round: a.n}); err != nil {
		return nil, fmt.Errorf("task %s: could not send the question: %w", c.call.Task, err)
	}
	select {
	case in := <-a.answers:
		ev.Kind, ev.Rationale = "answer", fmt.Sprintf("answer %d: %d bytes", a.n, len(in))
		if err := s.auditIn(ctx, ev); err != nil {
			return nil, fmt.Errorf("task %s: the answer could not be recorded: %w", c.call.Task, err)
		}
		c.hist.set(StateWorking, fmt.Sprintf("answer %d received", a.n))
		return in, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-a.wctx.Done():
		return nil, context.Cause(a.wctx)
	}
}

// deliver hands an answer frame to the open question; false if none is
// open or the answer breaks the bounds (the requester broke the protocol).
func (a *asker) deliver(in wire) bool {
	if len(in.Input) > a.c.s.cfg.MaxAnswer || len(in.Input) == 0 {
		return false
	}
	a.omu.Lock()
	defer a.omu.Unlock()
	if !a.open {
		return false
	}
	a.open = false // a second answer to one question is refused
	a.answers <- in.Input
	return true
}

// asked is the requester's side of a winner's ask frame on its award
// stream: past the bounds the winner is dropped (its stream reset by the
// caller), else the task is input-required until Answer. It returns why
// the winner is dropped, or "".
func (r *request) asked(conn *frame.Conn, b *bidder, in wire, ev Event) string {
	r.mu.Lock()
	r.asks++
	n, open := r.asks, r.question != nil
	r.mu.Unlock()
	var why string
	switch {
	case n > r.s.cfg.MaxAsks:
		why = fmt.Sprintf("asked %d questions, this node's limit is %d", n, r.s.cfg.MaxAsks)
		r.s.m.dropped.WithLabelValues("too_many_asks").Inc()
	case open:
		why = "asked again before its question was answered"
		r.s.m.dropped.WithLabelValues("bad_ask").Inc()
	default:
		if err := checkQuestion(in.Note, in.Schema, r.s.cfg.MaxQuestion); err != nil {
			why = "sent a bad question: " + err.Error()
			r.s.m.dropped.WithLabelValues("bad_ask").Inc()
		}
	}
	if why != "" {
		r.setStatus(b, "failed", why)
		return why
	}
	ev.Kind, ev.Rationale = "ask", fmt.Sprintf("question %d: %s", n, in.Note)
	if err := r.s.auditIn(r.s.ctx, ev); err != nil {
		r.setStatus(b, "failed", "asked a question the audit log could not record")
		return "asked a question the audit log could not record"
	}
	q := &Question{Note: in.Note, Schema: in.Schema, Ask: n, At: time.Now()}
	r.mu.Lock()
	r.question, r.askConn = q, conn
	r.mu.Unlock()
	r.hist.set(StateInputRequired, "asked: "+clip(in.Note))
	r.update(Update{State: StateInputRequired, Note: in.Note, Winner: b.info.Agent, WinnerName: b.info.Name, Question: q})
	return ""
}

// endAsks forgets an open question once the winner's stream is done.
func (r *request) endAsks() {
	r.mu.Lock()
	r.question, r.askConn = nil, nil
	r.mu.Unlock()
}

// Answer sends input to the winner of a task this node requested, as the
// answer to its open question; the task is working again. It returns an
// error wrapping ErrUnknownTask, ErrNoQuestion (the task asks nothing
// now), ErrTooLarge (over MaxAnswer) or intent-style bad JSON. Only the
// committed winner that asked ever receives it.
func (s *Service) Answer(ctx context.Context, id string, input json.RawMessage) error {
	s.mu.Lock()
	r := s.requests[id]
	s.mu.Unlock()
	switch {
	case r == nil:
		return fmt.Errorf("%w %q", ErrUnknownTask, id)
	case len(input) == 0 || !json.Valid(input):
		return fmt.Errorf("task %q: %w: the answer is not valid JSON", id, ErrBadAnswer)
	case len(input) > s.cfg.MaxAnswer:
		return fmt.Errorf("task %q: answer of %d bytes, limit %d: %w", id, len(input), s.cfg.MaxAnswer, ErrTooLarge)
	}
	r.mu.Lock()
	q, conn, b := r.question, r.askConn, r.winner
	r.question = nil // claimed: a second answer finds none open
	r.mu.Unlock()
	if q == nil || conn == nil || b == nil {
		return fmt.Errorf("task %q: %w", id, ErrNoQuestion)
	}
	ev := Event{Kind: "answer", Role: RoleRequester, Task: id, Capability: r.need.Capability, Agent: r.agent.ID,
		Other: b.info.Agent, Peer: b.info.Peer, Rationale: fmt.Sprintf("answer %d: %d bytes", q.Ask, len(input))}
	if err := s.auditIn(ctx, ev); err != nil {
		r.mu.Lock()
		if r.askConn == conn {
			r.question = q
		}
		r.mu.Unlock()
		return fmt.Errorf("task %q: the answer could not be recorded: %w", id, err)
	}
	deadline := time.Now().Add(s.cfg.CommitTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	// Working again before the answer leaves: the winner's next frames
	// (progress, the result) must not come before this update.
	r.hist.set(StateWorking, fmt.Sprintf("answered question %d", q.Ask))
	r.update(Update{State: StateWorking, Note: fmt.Sprintf("answered question %d", q.Ask), Winner: b.info.Agent, WinnerName: b.info.Name})
	_ = conn.Stream().SetWriteDeadline(deadline)
	if err := conn.Send(msgAnswer, wireVersion, wire{Task: id, Input: input, Round: q.Ask}); err != nil {
		return fmt.Errorf("task %q: could not send the answer to %s: %w", id, short(b.info.Agent), err)
	}
	return nil
}

// ErrBadAnswer is wrapped by Answer for an answer that is not JSON;
// ErrBadQuestion by Task.Ask for a question without a note, not UTF-8, or
// with a schema that is not JSON.
var (
	ErrBadAnswer   = errors.New("bad answer")
	ErrBadQuestion = errors.New("bad question")
)
