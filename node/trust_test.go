package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/admission"
	"github.com/parleynet/parley/discovery"
	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/negotiation/rpc"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

// countingWorker is a contractor that counts how often its code runs.
type countingWorker struct {
	bids, works atomic.Int32
	price       float64
	// hold, when set, blocks Bid until it is closed.
	hold chan struct{}
	// running counts Bid calls in progress; peak is their maximum.
	running, peak atomic.Int32
}

func (w *countingWorker) Bid(ctx context.Context, _ negotiation.Call) (negotiation.Bid, error) {
	w.bids.Add(1)
	n := w.running.Add(1)
	defer w.running.Add(-1)
	for p := w.peak.Load(); n > p && !w.peak.CompareAndSwap(p, n); p = w.peak.Load() {
	}
	if w.hold != nil {
		select {
		case <-w.hold:
		case <-ctx.Done():
			return negotiation.Bid{}, ctx.Err()
		}
	}
	return negotiation.Bid{Price: w.price, ETA: time.Millisecond}, nil
}

func (w *countingWorker) Work(_ context.Context, t negotiation.Task) (json.RawMessage, error) {
	w.works.Add(1)
	return t.Input, nil
}

// waitTopicPeers waits until n knows k peers on capability's topic.
func waitTopicPeers(t *testing.T, n *node.Node, capability string, k int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(n.TopicPeers(capability)) < k {
		if time.Now().After(deadline) {
			t.Fatalf("%d peers on %s, want %d", len(n.TopicPeers(capability)), capability, k)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func requestJob(n *node.Node, capability string, opts ...negotiation.RequestOption) (*negotiation.Outcome, error) {
	opts = append([]negotiation.RequestOption{negotiation.WithBidWindow(300 * time.Millisecond), negotiation.WithTimeout(3 * time.Second), negotiation.WithCalls(1)}, opts...)
	return n.Request(context.Background(), negotiation.Need{Capability: capability, Input: json.RawMessage(`"x"`)}, opts...)
}

// deniedEntries returns the entries of the admission refusals in an audit
// log.
func deniedEntries(t *testing.T, dir string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, r := range records(t, dir, "admission.denied") {
		var d struct {
			Entry string `json:"entry"`
			Stage string `json:"stage"`
		}
		_ = json.Unmarshal(r.Detail, &d)
		key := d.Entry
		if d.Stage != "" {
			key += "." + d.Stage
		}
		out[key]++
	}
	return out
}

// TestEveryEntryPointRefusesADeniedPeer: a node whose policy denies a peer
// refuses it at every way in — delivery of its intents, its calls, its
// bids, its asks, its card fetches — records each refusal in the audit
// log, and still relays its intents to the rest of the mesh.
func TestEveryEntryPointRefusesADeniedPeer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stranger peer.ID
	var auditDir string
	// stranger - victim - third, in a line.
	m := nodetest.NewMesh(t, 3, nodetest.WithTopology(nodetest.Chain), nodetest.WithConfig(func(i int, c *node.Config) {
		switch i {
		case 0:
			stranger, _ = peer.IDFromPrivateKey(c.NodeKey)
		case 1:
			c.Policy = mustPolicy(t, fmt.Sprintf("peers: {deny: [%s]}\n", stranger))
			c.AuditLog, auditDir = openAudit(t, c.NodeKey)
		}
	}))
	a, v, third := m.Nodes[0], m.Nodes[1], m.Nodes[2]
	worker := &countingWorker{price: 1}
	vWorker, err := v.AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{"job"}}, worker)
	if err != nil {
		t.Fatal(err)
	}
	seller := &countingWorker{price: 1}
	if _, err := a.AddAgent(node.AgentCard{Name: "seller", Capabilities: []string{"buy"}}, seller); err != nil {
		t.Fatal(err)
	}

	t.Run("gossip: not delivered, still relayed", func(t *testing.T) {
		waitThird := collect(t, ctx, []*node.Node{third}, "news")
		vSub, err := v.Subscribe(ctx, "news")
		if err != nil {
			t.Fatal(err)
		}
		defer vSub.Close()
		nodetest.WaitTopic(t, ctx, "news", v, third)
		waitTopicPeers(t, a, "news", 1)
		in := publish(t, ctx, a, "news", `{"from":"the stranger"}`)
		waitThird(in)
		sctx, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer scancel()
		if got, err := vSub.Next(sctx); err == nil {
			t.Fatalf("the victim delivered the denied peer's intent %s", got.ID)
		}
	})
	t.Run("negotiation: a call runs no agent code", func(t *testing.T) {
		waitTopicPeers(t, a, "job", 1)
		if out, err := requestJob(a, "job"); err == nil {
			t.Fatalf("the stranger's request completed: %+v", out)
		}
		if n := worker.bids.Load(); n != 0 {
			t.Fatalf("the victim's bid handler ran %d times for a denied peer", n)
		}
	})
	t.Run("negotiation: its bid is not taken", func(t *testing.T) {
		waitTopicPeers(t, v, "buy", 1)
		out, err := requestJob(v, "buy")
		if err == nil || seller.bids.Load() == 0 {
			t.Fatalf("request = %v (seller bid %d times); want the seller's bid refused", err, seller.bids.Load())
		}
		if len(out.Bids) != 0 {
			t.Fatalf("the refused bid was kept: %+v", out.Bids)
		}
	})
	t.Run("rpc: an ask runs no agent code", func(t *testing.T) {
		_, err := a.Ask(ctx, v.ID(), vWorker.ID, "job", json.RawMessage(`1`), "")
		if !errors.Is(err, rpc.ErrDenied) || worker.works.Load() != 0 {
			t.Fatalf("Ask = %v (work ran %d times); want rpc.ErrDenied and no work", err, worker.works.Load())
		}
	})
	t.Run("card: not served", func(t *testing.T) {
		cards, err := discovery.FetchCards(ctx, a.Host(), v.ID(), "job")
		if err == nil {
			t.Fatalf("the victim served %d cards to a denied peer", len(cards))
		}
	})
	// Every refusal is in the victim's audit log. (The stranger's call was
	// refused at delivery, a gossip refusal, before any negotiation.)
	deadline := time.Now().Add(5 * time.Second)
	want := []string{"gossip", "negotiate.proposal", "rpc", "card"}
	for {
		got := deniedEntries(t, auditDir)
		missing := []string{}
		for _, w := range want {
			if got[w] == 0 {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit log has refusals %v; missing %v", got, missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAskPassesTheGuardrails: a direct ask is work done with no
// negotiation, so it passes what a negotiation would. On main an ask ran
// the agent's Work for anyone, whatever the policy.
func TestAskPassesTheGuardrails(t *testing.T) {
	cases := []struct {
		name   string
		policy string
		// asks is how many asks run at once.
		asks    int
		held    bool // an approval rule holds the ask
		approve bool // what the human answers
		want    int  // asks answered
	}{
		{"not on the agent's offer list", "agents: {worker: {offer: [other]}}\n", 1, false, false, 0},
		{"max_concurrent_tasks", "max_concurrent_tasks: 1\n", 3, false, false, 1},
		{"approval denied", "approvals: [{name: asks, stage: commit}]\n", 1, true, false, 0},
		{"approval granted", "approvals: [{name: asks, stage: commit}]\n", 1, true, true, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := nodetest.NewMesh(t, 2, nodetest.WithConfig(func(i int, c *node.Config) {
				if i == 1 {
					c.Policy = mustPolicy(t, tc.policy)
				}
			}))
			release := make(chan struct{})
			worker, err := m.Nodes[1].AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{"job"}}, negotiation.HandlerFuncs{
				BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) { return negotiation.Bid{}, nil },
				WorkFunc: func(ctx context.Context, t negotiation.Task) (json.RawMessage, error) {
					select {
					case <-release:
					case <-ctx.Done():
					}
					return t.Input, nil
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			var answered atomic.Int32
			var wg sync.WaitGroup
			for range tc.asks {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					defer cancel()
					if _, err := m.Nodes[0].Ask(ctx, m.Nodes[1].ID(), worker.ID, "job", json.RawMessage(`1`), ""); err == nil {
						answered.Add(1)
					} else if !errors.Is(err, rpc.ErrDenied) {
						t.Errorf("Ask: %v, want an answer or rpc.ErrDenied", err)
					}
				}()
			}
			if tc.held {
				var pending []node.Approval
				for deadline := time.Now().Add(3 * time.Second); len(pending) == 0 && time.Now().Before(deadline); {
					pending = m.Nodes[1].Approvals()
					time.Sleep(20 * time.Millisecond)
				}
				if len(pending) != 1 {
					t.Fatalf("%d approvals pending, want the ask held", len(pending))
				}
				if err := m.Nodes[1].Decide(pending[0].ID, tc.approve, "test"); err != nil {
					t.Fatal(err)
				}
			}
			// Let the admitted asks finish once the refused ones are back.
			time.AfterFunc(500*time.Millisecond, func() { close(release) })
			wg.Wait()
			if got := int(answered.Load()); got != tc.want {
				t.Fatalf("%d of %d asks answered, want %d", got, tc.asks, tc.want)
			}
		})
	}
}

// TestContractorTablesStayBounded: on main a contractor's task table never
// shrank (the winner and the loser each kept every task). Both sides stay
// at their bound.
func TestContractorTablesStayBounded(t *testing.T) {
	const keep, rounds = 20, 150
	m := nodetest.NewMesh(t, 3, nodetest.WithConfig(func(_ int, c *node.Config) {
		c.Negotiation.KeepTasks = keep
	}))
	for i, price := range map[int]float64{1: 1, 2: 2} {
		if _, err := m.Nodes[i].AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{"job"}}, pricedWorker(price)); err != nil {
			t.Fatal(err)
		}
	}
	waitTopicPeers(t, m.Nodes[0], "job", 2)
	for i := range rounds {
		if _, err := requestJob(m.Nodes[0], "job", negotiation.WithEnoughBids(2), negotiation.WithBidWindow(2*time.Second)); err != nil {
			t.Fatalf("negotiation %d: %v", i, err)
		}
	}
	for i, n := range m.Nodes {
		if got := len(n.Tasks()); got > keep {
			t.Errorf("node %d remembers %d tasks after %d negotiations, want at most %d", i, got, rounds, keep)
		}
	}
}

// TestRemoteChosenWindowsAreClamped: a call asking for an hour-long bid
// window and a deadline 75 years away gets neither; on main the
// contractor held a goroutine, a stream and a table entry that long.
func TestRemoteChosenWindowsAreClamped(t *testing.T) {
	const maxWindow, maxTask = 2 * time.Second, 30 * time.Second
	m := nodetest.NewMesh(t, 1, nodetest.WithConfig(func(_ int, c *node.Config) {
		c.Negotiation.MaxBidWindow, c.Negotiation.MaxTaskDuration = maxWindow, maxTask
	}))
	v := m.Nodes[0]
	seen := make(chan [2]time.Time, 1)
	if _, err := v.AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{"job"}}, negotiation.HandlerFuncs{
		BidFunc: func(ctx context.Context, c negotiation.Call) (negotiation.Bid, error) {
			d, _ := ctx.Deadline()
			seen <- [2]time.Time{d, c.Deadline}
			return negotiation.Bid{}, negotiation.ErrNoBid
		},
		WorkFunc: func(context.Context, negotiation.Task) (json.RawMessage, error) { return nil, nil },
	}); err != nil {
		t.Fatal(err)
	}
	raw := newRawPeer(t, m, v.ID())
	a, d := raw.agent()
	raw.topic("job", 1)
	time.Sleep(nodetest.GossipHeartbeat)
	now := time.Now()
	raw.publish("job", a, d, call("t1", time.Hour, now.AddDate(75, 0, 0)), now, 75*365*24*time.Hour)
	select {
	case got := <-seen:
		if bidBy := got[0].Sub(now); bidBy > maxWindow+time.Second {
			t.Errorf("bid handler's deadline %s away, want within the node's %s", bidBy, maxWindow)
		}
		if taskBy := got[1].Sub(now); taskBy > maxTask+time.Second {
			t.Errorf("task deadline %s away, want within the node's %s", taskBy, maxTask)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call never reached the agent")
	}
}

// TestBidHandlersAreBoundedPerOrigin: one requester, however many calls
// it makes, runs at most the node's per-origin number of bid handlers at
// once; on main every call ran every matching handler.
func TestBidHandlersAreBoundedPerOrigin(t *testing.T) {
	const perOrigin = 2
	m := nodetest.NewMesh(t, 2, nodetest.WithConfig(func(_ int, c *node.Config) {
		c.Limits.BidHandlersPerOrigin = perOrigin
	}))
	hold := make(chan struct{})
	w := &countingWorker{price: 1, hold: hold}
	if _, err := m.Nodes[1].AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{"job"}}, w); err != nil {
		t.Fatal(err)
	}
	waitTopicPeers(t, m.Nodes[0], "job", 1)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = requestJob(m.Nodes[0], "job", negotiation.WithBidWindow(time.Second))
		}()
	}
	// Let every call arrive, then free the handlers.
	time.Sleep(600 * time.Millisecond)
	close(hold)
	wg.Wait()
	if p := w.peak.Load(); p > perOrigin || p == 0 {
		t.Fatalf("%d bid handlers ran at once for one origin, want 1..%d", p, perOrigin)
	}
}

// TestDeclinedAwardReleasesItsBudget: spend is held at award and given
// back on a decline; on main it was charged at award, so a contractor
// that declined burned the budget and the next bid was refused.
func TestDeclinedAwardReleasesItsBudget(t *testing.T) {
	m := nodetest.NewMesh(t, 3, nodetest.WithConfig(func(i int, c *node.Config) {
		if i == 0 {
			c.Policy = mustPolicy(t, "budgets: {max_spend_per_hour: 10}\n")
		}
	}))
	decliner := negotiation.HandlerFuncs{
		BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
			return negotiation.Bid{Price: 7, ETA: time.Millisecond}, nil
		},
		WorkFunc: func(context.Context, negotiation.Task) (json.RawMessage, error) {
			return nil, errors.New("unreachable")
		},
	}
	if _, err := m.Nodes[1].AddAgent(node.AgentCard{Name: "cheap", Capabilities: []string{"job"}}, declining{decliner}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Nodes[2].AddAgent(node.AgentCard{Name: "dear", Capabilities: []string{"job"}}, pricedWorker(8)); err != nil {
		t.Fatal(err)
	}
	waitTopicPeers(t, m.Nodes[0], "job", 2)
	out, err := requestJob(m.Nodes[0], "job", negotiation.WithEnoughBids(2), negotiation.WithBidWindow(2*time.Second))
	if err != nil {
		t.Fatalf("request: %v (bids %+v)", err, out.Bids)
	}
	if p := winnerPrice(out); p != 8 {
		t.Fatalf("winning price %v, want 8 after the 7 declined", p)
	}
	if got := m.Nodes[0].Admission().Policy().SpentLastHour(time.Now()); got != 8 {
		t.Fatalf("spent %v in the hour, want 8 (the declined 7 released)", got)
	}
}

type declining struct{ negotiation.HandlerFuncs }

func (declining) Commit(context.Context, negotiation.Call, negotiation.Bid) error {
	return fmt.Errorf("%w: booked", negotiation.ErrDecline)
}

// TestApprovalsAreBoundedAndHoldNoSlot: a contractor whose commits need a
// human holds at most a few per remote peer, refuses the rest at once, and
// takes no max_concurrent_tasks slot while it waits. On main each award
// took a slot and then waited until the remote-chosen deadline.
func TestApprovalsAreBoundedAndHoldNoSlot(t *testing.T) {
	const perPeer = 2
	m := nodetest.NewMesh(t, 2, nodetest.WithConfig(func(i int, c *node.Config) {
		if i == 1 {
			c.Policy = mustPolicy(t, "max_concurrent_tasks: 1\napprovals: [{name: every-commit, stage: commit}]\n")
			c.Limits.PendingApprovalsPerPeer = perPeer
		}
	}))
	v := m.Nodes[1]
	for i := range 4 {
		if _, err := v.AddAgent(node.AgentCard{Name: fmt.Sprintf("w%d", i), Capabilities: []string{fmt.Sprintf("job%d", i)}}, pricedWorker(1)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 {
		waitTopicPeers(t, m.Nodes[0], fmt.Sprintf("job%d", i), 1)
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = requestJob(m.Nodes[0], fmt.Sprintf("job%d", i), negotiation.WithCommitTimeout(2*time.Second), negotiation.WithTimeout(3*time.Second))
		}()
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(v.Approvals()) < perPeer && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the others are refused, not queued
	if got := len(v.Approvals()); got != perPeer {
		t.Errorf("%d approvals pending from one peer, want %d", got, perPeer)
	}
	if running := v.Admission().Policy().Running(); running != 0 {
		t.Errorf("%d task slots taken while waiting for a human, want 0", running)
	}
	wg.Wait()
}

// TestCancelInTheBidWindowRejectsTheBidders: on main a cancel during the
// bid window left the bidders' streams open and their tasks
// "negotiating" until the deadline.
func TestCancelInTheBidWindowRejectsTheBidders(t *testing.T) {
	m := nodetest.NewMesh(t, 2)
	if _, err := m.Nodes[1].AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{"job"}}, pricedWorker(1)); err != nil {
		t.Fatal(err)
	}
	waitTopicPeers(t, m.Nodes[0], "job", 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = m.Nodes[0].Request(ctx, negotiation.Need{Capability: "job"}, negotiation.WithBidWindow(10*time.Second), negotiation.WithTimeout(time.Minute))
	}()
	// Wait for the bid, then cancel.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ts := m.Nodes[1].Tasks()
		if len(ts) > 0 && ts[0].State == negotiation.StateNegotiating {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the contractor never bid: %+v", ts)
		}
	}
	cancel()
	<-done
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ts := m.Nodes[1].Tasks()
		if ts[0].State == negotiation.StateRejected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("2 s after the cancel the bidder's task is %s, want rejected", ts[0].State)
		}
	}
}

// TestTaskIDCollisionDoesNotDisplace: task IDs are public on the topic;
// another agent's call reusing one must not reach the honest task. On
// main contracts were keyed by (task, agent) and the new call displaced
// the honest entry.
func TestTaskIDCollisionDoesNotDisplace(t *testing.T) {
	m := nodetest.NewMesh(t, 2)
	v := m.Nodes[1]
	started := make(chan string, 1)
	finish := make(chan struct{})
	if _, err := v.AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{"job"}}, negotiation.HandlerFuncs{
		BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
			return negotiation.Bid{Price: 1, ETA: time.Millisecond}, nil
		},
		WorkFunc: func(_ context.Context, task negotiation.Task) (json.RawMessage, error) {
			started <- task.Task
			<-finish
			return task.Input, nil
		},
	}); err != nil {
		t.Fatal(err)
	}
	waitTopicPeers(t, m.Nodes[0], "job", 1)
	result := make(chan error, 1)
	go func() {
		_, err := requestJob(m.Nodes[0], "job", negotiation.WithTimeout(10*time.Second))
		result <- err
	}()
	task := <-started
	raw := newRawPeer(t, m, v.ID())
	a, d := raw.agent()
	raw.topic("job", 1)
	time.Sleep(nodetest.GossipHeartbeat)
	now := time.Now()
	raw.publish("job", a, d, call(task, time.Second, now.Add(time.Minute)), now, time.Minute)
	time.Sleep(300 * time.Millisecond)
	close(finish)
	if err := <-result; err != nil {
		t.Fatalf("the honest task failed after a colliding call: %v", err)
	}
}

// TestFreshKeysFromOneNodeAreRateLimited: keys cost nothing, so the bound
// on one node's agents is per node; on main the only limiter was per
// signing agent and fresh keys escaped it.
func TestFreshKeysFromOneNodeAreRateLimited(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := nodetest.NewMesh(t, 2, nodetest.WithConfig(func(_ int, c *node.Config) {
		// A trickle after the burst, so the count does not hang on how
		// fast the flood goes.
		c.Limits.IntentsPerOrigin = admission.Rate{PerSecond: 0.1, Burst: 10}
	}))
	v, honest := m.Nodes[0], m.Nodes[1]
	sub, err := v.Subscribe(ctx, "news")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	waitTopicPeers(t, honest, "news", 1)
	raw := newRawPeer(t, m, v.ID())
	raw.topic("news", 1)
	time.Sleep(nodetest.GossipHeartbeat)
	const flood = 100
	type key struct {
		a *identity.Agent
		d []byte
	}
	keys := make([]key, flood)
	for i := range keys {
		keys[i].a, keys[i].d = raw.agent()
	}
	for _, k := range keys {
		raw.publish("news", k.a, k.d, intent.Body{Kind: intent.KindEvent, Payload: json.RawMessage(`{}`)}, time.Now(), time.Minute)
	}
	// The honest node's intent still arrives; of the flood, no more than
	// the origin's burst (and a trickle) does.
	want := publish(t, ctx, honest, "news", `{"honest":true}`)
	fromRaw := 0
	for {
		in, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("the honest intent never arrived: %v", err)
		}
		if in.ID == want.ID {
			break
		}
		if in.Origin == raw.h.ID() {
			fromRaw++
		}
	}
	// Some of the flood may still be on its way: let it land.
	time.Sleep(500 * time.Millisecond)
	for {
		sctx, scancel := context.WithTimeout(ctx, 200*time.Millisecond)
		in, err := sub.Next(sctx)
		scancel()
		if err != nil {
			break
		}
		if in.Origin == raw.h.ID() {
			fromRaw++
		}
	}
	if refused := v.Stats().Dropped["rate_origin"]; fromRaw > 11 || refused == 0 {
		t.Fatalf("%d fresh-key intents of one node delivered, %d refused for the node's rate; want at most 11 delivered", fromRaw, refused)
	}
}

// TestCloseReturnsUnderASilentRequester: a requester that takes a
// proposal and never answers cannot keep a node from closing; on main
// Close blocked past 15 s.
func TestCloseReturnsUnderASilentRequester(t *testing.T) {
	m := nodetest.NewMesh(t, 1)
	v := m.Nodes[0]
	bid := make(chan struct{}, 1)
	if _, err := v.AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{"job"}}, negotiation.HandlerFuncs{
		BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
			bid <- struct{}{}
			return negotiation.Bid{Price: 1}, nil
		},
		WorkFunc: func(context.Context, negotiation.Task) (json.RawMessage, error) { return nil, nil },
	}); err != nil {
		t.Fatal(err)
	}
	raw := newRawPeer(t, m, v.ID())
	// The silent requester reads the proposal and holds the stream.
	proposals := make(chan struct{}, 1)
	testDone := make(chan struct{})
	t.Cleanup(func() { close(testDone) })
	raw.h.SetStreamHandler(negotiation.ProtocolID, func(s network.Stream) {
		buf := make([]byte, 1)
		_, _ = s.Read(buf)
		proposals <- struct{}{}
		<-testDone // never answers, never closes
	})
	a, d := raw.agent()
	raw.topic("job", 1)
	time.Sleep(nodetest.GossipHeartbeat)
	now := time.Now()
	raw.publish("job", a, d, call("silent", 5*time.Second, now.Add(5*time.Minute)), now, 5*time.Minute)
	<-bid
	select {
	case <-proposals:
	case <-time.After(5 * time.Second):
		t.Fatal("the proposal never reached the silent requester")
	}
	start := time.Now()
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %s under a silent requester, want < 5s", took)
	}
}

// A task committed between two nodes makes each known to the other, so
// neither shares the newcomers' budget with strangers any more; a node
// that only relayed stays a newcomer to both.
func TestCommittedTaskMakesPeersKnown(t *testing.T) {
	m := nodetest.NewMesh(t, 3)
	requester, worker, bystander := m.Nodes[0], m.Nodes[1], m.Nodes[2]
	if _, err := worker.AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{"job"}}, &countingWorker{price: 1}); err != nil {
		t.Fatal(err)
	}
	waitTopicPeers(t, requester, "job", 1)
	for _, n := range m.Nodes {
		for _, p := range m.Nodes {
			if p != n && !n.Admission().Newcomer(p.ID()) {
				t.Fatalf("%s is not a newcomer to %s before any task", p.ID(), n.ID())
			}
		}
	}
	if _, err := requestJob(requester, "job"); err != nil {
		t.Fatal(err)
	}
	if requester.Admission().Newcomer(worker.ID()) || worker.Admission().Newcomer(requester.ID()) {
		t.Fatal("after a committed task the requester and the worker are still newcomers to each other")
	}
	if !requester.Admission().Newcomer(bystander.ID()) || !worker.Admission().Newcomer(bystander.ID()) {
		t.Fatal("the bystander, party to no task, is known")
	}
}
