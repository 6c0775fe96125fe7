package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/negotiation/frame"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
	"github.com/parleynet/parley/sharedctx"
)

// stepWorker is a contractor whose Work runs body with the task's shared
// context client.
type stepWorker struct {
	n    *node.Node
	body func(ctx context.Context, cl *sharedctx.Client) (json.RawMessage, error)
}

func (w *stepWorker) Bid(context.Context, negotiation.Call) (negotiation.Bid, error) {
	return negotiation.Bid{Price: 1, ETA: time.Millisecond}, nil
}

func (w *stepWorker) Work(ctx context.Context, t negotiation.Task) (json.RawMessage, error) {
	cl, err := w.n.TaskContext(t)
	if err != nil {
		return nil, err
	}
	return w.body(ctx, cl)
}

// TestSharedContext runs two steps of a workflow on mocknet: a stock
// agent reads the order the requester put in the context and writes the
// stock level; a pricing agent reads that and writes the price. The
// requester's replica then holds entries of three writers, each verifying.
// Along the way: an outsider's read and write, a key the step did not
// declare, a write over the home's value limit, and the stock agent's
// access after its step ended are refused, and the refusals are audited.
func TestSharedContext(t *testing.T) {
	var auditDir string
	m := nodetest.NewMesh(t, 4, nodetest.WithConfig(func(i int, c *node.Config) {
		if i == 0 {
			c.AuditLog, auditDir = openAudit(t, c.NodeKey)
			c.SharedContext.MaxValueSize = 256
		}
	}))
	req, stockN, priceN, outsider := m.Nodes[0], m.Nodes[1], m.Nodes[2], m.Nodes[3]
	requester, err := req.Agent("")
	if err != nil {
		t.Fatal(err)
	}
	home, err := req.SharedContext().Open("wf-order-1", requester)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := home.Put("order", json.RawMessage(`{"sku":"42","qty":3}`)); err != nil {
		t.Fatal(err)
	}

	type stockSeen struct {
		order            json.RawMessage
		undeclared       error
		oversize         error
		outRead, outPut  error
		localRead        error
		reads, writes    []string
		client           *sharedctx.Client
		stockTask        string
		syncedAfterWrite int
	}
	var seen stockSeen
	stockAgent, err := stockN.AddAgent(node.AgentCard{Name: "stock", Capabilities: []string{"stock"}}, &stepWorker{n: stockN,
		body: func(ctx context.Context, cl *sharedctx.Client) (json.RawMessage, error) {
			seen.client, seen.stockTask = cl, cl.Task()
			got, err := cl.Get(ctx)
			if err != nil {
				return nil, err
			}
			seen.order = got["order"].Value
			seen.reads, seen.writes = cl.Granted()
			_, seen.undeclared = cl.Get(ctx, "price")
			_, seen.oversize = cl.Put(ctx, "stock.note", json.RawMessage(`"`+strings.Repeat("x", 300)+`"`))
			if _, err := cl.Put(ctx, "stock.level", json.RawMessage(`7`)); err != nil {
				return nil, err
			}
			// An outsider with its own fresh key tries the same task.
			stranger, _ := outsider.Agent("")
			oc := outsider.SharedContext().Client(stranger, req.ID(), requester.ID, cl.Task())
			_, seen.outRead = oc.Get(ctx, "order")
			if err := oc.Bind("wf-order-1"); err != nil {
				return nil, err
			}
			_, seen.outPut = oc.Put(ctx, "stock.level", json.RawMessage(`0`))
			// The requester's own agent, on the home node itself, is no
			// participant of the step either.
			lc := req.SharedContext().Client(requester, req.ID(), requester.ID, cl.Task())
			_, seen.localRead = lc.Get(ctx, "order")
			es, err := cl.Sync(ctx)
			seen.syncedAfterWrite = len(es)
			return json.RawMessage(`"counted"`), err
		}})
	if err != nil {
		t.Fatal(err)
	}
	var price struct {
		stock json.RawMessage
		err   error
	}
	priceAgent, err := priceN.AddAgent(node.AgentCard{Name: "pricer", Capabilities: []string{"price"}}, &stepWorker{n: priceN,
		body: func(ctx context.Context, cl *sharedctx.Client) (json.RawMessage, error) {
			got, err := cl.Get(ctx, "stock.level")
			if err != nil {
				return nil, err
			}
			price.stock = got["stock.level"].Value
			_, err = cl.Put(ctx, "price", json.RawMessage(`{"unit":9.5}`))
			return json.RawMessage(`"priced"`), err
		}})
	if err != nil {
		t.Fatal(err)
	}
	waitTopicPeers(t, req, "stock", 1)
	waitTopicPeers(t, req, "price", 1)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	run := func(capability string, st sharedctx.Step) *negotiation.Outcome {
		t.Helper()
		out, err := req.Request(sharedctx.WithStep(ctx, st), negotiation.Need{Capability: capability},
			negotiation.WithBidWindow(200*time.Millisecond), negotiation.WithTimeout(10*time.Second), negotiation.WithCalls(1))
		if err != nil {
			t.Fatalf("step %s: %v", capability, err)
		}
		return out
	}
	out := run("stock", sharedctx.Step{Workflow: "wf-order-1", Reads: []string{"order"}, Writes: []string{"stock.*"}})
	if out.Winner != stockAgent.ID {
		t.Fatalf("stock step won by %s", out.Winner)
	}
	if string(seen.order) != `{"sku":"42","qty":3}` || strings.Join(seen.reads, ",") != "order" || strings.Join(seen.writes, ",") != "stock.*" {
		t.Fatalf("stock agent read %s with grant %v/%v", seen.order, seen.reads, seen.writes)
	}
	for name, err := range map[string]error{"undeclared key": seen.undeclared, "outsider read": seen.outRead, "outsider write": seen.outPut, "local non-winner": seen.localRead} {
		if !errors.Is(err, sharedctx.ErrDenied) {
			t.Errorf("%s: %v, want ErrDenied", name, err)
		}
	}
	if seen.oversize == nil || !strings.Contains(seen.oversize.Error(), "limit 256") {
		t.Errorf("oversize write: %v, want refused by the home's 256-byte limit", seen.oversize)
	}
	if _, ok := home.Get("stock.note"); ok {
		t.Error("the oversize entry was applied")
	}
	// Its sync brings what it may read, not what it may only write.
	if seen.syncedAfterWrite != 1 {
		t.Errorf("the stock agent's sync pulled %d entries, want the order alone", seen.syncedAfterWrite)
	}
	if e, ok := seen.client.Replica().Get("stock.level"); !ok || string(e.Value) != "7" {
		t.Errorf("the stock agent's replica lacks its own write: %+v", e)
	}

	// The step is over: the same client, the same agent, now refused.
	if _, err := seen.client.Get(ctx, "order"); !errors.Is(err, sharedctx.ErrDenied) || !strings.Contains(err.Error(), "not running") {
		t.Errorf("read after the step ended: %v, want refused as ended", err)
	}
	if _, err := seen.client.Put(ctx, "stock.level", json.RawMessage(`1000`)); !errors.Is(err, sharedctx.ErrDenied) {
		t.Errorf("write after the step ended: %v", err)
	}

	run("price", sharedctx.Step{Workflow: "wf-order-1", Reads: []string{"stock.level"}, Writes: []string{"price"}})
	if string(price.stock) != "7" {
		t.Fatalf("pricer read stock.level = %s, %v", price.stock, price.err)
	}

	// The requester reads every entry; each verifies and names its writer.
	writers := map[string]identity.AgentID{"order": requester.ID, "stock.level": stockAgent.ID, "price": priceAgent.ID}
	all := home.All()
	if len(all) != len(writers) {
		t.Fatalf("context holds %d keys, want %d: %+v", len(all), len(writers), all)
	}
	for _, e := range all {
		v, err := sharedctx.OpenStored(e.Signed, 0)
		if err != nil || v.Writer != writers[e.Key] || string(v.Value) != string(e.Value) {
			t.Errorf("entry %s: writer %s, %v; want by %s", e.Key, v.Writer, err, writers[e.Key])
		}
		if m, err := identity.Open(e.Signed, identity.OpenOptions{Now: func() time.Time { return e.Written }}); err != nil || m.From != writers[e.Key] {
			t.Errorf("entry %s does not verify as an identity envelope: %v", e.Key, err)
		}
	}
	if v, _ := home.Get("stock.level"); string(v.Value) != "7" {
		t.Errorf("stock.level = %s after refused writes, want 7", v.Value)
	}

	// Every refusal is in the requester's audit log, by stage.
	denied := deniedEntries(t, auditDir)
	if denied["context.read"] < 2 || denied["context.write"] < 2 {
		t.Errorf("audited context refusals %v; want reads (undeclared key, outsider, ended) and writes (outsider, ended)", denied)
	}
	rules := map[string]bool{}
	for _, r := range records(t, auditDir, "admission.denied") {
		var d struct{ Rule string }
		_ = json.Unmarshal(r.Detail, &d)
		rules[d.Rule] = true
	}
	for _, rule := range []string{sharedctx.RuleNotParticipant, sharedctx.RuleStepEnded, sharedctx.RuleKeyNotGranted} {
		if !rules[rule] {
			t.Errorf("no audited refusal by %s in %v", rule, rules)
		}
	}
	if n := len(records(t, auditDir, "context.write")); n != 2 {
		t.Errorf("%d context.write records, want the stock and price writes", n)
	}
}

// TestSharedContextRefusesBadEntries: the task's own winner sends raw
// writes over the protocol with entries that must never be applied — a
// tampered one, one signed by another key, one for another workflow, one
// whose clock is an hour ahead — each beside a good entry; each write is
// refused whole and the context is unchanged.
func TestSharedContextRefusesBadEntries(t *testing.T) {
	m := nodetest.NewMesh(t, 2)
	req, worker := m.Nodes[0], m.Nodes[1]
	owner, _ := req.Agent("")
	home, err := req.SharedContext().Open("wf-1", owner)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := nodetest.NewAgent("other")
	type answer struct {
		Error, Rule string
		Applied     []bool
	}
	answers := map[string]answer{}
	var self *identity.Agent
	self, err = worker.AddAgent(node.AgentCard{Name: "w", Capabilities: []string{"job"}}, negotiation.HandlerFuncs{
		BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
			return negotiation.Bid{Price: 1}, nil
		},
		WorkFunc: func(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
			now := worker.SharedContext().Clock().Now()
			sign := func(a *identity.Agent, wf, key string, ts sharedctx.Timestamp) []byte {
				e, err := sharedctx.Sign(a, wf, task.Task, key, json.RawMessage(`"v"`), ts)
				if err != nil {
					t.Error(err)
				}
				return e.Signed
			}
			tampered := sign(self, "wf-1", "k.tampered", now)
			tampered[bytes.Index(tampered, []byte(`"v"`))+1] = 'w'
			good := sign(self, "wf-1", "k.good", now)
			for name, bad := range map[string][]byte{
				"tampered":       tampered,
				"another signer": sign(other, "wf-1", "k.other", now),
				"other workflow": sign(self, "wf-2", "k.wf", now),
				"an hour ahead":  sign(self, "wf-1", "k.future", sharedctx.Timestamp{Wall: time.Now().Add(time.Hour).UnixNano()}),
				"good alone":     good,
			} {
				entries := [][]byte{good, bad}
				if name == "good alone" {
					entries = entries[:1]
				}
				st, err := worker.Host().NewStream(ctx, req.ID(), sharedctx.ProtocolID)
				if err != nil {
					return nil, err
				}
				conn := frame.New(st, self, frame.Options{MaxSize: 1 << 20})
				if err := conn.Send("context.write", 1, map[string]any{"task": task.Task, "entries": entries}); err != nil {
					return nil, err
				}
				var ans answer
				if _, err := conn.Recv(&ans); err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				_ = st.Close()
				answers[name] = ans
			}
			return json.RawMessage(`1`), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	waitTopicPeers(t, req, "job", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := req.Request(sharedctx.WithStep(ctx, sharedctx.Step{Workflow: "wf-1", Writes: []string{"k.*"}}), negotiation.Need{Capability: "job"},
		negotiation.WithBidWindow(200*time.Millisecond), negotiation.WithTimeout(10*time.Second), negotiation.WithCalls(1)); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"tampered":       "bad signature",
		"another signer": "not by " + string(self.ID),
		"other workflow": `for workflow "wf-2"`,
		"an hour ahead":  "ahead of this node's clock",
	} {
		if a := answers[name]; a.Rule != "context.bad_entry" || !strings.Contains(a.Error, want) || a.Applied != nil {
			t.Errorf("%s: answered %+v; want refused, %q", name, a, want)
		}
	}
	if a := answers["good alone"]; len(a.Applied) != 1 || !a.Applied[0] {
		t.Errorf("the good entry alone: %+v", a)
	}
	all := home.All()
	if len(all) != 1 || all[0].Key != "k.good" || all[0].Writer != self.ID {
		t.Fatalf("context holds %+v; want only the good entry", all)
	}
	if d := req.SharedContext().Dropped(); d["bad_entry"] != 4 {
		t.Errorf("dropped %v; want the 4 bad writes counted", d)
	}
	if got := metric(t, req, "parley_context_entries_applied_total"); got != 1 {
		t.Errorf("parley_context_entries_applied_total = %v, want 1", got)
	}
}

// TestSharedContextSyncAcrossHomeRestart: a participant's replica pulls
// what changed since its last sync; when the home's context is restored
// from a snapshot (its daemon restarted) the next sync brings it all again
// rather than trusting a cursor of the old numbering.
func TestSharedContextSyncAcrossHomeRestart(t *testing.T) {
	m := nodetest.NewMesh(t, 2)
	req, worker := m.Nodes[0], m.Nodes[1]
	owner, _ := req.Agent("")
	svc := req.SharedContext()
	home, _ := svc.Open("wf-1", owner)
	for _, k := range []string{"a", "b", "c"} {
		_, _ = home.Put(k, json.RawMessage(`1`))
	}
	var pulls []int
	var syncErr error
	_, err := worker.AddAgent(node.AgentCard{Name: "w", Capabilities: []string{"job"}}, &stepWorker{n: worker,
		body: func(ctx context.Context, cl *sharedctx.Client) (json.RawMessage, error) {
			pull := func() {
				es, err := cl.Sync(ctx)
				syncErr = errors.Join(syncErr, err)
				pulls = append(pulls, len(es))
			}
			pull() // everything
			_, _ = home.Put("b", json.RawMessage(`2`))
			pull() // what changed: b
			pull() // nothing
			snap := home.Snapshot()
			svc.Drop("wf-1")
			restored, _ := svc.Open("wf-1", owner)
			syncErr = errors.Join(syncErr, restored.Restore(snap), svc.Grant("wf-1", cl.Task(), []string{"*"}, nil))
			pull() // a new epoch: everything again
			if e, _ := cl.Replica().Get("b"); string(e.Value) != "2" {
				syncErr = errors.Join(syncErr, fmt.Errorf("participant's b = %s", e.Value))
			}
			return json.RawMessage(`1`), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	waitTopicPeers(t, req, "job", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := req.Request(sharedctx.WithStep(ctx, sharedctx.Step{Workflow: "wf-1", Reads: []string{"*"}}), negotiation.Need{Capability: "job"},
		negotiation.WithBidWindow(200*time.Millisecond), negotiation.WithTimeout(10*time.Second), negotiation.WithCalls(1)); err != nil {
		t.Fatal(err)
	}
	if syncErr != nil || fmt.Sprint(pulls) != "[3 1 0 3]" {
		t.Fatalf("pulls %v, %v; want everything, the change, nothing, everything after the restart", pulls, syncErr)
	}
}

// TestSharedContextConcurrentStepsConverge: two steps run at once on two
// nodes and write the same key; once both wrote, each participant's
// replica, synced from the home, holds the same winner as the home.
func TestSharedContextConcurrentStepsConverge(t *testing.T) {
	m := nodetest.NewMesh(t, 3)
	req := m.Nodes[0]
	owner, _ := req.Agent("")
	home, _ := req.SharedContext().Open("wf-1", owner)
	var wrote sync.WaitGroup
	wrote.Add(2)
	both := make(chan struct{})
	go func() { wrote.Wait(); close(both) }()
	views := make(chan sharedctx.Entry, 2)
	for i, n := range m.Nodes[1:] {
		capability := fmt.Sprintf("part%d", i)
		_, err := n.AddAgent(node.AgentCard{Name: "w", Capabilities: []string{capability}}, &stepWorker{n: n,
			body: func(ctx context.Context, cl *sharedctx.Client) (json.RawMessage, error) {
				_, err := cl.Put(ctx, "plan", json.RawMessage(fmt.Sprintf(`"from %s"`, capability)))
				wrote.Done()
				if err != nil {
					return nil, err
				}
				select { // both wrote, or the step is over
				case <-both:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				if _, err := cl.Sync(ctx); err != nil {
					return nil, err
				}
				e, _ := cl.Replica().Get("plan")
				views <- e
				return json.RawMessage(`1`), nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		waitTopicPeers(t, req, capability, 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			_, err := req.Request(sharedctx.WithStep(ctx, sharedctx.Step{Workflow: "wf-1", Reads: []string{"plan"}, Writes: []string{"plan"}}),
				negotiation.Need{Capability: fmt.Sprintf("part%d", i)}, negotiation.WithBidWindow(200*time.Millisecond), negotiation.WithTimeout(10*time.Second), negotiation.WithCalls(1))
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	want, ok := home.Get("plan")
	if !ok {
		t.Fatal("no plan at the home")
	}
	for range 2 {
		if v := <-views; string(v.Signed) != string(want.Signed) {
			t.Errorf("a participant holds plan = %s by %s; the home holds %s by %s", v.Value, v.Writer, want.Value, want.Writer)
		}
	}
}

// metric returns the value of an unlabelled counter in n's registry.
func metric(t *testing.T, n *node.Node, name string) float64 {
	t.Helper()
	mfs, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
