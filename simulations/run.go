package simulations

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
	"github.com/parleynet/parley/simulations/hostile"
)

// Capabilities the workload uses.
const (
	gossipCapability = "sim"
	taskCapability   = "work"
)

// Progress receives how far a run is, from 0 to 1.
type Progress func(done float64)

// runner is one run's state; its mutex guards the recorders.
type runner struct {
	sc       Scenario
	m        *nodetest.Mesh
	audit    *auditLogs // nil when the scenario is Bare
	rng      *rand.Rand
	start    time.Time
	progress Progress
	// steps counts the intents published and tasks requested: the two
	// workloads run at once, so each reports the sum, and the fraction
	// only grows.
	steps atomic.Int64

	// rngMu guards rng: workload, faults and joins draw from it at once.
	rngMu sync.Mutex

	mu          sync.Mutex
	alive       []bool
	contractors map[int]bool // node index -> hosts a contractor
	published   map[string]publishedIntent
	// publishing is the intent each node is publishing now, before its
	// Publish returns the ID: its first deliveries can come sooner.
	publishing  map[peer.ID]publishedIntent
	delivered   map[string]int
	intentLat   []time.Duration
	negLat      []time.Duration
	flowLat     []time.Duration
	deliveries  []Point
	completions []Point
	received    int
	bytes       int
	// wireGone is what the nodes churn replaced had received.
	wireGone    wire
	unexpected  int
	timeline    []Event
	neg         NegotiationStats
	flows       WorkflowStats
	partitioned map[int]bool
	healAt      time.Time
	healToFull  *float64
	down        []Point // nodes down over time, for churn
	attackers   []*hostile.Attacker
	// hostileIDs are the distinct hostile intents some node delivered.
	hostileIDs map[string]bool
	floodEndS  float64
}

type publishedIntent struct {
	at       time.Time
	expected int
	side     bool // the publisher's side of a partition, if any
}

// Run builds the scenario's mesh, runs its workload and faults, and
// returns the measurements. It uses whatever clock it runs under: inside
// a synctest bubble (RunVirtual) that is virtual time. WallS and RSSMB are
// left for the caller to fill.
func Run(ctx context.Context, sc Scenario, progress Progress) (*Result, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	if progress == nil {
		progress = func(float64) {}
	}
	r := &runner{sc: sc, rng: rand.New(rand.NewPCG(sc.Seed, sc.Seed^0x5eed)), progress: progress,
		contractors: map[int]bool{}, published: map[string]publishedIntent{}, publishing: map[peer.ID]publishedIntent{}, delivered: map[string]int{}, partitioned: map[int]bool{},
		hostileIDs: map[string]bool{}}
	// The nodes run as a daemon runs them: the default policy (none:
	// everything allowed, the engine still consulted), the admission
	// layer's default limits, and an audit log each, unless Bare.
	setup := Setup{Policy: "none (the daemon's default: allow all, engine consulted)", Admission: "default limits", Audit: "off"}
	var auditErr error
	if !sc.Bare {
		logs, err := newAuditLogs(sc.Nodes)
		if err != nil {
			return nil, err
		}
		defer func() { _ = logs.close() }() // after the mesh closes, below
		r.audit, setup.Audit = logs, logs.where()
	}
	opts := []nodetest.Option{
		nodetest.WithTopology(nodetest.Random(sc.Degree, sc.Seed)),
		nodetest.WithLatency(sc.Latency),
		nodetest.WithBandwidth(sc.Bandwidth),
		nodetest.WithConfig(func(_ int, c *node.Config) {
			// The topology is given; the DHT would only add traffic.
			c.DHTMode = "off"
			if r.audit != nil && auditErr == nil {
				auditErr = r.audit.configure(c)
			}
		}),
	}
	negotiating := sc.Tasks.Count > 0 || sc.Workflows.Count > 0
	if !negotiating {
		// Gossip alone needs only the topology's links; negotiations need
		// any contractor to reach any requester, so they keep them all.
		opts = append(opts, nodetest.WithSparseLinks())
	}
	m, err := nodetest.Build(sc.Nodes, opts...)
	if m != nil {
		defer m.Close()
	}
	if err == nil {
		err = auditErr
	}
	if err != nil {
		return nil, fmt.Errorf("build mesh: %w", err)
	}
	r.m = m
	r.alive = make([]bool, sc.Nodes)
	for i := range r.alive {
		r.alive[i] = true
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()

	for i, n := range m.Nodes {
		if err := r.subscribe(ctx, &wg, i, n); err != nil {
			return nil, err
		}
		if negotiating {
			// Every node relays calls for proposals: GossipSub forwards a
			// topic only among its subscribers, and a requester whose
			// neighbours host no contractor would otherwise call into
			// silence. (A deployment gets the same from the DHT: a
			// requester with no topic peers connects to the providers
			// FindAgents returns.)
			if err := r.relay(ctx, &wg, n); err != nil {
				return nil, err
			}
		}
	}
	if negotiating {
		for _, i := range r.perm(sc.Nodes)[:sc.Tasks.Contractors] {
			if err := r.addContractor(i); err != nil {
				return nil, err
			}
		}
	}
	if err := r.addHostiles(ctx); err != nil {
		return nil, err
	}
	sleep(ctx, sc.Warmup)
	// Every event is timed from here, so none may be logged before.
	r.start = time.Now()
	cpu0, wire0 := cpuSeconds(), r.wire()
	r.flood(ctx, &wg)

	var es *engines
	if sc.Workflows.Count > 0 {
		if es, err = newEngines(); err != nil {
			return nil, err
		}
		defer func() { _ = es.close() }() // before the mesh closes
	}
	var work sync.WaitGroup
	work.Add(3)
	go func() { defer work.Done(); r.publishIntents(ctx) }()
	go func() { defer work.Done(); r.requestTasks(ctx) }()
	go func() {
		defer work.Done()
		if es != nil {
			r.runWorkflows(ctx, es)
		}
	}()
	faults := make(chan struct{})
	go func() { defer close(faults); r.faults(ctx) }()
	work.Wait()
	<-faults
	// Let the last intents arrive.
	sleep(ctx, 2*time.Second+10*sc.Latency)
	progress(1)
	cancel()
	res := r.result()
	res.Setup = setup
	res.Intents.setCPU(cpu0)
	res.Intents.setWire(r.wire().minus(wire0), sc.Nodes)
	return res, nil
}

// wire sums the GossipSub RPCs every node, live or gone, received.
func (r *runner) wire() wire {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.wireGone
	for _, n := range r.m.Nodes {
		st := n.Stats()
		w.rpcs += st.RPCs
		w.bytes += st.RPCBytes
	}
	return w
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (r *runner) perm(n int) []int {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return r.rng.Perm(n)
}

func (r *runner) intn(n int) int {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return r.rng.IntN(n)
}

func (r *runner) float() float64 {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return r.rng.Float64()
}

func (r *runner) since() float64 { return time.Since(r.start).Seconds() }

// step reports one more intent published or task requested.
func (r *runner) step() {
	r.progress(float64(r.steps.Add(1)) / float64(r.sc.Intents.Count+r.sc.Tasks.Count+r.sc.Workflows.Count))
}

// countDown records how many nodes are down now; r.mu must be held.
func (r *runner) countDown() {
	n := 0
	for _, ok := range r.alive {
		if !ok {
			n++
		}
	}
	if len(r.down) == 0 {
		r.down = append(r.down, Point{AtS: 0})
	}
	r.down = append(r.down, Point{AtS: r.since(), Value: float64(n)})
}

func (r *runner) event(what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timeline = append(r.timeline, Event{AtS: r.since(), What: what})
}

// subscribe records every verified intent node i receives.
func (r *runner) subscribe(ctx context.Context, wg *sync.WaitGroup, i int, n *node.Node) error {
	sub, err := n.Subscribe(ctx, gossipCapability)
	if err != nil {
		return fmt.Errorf("node %d subscribe: %w", i, err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer sub.Close()
		for {
			in, err := sub.Next(ctx)
			if err != nil {
				return
			}
			now := time.Now()
			r.mu.Lock()
			p, ok := r.published[in.ID]
			if q, early := r.publishing[in.ReplyTo.Peer]; !ok && early {
				q.at = in.Created
				r.published[in.ID], p, ok = q, q, true
			}
			if !ok && in.ReplyTo.Peer != n.ID() {
				// Not one of the workload's intents: a hostile one got
				// through.
				r.unexpected++
				r.hostileIDs[in.ID] = true
			}
			if ok && in.ReplyTo.Peer != n.ID() {
				r.delivered[in.ID]++
				r.intentLat = append(r.intentLat, now.Sub(p.at))
				r.received++
				r.bytes += len(in.Raw)
				r.deliveries = append(r.deliveries, Point{AtS: r.since(), Value: float64(len(r.intentLat))})
				if !r.healAt.IsZero() && r.healToFull == nil && p.at.After(r.healAt) && r.delivered[in.ID] == p.expected {
					s := p.at.Sub(r.healAt).Seconds()
					r.healToFull = &s
				}
			}
			r.mu.Unlock()
		}
	}()
	return nil
}

// relay subscribes n to the task topic and discards what arrives.
func (r *runner) relay(ctx context.Context, wg *sync.WaitGroup, n *node.Node) error {
	sub, err := n.Subscribe(ctx, taskCapability)
	if err != nil {
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer sub.Close()
		for {
			if _, err := sub.Next(ctx); err != nil {
				return
			}
		}
	}()
	return nil
}

func (r *runner) addContractor(i int) error {
	work := r.sc.Tasks.Work
	price := 1 + r.float()*9
	_, err := r.m.Nodes[i].AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{taskCapability}}, negotiation.HandlerFuncs{
		BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
			return negotiation.Bid{Price: price, ETA: work}, nil
		},
		WorkFunc: func(ctx context.Context, t negotiation.Task) (json.RawMessage, error) {
			sleep(ctx, work)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return t.Input, nil
		},
	})
	if err != nil {
		return fmt.Errorf("contractor on node %d: %w", i, err)
	}
	r.mu.Lock()
	r.contractors[i] = true
	r.mu.Unlock()
	return nil
}

// pick returns a random live node that is not a contractor, if possible.
func (r *runner) pick() (int, *node.Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for range 100 {
		i := r.intn(len(r.m.Nodes))
		if r.alive[i] && !r.contractors[i] {
			return i, r.m.Nodes[i]
		}
	}
	for i, ok := range r.alive {
		if ok {
			return i, r.m.Nodes[i]
		}
	}
	return 0, r.m.Nodes[0]
}

func (r *runner) publishIntents(ctx context.Context) {
	for k := range r.sc.Intents.Count {
		if ctx.Err() != nil {
			return
		}
		i, n := r.pick()
		r.mu.Lock()
		expected := 0
		side := r.partitioned[i]
		// Every live node is expected, across a partition too: a
		// partition shows as late or lost deliveries.
		for j, ok := range r.alive {
			if ok && j != i {
				expected++
			}
		}
		r.publishing[n.ID()] = publishedIntent{expected: expected, side: side}
		r.mu.Unlock()
		in, err := n.Publish(ctx, node.PublishRequest{Capability: gossipCapability, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, k))})
		r.mu.Lock()
		delete(r.publishing, n.ID())
		if err == nil {
			r.published[in.ID] = publishedIntent{at: in.Created, expected: expected, side: side}
		}
		r.mu.Unlock()
		r.step()
		sleep(ctx, r.sc.Intents.Every)
	}
}

func (r *runner) liveContractor() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.contractors {
		if r.alive[i] {
			return true
		}
	}
	return false
}

func (r *runner) requestTasks(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for k := range r.sc.Tasks.Count {
		if ctx.Err() != nil {
			return
		}
		_, n := r.pick()
		live := r.liveContractor()
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			in := fmt.Sprintf(`{"order":%d}`, k)
			out, err := n.Request(ctx, negotiation.Need{Capability: taskCapability, Input: json.RawMessage(in)},
				negotiation.WithBidWindow(r.sc.Tasks.BidWindow), negotiation.WithTimeout(r.sc.Tasks.Timeout))
			r.mu.Lock()
			defer r.mu.Unlock()
			r.neg.Requested++
			if live {
				r.neg.WithLiveAgent++
			}
			if err == nil && string(out.Result) == in {
				r.neg.Completed++
				if live {
					r.neg.CompletedWithLiveAgent++
				}
				r.negLat = append(r.negLat, time.Since(start))
				r.completions = append(r.completions, Point{AtS: r.since(), Value: float64(r.neg.Completed)})
			} else {
				r.neg.Failed++
				reason := "wrong result"
				if err != nil {
					reason = err.Error()
				}
				if r.neg.Failures == nil {
					r.neg.Failures = map[string]int{}
				}
				if len(r.neg.Failures) < 20 {
					r.neg.Failures[reason]++
				}
			}
		}()
		r.step()
		sleep(ctx, r.sc.Tasks.Every)
	}
}

// faults runs the churn and the partition.
func (r *runner) faults(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	if p := r.sc.Partition; p.Fraction > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); r.partition(ctx) }()
	}
	c := r.sc.Churn
	if c.Fraction <= 0 {
		return
	}
	r.mu.Lock()
	var victims []int
	for i := range r.contractors {
		victims = append(victims, i)
	}
	r.mu.Unlock()
	if len(victims) == 0 {
		for i := range r.m.Nodes {
			victims = append(victims, i)
		}
	}
	order := r.perm(len(victims))
	shuffled := make([]int, len(victims))
	for k, o := range order {
		shuffled[k] = victims[o]
	}
	victims = shuffled
	kills := int(c.Fraction*float64(len(victims)) + 0.5)
	for _, i := range victims[:kills] {
		sleep(ctx, c.Every)
		if ctx.Err() != nil {
			return
		}
		r.kill(i)
		if c.Downtime > 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sleep(ctx, c.Downtime)
				if ctx.Err() == nil {
					r.restart(i)
				}
			}()
		}
	}
}

func (r *runner) kill(i int) {
	n := r.m.Nodes[i]
	_ = n.Close()
	if h := n.Host(); h != nil {
		_ = h.Close()
	}
	r.mu.Lock()
	r.alive[i] = false
	r.countDown()
	r.mu.Unlock()
	r.event(fmt.Sprintf("killed node %d", i))
}

// restart brings a killed node back as a fresh node (mocknet cannot reuse
// a peer ID) connected to Degree live nodes, with its contractor again.
func (r *runner) restart(i int) {
	key, err := nodetestKey()
	if err != nil {
		return
	}
	h, err := r.m.Net.AddPeer(key, nodetest.Addr(100000+i))
	if err != nil {
		return
	}
	if r.sc.Tasks.Count > 0 || r.sc.Workflows.Count > 0 {
		// As at the start: with negotiations, every pair is linked.
		_ = r.m.Net.LinkAll()
	}
	old := r.m.Nodes[i]
	cfg := node.DefaultConfig()
	cfg.NodeKey, cfg.Host, cfg.Agents, cfg.DHTMode = key, h, old.Agents()[:1], "off"
	if r.audit != nil && r.audit.configure(&cfg) != nil {
		return
	}
	n, err := node.New(cfg)
	if err != nil || n.Start(context.Background()) != nil {
		return
	}
	var peers []peer.ID
	r.mu.Lock()
	for j, ok := range r.alive {
		if ok && len(peers) < r.sc.Degree {
			peers = append(peers, r.m.Nodes[j].ID())
		}
	}
	st := old.Stats()
	r.wireGone.rpcs += st.RPCs
	r.wireGone.bytes += st.RPCBytes
	r.m.Nodes[i] = n
	r.mu.Unlock()
	for _, p := range peers {
		if _, err := r.m.Net.LinkPeers(h.ID(), p); err == nil {
			_, _ = r.m.Net.ConnectPeers(h.ID(), p)
		}
	}
	if r.contractors[i] {
		_ = r.addContractor(i)
	}
	r.mu.Lock()
	r.alive[i] = true
	r.countDown()
	r.mu.Unlock()
	r.event(fmt.Sprintf("restarted node %d", i))
}

// partition cuts a fraction of the nodes off from the rest and heals it.
//
// A cut link holds everything sent on it until the heal, as a network
// partition does to a TCP connection: the connections stay open, and what
// was held arrives late. Closing mocknet connections instead does not cut
// reliably: a stream opened on a connection while it closes outlives it
// (and its goroutines are never stopped), and under the race detector
// gossip reliably crossed the cut that way.
func (r *runner) partition(ctx context.Context) {
	p := r.sc.Partition
	sleep(ctx, p.At)
	n := len(r.m.Nodes)
	cut := r.perm(n)[:int(p.Fraction*float64(n))]
	inCut := map[int]bool{}
	r.mu.Lock()
	for _, i := range cut {
		r.partitioned[i], inCut[i] = true, true
	}
	r.mu.Unlock()
	var held []mocknet.Link
	for _, i := range cut {
		for j := range n {
			if inCut[j] {
				continue
			}
			for _, l := range r.m.Net.LinksBetweenPeers(r.m.Nodes[i].ID(), r.m.Nodes[j].ID()) {
				o := l.Options()
				o.Latency += p.For
				l.SetOptions(o)
				held = append(held, l)
			}
		}
	}
	r.event(fmt.Sprintf("partition: %d nodes cut off (%d links hold their traffic)", len(cut), len(held)))
	sleep(ctx, p.For)
	for _, l := range held {
		o := l.Options()
		o.Latency -= p.For
		l.SetOptions(o)
	}
	r.mu.Lock()
	r.partitioned = map[int]bool{}
	r.healAt = time.Now()
	r.mu.Unlock()
	r.event("partition healed")
}

// addHostiles joins raw attackers to the mesh before the warmup; they
// flood only once the workload starts (flood).
func (r *runner) addHostiles(ctx context.Context) error {
	k := int(r.sc.Hostile.Fraction * float64(r.sc.Nodes))
	for range k {
		h, err := r.m.Net.GenPeer()
		if err != nil {
			return fmt.Errorf("hostile peer: %w", err)
		}
		// GossipSub before the connections, so that identify tells the
		// honest nodes it speaks it (hostile.NewSwarm says why).
		a, err := hostile.New(ctx, h)
		if err != nil {
			return err
		}
		for range r.sc.Degree {
			p := r.m.Nodes[r.intn(len(r.m.Nodes))].ID()
			if _, err := r.m.Net.LinkPeers(h.ID(), p); err == nil {
				_, _ = r.m.Net.ConnectPeers(h.ID(), p)
			}
		}
		r.attackers = append(r.attackers, a)
	}
	return nil
}

// flood starts the attackers' floods of forged and oversize intents and
// logs when they start and end, on the workload's clock.
func (r *runner) flood(ctx context.Context, wg *sync.WaitGroup) {
	if len(r.attackers) == 0 {
		return
	}
	// The rounds are spread over the workload, so that the honest traffic
	// is measured under attack: sent at once, the whole flood takes no
	// virtual time and is over before the first honest intent.
	rounds := r.sc.Hostile.Rounds
	span := max(time.Duration(r.sc.Intents.Count)*r.sc.Intents.Every, time.Duration(r.sc.Tasks.Count)*r.sc.Tasks.Every)
	every := span / time.Duration(max(rounds, 1))
	r.event(fmt.Sprintf("%d hostile peers start flooding", len(r.attackers)))
	victim := string(r.m.Nodes[0].Agents()[0].ID)
	var floods sync.WaitGroup
	for _, a := range r.attackers {
		floods.Add(1)
		go func() {
			defer floods.Done()
			for range rounds {
				if a.FloodIntents(ctx, gossipCapability, victim, nil, 1) != nil {
					return
				}
				sleep(ctx, every)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		floods.Wait()
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		r.floodEndS = r.since()
		r.mu.Unlock()
		r.event(fmt.Sprintf("flood over: %d bad intents sent", r.sent()))
	}()
}

func (r *runner) sent() int {
	var n int64
	for _, a := range r.attackers {
		n += a.Sent.Load()
	}
	return int(n)
}

func (r *runner) result() *Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &Result{Scenario: r.sc.Name, Nodes: r.sc.Nodes, Seed: r.sc.Seed, Timeline: r.timeline, HealToFullS: r.healToFull}
	if res.Timeline == nil {
		res.Timeline = []Event{}
	}
	st := &res.Intents
	st.Published = len(r.published)
	for id, p := range r.published {
		st.Expected += p.expected
		st.Delivered += min(r.delivered[id], p.expected)
	}
	if st.Expected > 0 {
		st.DeliveryRatio = float64(st.Delivered) / float64(st.Expected)
	}
	st.LatencyMs = percentiles(append([]time.Duration(nil), r.intentLat...))
	st.Unexpected = r.unexpected
	onTime := 0
	for _, l := range r.intentLat {
		if l <= time.Second {
			onTime++
		}
	}
	if st.Expected > 0 {
		st.OnTimeRatio = float64(onTime) / float64(st.Expected)
	}
	res.Negotiations = r.neg
	if r.neg.Requested > 0 {
		res.Negotiations.SuccessRatio = float64(r.neg.Completed) / float64(r.neg.Requested)
	}
	res.Negotiations.LatencyMs = percentiles(append([]time.Duration(nil), r.negLat...))
	if r.flows.Submitted > 0 {
		w := r.flows
		w.SuccessRatio = float64(w.Completed) / float64(w.Submitted)
		w.CycleMs = percentiles(append([]time.Duration(nil), r.flowLat...))
		res.Workflows = &w
	}
	res.MessagesPerNode = float64(r.received) / float64(r.sc.Nodes)
	res.BytesPerNode = float64(r.bytes) / float64(r.sc.Nodes)
	if !r.healAt.IsZero() && r.healToFull == nil {
		never := -1.0
		res.HealToFullS = &never
	}
	if len(r.attackers) > 0 {
		hs := &HostileStats{Peers: len(r.attackers), Sent: r.sent(), Delivered: len(r.hostileIDs), Deliveries: r.unexpected,
			FloodEndS: r.floodEndS, Dropped: map[string]int{}}
		for i, n := range r.m.Nodes {
			if !r.alive[i] {
				continue
			}
			for reason, c := range n.Stats().Dropped {
				if c > 0 {
					hs.Dropped[reason] += int(c)
				}
			}
		}
		res.Hostile = hs
	}
	res.Series = &Series{IntentLatencies: r.intentLat, NegotiationLatencies: r.negLat, Deliveries: r.deliveries, Completions: r.completions, Down: r.down}
	return res
}
