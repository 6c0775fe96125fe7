package hostile_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/negotiation/rpc"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
	"github.com/parleynet/parley/policy"
	"github.com/parleynet/parley/simulations/hostile"
)

// The Sybil tests run at a scale a race-enabled `go test` finishes in
// about a minute. PARLEY_SYBIL_FULL=1 runs the targets' own counts
// (100,001 messages, 100,000 for memory); run it without -race.
func full() bool { return os.Getenv("PARLEY_SYBIL_FULL") != "" }

func scale(small, fullCount int) int {
	if full() {
		return fullCount
	}
	return small
}

// The negotiation clamps a node applies by default (negotiation.Config).
const (
	maxBidWindow    = 10 * time.Second
	maxTaskDuration = 10 * time.Minute
)

const capability = "work"

// worker is an honest contractor agent that counts what reaches its code:
// bids, work and direct asks, and how many of each ran at once for whom.
type worker struct {
	honest   func(identity.AgentID) bool
	bidDelay time.Duration // how long bidding takes (agents think)
	// hardDelay is how long bidding on a call whose summary says "hard"
	// takes: what an agent spends depends on what it is asked.
	hardDelay time.Duration
	askDelay  time.Duration
	workDelay time.Duration
	price     float64

	mu sync.Mutex
	// sybil* count calls, work and asks from agents that are not honest.
	sybilBids, honestBids int
	sybilBidsOf           map[peer.ID]int // by the call's origin node
	bidding               map[peer.ID]int // sybil bids running, by origin
	biddingAll            int             // all bids running
	maxBiddingOf          int             // most sybil bids running for one origin
	maxBidding            int             // most bids running in all
	longestWindow         time.Duration   // of sybil calls, as the handler saw them
	furthestDeadline      time.Duration   // of sybil calls, from when the handler saw them
	works                 []negotiation.Task
	sybilWorks            int
	sybilAsks             int
	asking                map[peer.ID]int
	askingAll             int
	maxAskingOf           int
	maxAsking             int
}

func newWorker(honest func(identity.AgentID) bool) *worker {
	return &worker{honest: honest, price: 1, sybilBidsOf: map[peer.ID]int{}, bidding: map[peer.ID]int{}, asking: map[peer.ID]int{}}
}

func (w *worker) Bid(ctx context.Context, c negotiation.Call) (negotiation.Bid, error) {
	sybil := !w.honest(c.Requester)
	w.mu.Lock()
	w.biddingAll++
	w.maxBidding = max(w.maxBidding, w.biddingAll)
	if sybil {
		w.sybilBids++
		w.sybilBidsOf[c.RequesterPeer]++
		w.bidding[c.RequesterPeer]++
		w.maxBiddingOf = max(w.maxBiddingOf, w.bidding[c.RequesterPeer])
		w.longestWindow = max(w.longestWindow, c.BidWindow)
		w.furthestDeadline = max(w.furthestDeadline, time.Until(c.Deadline))
	} else {
		w.honestBids++
	}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.biddingAll--
		if sybil {
			w.bidding[c.RequesterPeer]--
		}
		w.mu.Unlock()
	}()
	think := w.bidDelay
	if strings.Contains(string(c.Summary), "hard") {
		think = w.hardDelay
	}
	if err := pause(ctx, think); err != nil {
		return negotiation.Bid{}, err
	}
	return negotiation.Bid{Price: w.price, ETA: time.Millisecond}, nil
}

// pause waits d, or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *worker) Work(ctx context.Context, t negotiation.Task) (json.RawMessage, error) {
	if err := pause(ctx, w.workDelay); err != nil {
		return nil, err
	}
	w.mu.Lock()
	if w.honest(t.Requester) {
		w.works = append(w.works, t)
	} else {
		w.sybilWorks++
	}
	w.mu.Unlock()
	return t.Input, nil
}

// ask answers direct asks, counting them by asking node.
func (w *worker) ask(ctx context.Context, req rpc.Request) (json.RawMessage, error) {
	sybil := !w.honest(req.From)
	w.mu.Lock()
	w.askingAll++
	w.maxAsking = max(w.maxAsking, w.askingAll)
	if sybil {
		w.sybilAsks++
		w.asking[req.Peer]++
		w.maxAskingOf = max(w.maxAskingOf, w.asking[req.Peer])
	}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.askingAll--
		if sybil {
			w.asking[req.Peer]--
		}
		w.mu.Unlock()
	}()
	_ = pause(ctx, w.askDelay) // answered even when the asker is gone
	return req.Input, nil
}

// counts is a snapshot of a worker's counters.
type counts struct {
	SybilBids, HonestBids, MaxBiddingOf, MaxBidding int
	SybilBidsOf                                     map[peer.ID]int
	LongestWindow, FurthestDeadline                 time.Duration
	Works                                           []negotiation.Task
	SybilWorks, SybilAsks, MaxAskingOf, MaxAsking   int
}

func (w *worker) counts() counts {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := counts{SybilBids: w.sybilBids, HonestBids: w.honestBids, MaxBiddingOf: w.maxBiddingOf, MaxBidding: w.maxBidding,
		SybilBidsOf: map[peer.ID]int{}, LongestWindow: w.longestWindow, FurthestDeadline: w.furthestDeadline,
		Works: slices.Clone(w.works), SybilWorks: w.sybilWorks, SybilAsks: w.sybilAsks, MaxAskingOf: w.maxAskingOf, MaxAsking: w.maxAsking}
	for k, v := range w.sybilBidsOf {
		c.SybilBidsOf[k] = v
	}
	return c
}

// options shape a fixture.
type options struct {
	workers   int
	sybils    int
	entry     string // which honest nodes the Sybils connect to: "all" (default) or "requester"
	bidDelay  time.Duration
	hardDelay time.Duration
	askDelay  time.Duration
	workDelay time.Duration
	// workerPolicy is node 2's policy file (the first worker), if any.
	workerPolicy string
	// scoring keeps GossipSub peer scoring on (the default); some tests
	// count every message the victim validates and turn it off.
	noScoring bool
}

// fixture is a mesh of honest parley nodes (built with nodetest) under a
// swarm of Sybil peers: node 0 requests, node 1 relays and publishes
// (the "third node" of reply-to abuse), nodes 2… are workers.
type fixture struct {
	t         testing.TB
	ctx       context.Context
	cancel    context.CancelFunc
	mesh      *nodetest.Mesh
	nodes     []*node.Node
	requester *node.Node
	relay     *node.Node
	workers   []*node.Node
	agents    []*worker // the workers' handlers, as workers
	swarm     []*hostile.Sybil

	mu        sync.Mutex
	honestIDs map[identity.AgentID]bool
	// seen[i] counts the honest intents node i's subscriber got, by ID;
	// sybilSeen[i] counts the others.
	seen      []map[string]int
	sybilSeen []int
	// published are the honest intents to check: ID → publishing node.
	published map[string]int
	// sybilBidsTaken counts Sybil bids in honest negotiations' outcomes.
	sybilBidsTaken int
}

func newFixture(t testing.TB, o options) *fixture {
	t.Helper()
	if o.workers == 0 {
		o.workers = 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := func(i int, c *node.Config) {
		c.NoPeerScoring = o.noScoring
		if i == 2 && o.workerPolicy != "" {
			c.Policy = mustPolicy(t, o.workerPolicy)
		}
	}
	// Built, not NewMesh: release lets go of the mesh, so a benchmark run
	// many times does not carry the last run's nodes in its heap.
	m, err := nodetest.Build(2+o.workers, nodetest.WithConfig(cfg))
	f := &fixture{t: t, ctx: ctx, cancel: cancel, mesh: m, honestIDs: map[identity.AgentID]bool{}, published: map[string]int{}}
	t.Cleanup(f.release)
	if err != nil {
		t.Fatal(err)
	}
	f.nodes, f.requester, f.relay, f.workers = m.Nodes, m.Nodes[0], m.Nodes[1], m.Nodes[2:]
	// The swarm attacks a mesh whose nodes know each other, as they would
	// after newcomer_age or a task committed together; only the Sybils
	// are newcomers, sharing one peer's budget.
	for _, n := range f.nodes {
		for _, p := range f.nodes {
			if p != n {
				n.Admission().Vouch(p.ID())
			}
		}
	}
	for _, n := range m.Nodes {
		for _, a := range n.Agents() {
			f.honestIDs[a.ID] = true
		}
	}
	for _, n := range f.workers {
		w := newWorker(f.honest)
		w.bidDelay, w.hardDelay, w.askDelay, w.workDelay = o.bidDelay, o.hardDelay, o.askDelay, o.workDelay
		a, err := n.AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{capability}}, w)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.HandleAsk("worker", func(ctx context.Context, r rpc.Request) (json.RawMessage, error) { return w.ask(ctx, r) }); err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		f.honestIDs[a.ID] = true
		f.mu.Unlock()
		f.agents = append(f.agents, w)
	}
	f.seen = make([]map[string]int, len(f.nodes))
	f.sybilSeen = make([]int, len(f.nodes))
	for i, n := range f.nodes {
		f.seen[i] = map[string]int{}
		sub, err := n.Subscribe(ctx, capability)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				in, err := sub.Next(ctx)
				if err != nil {
					return
				}
				f.mu.Lock()
				if f.honestIDs[in.From] {
					f.seen[i][in.ID]++
					// Calls for proposals are honest intents too: check
					// that every node got the requester's.
					if i == 0 && in.Origin == f.requester.ID() {
						f.published[in.ID] = 0
					}
				} else {
					f.sybilSeen[i]++
				}
				f.mu.Unlock()
			}
		}()
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	nodetest.WaitTopic(t, wctx, capability, f.nodes...)

	if o.sybils > 0 {
		f.swarm = f.addSwarm(o.sybils, o.entry)
	}
	return f
}

// release stops the Sybils and closes the mesh, and drops them.
func (f *fixture) release() {
	f.cancel()
	if f.mesh != nil {
		f.mesh.Close()
	}
	f.mesh, f.nodes, f.requester, f.relay, f.workers, f.agents, f.swarm = nil, nil, nil, nil, nil, nil, nil
}

// addSwarm adds n Sybil peers connected to the entry nodes: "all" (or
// "") or "requester".
func (f *fixture) addSwarm(n int, entry string) []*hostile.Sybil {
	f.t.Helper()
	var targets []peer.ID
	switch entry {
	case "", "all":
		for _, n := range f.nodes {
			targets = append(targets, n.ID())
		}
	case "requester":
		targets = append(targets, f.requester.ID())
	default:
		f.t.Fatalf("unknown entry %q", entry)
	}
	swarm, err := hostile.NewSwarm(f.ctx, f.mesh.Net, n, hostile.Options{}, targets...)
	if err != nil {
		f.t.Fatal(err)
	}
	// A Sybil must know who is on the topic, or its publishes go nowhere.
	for _, s := range swarm {
		waitFor(f.t, 10*time.Second, "a Sybil to see the topic's peers", func() bool { return len(s.TopicPeers(capability)) > 0 })
	}
	return swarm
}

// nextCall returns the next honest call for proposals among what a Sybil
// sees, or false when ctx ends.
func (f *fixture) nextCall(ctx context.Context, seen <-chan hostile.Observed) (hostile.Observed, bool) {
	for {
		select {
		case o := <-seen:
			if o.Kind == "task" && o.ReplyTo == f.requester.ID() {
				return o, true
			}
		case <-ctx.Done():
			return hostile.Observed{}, false
		}
	}
}

// watch has s watch the topic, and waits until every honest node knows
// s subscribes, so that nothing published after is missed.
func (f *fixture) watch(ctx context.Context, s *hostile.Sybil) <-chan hostile.Observed {
	f.t.Helper()
	seen, err := s.Watch(ctx, capability)
	if err != nil {
		f.t.Fatal(err)
	}
	waitFor(f.t, 10*time.Second, "the honest nodes to see the Sybil subscribe", func() bool {
		for _, n := range f.nodes {
			if !slices.Contains(n.TopicPeers(capability), s.ID()) {
				return false
			}
		}
		return true
	})
	return seen
}

func (f *fixture) honest(a identity.AgentID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.honestIDs[a]
}

// publishHonest has node i publish an event intent and records it to be
// checked by checkDelivered. It returns the signed intent.
func (f *fixture) publishHonest(i int, payload string) []byte {
	in, err := f.nodes[i].Publish(f.ctx, node.PublishRequest{Capability: capability, Payload: json.RawMessage(payload)})
	if err != nil {
		f.t.Errorf("node %d: honest publish: %v", i, err)
		return nil
	}
	f.mu.Lock()
	f.published[in.ID] = i
	f.mu.Unlock()
	return in.Raw
}

// negotiate runs one honest negotiation and returns its latency, or an
// error saying why it did not complete.
func (f *fixture) negotiate(i int) (time.Duration, error) {
	start := time.Now()
	in := fmt.Sprintf(`{"i":%d}`, i)
	// The window closes when every worker has bid. Its length covers the
	// backlog a flood within the admission layer's bursts leaves ahead of
	// the call (each Sybil forwarder's burst of intents, validated before
	// it in GossipSub's FIFO queues): milliseconds in a normal build,
	// seconds under -race on two shared cores.
	out, err := f.requester.Request(f.ctx, negotiation.Need{Capability: capability, Input: json.RawMessage(in)},
		negotiation.WithEnoughBids(len(f.workers)), negotiation.WithBidWindow(3*time.Second), negotiation.WithTimeout(20*time.Second))
	switch {
	case err != nil:
		return 0, fmt.Errorf("honest negotiation %d: %w", i, err)
	case string(out.Result) != in:
		return 0, fmt.Errorf("honest negotiation %d: result %s, want %s", i, out.Result, in)
	case !f.honest(out.Winner):
		return 0, fmt.Errorf("honest negotiation %d: won by %s, not an honest worker", i, out.Winner)
	}
	// A Sybil may bid in an open window like anyone; tests that send bids
	// only once windows close check none was taken.
	for _, b := range out.Bids {
		if !f.honest(b.Agent) {
			f.mu.Lock()
			f.sybilBidsTaken++
			f.mu.Unlock()
		}
	}
	return time.Since(start), nil
}

// honestWork runs rounds of honest work: every honest node publishes an
// event, the requester negotiates a task. Every negotiation must
// complete; it returns their latencies.
func (f *fixture) honestWork(rounds int) []time.Duration {
	f.t.Helper()
	var lat []time.Duration
	for r := range rounds {
		for i := range f.nodes {
			f.publishHonest(i, fmt.Sprintf(`{"round":%d}`, r))
		}
		d, err := f.negotiate(r)
		if err != nil {
			f.t.Error(err)
			continue
		}
		lat = append(lat, d)
	}
	return lat
}

// honestAsk asks worker w directly from the requester.
func (f *fixture) honestAsk(w int) error {
	a, err := f.workers[w].Agent("worker")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	out, err := f.requester.Ask(ctx, f.workers[w].ID(), a.ID, capability, json.RawMessage(`"honest"`), "")
	if err != nil {
		return fmt.Errorf("honest ask of worker %d: %w", w, err)
	}
	if string(out) != `"honest"` {
		return fmt.Errorf("honest ask of worker %d: answer %s", w, out)
	}
	return nil
}

// checkDelivered waits until every honest intent published so far has
// reached every other honest node's subscriber.
func (f *fixture) checkDelivered() {
	f.t.Helper()
	missing := func() map[int]int {
		f.mu.Lock()
		defer f.mu.Unlock()
		out := map[int]int{}
		for id, from := range f.published {
			for i := range f.nodes {
				if i != from && f.seen[i][id] == 0 {
					out[i]++
				}
			}
		}
		return out
	}
	// Delivery, not latency (BenchmarkSybilFlood measures that): under a
	// flood and the race detector an honest intent can queue behind the
	// flood's for seconds.
	deadline := time.Now().Add(15 * time.Second)
	for {
		m := missing()
		if len(m) == 0 {
			return
		}
		if time.Now().After(deadline) {
			f.mu.Lock()
			n := len(f.published)
			f.mu.Unlock()
			for i, k := range m {
				st := f.nodes[i].Stats()
				f.t.Errorf("node %d missed %d of the %d honest intents (its drops: %v; lost in its queues: %v)", i, k, n, nonzero(st.Dropped), nonzero(st.Lost))
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// duplicates returns how many times honest intents reached a subscriber
// more than once: a replay that got through.
func (f *fixture) duplicates() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, seen := range f.seen {
		for _, k := range seen {
			n += max(k-1, 0)
		}
	}
	return n
}

// sybilDelivered returns how many intents not from honest agents node i's
// subscriber got.
func (f *fixture) sybilDelivered(i int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sybilSeen[i]
}

func nonzero(m map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range m {
		if v > 0 {
			out[k] = v
		}
	}
	return out
}

// sybilCounts returns sybilDelivered for every node.
func (f *fixture) sybilCounts() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sybilSeen)
}

// denied returns the admission layer's refusals on n, by entry and rule.
func denied(n *node.Node) map[string]float64 {
	out := map[string]float64{}
	mfs, err := n.Registry().Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != "parley_admission_denied_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				key += l.GetValue() + "/"
			}
			out[strings.TrimSuffix(key, "/")] = m.GetCounter().GetValue()
		}
	}
	return out
}

// nodeStacks returns the stacks of the goroutines running parley code
// (not this package's), grouped as runtime/pprof groups them.
func nodeStacks() string {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	var out []string
	for _, g := range strings.Split(b.String(), "\n\n") {
		if strings.Contains(g, "parleynet/parley/") && !strings.Contains(g, "parley/simulations/hostile") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// parallel runs f(i) for i in [0, n) on workers goroutines, stopping at
// ctx's end; it returns how many ran.
func parallel(ctx context.Context, n, workers int, f func(i int)) int {
	var wg sync.WaitGroup
	next := make(chan int)
	var ran int
	var mu sync.Mutex
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
				mu.Lock()
				ran++
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(next)
	wg.Wait()
	return ran
}

func mustPolicy(t testing.TB, yaml string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// settle waits until v() has not changed for quiet, or d passes, and
// returns its last value.
func settle(d, quiet time.Duration, v func() int) int {
	deadline := time.Now().Add(d)
	last, since := v(), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if cur := v(); cur != last {
			last, since = cur, time.Now()
		} else if time.Since(since) >= quiet {
			break
		}
	}
	return last
}

// sybilBids sums the Sybil bids of every worker.
func (f *fixture) sybilBids() int {
	n := 0
	for _, w := range f.agents {
		n += w.counts().SybilBids
	}
	return n
}

// checkBidQuotas checks what the workers' bid handlers saw of the Sybils'
// calls: at most the bid slots at once, per origin node and per agent;
// within each origin's intent rate over elapsed; and clamped windows and
// deadlines.
func (f *fixture) checkBidQuotas(elapsed time.Duration) {
	f.t.Helper()
	for i, w := range f.agents {
		lim := f.workers[i].Admission().Limits()
		k := w.counts()
		if k.MaxBiddingOf > lim.BidHandlersPerOrigin {
			f.t.Errorf("worker %d ran %d bid handlers at once for one Sybil origin, over the %d per origin", i, k.MaxBiddingOf, lim.BidHandlersPerOrigin)
		}
		if k.MaxBidding > lim.BidHandlersPerAgent {
			f.t.Errorf("worker %d ran %d bid handlers at once, over the %d per agent", i, k.MaxBidding, lim.BidHandlersPerAgent)
		}
		for origin, n := range k.SybilBidsOf {
			if q := quota(lim.IntentsPerOrigin, elapsed); n > q {
				f.t.Errorf("worker %d bid %d times on calls from origin %s in %s, over its intent quota of %d", i, n, origin, elapsed, q)
			}
		}
		if k.LongestWindow > maxBidWindow {
			f.t.Errorf("worker %d saw a Sybil call with a %s bid window, over the %s clamp", i, k.LongestWindow, maxBidWindow)
		}
		if k.FurthestDeadline > maxTaskDuration {
			f.t.Errorf("worker %d saw a Sybil call due in %s, over the %s clamp", i, k.FurthestDeadline, maxTaskDuration)
		}
	}
}

// mustAgent returns n's default agent.
func mustAgent(t testing.TB, n *node.Node) *identity.Agent {
	t.Helper()
	a, err := n.Agent("")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// mustAgentNamed returns n's hosted agent of that name.
func mustAgentNamed(t testing.TB, n *node.Node, name string) *identity.Agent {
	t.Helper()
	a, err := n.Agent(name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
