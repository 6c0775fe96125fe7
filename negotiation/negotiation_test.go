package negotiation_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

// agentSpec is a contractor agent for a test mesh.
type agentSpec struct {
	node       int
	name       string
	capability string // default "echo"
	price      float64
	eta        time.Duration
	// work replaces the default work (echo the input).
	work func(ctx context.Context, task negotiation.Task) (json.RawMessage, error)
	// decline, when set, makes the agent decline awards.
	decline bool
	// counter, when set, makes the agent a Counterer answering with it.
	counter func(ctx context.Context, c negotiation.Counter) (negotiation.Bid, error)
}

// testAgent is a contractor with a record of what it saw.
type testAgent struct {
	spec   agentSpec
	id     identity.AgentID
	bids   atomic.Int32
	works  atomic.Int32
	inputs sync.Map // task ID -> input it received
	// counters counts the counter-offers it answered; worked is the bid
	// its last Work was given (the agreed terms).
	counters atomic.Int32
	worked   atomic.Pointer[negotiation.Bid]
}

// countering is a testAgent that takes counter-offers.
type countering struct{ *testAgent }

func (a countering) Counter(ctx context.Context, _ negotiation.Call, c negotiation.Counter) (negotiation.Bid, error) {
	a.counters.Add(1)
	return a.spec.counter(ctx, c)
}

func (a *testAgent) Bid(_ context.Context, call negotiation.Call) (negotiation.Bid, error) {
	a.bids.Add(1)
	return negotiation.Bid{Price: a.spec.price, ETA: a.spec.eta, Rationale: a.spec.name + " can"}, nil
}

func (a *testAgent) Commit(context.Context, negotiation.Call, negotiation.Bid) error {
	if a.spec.decline {
		return fmt.Errorf("%w: %s is fully booked", negotiation.ErrDecline, a.spec.name)
	}
	return nil
}

func (a *testAgent) Work(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
	a.works.Add(1)
	bid := task.Bid
	a.worked.Store(&bid)
	a.inputs.Store(task.Task, string(task.Input))
	if a.spec.work != nil {
		return a.spec.work(ctx, task)
	}
	task.Progress(0.5, "halfway")
	return task.Input, nil
}

// newNegMesh starts n fully connected nodes, adds the agents and waits
// until node 0 (the requester) can reach every contractor's topic.
func newNegMesh(t *testing.T, n int, specs ...agentSpec) (*nodetest.Mesh, map[string]*testAgent) {
	t.Helper()
	return newNegMeshOpts(t, n, nil, specs...)
}

// newNegMeshOpts is newNegMesh with options for the mesh.
func newNegMeshOpts(t *testing.T, n int, opts []nodetest.Option, specs ...agentSpec) (*nodetest.Mesh, map[string]*testAgent) {
	t.Helper()
	m := nodetest.NewMesh(t, n, opts...)
	agents := map[string]*testAgent{}
	want := map[string]map[peer.ID]bool{}
	for _, s := range specs {
		if s.capability == "" {
			s.capability = "echo"
		}
		ta := &testAgent{spec: s}
		var h negotiation.Handler = ta
		if s.counter != nil {
			h = countering{ta}
		}
		a, err := m.Nodes[s.node].AddAgent(node.AgentCard{Name: s.name, Capabilities: []string{s.capability}}, h)
		if err != nil {
			t.Fatalf("AddAgent %s: %v", s.name, err)
		}
		ta.id = a.ID
		agents[s.name] = ta
		if want[s.capability] == nil {
			want[s.capability] = map[peer.ID]bool{}
		}
		want[s.capability][m.Nodes[s.node].ID()] = true
	}
	deadline := time.Now().Add(10 * time.Second)
	for capability, peers := range want {
		for {
			got := 0
			for _, p := range m.Nodes[0].TopicPeers(capability) {
				if peers[p] {
					got++
				}
			}
			if got == len(peers) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("requester sees %d of %d contractor nodes on %s", got, len(peers), capability)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return m, agents
}

func request(t *testing.T, n *node.Node, input string, opts ...negotiation.RequestOption) (*negotiation.Outcome, error) {
	t.Helper()
	opts = append([]negotiation.RequestOption{negotiation.WithBidWindow(300 * time.Millisecond), negotiation.WithTimeout(15 * time.Second)}, opts...)
	return n.Request(context.Background(), negotiation.Need{
		Capability: "echo",
		Summary:    json.RawMessage(`{"size":"small"}`),
		Input:      json.RawMessage(input),
	}, opts...)
}

func bidStatus(out *negotiation.Outcome, id identity.AgentID) []string {
	var s []string
	for _, b := range out.Bids {
		if b.Agent == id {
			s = append(s, b.Status)
		}
	}
	return s
}

func states(out *negotiation.Outcome) []negotiation.State {
	var s []negotiation.State
	for _, h := range out.History {
		if len(s) == 0 || s[len(s)-1] != h.State {
			s = append(s, h.State)
		}
	}
	return s
}

func TestHappyPathCheapestWinsAndOnlyItSeesTheInput(t *testing.T) {
	m, agents := newNegMesh(t, 3,
		agentSpec{node: 1, name: "dear", price: 5, eta: time.Second},
		agentSpec{node: 2, name: "cheap", price: 3, eta: 2 * time.Second},
	)
	out, err := request(t, m.Nodes[0], `{"secret":"address"}`)
	if err != nil {
		t.Fatalf("Request: %v (outcome %+v)", err, out)
	}
	cheap, dear := agents["cheap"], agents["dear"]
	if out.State != negotiation.StateCompleted || out.Winner != cheap.id || string(out.Result) != `{"secret":"address"}` {
		t.Fatalf("outcome: state %s, winner %s, result %s; want completed by cheap with the input echoed", out.State, out.Winner, out.Result)
	}
	if len(out.Bids) != 2 {
		t.Fatalf("bids seen = %+v, want 2", out.Bids)
	}
	// Names travel with the bids so that tables can show them beside IDs.
	if out.WinnerName != "cheap" {
		t.Errorf("winner name %q, want cheap", out.WinnerName)
	}
	for _, b := range out.Bids {
		if want := map[identity.AgentID]string{cheap.id: "cheap", dear.id: "dear"}[b.Agent]; b.Name != want {
			t.Errorf("bid of %s named %q, want %q", b.Agent, b.Name, want)
		}
	}
	ti, err := m.Nodes[2].Task(out.Task)
	if err != nil {
		t.Fatalf("contractor's Task(%s): %v", out.Task, err)
	}
	if ti.AgentName != "cheap" || ti.PeerName == "" {
		t.Errorf("contractor's task names agent %q and requester %q, want cheap and the requester's name", ti.AgentName, ti.PeerName)
	}
	want := []negotiation.State{negotiation.StateSubmitted, negotiation.StateNegotiating, negotiation.StateWorking, negotiation.StateCompleted}
	if got := states(out); !slices.Equal(got, want) {
		t.Errorf("state history = %v, want %v", got, want)
	}
	if dear.works.Load() != 0 {
		t.Error("the losing bidder was given the work")
	}
	dear.inputs.Range(func(k, v any) bool { t.Errorf("the losing bidder saw the input %v", v); return true })
	if st := bidStatus(out, dear.id); !slices.Equal(st, []string{"standby"}) {
		t.Errorf("loser's bid status = %v, want standby", st)
	}
	if out.Timings.Total <= 0 || out.Timings.Work <= 0 || out.Timings.Negotiation <= 0 {
		t.Errorf("timings not measured: %+v", out.Timings)
	}
	// The contractor's node lists the task too, completed once it has
	// the ack.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ti, err := m.Nodes[2].Task(out.Task)
		if err == nil && ti.Role == negotiation.RoleContractor && ti.State == negotiation.StateCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("contractor's view of the task: %+v, %v", ti, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNoBiddersFailsAfterTheWindow(t *testing.T) {
	m, _ := newNegMesh(t, 2, agentSpec{node: 1, name: "other", capability: "translate", price: 1})
	start := time.Now()
	out, err := request(t, m.Nodes[0], `{}`, negotiation.WithCalls(2), negotiation.WithBidWindow(200*time.Millisecond))
	if !errors.Is(err, negotiation.ErrTaskFailed) {
		t.Fatalf("Request with no bidders: %v, want ErrTaskFailed", err)
	}
	// Nobody is on the topic and no agent of the node offers it: the
	// failure says so.
	if out.State != negotiation.StateFailed || out.Calls != 2 || !strings.Contains(out.Reason, "no capable agent found") {
		t.Fatalf("outcome %s after %d calls, reason %q; want failed after 2 calls saying no capable agent was found", out.State, out.Calls, out.Reason)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("failing took %s, want about two bid windows", took)
	}
}

func TestWinnerDeclinesNextBestWins(t *testing.T) {
	m, agents := newNegMesh(t, 3,
		agentSpec{node: 1, name: "booked", price: 1, decline: true},
		agentSpec{node: 2, name: "free", price: 2},
	)
	out, err := request(t, m.Nodes[0], `"job"`)
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	if out.Winner != agents["free"].id {
		t.Fatalf("winner %s, want the next best after the decline", out.Winner)
	}
	if st := bidStatus(out, agents["booked"].id); !slices.Equal(st, []string{"declined"}) {
		t.Errorf("decliner's status = %v, want declined", st)
	}
	if agents["booked"].works.Load() != 0 {
		t.Error("the agent that declined did the work")
	}
}

func TestWinnerNodeClosedMidTaskIsReawarded(t *testing.T) {
	started := make(chan struct{})
	m, agents := newNegMesh(t, 3,
		agentSpec{node: 1, name: "doomed", price: 1, work: func(ctx context.Context, _ negotiation.Task) (json.RawMessage, error) {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		}},
		agentSpec{node: 2, name: "backup", price: 2},
	)
	go func() {
		<-started
		_ = m.Nodes[1].Close()
	}()
	out, err := request(t, m.Nodes[0], `{"n":1}`, negotiation.WithProgressTimeout(time.Second))
	if err != nil {
		t.Fatalf("Request: %v (outcome %+v)", err, out)
	}
	if out.Winner != agents["backup"].id || string(out.Result) != `{"n":1}` {
		t.Fatalf("winner %s result %s, want backup to finish the job", out.Winner, out.Result)
	}
	if st := bidStatus(out, agents["doomed"].id); len(st) != 1 || st[0] == "completed" {
		t.Errorf("doomed agent's status = %v, want a failure", st)
	}
}

func TestCancelByRequesterStopsTheWork(t *testing.T) {
	stopped := make(chan error, 1)
	working := make(chan struct{})
	m, _ := newNegMesh(t, 2, agentSpec{node: 1, name: "slow", price: 1, work: func(ctx context.Context, _ negotiation.Task) (json.RawMessage, error) {
		close(working)
		<-ctx.Done()
		stopped <- ctx.Err()
		return nil, ctx.Err()
	}})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-working
		cancel()
	}()
	out, err := m.Nodes[0].Request(ctx, negotiation.Need{Capability: "echo", Input: json.RawMessage(`1`)}, negotiation.WithBidWindow(200*time.Millisecond))
	if !errors.Is(err, negotiation.ErrCanceled) || out.State != negotiation.StateCanceled {
		t.Fatalf("Request canceled mid-work: %v, state %v; want ErrCanceled", err, out.State)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the contractor's work context was not canceled")
	}
}

func TestCancelByContractorFailsOver(t *testing.T) {
	working := make(chan string, 1)
	m, agents := newNegMesh(t, 3,
		agentSpec{node: 1, name: "quitter", price: 1, work: func(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
			working <- task.Task
			<-ctx.Done()
			return nil, ctx.Err()
		}},
		agentSpec{node: 2, name: "steady", price: 2},
	)
	go func() {
		id := <-working
		if err := m.Nodes[1].CancelTask(id); err != nil {
			t.Errorf("contractor CancelTask: %v", err)
		}
	}()
	out, err := request(t, m.Nodes[0], `"x"`)
	if err != nil || out.Winner != agents["steady"].id {
		t.Fatalf("after the contractor canceled: %v, winner %s; want steady to complete", err, out.Winner)
	}
}

func TestLateBidIsRefusedPolitely(t *testing.T) {
	m, agents := newNegMesh(t, 3,
		agentSpec{node: 1, name: "prompt", price: 5, work: func(context.Context, negotiation.Task) (json.RawMessage, error) {
			time.Sleep(600 * time.Millisecond) // still running when the late bid lands
			return json.RawMessage(`"ok"`), nil
		}},
		agentSpec{node: 2, name: "late", price: 1},
	)
	late := agents["late"]
	late.spec.price = 1
	// The late agent thinks for longer than the window.
	slow := &slowBidder{testAgent: late, delay: 400 * time.Millisecond}
	if _, err := m.Nodes[2].AddAgent(node.AgentCard{Name: "late", Capabilities: []string{"echo"}}, slow); err != nil {
		t.Fatal(err)
	}
	out, err := request(t, m.Nodes[0], `"x"`, negotiation.WithBidWindow(200*time.Millisecond))
	if err != nil || out.Winner != agents["prompt"].id {
		t.Fatalf("Request: %v, winner %s; want the prompt bidder", err, out.Winner)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ti, err := m.Nodes[2].Task(out.Task)
		if err == nil && ti.State == negotiation.StateRejected && strings.Contains(fmt.Sprint(ti.History), "bid window closed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("late bidder's view: %+v, %v; want rejected because the bid window closed", ti, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type slowBidder struct {
	*testAgent
	delay time.Duration
}

func (s *slowBidder) Bid(ctx context.Context, call negotiation.Call) (negotiation.Bid, error) {
	time.Sleep(s.delay)
	return s.testAgent.Bid(ctx, call)
}

func TestConcurrentRequestsAcrossFiveNodes(t *testing.T) {
	// Each agent is asked about all 20 calls at once (its own node's too),
	// more than admission's default 16 bid handlers per agent: a call
	// that every agent's slot refused would get no bid.
	opts := []nodetest.Option{nodetest.WithConfig(func(_ int, c *node.Config) { c.Limits.BidHandlersPerAgent = 32 })}
	m, _ := newNegMeshOpts(t, 5, opts,
		agentSpec{node: 1, name: "a", price: 1},
		agentSpec{node: 2, name: "b", price: 2},
		agentSpec{node: 3, name: "c", price: 3},
		agentSpec{node: 4, name: "d", price: 4},
	)
	// Every node requests too, so make sure each can reach the topic.
	for _, n := range m.Nodes[1:] {
		nodetest.WaitTopic(t, context.Background(), "echo", n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := fmt.Sprintf(`{"i":%d}`, i)
			// The window closes at the third of the four bids: fast on a
			// quiet machine, while a loaded one (-race, CI) waits for them
			// instead of missing a fixed 400 ms window.
			out, err := request(t, m.Nodes[i%5], in, negotiation.WithBidWindow(5*time.Second), negotiation.WithEnoughBids(3))
			switch {
			case err != nil:
				var views []string
				for _, n := range m.Nodes {
					for _, ti := range n.Tasks() {
						if ti.Task == out.Task {
							views = append(views, fmt.Sprintf("%s %s %v", ti.Role, ti.State, ti.History))
						}
					}
					views = append(views, fmt.Sprint(n.NegotiationDropped()))
				}
				errs <- fmt.Errorf("request %d: %w (the nodes' views: %v)", i, err, views)
			case string(out.Result) != in:
				errs <- fmt.Errorf("request %d: result %s, want %s", i, out.Result, in)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
