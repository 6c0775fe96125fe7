package workflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
	"github.com/parleynet/parley/sharedctx"
	"github.com/parleynet/parley/workflow"
)

// agent is a contractor of a test mesh that counts what it does.
type agent struct {
	name, capability string
	node             int
	price            float64
	// refuseFirst makes it refuse its first n calls.
	refuseFirst int32
	// work replaces echoing {"by": name, "in": input}.
	work func(ctx context.Context, task negotiation.Task) (json.RawMessage, error)

	id    identity.AgentID
	calls atomic.Int32
	works atomic.Int32
	mu    sync.Mutex
	ins   []string
	at    []time.Time // when each work began
}

func (a *agent) Bid(context.Context, negotiation.Call) (negotiation.Bid, error) {
	if a.calls.Add(1) <= a.refuseFirst {
		return negotiation.Bid{}, negotiation.ErrNoBid
	}
	return negotiation.Bid{Price: a.price, ETA: 10 * time.Millisecond}, nil
}

func (a *agent) Work(ctx context.Context, t negotiation.Task) (json.RawMessage, error) {
	a.works.Add(1)
	a.mu.Lock()
	a.ins = append(a.ins, string(t.Input))
	a.at = append(a.at, time.Now())
	a.mu.Unlock()
	if a.work != nil {
		return a.work(ctx, t)
	}
	return json.RawMessage(fmt.Sprintf(`{"by":%q,"in":%s}`, a.name, t.Input)), nil
}

func (a *agent) inputs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.ins)
}

// newMesh starts n nodes on mocknet, adds the agents and waits until node
// 0, the requester, sees each contractor node on its capability's topic.
func newMesh(t *testing.T, n int, agents ...*agent) *nodetest.Mesh {
	t.Helper()
	m := nodetest.NewMesh(t, n)
	want := map[string]map[peer.ID]bool{}
	for _, a := range agents {
		id, err := m.Nodes[a.node].AddAgent(node.AgentCard{Name: a.name, Capabilities: []string{a.capability}}, a)
		if err != nil {
			t.Fatal(err)
		}
		a.id = id.ID
		if want[a.capability] == nil {
			want[a.capability] = map[peer.ID]bool{}
		}
		want[a.capability][m.Nodes[a.node].ID()] = true
	}
	deadline := time.Now().Add(10 * time.Second)
	for c, peers := range want {
		for {
			got := 0
			for _, p := range m.Nodes[0].TopicPeers(c) {
				if peers[p] {
					got++
				}
			}
			if got == len(peers) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("requester sees %d of %d nodes on %s", got, len(peers), c)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return m
}

// audits collects the engine's audit records.
type audits struct {
	mu    sync.Mutex
	kinds []string
}

func (a *audits) record(kind, _ string, detail any) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := detail.(map[string]any)
	s := kind
	if st, ok := d["step"]; ok {
		s += " " + st.(string)
	}
	a.kinds = append(a.kinds, s)
	return nil
}

func (a *audits) has(t *testing.T, want ...string) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range want {
		if !slices.Contains(a.kinds, w) {
			t.Errorf("no audit record %q in %v", w, a.kinds)
		}
	}
}

func newEngine(t *testing.T, n *node.Node, path string, au *audits) *workflow.Engine {
	t.Helper()
	cfg := workflow.Config{Path: path, Node: n, Registerer: n.Registry()}
	if au != nil {
		cfg.Audit = au.record
	}
	e, err := workflow.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	return e
}

func wait(t *testing.T, e *workflow.Engine, id string) *workflow.Run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := e.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait %s: %v (state %+v)", id, err, r)
	}
	return r
}

const orderFlow = `version: 1
name: order
input:
  required: [sku, qty]
steps:
  forecast:
    capability: forecast
    bid_window: 150ms
    input: '{sku: $input.sku}'
  stock:
    capability: inventory
    needs: [forecast]
    bid_window: 150ms
    input: '{sku: $input.sku, units: (if $steps.forecast.output.by == "forecaster" then 1 else 0 end)}'
    context: {writes: [stock]}
  price:
    capability: pricing
    needs: [forecast]
    bid_window: 150ms
    input: '{qty: $input.qty}'
    context: {writes: [price]}
  ship:
    capability: shipping
    needs: [stock, price]
    bid_window: 150ms
    input: '{stock: $steps.stock.output.by, price: $steps.price.output.by, seen: $ctx}'
    context: {reads: [stock, price]}
success: '$steps.ship.output.in.stock == "stocker"'
output: '{shipped_by: $steps.ship.output.by}'
`

// A 5-node mesh runs a 4-step workflow whose middle steps run in
// parallel; every step is a negotiation, every output feeds the next
// step's input, and each step decision is audited.
func TestWorkflowCompletes(t *testing.T) {
	var m *nodetest.Mesh
	// put writes key in the task's shared context, as the agent on node i.
	put := func(ctx context.Context, i int, task negotiation.Task, key, value string) error {
		cl, err := m.Nodes[i].TaskContext(task)
		if err != nil {
			return err
		}
		_, err = cl.Put(ctx, key, json.RawMessage(value))
		return err
	}
	var seen map[string]sharedctx.Entry
	f := &agent{name: "forecaster", capability: "forecast", node: 1}
	s := &agent{name: "stocker", capability: "inventory", node: 2, work: func(ctx context.Context, t negotiation.Task) (json.RawMessage, error) {
		return json.RawMessage(`{"by":"stocker"}`), put(ctx, 2, t, "stock", `{"A1":40}`)
	}}
	p := &agent{name: "pricer", capability: "pricing", node: 3, work: func(ctx context.Context, t negotiation.Task) (json.RawMessage, error) {
		time.Sleep(100 * time.Millisecond) // so the parallel steps overlap for sure
		return json.RawMessage(`{"by":"pricer"}`), put(ctx, 3, t, "price", `7.5`)
	}}
	sh := &agent{name: "shipper", capability: "shipping", node: 4, work: func(ctx context.Context, t negotiation.Task) (json.RawMessage, error) {
		cl, err := m.Nodes[4].TaskContext(t)
		if err != nil {
			return nil, err
		}
		if seen, err = cl.Get(ctx, "stock", "price"); err != nil {
			return nil, err
		}
		return json.RawMessage(fmt.Sprintf(`{"by":"shipper","in":%s}`, t.Input)), nil
	}}
	m = newMesh(t, 5, f, s, p, sh)
	au := &audits{}
	owner, err := m.Nodes[0].Agent("")
	if err != nil {
		t.Fatal(err)
	}
	e, err := workflow.Open(workflow.Config{Path: filepath.Join(t.TempDir(), "workflows.db"), Node: m.Nodes[0], Audit: au.record,
		Context: workflow.NodeContext(m.Nodes[0].SharedContext(), owner)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}

	r, err := e.Submit(context.Background(), "order.yaml", []byte(orderFlow), json.RawMessage(`{"sku":"A1","qty":2}`))
	if err != nil {
		t.Fatal(err)
	}
	r = wait(t, e, r.ID)
	if r.State != workflow.StateCompleted || string(r.Output) != `{"shipped_by":"shipper"}` {
		t.Fatalf("workflow %s: %s, output %s", r.State, r.Error, r.Output)
	}
	for _, a := range []*agent{f, s, p, sh} {
		if a.works.Load() != 1 {
			t.Errorf("%s worked %d times", a.name, a.works.Load())
		}
	}
	if got := s.inputs()[0]; got != `{"sku":"A1","units":1}` {
		t.Errorf("stock input %s", got)
	}
	// The context holds the two writers' entries, each verifying; the
	// step that declared them read them, in $ctx and through the protocol.
	if got := sh.inputs()[0]; got != `{"price":"pricer","seen":{"price":7.5,"stock":{"A1":40}},"stock":"stocker"}` {
		t.Errorf("ship input %s", got)
	}
	writers := map[identity.AgentID]bool{}
	for k, en := range seen {
		v, err := sharedctx.OpenStored(en.Signed, 0)
		if err != nil || v.Key != k || v.Writer != en.Writer {
			t.Errorf("entry %s does not verify: %v", k, err)
		}
		writers[en.Writer] = true
	}
	if len(seen) != 2 || !writers[s.id] || !writers[p.id] {
		t.Errorf("context entries %v, want stock by %s and price by %s", seen, s.id, p.id)
	}
	for _, st := range r.Steps {
		if st.State != workflow.StepCompleted || len(st.Attempts) != 1 || st.Attempts[0].Task == "" || st.Attempts[0].Winner == "" {
			t.Errorf("step %s: %+v", st.Name, st)
		}
	}
	// stock and price ran at once: each began before the other ended.
	st, pr := r.Steps[1], r.Steps[2]
	if !st.Started.Before(*pr.Ended) || !pr.Started.Before(*st.Ended) {
		t.Errorf("stock %v–%v and price %v–%v did not overlap", st.Started, st.Ended, pr.Started, pr.Ended)
	}
	au.has(t, "workflow.start", "workflow.step.start forecast", "workflow.step.award ship", "workflow.step.done stock", "workflow.done")
	list, err := e.List()
	if err != nil || len(list) != 1 || list[0].Done != 4 {
		t.Fatalf("list = %+v, %v", list, err)
	}
}

// A step whose winner fails is requested again, and the agent that failed
// it ranks last, so another agent does it.
func TestWorkflowRetriesOnAnotherAgent(t *testing.T) {
	bad := &agent{name: "cheap", capability: "label", node: 1, price: 1, work: func(context.Context, negotiation.Task) (json.RawMessage, error) {
		return nil, errors.New("printer on fire")
	}}
	good := &agent{name: "dear", capability: "label", node: 2, price: 5, refuseFirst: 1}
	m := newMesh(t, 3, bad, good)
	au := &audits{}
	e := newEngine(t, m.Nodes[0], filepath.Join(t.TempDir(), "workflows.db"), au)
	defer e.Close()
	src := "version: 1\nsteps:\n  label:\n    capability: label\n    bid_window: 150ms\n    retry: {attempts: 3, backoff: 50ms}\n"
	r, err := e.Submit(context.Background(), "label.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	r = wait(t, e, r.ID)
	if r.State != workflow.StateCompleted {
		t.Fatalf("workflow %s: %s", r.State, r.Error)
	}
	at := r.Steps[0].Attempts
	if len(at) != 2 || at[0].State != "failed" || !slices.Contains(at[0].FailedAgents, bad.id) || at[1].Winner != good.id || at[1].Price != 5 {
		t.Fatalf("attempts = %+v", at)
	}
	if bad.works.Load() != 1 || good.works.Load() != 1 {
		t.Fatalf("cheap worked %d times, dear %d", bad.works.Load(), good.works.Load())
	}
	au.has(t, "workflow.step.retry label")
}

// A step that fails for good compensates the completed steps before it,
// the latest first, with inputs built from their outputs.
func TestWorkflowCompensates(t *testing.T) {
	var order []string
	var mu sync.Mutex
	undo := func(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
		mu.Lock()
		order = append(order, string(task.Input))
		mu.Unlock()
		return json.RawMessage(`{"undone":true}`), nil
	}
	book := &agent{name: "booker", capability: "book", node: 1}
	pay := &agent{name: "payer", capability: "pay", node: 2}
	und := &agent{name: "undoer", capability: "undo", node: 3, work: undo}
	fail := &agent{name: "failer", capability: "ship", node: 4, work: func(context.Context, negotiation.Task) (json.RawMessage, error) {
		return nil, errors.New("no trucks")
	}}
	m := newMesh(t, 5, book, pay, und, fail)
	au := &audits{}
	e := newEngine(t, m.Nodes[0], filepath.Join(t.TempDir(), "workflows.db"), au)
	defer e.Close()
	src := `version: 1
steps:
  book:
    capability: book
    bid_window: 100ms
    compensate: {capability: undo, bid_window: 100ms, input: '{undo: "book", was: $steps.book.output.by}'}
  pay:
    capability: pay
    needs: [book]
    bid_window: 100ms
    compensate: {capability: undo, bid_window: 100ms, input: '{undo: "pay", failed: $steps.ship.error != null}'}
  ship:
    capability: ship
    needs: [pay]
    bid_window: 100ms
    retry: {attempts: 2, backoff: 20ms}
`
	r, err := e.Submit(context.Background(), "trip.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	r = wait(t, e, r.ID)
	if r.State != workflow.StateFailed || fail.works.Load() != 2 {
		t.Fatalf("workflow %s (%s); ship worked %d times", r.State, r.Error, fail.works.Load())
	}
	want := []string{`{"failed":true,"undo":"pay"}`, `{"undo":"book","was":"booker"}`}
	if !slices.Equal(order, want) {
		t.Fatalf("compensations %v, want %v", order, want)
	}
	if r.Steps[0].State != workflow.StepCompensated || r.Steps[1].State != workflow.StepCompensated || r.Steps[2].State != workflow.StepFailed {
		t.Fatalf("steps %+v", r.Steps)
	}
	au.has(t, "workflow.step.failed ship", "workflow.compensation.begin pay", "workflow.compensation.done book")
}

// Bad input is refused before anything runs, naming what is wrong.
func TestWorkflowRefusesBadInput(t *testing.T) {
	m := nodetest.NewMesh(t, 1)
	e, err := workflow.Open(workflow.Config{Path: filepath.Join(t.TempDir(), "w.db"), Node: m.Nodes[0], MaxSteps: 2, MaxRunning: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	three := "version: 1\nsteps:\n  a: {capability: x}\n  b: {capability: x}\n  c: {capability: x}\n"
	need := "version: 1\ninput: {required: [sku]}\nsteps:\n  a: {capability: x}\n"
	for _, tc := range []struct {
		name, src, input string
		is               error
		want             string
	}{
		{"bad file", "version: 1\nsteps:\n  a: {needs: [b]}\n", "", workflow.ErrInvalid, "f.yaml:3: step a: capability is required"},
		{"too many steps", three, "", workflow.ErrInvalid, "3 steps, over the node's limit of 2"},
		{"missing input", need, `{"qty":1}`, workflow.ErrBadInput, `"sku" is required`},
		{"input not JSON", need, `{sku`, workflow.ErrBadInput, "not JSON"},
		{"input not an object", need, `[1]`, workflow.ErrBadInput, "want a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.Submit(context.Background(), "f.yaml", []byte(tc.src), json.RawMessage(tc.input))
			if !errors.Is(err, tc.is) || !contains(err, tc.want) {
				t.Fatalf("err = %v, want %v with %q", err, tc.is, tc.want)
			}
		})
	}
	list, _ := e.List()
	if len(list) != 0 {
		t.Fatalf("refused workflows were kept: %+v", list)
	}
	if _, err := e.Get("nope"); !errors.Is(err, workflow.ErrUnknown) {
		t.Fatalf("Get unknown: %v", err)
	}
}

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }

// An engine closed mid-workflow leaves it running in the store; the next
// one resumes it: the completed step is not run again, the one in flight
// is requested again.
func TestWorkflowResumes(t *testing.T) {
	started := make(chan struct{}, 1)
	var first atomic.Bool
	first.Store(true)
	a := &agent{name: "first", capability: "one", node: 1}
	b := &agent{name: "second", capability: "two", node: 2, work: func(ctx context.Context, _ negotiation.Task) (json.RawMessage, error) {
		if first.CompareAndSwap(true, false) {
			started <- struct{}{}
			<-ctx.Done() // until the engine stops
			return nil, ctx.Err()
		}
		return json.RawMessage(`{"ok":true}`), nil
	}}
	m := newMesh(t, 3, a, b)
	path := filepath.Join(t.TempDir(), "workflows.db")
	e := newEngine(t, m.Nodes[0], path, nil)
	src := "version: 1\nsteps:\n  a: {capability: one, bid_window: 100ms}\n  b: {capability: two, bid_window: 100ms, needs: [a]}\n"
	r, err := e.Submit(context.Background(), "two.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("step b never started")
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = newEngine(t, m.Nodes[0], path, nil)
	defer e.Close()
	r = wait(t, e, r.ID)
	if r.State != workflow.StateCompleted || r.Resumed != 1 {
		t.Fatalf("workflow %s (%s), resumed %d", r.State, r.Error, r.Resumed)
	}
	if a.works.Load() != 1 || b.works.Load() != 2 {
		t.Fatalf("a worked %d times, b %d", a.works.Load(), b.works.Load())
	}
	if at := r.Steps[1].Attempts; len(at) != 2 || at[0].State != "interrupted" || at[1].State != "completed" {
		t.Fatalf("b's attempts %+v", at)
	}
}

// Each attempt is a span, tagged with its workflow, step and task, that
// its negotiation's spans hang from.
func TestWorkflowStepSpans(t *testing.T) {
	a := &agent{name: "echo", capability: "echo", node: 1}
	m := newMesh(t, 2, a)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	e, err := workflow.Open(workflow.Config{Path: filepath.Join(t.TempDir(), "w.db"), Node: m.Nodes[0], Tracer: tp.Tracer("test")})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	r, err := e.Submit(context.Background(), "f.yaml", []byte("version: 1\nsteps:\n  say: {capability: echo, bid_window: 100ms}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	r = wait(t, e, r.ID)
	var found bool
	for _, s := range rec.Ended() {
		if s.Name() != "workflow.step" {
			continue
		}
		at := map[string]string{}
		for _, kv := range s.Attributes() {
			at[string(kv.Key)] = kv.Value.AsString()
		}
		found = found || at["parley.workflow"] == r.ID && at["parley.step"] == "say" && at["parley.task"] == r.Steps[0].Attempts[0].Task
	}
	if !found {
		t.Fatalf("no workflow.step span for %s among %d spans", r.ID, len(rec.Ended()))
	}
}

// A step with approval: true waits in the node's approval queue until a
// human decides: approved, it negotiates; denied, it fails at once.
func TestWorkflowApproval(t *testing.T) {
	a := &agent{name: "shipper", capability: "ship", node: 1}
	m := newMesh(t, 2, a)
	n := m.Nodes[0]
	e, err := workflow.Open(workflow.Config{Path: filepath.Join(t.TempDir(), "w.db"), Node: n,
		Approve: func(ctx context.Context, s workflow.StepApproval) error {
			ag, err := n.Agent("")
			if err != nil {
				return err
			}
			return n.Admission().ApproveStep(ctx, s.Workflow, s.Step, s.Capability, ag.ID, s.Budget)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	src := []byte("version: 1\nsteps:\n  ship: {capability: ship, bid_window: 100ms, approval: true, budget: 500, retry: {attempts: 3}}\n")
	for _, approve := range []bool{true, false} {
		r, err := e.Submit(context.Background(), "ship.yaml", src, nil)
		if err != nil {
			t.Fatal(err)
		}
		var ap node.Approval
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if aps := n.Approvals(); len(aps) == 1 {
				ap = aps[0]
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no approval asked")
			}
		}
		if ap.Stage != "workflow" || ap.Capability != "ship" || ap.Price != 500 || !strings.Contains(ap.Rule, "step ship") {
			t.Fatalf("approval %+v", ap)
		}
		if err := n.Decide(ap.ID, approve, "test"); err != nil {
			t.Fatal(err)
		}
		r = wait(t, e, r.ID)
		st := r.Steps[0]
		if approve && (r.State != workflow.StateCompleted || !st.Approved) {
			t.Fatalf("approved: %s %s", r.State, r.Error)
		}
		if !approve && (r.State != workflow.StateFailed || len(st.Attempts) != 0 || !strings.Contains(st.Error, "denied by test")) {
			t.Fatalf("denied: %s, step %+v", r.State, st)
		}
	}
	if a.works.Load() != 1 {
		t.Fatalf("shipper worked %d times, want once (the approved run)", a.works.Load())
	}
}

// The node's bounds hold: workflows running at once, and the ended ones
// kept (the oldest are pruned).
func TestWorkflowBounds(t *testing.T) {
	// A lone node publishes at once rather than waiting for topic peers.
	m := nodetest.NewMesh(t, 1, nodetest.WithConfig(func(_ int, c *node.Config) { c.PublishWait = 10 * time.Millisecond }))
	e, err := workflow.Open(workflow.Config{Path: filepath.Join(t.TempDir(), "w.db"), Node: m.Nodes[0], MaxRunning: 1, KeepEnded: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	// Nobody offers x: each workflow fails once its bid window closes.
	src := []byte("version: 1\nsteps:\n  a: {capability: x, bid_window: 300ms}\n")
	first, err := e.Submit(context.Background(), "f.yaml", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Submit(context.Background(), "f.yaml", src, nil); !errors.Is(err, workflow.ErrBusy) {
		t.Fatalf("second at once: %v, want ErrBusy", err)
	}
	if r := wait(t, e, first.ID); r.State != workflow.StateFailed || !strings.Contains(r.Steps[0].Error, "no capable agent found") {
		t.Fatalf("first: %s, step %+v", r.State, r.Steps[0])
	}
	second, err := e.Submit(context.Background(), "f.yaml", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, e, second.ID)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		list, err := e.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 1 && list[0].ID == second.ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kept %+v, want only the newest", list)
		}
	}
	if _, err := e.Get(first.ID); !errors.Is(err, workflow.ErrUnknown) {
		t.Fatalf("pruned workflow: %v", err)
	}
}

// A false if: skips its step (its dependents still run); a false success
// criterion fails the workflow once every step has ended, and its
// completed steps are compensated.
func TestWorkflowConditions(t *testing.T) {
	a := &agent{name: "doer", capability: "do", node: 1}
	u := &agent{name: "undoer", capability: "undo", node: 1}
	m := newMesh(t, 2, a, u)
	e := newEngine(t, m.Nodes[0], filepath.Join(t.TempDir(), "w.db"), nil)
	defer e.Close()
	src := `version: 1
steps:
  first:
    capability: do
    bid_window: 100ms
    compensate: {capability: undo, bid_window: 100ms}
  maybe:
    capability: do
    needs: [first]
    if: '$input.big'
  last:
    capability: do
    needs: [maybe]
    bid_window: 100ms
    input: '{maybe: $steps.maybe.state}'
success: '$steps.maybe.state == "completed"'
`
	r, err := e.Submit(context.Background(), "c.yaml", []byte(src), json.RawMessage(`{"big":false}`))
	if err != nil {
		t.Fatal(err)
	}
	r = wait(t, e, r.ID)
	if r.State != workflow.StateFailed || !strings.Contains(r.Error, "success criterion is false") {
		t.Fatalf("workflow %s: %s", r.State, r.Error)
	}
	if st := r.Steps[1]; st.State != workflow.StepSkipped || len(st.Attempts) != 0 {
		t.Fatalf("maybe: %+v", st)
	}
	if in := a.inputs(); len(in) != 2 || in[1] != `{"maybe":"skipped"}` {
		t.Fatalf("doer's inputs %v; steps %+v", in, r.Steps)
	}
	if r.Steps[0].State != workflow.StepCompensated || u.works.Load() != 1 {
		t.Fatalf("first: %s, undoer worked %d times", r.Steps[0].State, u.works.Load())
	}
}

// A cancel stops the running step and compensates the completed ones;
// the workflow ends canceled.
func TestWorkflowCancelCompensates(t *testing.T) {
	working := make(chan struct{}, 1)
	a := &agent{name: "doer", capability: "do", node: 1}
	u := &agent{name: "undoer", capability: "undo", node: 1}
	h := &agent{name: "hanger", capability: "hang", node: 1, work: func(ctx context.Context, _ negotiation.Task) (json.RawMessage, error) {
		working <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	m := newMesh(t, 2, a, u, h)
	au := &audits{}
	e := newEngine(t, m.Nodes[0], filepath.Join(t.TempDir(), "w.db"), au)
	defer e.Close()
	src := "version: 1\nsteps:\n  first: {capability: do, bid_window: 100ms, compensate: {capability: undo, bid_window: 100ms}}\n" +
		"  second: {capability: hang, bid_window: 100ms, needs: [first]}\n  third: {capability: do, needs: [second]}\n"
	r, err := e.Submit(context.Background(), "c.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-working:
	case <-time.After(10 * time.Second):
		t.Fatal("second never started")
	}
	if err := e.Cancel(r.ID); err != nil {
		t.Fatal(err)
	}
	r = wait(t, e, r.ID)
	if r.State != workflow.StateCanceled || r.Steps[0].State != workflow.StepCompensated || r.Steps[1].State != workflow.StepCanceled ||
		r.Steps[2].State != workflow.StepCanceled || u.works.Load() != 1 {
		t.Fatalf("workflow %s (%s): %s %s %s, undoer %d", r.State, r.Error, r.Steps[0].State, r.Steps[1].State, r.Steps[2].State, u.works.Load())
	}
	if err := e.Cancel(r.ID); !errors.Is(err, workflow.ErrEnded) {
		t.Fatalf("second cancel: %v", err)
	}
	au.has(t, "workflow.compensation.done first", "workflow.done")
}

// A step that declares context keys must be requested as the context's
// owner; another agent is refused before anything runs.
func TestWorkflowContextOwner(t *testing.T) {
	m := nodetest.NewMesh(t, 1)
	owner, err := m.Nodes[0].Agent("")
	if err != nil {
		t.Fatal(err)
	}
	e, err := workflow.Open(workflow.Config{Path: filepath.Join(t.TempDir(), "w.db"), Node: m.Nodes[0],
		Context: workflow.NodeContext(m.Nodes[0].SharedContext(), owner), ContextOwner: owner.Name})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	src := "version: 1\nsteps:\n  a: {capability: x, agent: buyer, context: {reads: [stock]}}\n"
	if _, err := e.Submit(context.Background(), "f.yaml", []byte(src), nil); !errors.Is(err, workflow.ErrInvalid) ||
		!strings.Contains(err.Error(), `f.yaml:3: step a: declares context keys but is requested as agent "buyer"`) {
		t.Fatalf("err = %v", err)
	}
}

// An engine closed during the compensations resumes them: a step already
// compensated is not compensated again; the one in flight is requested
// again.
func TestWorkflowResumesCompensation(t *testing.T) {
	hanging := make(chan struct{}, 1)
	var undos atomic.Int32
	u := &agent{name: "undoer", capability: "undo", node: 1, work: func(ctx context.Context, t negotiation.Task) (json.RawMessage, error) {
		if undos.Add(1) == 2 { // a's first compensation: until the engine stops
			hanging <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return json.RawMessage(`{"undone":true}`), nil
	}}
	d := &agent{name: "doer", capability: "do", node: 1}
	f := &agent{name: "failer", capability: "fail", node: 1, work: func(context.Context, negotiation.Task) (json.RawMessage, error) {
		return nil, errors.New("no")
	}}
	m := newMesh(t, 2, u, d, f)
	path := filepath.Join(t.TempDir(), "w.db")
	e := newEngine(t, m.Nodes[0], path, nil)
	src := `version: 1
steps:
  a: {capability: do, bid_window: 100ms, compensate: {capability: undo, bid_window: 100ms, input: '{undo: "a"}'}}
  b: {capability: do, bid_window: 100ms, needs: [a], compensate: {capability: undo, bid_window: 100ms, input: '{undo: "b"}'}}
  c: {capability: fail, bid_window: 100ms, needs: [b]}
`
	r, err := e.Submit(context.Background(), "s.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-hanging:
	case <-time.After(10 * time.Second):
		t.Fatal("a's compensation never started")
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = newEngine(t, m.Nodes[0], path, nil)
	defer e.Close()
	r = wait(t, e, r.ID)
	in := u.inputs()
	if r.State != workflow.StateFailed || r.Resumed != 1 || r.Steps[0].State != workflow.StepCompensated || r.Steps[1].State != workflow.StepCompensated ||
		!slices.Equal(in, []string{`{"undo":"b"}`, `{"undo":"a"}`, `{"undo":"a"}`}) {
		t.Fatalf("workflow %s (%s), resumed %d, steps %s %s, undo inputs %v", r.State, r.Error, r.Resumed, r.Steps[0].State, r.Steps[1].State, in)
	}
	if at := r.Steps[0].Compensation.Attempts; len(at) != 2 || at[0].State != "interrupted" {
		t.Fatalf("a's compensation attempts %+v", at)
	}
}

// The success metrics move when workflows end: one completed (its cycle
// time observed), one failed.
func TestWorkflowMetrics(t *testing.T) {
	ok := &agent{name: "worker", capability: "work", node: 1}
	bad := &agent{name: "failer", capability: "fail", node: 1, work: func(context.Context, negotiation.Task) (json.RawMessage, error) {
		return nil, errors.New("broken")
	}}
	m := newMesh(t, 2, ok, bad)
	e := newEngine(t, m.Nodes[0], filepath.Join(t.TempDir(), "workflows.db"), nil)
	defer e.Close()
	for _, c := range []string{"work", "fail"} {
		src := "version: 1\nsteps:\n  s: {capability: " + c + ", bid_window: 2s, enough_bids: 1}\n"
		r, err := e.Submit(context.Background(), "m.yaml", []byte(src), nil)
		if err != nil {
			t.Fatal(err)
		}
		wait(t, e, r.ID)
	}
	mfs, err := m.Nodes[0].Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	var cycles uint64
	for _, mf := range mfs {
		switch mf.GetName() {
		case "parley_workflows_total":
			for _, s := range mf.GetMetric() {
				got[s.GetLabel()[0].GetValue()] = s.GetCounter().GetValue()
			}
		case "parley_workflow_duration_seconds":
			cycles = mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	if got["completed"] != 1 || got["failed"] != 1 || cycles != 1 {
		t.Fatalf("parley_workflows_total %v, cycle times observed %d; want completed 1, failed 1, one cycle time", got, cycles)
	}
}
