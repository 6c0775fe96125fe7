package workflow

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/tracing"
)

var (
	errCanceled = errors.New("canceled by the requester")
	errDeadline = errors.New("workflow deadline passed")
)

// runner runs one workflow. Its goroutine (run) decides; step goroutines
// negotiate and report through update, which holds mu while it changes the
// record and saves it, so every change is on disk before the next one.
type runner struct {
	e      *Engine
	spec   *Spec
	cancel context.CancelCauseFunc

	mu  sync.Mutex
	rec *Run
	rep Replica // the shared context, if the engine has one
}

// update applies f to the record and queues it to be saved.
func (r *runner) update(f func(*Run)) { r.change(f) }

// change applies f to the record and queues it to be saved: the saver
// keeps the order of changes and does not make the caller wait, so no
// step waits for the disk before the next starts. It returns the save's
// generation, for what must wait.
func (r *runner) change(f func(*Run)) uint64 {
	r.mu.Lock()
	f(r.rec)
	r.rec.Updated = time.Now()
	g, err := r.e.sv.put(r.rec)
	r.mu.Unlock()
	if err != nil {
		log.Errorw("workflow state not saved", "workflow", r.rec.ID, "err", err)
	}
	r.e.notify()
	return g
}

func (r *runner) view() *Run {
	r.mu.Lock()
	defer r.mu.Unlock()
	return clone(r.rec)
}

type stepDone struct {
	name string
	out  json.RawMessage
	err  error // nil: completed
}

func (r *runner) run(ctx context.Context) {
	id := r.rec.ID
	if c := r.e.cfg.Context; c != nil {
		rep, err := c.Open(id)
		if err != nil {
			r.finish(StateFailed, "shared context: "+err.Error(), nil)
			return
		}
		if snap, err := r.e.st.context(id); err == nil && len(snap) > 0 {
			if err := rep.Restore(snap); err != nil {
				log.Warnw("shared context not restored", "workflow", id, "err", err)
			}
		}
		r.mu.Lock() // Engine.Context reads it from other goroutines
		r.rep = rep
		r.mu.Unlock()
	}
	if d := r.rec.Deadline; d != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadlineCause(ctx, *d, errDeadline)
		defer cancel()
	}
	if r.view().State == StateRunning {
		if !r.steps(ctx) {
			return // the engine closed: the run resumes at the next start
		}
	}
	rec := r.view()
	if rec.State == StateRunning {
		out, err := r.outcome(ctx, rec)
		if err == nil {
			r.finish(StateCompleted, "", out)
			return
		}
		r.update(func(rec *Run) { rec.State, rec.Error = StateCompensating, err.Error() })
	}
	if !r.compensate(ctx) {
		return
	}
	rec = r.view()
	final := StateFailed
	if errors.Is(context.Cause(ctx), errCanceled) || strings.HasPrefix(rec.Error, errCanceled.Error()) {
		final = StateCanceled
	}
	r.finish(final, rec.Error, nil)
}

// closing reports whether ctx ended because the engine is closing.
func (r *runner) closing(ctx context.Context) bool {
	return ctx.Err() != nil && r.e.ctx.Err() != nil
}

// steps runs the steps in dependency order, independent ones at once,
// until all have ended or one failed for good. It returns false if the
// engine closed meanwhile.
func (r *runner) steps(ctx context.Context) bool {
	sctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	done := make(chan stepDone)
	inflight := 0
	failed := ""
	for {
		// A skipped step readies its dependents at once: look again.
		for again := true; again && failed == "" && sctx.Err() == nil; {
			again = false
			for _, st := range r.ready() {
				if err := r.begin(sctx, st); err != nil {
					r.stepEnded(st.Name, StepFailed, nil, err.Error())
					failed = fmt.Sprintf("step %s: %v", st.Name, err)
					stop(errors.New(failed))
					break
				}
				if r.stepState(st.Name) != StepRunning {
					again = true // skipped
					continue
				}
				inflight++
				r.e.wg.Add(1)
				go func() {
					defer r.e.wg.Done()
					out, err := r.attempts(sctx, st)
					done <- stepDone{st.Name, out, err}
				}()
			}
		}
		if inflight == 0 {
			break
		}
		d := <-done
		inflight--
		switch {
		case d.err == nil:
			r.stepEnded(d.name, StepCompleted, d.out, "")
			r.e.audit("workflow.step.done", r.rec.ID, d.name, "completed", nil)
		case r.closing(ctx):
			// Left running in the store; requested again at the next start.
		case sctx.Err() != nil && failed != "" || errors.Is(context.Cause(ctx), errCanceled):
			r.stepEnded(d.name, StepCanceled, nil, d.err.Error())
		default:
			r.stepEnded(d.name, StepFailed, nil, d.err.Error())
			r.e.audit("workflow.step.failed", r.rec.ID, d.name, "failed for good: "+d.err.Error(), nil)
			if failed == "" {
				failed = fmt.Sprintf("step %s failed: %v", d.name, d.err)
				stop(errors.New(failed))
			}
		}
	}
	if r.closing(ctx) {
		return false
	}
	if failed != "" || ctx.Err() != nil {
		r.update(func(rec *Run) {
			for i := range rec.Steps {
				if rec.Steps[i].State == StepPending {
					rec.Steps[i].State, rec.Steps[i].Error = StepCanceled, "not run: the workflow ended first"
				}
			}
		})
	}
	switch {
	case errors.Is(context.Cause(ctx), errCanceled):
		r.update(func(rec *Run) { rec.State, rec.Error = StateCompensating, errCanceled.Error() })
	case ctx.Err() != nil:
		r.update(func(rec *Run) { rec.State, rec.Error = StateCompensating, context.Cause(ctx).Error() })
	case failed != "":
		r.update(func(rec *Run) { rec.State, rec.Error = StateCompensating, failed })
	}
	return true
}

func (r *runner) stepState(name string) StepState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rec.step(name).State
}

// ready returns the pending steps whose needs have all ended well.
func (r *runner) ready() []*Step {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*Step
	for _, st := range r.spec.Steps {
		sr := r.rec.step(st.Name)
		if sr.State != StepPending {
			continue
		}
		ok := true
		for _, n := range st.Needs {
			if s := r.rec.step(n).State; s != StepCompleted && s != StepSkipped {
				ok = false
			}
		}
		if ok {
			out = append(out, st)
		}
	}
	return out
}

// begin evaluates a ready step's condition and marks it running or
// skipped.
func (r *runner) begin(ctx context.Context, st *Step) error {
	if st.If != nil {
		ok, err := st.If.truth(ctx, r.scope(st))
		if err != nil {
			return fmt.Errorf("if: %w", err)
		}
		if !ok {
			r.stepEnded(st.Name, StepSkipped, nil, "if: "+clip(st.If.Src, 60)+" is false")
			r.e.audit("workflow.step.skipped", r.rec.ID, st.Name, "condition false: "+st.If.Src, nil)
			return nil
		}
	}
	now := time.Now()
	r.change(func(rec *Run) {
		sr := rec.step(st.Name)
		sr.State, sr.Error = StepRunning, ""
		if sr.Started == nil {
			sr.Started = &now
		}
	})
	return nil
}

func (r *runner) stepEnded(name string, s StepState, out json.RawMessage, why string) {
	now := time.Now()
	r.update(func(rec *Run) {
		sr := rec.step(name)
		sr.State, sr.Output, sr.Error, sr.Ended = s, out, why, &now
	})
	r.saveContext()
}

func (r *runner) saveContext() {
	if r.rep == nil {
		return
	}
	snap, err := r.rep.Snapshot()
	if err != nil {
		log.Warnw("shared context not saved", "workflow", r.rec.ID, "err", err)
		return
	}
	r.e.sv.putContext(r.rec.ID, snap)
}

// scope is what st's expressions see now.
func (r *runner) scope(st *Step) scope {
	r.mu.Lock()
	defer r.mu.Unlock()
	in, _ := decode(r.rec.Input)
	steps := map[string]any{}
	for _, sr := range r.rec.Steps {
		if !slices.Contains([]StepState{StepCompleted, StepSkipped, StepFailed, StepCompensated, StepCompensationFailed}, sr.State) {
			continue
		}
		out, _ := decode(sr.Output)
		m := map[string]any{"output": out, "state": string(sr.State)}
		if n := len(sr.Attempts); n > 0 {
			a := sr.Attempts[n-1]
			m["winner"], m["price"] = string(a.Winner), a.Price
		}
		if sr.Error != "" {
			m["error"] = sr.Error
		}
		steps[sr.Name] = m
	}
	c := map[string]any{}
	if r.rep != nil && st != nil && len(st.Context.Reads) > 0 {
		// Only the keys the step declared (k, or a prefix ending in *).
		for k, b := range r.rep.Values() {
			if declared(st.Context.Reads, k) {
				v, _ := decode(b)
				c[k] = v
			}
		}
	}
	return scope{Input: in, Steps: steps, Ctx: c, Workflow: r.rec.ID}
}

// attempts negotiates st until one attempt completes or its retry rule is
// spent. Agents that let an attempt down rank last in the next ones.
func (r *runner) attempts(ctx context.Context, st *Step) (json.RawMessage, error) {
	return r.negotiate(ctx, st, "workflow.step", func(f func(*StepRun)) {
		r.change(func(rec *Run) { f(rec.step(st.Name)) })
	}, func() *StepRun {
		r.mu.Lock()
		defer r.mu.Unlock()
		s := *r.rec.step(st.Name)
		s.Attempts = slices.Clone(s.Attempts)
		return &s
	})
}

// negotiate is attempts' loop, for a step or a compensation; kind
// prefixes its audit records, edit and read reach its StepRun.
func (r *runner) negotiate(ctx context.Context, st *Step, kind string, edit func(func(*StepRun)), read func() *StepRun) (json.RawMessage, error) {
	wf := r.rec.ID
	if st.Approval && !read().Approved {
		if r.e.cfg.Approve == nil {
			return nil, errors.New("approval: required, and this node has no approval gate")
		}
		r.e.audit(kind+".approval", wf, st.Name, "held for a human's approval", map[string]any{"capability": st.Capability, "budget": st.Budget})
		if err := r.e.cfg.Approve(ctx, StepApproval{Workflow: wf, Step: st.Name, Capability: st.Capability, Budget: st.Budget}); err != nil {
			return nil, fmt.Errorf("approval: %w", err)
		}
		edit(func(s *StepRun) { s.Approved = true })
	}
	in, err := r.buildInput(ctx, st)
	if err != nil {
		return nil, err
	}
	var summary json.RawMessage
	if st.Summary != nil {
		if summary, err = st.Summary.eval(ctx, r.scope(st)); err != nil {
			return nil, fmt.Errorf("summary: %w", err)
		}
	}
	strategy, _ := negotiation.ParseStrategy(st.Strategy)
	if strategy == nil {
		strategy = negotiation.Cheapest()
	}
	deadline := cmp.Or(st.Deadline, DefaultStepDeadline)
	deadline = min(deadline, r.e.cfg.MaxStepDeadline)
	var lastErr error
	for {
		s := read()
		failures := 0
		var bad []identity.AgentID
		for _, a := range s.Attempts {
			if a.State != "interrupted" {
				failures++
			}
			bad = append(bad, a.FailedAgents...)
		}
		if failures >= st.Retry.Attempts {
			if lastErr == nil {
				lastErr = fmt.Errorf("%d attempts failed", failures)
			}
			return nil, fmt.Errorf("after %d attempts: %w", failures, lastErr)
		}
		if failures > 0 {
			wait := st.Retry.Backoff << min(failures-1, 10)
			r.e.audit(kind+".retry", wf, st.Name, fmt.Sprintf("attempt %d of %d in %s", failures+1, st.Retry.Attempts, wait), map[string]any{"avoid": bad})
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, context.Cause(ctx)
			}
		}
		n := len(s.Attempts) + 1
		edit(func(s *StepRun) {
			s.Attempts = append(s.Attempts, Attempt{N: n, State: string(negotiation.StateSubmitted), Started: time.Now()})
		})
		at := func(f func(*Attempt)) {
			edit(func(s *StepRun) {
				for i := range s.Attempts {
					if s.Attempts[i].N == n {
						f(&s.Attempts[i])
					}
				}
			})
		}
		var task string
		// One call per attempt: its bids are tried in rank order, and the
		// retry rule, not the service's default, makes the new calls.
		opts := []negotiation.RequestOption{
			negotiation.WithCalls(1),
			negotiation.WithTimeout(deadline),
			negotiation.WithStrategy(rankAvoiding(strategy, bad)),
			negotiation.WithStarted(func(id string) {
				task = id
				at(func(a *Attempt) { a.Task, a.State = id, string(negotiation.StateNegotiating) })
				r.e.audit(kind+".start", wf, st.Name, fmt.Sprintf("attempt %d: task %s for %s", n, id, st.Capability), map[string]any{"task": id, "attempt": n})
				if c := r.e.cfg.Context; c != nil {
					if err := c.Grant(wf, id, st.Context.Reads, st.Context.Writes); err != nil {
						log.Warnw("shared context grant failed", "workflow", wf, "task", id, "err", err)
					}
				}
			}),
		}
		if st.BidWindow > 0 {
			opts = append(opts, negotiation.WithBidWindow(st.BidWindow))
		}
		if st.EnoughBids > 0 {
			opts = append(opts, negotiation.WithEnoughBids(st.EnoughBids))
		}
		if st.Agent != "" {
			opts = append(opts, negotiation.WithAgent(st.Agent))
		}
		sctx, span := tracing.Start(ctx, r.e.cfg.Tracer, kind, trace.SpanKindInternal)
		if span.IsRecording() {
			span.SetAttributes(tracing.AttrWorkflow.String(wf), attribute.String("parley.step", st.Name),
				attribute.Int("parley.attempt", n), attribute.String("parley.capability", st.Capability))
		}
		out, err := r.e.cfg.Node.Request(sctx, negotiation.Need{Capability: st.Capability, Summary: summary, Input: in, Budget: st.Budget}, opts...)
		if span.IsRecording() {
			if task != "" {
				span.SetAttributes(tracing.AttrTask.String(task))
			}
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
		}
		span.End()
		if task != "" && r.e.cfg.Context != nil {
			r.e.cfg.Context.Revoke(task)
		}
		now := time.Now()
		if err == nil && len(out.Result) > r.e.cfg.MaxOutput {
			err = fmt.Errorf("result of %d bytes, over the limit of %d", len(out.Result), r.e.cfg.MaxOutput)
		}
		if r.closing(ctx) {
			at(func(a *Attempt) {
				a.Ended, a.State, a.Error = &now, "interrupted", "the node stopped during the attempt"
			})
			return nil, context.Cause(ctx)
		}
		at(func(a *Attempt) {
			a.Ended = &now
			if out == nil {
				a.State = string(negotiation.StateFailed)
				if err != nil {
					a.Error = err.Error()
				}
				return
			}
			a.State, a.Bids = string(out.State), len(out.Bids)
			a.Winner, a.WinnerName, a.WinnerPeer = out.Winner, out.WinnerName, out.WinnerPeer
			for _, b := range out.Bids {
				switch b.Status {
				case "completed", "awarded":
					a.Price = b.Price
				case "failed", "silent", "declined":
					a.FailedAgents = append(a.FailedAgents, b.Agent)
				}
			}
			if err != nil {
				a.Error = err.Error()
				if out.State == negotiation.StateCompleted { // over MaxOutput
					a.State = string(negotiation.StateFailed)
					a.FailedAgents = append(a.FailedAgents, out.Winner)
				}
			}
		})
		if err == nil {
			r.e.audit(kind+".award", wf, st.Name, fmt.Sprintf("attempt %d: %s completed task %s", n, out.WinnerName, out.Task),
				map[string]any{"task": out.Task, "winner": out.Winner, "winner_peer": out.WinnerPeer, "attempt": n})
			return out.Result, nil
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		lastErr = err
		log.Infow("workflow step attempt failed", "workflow", wf, "step", st.Name, "attempt", n, "err", err)
	}
}

func (r *runner) buildInput(ctx context.Context, st *Step) (json.RawMessage, error) {
	if st.Input == nil {
		return r.rec.Input, nil
	}
	in, err := st.Input.eval(ctx, r.scope(st))
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	if len(in) > r.e.cfg.MaxOutput {
		return nil, fmt.Errorf("input: %d bytes, over the limit of %d", len(in), r.e.cfg.MaxOutput)
	}
	return in, nil
}

// outcome checks the success criterion and builds the workflow's output.
func (r *runner) outcome(ctx context.Context, rec *Run) (json.RawMessage, error) {
	sc := r.scope(nil)
	if e := r.spec.Success; e != nil {
		ok, err := e.truth(ctx, sc)
		if err != nil {
			return nil, fmt.Errorf("success: %w", err)
		}
		if !ok {
			return nil, fmt.Errorf("success criterion is false: %s", clip(e.Src, 80))
		}
	}
	if e := r.spec.Output; e != nil {
		out, err := e.eval(ctx, sc)
		if err != nil {
			return nil, fmt.Errorf("output: %w", err)
		}
		return out, nil
	}
	// The outputs of the steps nothing else needs.
	needed := map[string]bool{}
	for _, st := range r.spec.Steps {
		for _, n := range st.Needs {
			needed[n] = true
		}
	}
	m := map[string]json.RawMessage{}
	for _, sr := range rec.Steps {
		if !needed[sr.Name] && sr.State == StepCompleted {
			m[sr.Name] = sr.Output
		}
	}
	return json.Marshal(m)
}

// compensate runs, in the reverse order of their completion, the
// compensations of the completed steps that have one. It returns false
// if the engine closed meanwhile.
func (r *runner) compensate(ctx context.Context) bool {
	// The workflow's own cancel or deadline must not stop its undoing;
	// only the engine's close does (and the next start resumes it).
	cctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	halt := context.AfterFunc(r.e.ctx, stop)
	defer halt()
	rec := r.view()
	var todo []StepRun
	for _, sr := range rec.Steps {
		if sr.State == StepCompleted && r.specStep(sr.Name).Compensate != nil {
			todo = append(todo, sr)
		}
	}
	slices.SortStableFunc(todo, func(a, b StepRun) int { return b.Ended.Compare(*a.Ended) })
	var failed []string
	for _, sr := range todo {
		if c := sr.Compensation; c != nil && c.State != StepRunning && c.State != StepPending {
			if c.State == StepFailed {
				failed = append(failed, sr.Name)
			}
			continue
		}
		comp := r.specStep(sr.Name).Compensate
		now := time.Now()
		name := sr.Name
		r.update(func(rec *Run) {
			s := rec.step(name)
			if s.Compensation == nil {
				s.Compensation = &StepRun{Name: name, Capability: comp.Capability, Needs: []string{}, State: StepRunning, Started: &now, Attempts: []Attempt{}}
			}
			s.Compensation.State = StepRunning
		})
		r.e.audit("workflow.compensation.begin", rec.ID, name, "undoing "+name+" with "+comp.Capability, nil)
		out, err := r.negotiate(cctx, comp, "workflow.compensation", func(f func(*StepRun)) {
			r.change(func(rec *Run) { f(rec.step(name).Compensation) })
		}, func() *StepRun {
			r.mu.Lock()
			defer r.mu.Unlock()
			s := *r.rec.step(name).Compensation
			s.Attempts = slices.Clone(s.Attempts)
			return &s
		})
		if r.e.ctx.Err() != nil {
			return false
		}
		end := time.Now()
		r.update(func(rec *Run) {
			s := rec.step(name)
			s.Compensation.Ended = &end
			if err != nil {
				s.Compensation.State, s.Compensation.Error = StepFailed, err.Error()
				s.State = StepCompensationFailed
				return
			}
			s.Compensation.State, s.Compensation.Output = StepCompleted, out
			s.State = StepCompensated
		})
		if err != nil {
			failed = append(failed, name)
			r.e.audit("workflow.compensation.failed", rec.ID, name, err.Error(), nil)
		} else {
			r.e.audit("workflow.compensation.done", rec.ID, name, "compensated", nil)
		}
	}
	if len(failed) > 0 {
		r.update(func(rec *Run) {
			rec.Error += fmt.Sprintf("; compensation failed for %s", strings.Join(failed, ", "))
		})
	}
	return true
}

func (r *runner) specStep(name string) *Step {
	for _, st := range r.spec.Steps {
		if st.Name == name {
			return st
		}
	}
	return nil
}

func (r *runner) finish(s State, why string, out json.RawMessage) {
	r.saveContext()
	if c := r.e.cfg.Context; c != nil && r.rep != nil {
		defer c.Drop(r.rec.ID) // its snapshot is saved with the run's end
	}
	r.e.audit("workflow.done", r.rec.ID, "", fmt.Sprintf("%s %s", s, why), map[string]any{"state": s})
	// On disk before the run leaves the engine's table: Wait returns only
	// then, and every read after finds it ended.
	if err := r.e.sv.wait(r.change(func(rec *Run) { rec.State, rec.Error, rec.Output = s, why, out })); err != nil {
		log.Errorw("workflow end not saved", "workflow", r.rec.ID, "err", err)
	}
	r.e.ended.WithLabelValues(string(s)).Inc()
	if s == StateCompleted {
		r.e.cycle.Observe(time.Since(r.rec.Created).Seconds())
	}
	log.Infow("workflow ended", "workflow", r.rec.ID, "state", s, "err", why)
}

func declared(keys []string, k string) bool {
	for _, d := range keys {
		if d == k || d == "*" || strings.HasSuffix(d, "*") && strings.HasPrefix(k, strings.TrimSuffix(d, "*")) {
			return true
		}
	}
	return false
}

// avoid ranks the agents that let this step down after all others, so a
// retry goes to another agent when there is one, and still to them when
// there is none.
type avoid struct {
	base negotiation.Strategy
	bad  []identity.AgentID
}

func (a avoid) Name() string {
	if len(a.bad) == 0 {
		return a.base.Name()
	}
	return a.base.Name() + ", agents that failed this step last"
}

func (a avoid) Rank(bids []negotiation.BidInfo) []negotiation.BidInfo {
	ranked := a.base.Rank(bids)
	if len(a.bad) == 0 {
		return ranked
	}
	good := make([]negotiation.BidInfo, 0, len(ranked))
	var last []negotiation.BidInfo
	for _, b := range ranked {
		if slices.Contains(a.bad, b.Agent) {
			last = append(last, b)
		} else {
			good = append(good, b)
		}
	}
	return append(good, last...)
}
