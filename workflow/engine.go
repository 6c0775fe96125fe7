package workflow

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation"
)

var log = logging.Logger("parley/workflow")

// Sentinel errors callers branch on.
var (
	ErrUnknown  = errors.New("unknown workflow")
	ErrBusy     = errors.New("too many workflows running")
	ErrEnded    = errors.New("workflow already ended")
	ErrClosed   = errors.New("workflow engine closed")
	ErrBadInput = errors.New("bad workflow input")
)

// Requester runs one negotiation: node.Node's Request.
type Requester interface {
	Request(ctx context.Context, need negotiation.Need, opts ...negotiation.RequestOption) (*negotiation.Outcome, error)
}

// StepApproval is what a human is asked before a step with approval: true
// negotiates.
type StepApproval struct {
	Workflow   string
	Step       string
	Capability string
	Budget     float64
}

// SharedContext is the per-node shared-context service as the engine uses
// it (NodeContext adapts sharedctx.Service): the workflow's replica on
// this, the requester's, node, and grants that let a step's committed
// winner read the keys it declared and write the keys it may while the
// step runs.
type SharedContext interface {
	Open(workflowID string) (Replica, error)
	Grant(workflowID, taskID string, reads, writes []string) error
	Revoke(taskID string)
	// Drop forgets an ended workflow's context; the engine kept its
	// snapshot.
	Drop(workflowID string)
}

// Replica is one workflow's context on this node.
type Replica interface {
	// Values returns every key's current value as JSON.
	Values() map[string]json.RawMessage
	// Snapshot and Restore let the engine keep the context with the run.
	Snapshot() ([]byte, error)
	Restore(snapshot []byte) error
}

// Config configures an Engine. Zero fields take the defaults.
type Config struct {
	// Path is the bbolt file (the daemon uses <home>/workflows.db).
	Path string
	// Node runs the steps' negotiations.
	Node Requester
	// Audit records the engine's decisions; nil records none.
	Audit func(kind, rationale string, detail any) error
	// Approve holds a step with approval: true for a human; nil refuses
	// such steps.
	Approve func(ctx context.Context, a StepApproval) error
	// Context is the shared-context service; nil gives every step an
	// empty $ctx.
	Context SharedContext
	// ContextOwner names the hosted agent that owns the workflows'
	// contexts (the one NodeContext opens them as; "" is the default
	// agent): a step that declares context keys must be requested as it.
	ContextOwner string
	// MaxRunning bounds the workflows running at once (default 16).
	MaxRunning int
	// MaxSteps bounds a workflow's steps (default 64).
	MaxSteps int
	// MaxOutput bounds a step's output and the workflow input, in bytes
	// (default 64 KiB); a bigger result fails the attempt.
	MaxOutput int
	// KeepEnded is how many ended workflows are kept (default 200); older
	// ones are pruned.
	KeepEnded int
	// MaxStepDeadline clamps every step's deadline (default 10 min).
	MaxStepDeadline time.Duration
	// Registerer, if set, receives the engine's metrics:
	// parley_workflows_total{state} and parley_workflow_duration_seconds;
	// Close unregisters them.
	Registerer prometheus.Registerer
	// Tracer, if set, records a span per step attempt, the parent of its
	// negotiation's spans (node.Tracing().Tracer(...)); nil records none.
	Tracer trace.Tracer
}

// DefaultConfig returns the defaults, with no path or node.
func DefaultConfig() Config {
	return Config{MaxRunning: 16, MaxSteps: 64, MaxOutput: 64 << 10, KeepEnded: 200, MaxStepDeadline: 10 * time.Minute}
}

func (c *Config) fill() error {
	d := DefaultConfig()
	if c.Path == "" {
		return errors.New("workflow: Config.Path is required")
	}
	if c.Node == nil {
		return errors.New("workflow: Config.Node is required")
	}
	for _, f := range []struct {
		v   *int
		def int
		nm  string
	}{{&c.MaxRunning, d.MaxRunning, "MaxRunning"}, {&c.MaxSteps, d.MaxSteps, "MaxSteps"}, {&c.MaxOutput, d.MaxOutput, "MaxOutput"}, {&c.KeepEnded, d.KeepEnded, "KeepEnded"}} {
		if *f.v < 0 {
			return fmt.Errorf("workflow: Config.%s is negative", f.nm)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.MaxStepDeadline <= 0 {
		c.MaxStepDeadline = d.MaxStepDeadline
	}
	return nil
}

// Engine runs this node's workflows and keeps them in its store. Open it,
// Start it (which resumes what was running), Close it before the node.
type Engine struct {
	cfg Config
	st  *store
	sv  *saver

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	started bool
	closed  bool
	runs    map[string]*runner // running here
	changed chan struct{}      // closed and replaced on every change

	// ended counts workflows by final state; cycle is how long those that
	// completed took, from submission (across restarts) to the end.
	ended *prometheus.CounterVec
	cycle prometheus.Histogram
}

// Open opens (or creates) the store at cfg.Path. Nothing runs until Start.
func Open(cfg Config) (*Engine, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	st, err := openStore(cfg.Path)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{cfg: cfg, st: st, sv: newSaver(st), ctx: ctx, cancel: cancel, runs: map[string]*runner{}, changed: make(chan struct{}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_workflows_total",
			Help: "Workflows ended, by final state (completed, failed, canceled): the success rate.",
		}, []string{"state"}),
		cycle: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "parley_workflow_duration_seconds",
			Help:    "Completed workflows' cycle time, from submission to the end.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 14),
		})}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{e.ended, e.cycle} {
			if err := cfg.Registerer.Register(c); err != nil {
				_ = st.close()
				cancel()
				return nil, fmt.Errorf("workflow metrics: %w", err)
			}
		}
	}
	return e, nil
}

// Start resumes every workflow the store holds as running or
// compensating: completed steps keep their outputs and are not run again;
// a step that was in flight when the node stopped is requested again.
func (e *Engine) Start() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	if e.started {
		e.mu.Unlock()
		return errors.New("workflow: Start called twice")
	}
	e.started = true
	e.mu.Unlock()
	runs, err := e.st.all()
	if err != nil {
		return err
	}
	for i := len(runs) - 1; i >= 0; i-- { // oldest first
		r := runs[i]
		if r.State.Ended() {
			continue
		}
		spec, err := Parse(r.File, []byte(r.Source))
		if err != nil { // a file that parsed once parses again; a newer parser may differ
			r.State, r.Error = StateFailed, "cannot resume: "+err.Error()
			_ = e.st.put(r)
			continue
		}
		r.Resumed++
		for i := range r.Steps {
			interrupt(&r.Steps[i])
			if r.Steps[i].State == StepRunning {
				r.Steps[i].State = StepPending // requested again
			}
			if c := r.Steps[i].Compensation; c != nil {
				interrupt(c)
			}
		}
		e.audit("workflow.resume", r.ID, "", fmt.Sprintf("resumed after a restart (%d)", r.Resumed), nil)
		if _, err := e.launch(spec, r); err != nil {
			log.Errorw("cannot resume workflow", "workflow", r.ID, "err", err)
		}
	}
	return nil
}

// interrupt marks what was in flight when the node stopped: the attempt
// ended "interrupted" and the step goes back to be requested again.
func interrupt(s *StepRun) {
	for i := range s.Attempts {
		if s.Attempts[i].Ended == nil {
			now := time.Now()
			s.Attempts[i].Ended, s.Attempts[i].State = &now, "interrupted"
			s.Attempts[i].Error = "the node stopped during the attempt; requested again"
		}
	}
}

// Submit checks a workflow file and its input and starts it. file names
// the file in errors. Bad files wrap ErrInvalid (as ParseErrors), bad
// input ErrBadInput; a full engine answers ErrBusy.
func (e *Engine) Submit(ctx context.Context, file string, src []byte, input json.RawMessage) (*Run, error) {
	spec, err := Parse(file, src)
	if err != nil {
		return nil, err
	}
	if len(spec.Steps) > e.cfg.MaxSteps {
		return nil, ParseErrors{{File: file, Msg: fmt.Sprintf("%d steps, over the node's limit of %d", len(spec.Steps), e.cfg.MaxSteps)}}
	}
	if e.cfg.Context != nil {
		var errs ParseErrors
		for _, st := range spec.Steps {
			for _, x := range []*Step{st, st.Compensate} {
				if x != nil && x.Agent != "" && x.Agent != e.cfg.ContextOwner && len(x.Context.Reads)+len(x.Context.Writes) > 0 {
					errs = append(errs, &ParseError{File: file, Line: x.Line, Msg: fmt.Sprintf(
						"step %s: declares context keys but is requested as agent %q; the workflow's context belongs to %q", st.Name, x.Agent, cmp.Or(e.cfg.ContextOwner, "the default agent"))})
				}
			}
		}
		if len(errs) > 0 {
			return nil, errs
		}
	}
	in, err := e.checkInput(spec, input)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	r := &Run{ID: identity.NewID(), Name: spec.Name, File: file, State: StateRunning, Input: in, Created: now, Updated: now, Source: string(src)}
	if spec.Deadline > 0 {
		d := now.Add(spec.Deadline)
		r.Deadline = &d
	}
	for _, st := range spec.Steps {
		r.Steps = append(r.Steps, StepRun{Name: st.Name, Capability: st.Capability, Needs: append([]string{}, st.Needs...), State: StepPending, Attempts: []Attempt{}})
	}
	if err := e.audit("workflow.start", r.ID, "", fmt.Sprintf("workflow %s: %d steps", spec.Name, len(spec.Steps)), map[string]any{"file": file, "name": spec.Name}); err != nil {
		return nil, err
	}
	out := clone(r) // r is the runner's from launch on
	g, err := e.launch(spec, r)
	if err != nil {
		return nil, err
	}
	// Acknowledged once on disk; its first steps are negotiating already.
	if err := e.sv.wait(g); err != nil {
		_ = e.Cancel(r.ID)
		return nil, err
	}
	return out, nil
}

func (e *Engine) checkInput(spec *Spec, input json.RawMessage) (json.RawMessage, error) {
	if len(input) == 0 {
		input = json.RawMessage("{}")
	}
	if len(input) > e.cfg.MaxOutput {
		return nil, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrBadInput, len(input), e.cfg.MaxOutput)
	}
	v, err := decode(input)
	if err != nil {
		return nil, fmt.Errorf("%w: not JSON: %v", ErrBadInput, err)
	}
	if len(spec.Required) > 0 {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: want a JSON object with %v", ErrBadInput, spec.Required)
		}
		for _, k := range spec.Required {
			if _, ok := m[k]; !ok {
				return nil, fmt.Errorf("%w: %q is required (input.required)", ErrBadInput, k)
			}
		}
	}
	return input, nil
}

// launch queues r to be saved and starts its runner; it returns the
// save's generation.
func (e *Engine) launch(spec *Spec, r *Run) (uint64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || !e.started {
		return 0, ErrClosed
	}
	if len(e.runs) >= e.cfg.MaxRunning {
		return 0, fmt.Errorf("%w: %d (the node's limit)", ErrBusy, e.cfg.MaxRunning)
	}
	g, err := e.sv.put(r)
	if err != nil {
		return 0, err
	}
	rn := &runner{e: e, spec: spec, rec: r}
	ctx, cancel := context.WithCancelCause(e.ctx)
	rn.cancel = cancel
	e.runs[r.ID] = rn
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		rn.run(ctx)
		e.mu.Lock()
		delete(e.runs, r.ID)
		e.mu.Unlock()
		e.notify()
		if n, err := e.st.prune(e.cfg.KeepEnded); err != nil {
			log.Warnw("prune workflows", "err", err)
		} else if n > 0 {
			log.Debugw("pruned ended workflows", "count", n)
		}
	}()
	return g, nil
}

// Get returns a workflow with its per-step history.
func (e *Engine) Get(id string) (*Run, error) {
	e.mu.Lock()
	rn := e.runs[id]
	e.mu.Unlock()
	if rn != nil {
		return rn.view(), nil
	}
	return e.st.get(id)
}

// Context returns a Snapshot of workflow id's shared context (read it
// with sharedctx.ReadSnapshot): the live one while the workflow runs, the
// one kept with it once it ended; nil when it has none.
func (e *Engine) Context(id string) ([]byte, error) {
	e.mu.Lock()
	rn := e.runs[id]
	e.mu.Unlock()
	if rn != nil {
		rn.mu.Lock()
		rep := rn.rep
		rn.mu.Unlock()
		if rep != nil {
			return rep.Snapshot()
		}
	}
	if _, err := e.st.get(id); err != nil {
		return nil, err
	}
	return e.st.context(id)
}

// List returns every workflow kept, newest first.
func (e *Engine) List() ([]Summary, error) {
	runs, err := e.st.all()
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	running := make(map[string]*runner, len(e.runs))
	for id, rn := range e.runs {
		running[id] = rn
	}
	e.mu.Unlock()
	out := make([]Summary, 0, len(runs))
	for _, r := range runs {
		if rn := running[r.ID]; rn != nil {
			r = rn.view()
		}
		out = append(out, r.summary())
	}
	return out, nil
}

// Cancel ends a running workflow: its running steps are canceled and the
// completed ones compensated. It returns once the cancel is under way.
func (e *Engine) Cancel(id string) error {
	e.mu.Lock()
	rn := e.runs[id]
	e.mu.Unlock()
	if rn == nil {
		if _, err := e.st.get(id); err != nil {
			return err
		}
		return fmt.Errorf("%w: %s", ErrEnded, id)
	}
	if rn.view().State.Ended() { // ending: saved, about to leave the table
		return fmt.Errorf("%w: %s", ErrEnded, id)
	}
	rn.cancel(errCanceled)
	return nil
}

// Wait returns the workflow once it has ended, or when ctx ends.
func (e *Engine) Wait(ctx context.Context, id string) (*Run, error) {
	for {
		ch := e.changes()
		e.mu.Lock()
		_, running := e.runs[id]
		e.mu.Unlock()
		r, err := e.Get(id)
		if err != nil {
			return nil, err
		}
		if r.State.Ended() && !running { // and so on disk
			return r, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return r, ctx.Err()
		case <-e.ctx.Done():
			return r, ErrClosed
		}
	}
}

// Changes returns a channel closed at the next change of any workflow,
// for those who follow one (the API's event stream).
func (e *Engine) Changes() <-chan struct{} { return e.changes() }

// changes returns a channel closed at the next change of any workflow.
func (e *Engine) changes() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.changed
}

func (e *Engine) notify() {
	e.mu.Lock()
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
}

// Close stops every workflow where it is — their state stays running in
// the store, for the next Start — and closes the store. Call it before
// closing the node, so no step is cut short unrecorded.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	e.wg.Wait()
	e.sv.close()
	if r := e.cfg.Registerer; r != nil {
		r.Unregister(e.ended)
		r.Unregister(e.cycle)
	}
	return e.st.close()
}

func (e *Engine) audit(kind, workflow, step, rationale string, detail map[string]any) error {
	if e.cfg.Audit == nil {
		return nil
	}
	d := map[string]any{"workflow": workflow}
	if step != "" {
		d["step"] = step
	}
	for k, v := range detail {
		d[k] = v
	}
	if err := e.cfg.Audit(kind, rationale, d); err != nil {
		log.Errorw("audit record failed", "kind", kind, "workflow", workflow, "err", err)
		return fmt.Errorf("audit %s: %w", kind, err)
	}
	return nil
}
