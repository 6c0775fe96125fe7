// Package demo runs parley's supply-chain demo: six real daemons (package
// daemon) on loopback TCP in one process, each with its own temporary home. A shop agent places
// orders; each order needs inventory, pricing and shipping, and for each
// the shop negotiates through node.Request with competing contractor agents
// hosted on the other nodes. The demo prints every negotiation as it
// happens (the call, the bids, the award and why, progress, the result and
// its latency, and the re-award when a contractor declines or fails) and a
// summary table at the end.
//
// The package keeps no state between runs: every node, home and goroutine
// a run starts is gone when Run returns. The protocol itself lives in
// negotiation and node; the demo only plays the agents and watches.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/daemon"
	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
)

// Config tunes the demo. The zero value is the default demo.
type Config struct {
	// Orders is how many orders the shop places; default 6.
	Orders int
	// Seed seeds prices, speeds, orders and failures, so that runs are
	// alike; default 1.
	Seed uint64
	// Quiet prints the opening, one line per order and the summary, not
	// every negotiation.
	Quiet bool
	// BidWindow is how long the shop takes bids after each call; default
	// 250ms.
	BidWindow time.Duration
	// Timeout is each negotiation's deadline; default 8s.
	Timeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.Orders <= 0 {
		c.Orders = 6
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.BidWindow <= 0 {
		c.BidWindow = 250 * time.Millisecond
	}
	if c.Timeout <= 0 {
		c.Timeout = 8 * time.Second
	}
	return c
}

// Summary is what one run achieved.
type Summary struct {
	Orders                int // orders placed
	Completed             int // orders whose three parts all completed
	Negotiations          int // node.Request calls
	NegotiationsCompleted int
	Calls                 int // calls for proposals, re-issued ones included
	ReAwards              int // awards after the first in a negotiation
	AfterFailure          int // re-awards because a contractor failed or went silent
	AfterDecline          int // re-awards because a contractor declined
	NegotiationP50        time.Duration
	NegotiationP99        time.Duration
	OrderP50              time.Duration
	OrderP99              time.Duration
	Elapsed               time.Duration
}

// parts are the capabilities every order needs, in the order they are
// printed.
func parts() []string { return []string{"inventory", "pricing", "shipping"} }

// shopAgent is the name of the shop's requesting agent.
const shopAgent = "shop"

// agentSpec is one contractor agent: what it charges, how fast it is and
// how it misbehaves.
type agentSpec struct {
	name, capability string
	price            float64       // base fee in euros; each bid varies it by ±10%
	eta              time.Duration // promised time; each bid varies it by ±20%
	minWork, maxWork time.Duration // how long the work really takes
	failFirst        bool          // fails its first task, whatever the dice say
	failRate         float64       // then fails this share of its tasks
	failure          string        // why it fails
	declineRate      float64       // declines this share of its awards
}

// site is one demo node and the contractor agents it hosts.
type site struct {
	name   string
	agents []agentSpec
}

// sites is the demo's cast: the shop and five businesses, so that every
// role has three competitors on different nodes.
func sites() []site {
	const ms = time.Millisecond
	return []site{
		{name: "shop"},
		{name: "north-depot", agents: []agentSpec{
			{name: "inventory-a", capability: "inventory", price: 1.20, eta: 150 * ms, minWork: 80 * ms, maxWork: 200 * ms},
			{name: "shipping-a", capability: "shipping", price: 4.00, eta: 200 * ms, minWork: 100 * ms, maxWork: 250 * ms},
		}},
		{name: "south-depot", agents: []agentSpec{
			// Cheapest stock, but it often has promised it elsewhere.
			{name: "inventory-b", capability: "inventory", price: 0.90, eta: 300 * ms, minWork: 150 * ms, maxWork: 300 * ms, declineRate: 0.3},
			{name: "pricing-a", capability: "pricing", price: 0.40, eta: 120 * ms, minWork: 50 * ms, maxWork: 150 * ms},
		}},
		{name: "exchange", agents: []agentSpec{
			{name: "pricing-b", capability: "pricing", price: 0.30, eta: 150 * ms, minWork: 80 * ms, maxWork: 200 * ms},
			{name: "shipping-b", capability: "shipping", price: 3.20, eta: 300 * ms, minWork: 150 * ms, maxWork: 300 * ms},
		}},
		{name: "harbor", agents: []agentSpec{
			{name: "inventory-c", capability: "inventory", price: 1.05, eta: 80 * ms, minWork: 50 * ms, maxWork: 120 * ms},
			// The best offer for shipping, and the least reliable.
			{name: "shipping-c", capability: "shipping", price: 2.50, eta: 150 * ms, minWork: 100 * ms, maxWork: 200 * ms,
				failFirst: true, failRate: 0.3, failure: "the truck broke down on the way to the depot"},
		}},
		{name: "workshop", agents: []agentSpec{
			{name: "pricing-c", capability: "pricing", price: 0.50, eta: 130 * ms, minWork: 60 * ms, maxWork: 160 * ms,
				failRate: 0.25, failure: "the supplier's price list timed out"},
		}},
	}
}

// scoring is a Strategy and how to say in words what it ranks a bid by.
type scoring struct {
	negotiation.Strategy
	score func(negotiation.BidInfo) string
}

// strategies is how the shop ranks bids for each part.
func strategies() map[string]scoring {
	const wPrice, wTime = 1, 2 // shipping: a second of ETA is worth €2
	return map[string]scoring{
		"inventory": {negotiation.Cheapest(), func(b negotiation.BidInfo) string { return fmt.Sprintf("€%.2f", b.Price) }},
		"pricing":   {negotiation.Fastest(), func(b negotiation.BidInfo) string { return "eta " + dur(b.ETA) }},
		"shipping": {negotiation.Weighted(wPrice, wTime), func(b negotiation.BidInfo) string {
			return fmt.Sprintf("score %.2f", b.Price*wPrice+b.ETA.Seconds()*wTime)
		}},
	}
}

// watched is a Strategy that tells the show how it ranked each call's bids.
type watched struct {
	scoring
	ranked func([]negotiation.BidInfo)
}

func (w watched) Rank(bids []negotiation.BidInfo) []negotiation.BidInfo {
	r := w.scoring.Rank(bids)
	w.ranked(r)
	return r
}

// Run starts the nodes and their agents, lets the shop place its orders,
// prints each negotiation to out as it happens and a summary at the end,
// and stops everything. It returns an error if any order failed.
func Run(ctx context.Context, out io.Writer) error {
	return RunConfig(ctx, out, Config{})
}

// RunConfig is Run with a Config.
func RunConfig(ctx context.Context, out io.Writer, cfg Config) error {
	_, err := run(ctx, out, cfg)
	return err
}

func run(ctx context.Context, out io.Writer, cfg Config) (Summary, error) {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, 25*time.Second)
	defer cancel()
	s := &show{
		out:        out,
		quiet:      cfg.Quiet,
		held:       map[string][]string{},
		start:      time.Now(),
		dice:       newDice(cfg.Seed),
		strategies: strategies(),
		names:      map[identity.AgentID]string{},
		deals:      map[string]*deal{},
	}

	fmt.Fprintf(out, `parley demo: six real nodes on loopback TCP in this process. A shop's agent
places %d orders, one after the other; each needs inventory, pricing and
shipping. For each part the shop calls for proposals over GossipSub, the
contractors on the other nodes that offer it bid over direct streams, and the
shop awards the best bid by its strategy. Some contractors are flaky: watch
the shop re-award. Seed %d ('parley demo --seed N' for another run).

`, cfg.Orders, cfg.Seed)
	tmp, err := os.MkdirTemp("", "parley-demo-")
	if err != nil {
		return Summary{}, fmt.Errorf("demo: temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	var daemons []*daemon.Daemon
	defer func() {
		// Last first, so no node sees its bootstrap peer go away.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), daemon.ShutdownTimeout)
		defer cancel()
		for i := len(daemons) - 1; i >= 0; i-- {
			_ = daemons[i].Close(cctx)
		}
	}()
	var nodes []*node.Node
	hosts := map[string][]peer.ID{} // capability -> nodes offering it
	agentSite := map[string]string{}
	for i, st := range sites() {
		d, err := startNode(ctx, tmp, st.name, daemons)
		if err != nil {
			return Summary{}, err
		}
		daemons = append(daemons, d)
		n := d.Node()
		nodes = append(nodes, n)
		var cast []string
		for _, spec := range st.agents {
			a, err := n.AddAgent(node.AgentCard{Name: spec.name, Capabilities: []string{spec.capability}}, &contractor{agentSpec: spec, site: st.name, show: s})
			if err != nil {
				return Summary{}, fmt.Errorf("demo: add %s on %s: %w", spec.name, st.name, err)
			}
			s.name(a.ID, spec.name)
			agentSite[spec.name] = st.name
			if !slices.Contains(hosts[spec.capability], n.ID()) {
				hosts[spec.capability] = append(hosts[spec.capability], n.ID())
			}
			cast = append(cast, fmt.Sprintf("%s (€%.2f, eta %s)", spec.name, spec.price, dur(spec.eta)))
		}
		if i == 0 {
			// The shop only asks; its agent bids on nothing.
			a, err := n.AddAgent(node.AgentCard{Name: shopAgent}, negotiation.HandlerFuncs{
				BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
					return negotiation.Bid{}, negotiation.ErrNoBid
				},
				WorkFunc: func(context.Context, negotiation.Task) (json.RawMessage, error) {
					return nil, errors.New("the shop does no work")
				},
			})
			if err != nil {
				return Summary{}, fmt.Errorf("demo: add the shop's agent: %w", err)
			}
			s.name(a.ID, shopAgent)
			cast = append(cast, shopAgent+" (places orders)")
		}
		s.say("%-12s up   peer %s  %s", st.name, short(n.ID().String()), strings.Join(cast, ", "))
	}
	shop := nodes[0]
	if err := waitMesh(ctx, shop, hosts); err != nil {
		return Summary{}, err
	}
	var ways []string
	for _, c := range parts() {
		ways = append(ways, c+" by "+s.strategies[c].Name())
	}
	s.say("mesh formed: %d nodes; the shop ranks %s", len(nodes), strings.Join(ways, ", "))

	// One order at a time, so that each reads as one story; its three
	// parts are negotiated at once.
	orders := makeOrders(cfg.Orders, s.dice)
	results := make([]orderResult, 0, len(orders))
	for _, o := range orders {
		if ctx.Err() != nil {
			break
		}
		results = append(results, s.placeOrder(ctx, shop, o, cfg))
	}

	sum := summarize(results)
	sum.Elapsed = time.Since(s.start)
	s.table(sum, results, agentSite)
	switch {
	case ctx.Err() != nil:
		return sum, fmt.Errorf("demo: stopped after %d of %d orders completed: %w", sum.Completed, len(orders), context.Cause(ctx))
	case sum.Completed < len(orders):
		return sum, fmt.Errorf("demo: %d of %d orders did not complete", len(orders)-sum.Completed, len(orders))
	}
	return sum, nil
}

// startNode starts one demo node: a real daemon in its own home under
// tmp, bootstrapped to the first node started, if any.
func startNode(ctx context.Context, tmp, name string, started []*daemon.Daemon) (*daemon.Daemon, error) {
	dir := filepath.Join(tmp, name)
	if _, err := home.Init(dir, false); err != nil {
		return nil, fmt.Errorf("demo: init home of %s: %w", name, err)
	}
	opts := daemon.Options{
		Home:   dir,
		Listen: []string{"/ip4/127.0.0.1/tcp/0"},
		// The demo's mesh is its own: no strangers from the LAN bid here,
		// and every contractor's node is the shop's direct peer, so no DHT
		// is needed to find them (nor its warnings about an empty routing
		// table while the first node is alone).
		NoMDNS:  true,
		DHTMode: "off",
		// The story is the negotiations; a temporary log nobody reads
		// would only add an fsync to every step.
		NoAudit: true,
	}
	if len(started) > 0 {
		// Each node knows only the first: the mesh forms from there.
		for _, a := range started[0].Node().Addrs() {
			opts.Bootstrap = append(opts.Bootstrap, a.String())
		}
	}
	d, err := daemon.New(opts)
	if err != nil {
		return nil, fmt.Errorf("demo: node %s: %w", name, err)
	}
	if err := d.Start(ctx); err != nil {
		return nil, fmt.Errorf("demo: start %s: %w", name, err)
	}
	return d, nil
}

// waitMesh waits until the shop knows every contractor node to be on the
// topics of the capabilities it offers, so that the first calls reach all
// bidders.
func waitMesh(ctx context.Context, shop *node.Node, hosts map[string][]peer.ID) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ready := true
		for c, want := range hosts {
			have := shop.TopicPeers(c)
			for _, p := range want {
				ready = ready && slices.Contains(have, p)
			}
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("demo: the contractors' nodes did not join the shop's topics within 10 s")
		}
		if !sleep(ctx, 50*time.Millisecond) {
			return fmt.Errorf("demo: waiting for the mesh: %w", ctx.Err())
		}
	}
}

// order is one order the shop places.
type order struct {
	id       string // "#1"
	sku      string
	qty      int
	country  string
	customer string
	address  string
	city     string
}

// orderSummary is the public part of a call: every bidder sees it.
type orderSummary struct {
	Order   string `json:"order"`
	SKU     string `json:"sku"`
	Qty     int    `json:"qty"`
	Country string `json:"country"`
}

// orderInput is the private part: only the winner of each part sees it.
type orderInput struct {
	Customer string `json:"customer"`
	Address  string `json:"address"`
	City     string `json:"city"`
}

func makeOrders(n int, d *dice) []order {
	skus := []string{"bolt-m8", "nut-m8", "bearing-608", "gear-12t", "spring-k3", "washer-m8"}
	customers := []orderInput{
		{"Greta Schmidt", "Elbchaussee 12, 22763", "Hamburg"},
		{"Ola Nordmann", "Karl Johans gate 5, 0154", "Oslo"},
		{"Anna Svensson", "Drottninggatan 20, 111 51", "Stockholm"},
		{"Jan de Vries", "Prinsengracht 263, 1016", "Amsterdam"},
		{"Marie Dubois", "12 rue de Rivoli, 75004", "Paris"},
		{"Søren Jensen", "Nyhavn 17, 1051", "Copenhagen"},
	}
	countries := map[string]string{"Hamburg": "DE", "Oslo": "NO", "Stockholm": "SE", "Amsterdam": "NL", "Paris": "FR", "Copenhagen": "DK"}
	d.shuffle(len(customers), func(i, j int) { customers[i], customers[j] = customers[j], customers[i] })
	d.shuffle(len(skus), func(i, j int) { skus[i], skus[j] = skus[j], skus[i] })
	out := make([]order, n)
	for i := range out {
		c := customers[i%len(customers)]
		out[i] = order{
			id: fmt.Sprintf("#%d", i+1), sku: skus[(i+i/len(skus))%len(skus)], qty: 10 * (5 + d.intN(46)),
			country: countries[c.City], customer: c.Customer, address: c.Address, city: c.City,
		}
	}
	return out
}

// part is one negotiation of an order.
type part struct {
	capability string
	outcome    *negotiation.Outcome
	err        error
	latency    time.Duration
}

type orderResult struct {
	order   order
	parts   []part
	latency time.Duration
}

func (r orderResult) complete() bool {
	for _, p := range r.parts {
		if p.err != nil {
			return false
		}
	}
	return len(r.parts) == len(parts())
}

// placeOrder runs the order's three negotiations at once and reports.
func (s *show) placeOrder(ctx context.Context, shop *node.Node, o order, cfg Config) orderResult {
	caps := parts()
	s.line(o.id, "order", "%d× %s to %s (%s); needs %s", o.qty, o.sku, o.city, o.country, strings.Join(caps, ", "))
	start := time.Now()
	res := orderResult{order: o, parts: make([]part, len(caps))}
	var wg sync.WaitGroup
	for i, c := range caps {
		wg.Go(func() { res.parts[i] = s.negotiate(ctx, shop, o, c, cfg) })
	}
	wg.Wait()
	res.latency = time.Since(start)
	s.flush(o.id, caps)
	var who []string
	fees := 0.0
	for _, p := range res.parts {
		if p.err == nil {
			name := s.agentName(p.outcome.Winner)
			who = append(who, name)
			for _, b := range p.outcome.Bids {
				if b.Status == "completed" {
					fees += b.Price
				}
			}
		}
	}
	if res.complete() {
		s.line(o.id, "order", "COMPLETE in %s by %s, fees €%.2f", dur(res.latency), strings.Join(who, " + "), fees)
	} else {
		s.line(o.id, "order", "FAILED after %s: only %d of %d parts done", dur(res.latency), len(who), len(caps))
	}
	return res
}

// negotiate runs one part of an order through node.Request and prints
// its outcome.
func (s *show) negotiate(ctx context.Context, shop *node.Node, o order, capability string, cfg Config) part {
	summary, _ := json.Marshal(orderSummary{Order: o.id, SKU: o.sku, Qty: o.qty, Country: o.country})
	input, _ := json.Marshal(orderInput{Customer: o.customer, Address: o.address, City: o.city})
	sc := s.strategies[capability]
	s.open(o.id, capability)
	s.line(o.id, capability, "call      %s  (bid window %s)", summary, dur(cfg.BidWindow))
	start := time.Now()
	out, err := shop.Request(ctx, negotiation.Need{Capability: capability, Summary: summary, Input: input},
		negotiation.WithAgent(shopAgent),
		negotiation.WithBidWindow(cfg.BidWindow),
		negotiation.WithTimeout(cfg.Timeout),
		negotiation.WithStrategy(watched{sc, func(r []negotiation.BidInfo) { s.ranked(o.id, capability, r) }}))
	p := part{capability: capability, outcome: out, err: err, latency: time.Since(start)}
	if out == nil {
		s.line(o.id, capability, "FAILED    %v", err)
		return p
	}
	p.latency = out.Timings.Total
	if err != nil {
		s.line(o.id, capability, "FAILED    after %d call(s), %s: %s", out.Calls, dur(p.latency), s.rename(out.Reason))
	} else {
		s.line(o.id, capability, "done      %-12s %s  in %s (negotiation %s, work %s)",
			s.agentName(out.Winner), out.Result, dur(p.latency), dur(out.Timings.Negotiation), dur(out.Timings.Work))
	}
	if n, _, _ := reAwards(out); n > 0 || out.Calls > 1 || err != nil {
		s.history(o.id, capability, out)
	}
	return p
}

// reAwards counts the awards in an outcome after the first, and how many
// followed a failure (or silence) and how many a decline.
func reAwards(out *negotiation.Outcome) (n, failed, declined int) {
	awards := 0
	for _, b := range out.Bids {
		switch b.Status {
		case "awarded", "completed", "canceled":
			awards++
		case "failed", "silent":
			awards++
			failed++
		case "declined":
			awards++
			declined++
		}
	}
	if awards <= 1 {
		return 0, 0, 0
	}
	return awards - 1, failed, declined
}

func summarize(results []orderResult) Summary {
	var sum Summary
	var negs, ords []time.Duration
	for _, r := range results {
		sum.Orders++
		if r.complete() {
			sum.Completed++
		}
		ords = append(ords, r.latency)
		for _, p := range r.parts {
			sum.Negotiations++
			negs = append(negs, p.latency)
			if p.err == nil {
				sum.NegotiationsCompleted++
			}
			if p.outcome != nil {
				sum.Calls += p.outcome.Calls
				n, f, d := reAwards(p.outcome)
				sum.ReAwards += n
				sum.AfterFailure += f
				sum.AfterDecline += d
			}
		}
	}
	sum.NegotiationP50, sum.NegotiationP99 = percentile(negs, 0.50), percentile(negs, 0.99)
	sum.OrderP50, sum.OrderP99 = percentile(ords, 0.50), percentile(ords, 0.99)
	return sum
}

// percentile is the nearest-rank percentile of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// agentTally is one contractor's record in the summary, from the shop's
// outcomes.
type agentTally struct{ bids, awarded, completed, failed, declined int }

// table prints the summary.
func (s *show) table(sum Summary, results []orderResult, agentSite map[string]string) {
	tally := map[string]*agentTally{}
	for _, r := range results {
		for _, p := range r.parts {
			if p.outcome == nil {
				continue
			}
			for _, b := range p.outcome.Bids {
				name := s.agentName(b.Agent)
				t := tally[name]
				if t == nil {
					t = &agentTally{}
					tally[name] = t
				}
				t.bids++
				switch b.Status {
				case "completed":
					t.awarded++
					t.completed++
				case "failed", "silent":
					t.awarded++
					t.failed++
				case "declined":
					t.awarded++
					t.declined++
				case "awarded", "canceled":
					t.awarded++
				}
			}
		}
	}
	ratio := 0.0
	if sum.Orders > 0 {
		ratio = 100 * float64(sum.Completed) / float64(sum.Orders)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.out
	fmt.Fprintf(w, "\nsummary\n")
	fmt.Fprintf(w, "  orders placed        %d\n", sum.Orders)
	fmt.Fprintf(w, "  orders completed     %d of %d (all three parts)\n", sum.Completed, sum.Orders)
	fmt.Fprintf(w, "  success ratio        %.0f%%\n", ratio)
	fmt.Fprintf(w, "  negotiations         %d (%d completed, %d calls for proposals)\n", sum.Negotiations, sum.NegotiationsCompleted, sum.Calls)
	fmt.Fprintf(w, "  re-awards            %d (%d after a failure, %d after a decline)\n", sum.ReAwards, sum.AfterFailure, sum.AfterDecline)
	fmt.Fprintf(w, "  latency              %-9s %s\n", "p50", "p99")
	fmt.Fprintf(w, "    per negotiation    %-9s %s\n", dur(sum.NegotiationP50), dur(sum.NegotiationP99))
	fmt.Fprintf(w, "    per order          %-9s %s\n", dur(sum.OrderP50), dur(sum.OrderP99))
	fmt.Fprintf(w, "  elapsed              %s\n\n", dur(sum.Elapsed))
	fmt.Fprintf(w, "  %-12s %-12s %5s %8s %10s %7s %9s\n", "agent", "node", "bids", "awarded", "completed", "failed", "declined")
	var names []string
	for n := range tally {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		t := tally[n]
		fmt.Fprintf(w, "  %-12s %-12s %5d %8d %10d %7d %9d\n", n, agentSite[n], t.bids, t.awarded, t.completed, t.failed, t.declined)
	}
}

// show prints the demo: the shop's view through its strategies and the
// outcomes, the contractors' through their handlers. Its mutex guards the
// writer and the maps.
type show struct {
	out        io.Writer
	start      time.Time
	dice       *dice
	strategies map[string]scoring // fixed at start

	quiet bool

	mu    sync.Mutex
	names map[identity.AgentID]string
	deals map[string]*deal    // by dealKey
	held  map[string][]string // lines of a part in progress, by dealKey
}

// deal is what the show knows of one negotiation in progress.
type deal struct {
	ranked  []negotiation.BidInfo // the last call's bids, best first
	calls   int
	awards  int
	trouble string // what happened to the last award, for the next
}

func dealKey(order, capability string) string { return order + "/" + capability }

func (s *show) name(id identity.AgentID, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names[id] = name
}

func (s *show) agentName(id identity.AgentID) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nameLocked(id)
}

func (s *show) nameLocked(id identity.AgentID) string {
	if n, ok := s.names[id]; ok {
		return n
	}
	return short(string(id))
}

// rename replaces the abbreviated AgentIDs in negotiation's notes with
// agent names.
func (s *show) rename(text string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pairs []string
	for id, n := range s.names {
		if len(id) > 20 {
			pairs = append(pairs, "…"+string(id[len(id)-8:]), n)
		}
	}
	return strings.NewReplacer(pairs...).Replace(text)
}

func (s *show) open(order, capability string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deals[dealKey(order, capability)] = &deal{}
}

// dealLocked returns the deal of order and capability, never nil.
func (s *show) dealLocked(order, capability string) *deal {
	k := dealKey(order, capability)
	d := s.deals[k]
	if d == nil {
		d = &deal{}
		s.deals[k] = d
	}
	return d
}

// say prints one line, stamped with the time since the demo started.
func (s *show) say(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sayLocked(format, args...)
}

func (s *show) sayLocked(format string, args ...any) {
	if s.quiet {
		return
	}
	fmt.Fprintf(s.out, "%6.2fs  "+format+"\n", append([]any{time.Since(s.start).Seconds()}, args...)...)
}

// flush prints the held lines of an order's parts, one part after the
// other: the three negotiations run at once, and read better apart.
func (s *show) flush(order string, caps []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range caps {
		k := dealKey(order, c)
		if !s.quiet {
			for _, l := range s.held[k] {
				io.WriteString(s.out, l)
			}
		}
		delete(s.held, k)
	}
}

// line prints one line about a part of an order.
func (s *show) line(order, what, format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lineLocked(order, what, format, args...)
}

// lineLocked prints a line about the order itself at once (in quiet mode
// too), and holds a line about one of its parts until the order is done.
func (s *show) lineLocked(order, what, format string, args ...any) {
	l := fmt.Sprintf("%6.2fs  %-3s %-9s "+format+"\n", append([]any{time.Since(s.start).Seconds(), order, what}, args...)...)
	if what == "order" {
		io.WriteString(s.out, l)
		return
	}
	k := dealKey(order, what)
	s.held[k] = append(s.held[k], l)
}

// ranked is called by the shop's strategy when a call's window closes.
func (s *show) ranked(order, capability string, bids []negotiation.BidInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dealLocked(order, capability)
	d.ranked = slices.Clone(bids)
	d.calls++
	if d.calls > 1 {
		s.lineLocked(order, capability, "call %d    re-issued; %d bid(s) this time", d.calls, len(bids))
	}
}

// awarded is called by a contractor's Commit: the shop has just awarded it
// the task. It prints the award and why.
func (s *show) awarded(order, capability, agent string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dealLocked(order, capability)
	d.awards++
	sc := s.strategies[capability]
	rank := slices.IndexFunc(d.ranked, func(b negotiation.BidInfo) bool { return s.nameLocked(b.Agent) == agent })
	if rank < 0 {
		s.lineLocked(order, capability, "award     %s", agent)
		return
	}
	why := fmt.Sprintf("ranked %d of %d by %s: %s", rank+1, len(d.ranked), sc.Name(), sc.score(d.ranked[rank]))
	var others []string
	for _, b := range d.ranked[rank+1:] {
		others = append(others, s.nameLocked(b.Agent)+" "+sc.score(b))
	}
	if len(others) > 0 {
		why += ", ahead of " + strings.Join(others, ", ")
	}
	if d.awards == 1 {
		s.lineLocked(order, capability, "award     %-12s %s", agent, why)
		return
	}
	s.lineLocked(order, capability, "RE-AWARD  %-12s after %s; %s", agent, d.trouble, why)
}

// trouble is called by a contractor that declines or fails.
func (s *show) trouble(order, capability, agent, label, what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dealLocked(order, capability).trouble = agent + " " + label
	s.lineLocked(order, capability, "%-9s %-12s %s", strings.ToUpper(label), agent, what)
}

// history prints a negotiation's state history, for the ones that did
// not go straight through.
func (s *show) history(order, capability string, out *negotiation.Outcome) {
	steps := make([]string, 0, len(out.History))
	var t0 time.Time
	for i, t := range out.History {
		if i == 0 {
			t0 = t.At
		}
		steps = append(steps, fmt.Sprintf("+%-7s %-12s %s", dur(t.At.Sub(t0)), t.State, s.rename(t.Note)))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lineLocked(order, capability, "history   of task %s:", short(out.Task))
	k := dealKey(order, capability)
	for _, st := range steps {
		s.held[k] = append(s.held[k], fmt.Sprintf("%22s%s\n", "", st))
	}
}

// contractor is a demo agent's handler: it bids its fee and ETA (varied a
// little each time), and does the work with a short sleep and a progress
// report, declining or failing now and then as its spec says.
type contractor struct {
	agentSpec
	site string
	show *show

	mu    sync.Mutex
	tasks int // tasks started
}

var _ negotiation.Committer = (*contractor)(nil)

// orderOf reads the order ID out of a call's public summary.
func orderOf(call negotiation.Call) (orderSummary, error) {
	var o orderSummary
	if err := json.Unmarshal(call.Summary, &o); err != nil || o.Order == "" {
		return o, fmt.Errorf("%w: the call's summary is not an order", negotiation.ErrNoBid)
	}
	return o, nil
}

func (c *contractor) Bid(_ context.Context, call negotiation.Call) (negotiation.Bid, error) {
	o, err := orderOf(call)
	if err != nil {
		return negotiation.Bid{}, err
	}
	d := c.show.dice
	b := negotiation.Bid{
		Price:     float64(int(d.vary(c.price, 0.10)*100+0.5)) / 100,
		ETA:       time.Duration(d.vary(float64(c.eta), 0.20)).Round(time.Millisecond),
		Rationale: fmt.Sprintf("%s from %s", c.capability, c.site),
	}
	c.show.line(o.Order, call.Capability, "bid       %-12s €%.2f  eta %s", c.name, b.Price, dur(b.ETA))
	return b, nil
}

func (c *contractor) Commit(_ context.Context, call negotiation.Call, _ negotiation.Bid) error {
	o, err := orderOf(call)
	if err != nil {
		return err
	}
	c.show.awarded(o.Order, call.Capability, c.name)
	if c.declineRate > 0 && c.show.dice.float() < c.declineRate {
		c.show.trouble(o.Order, call.Capability, c.name, "declined", fmt.Sprintf("%d× %s promised to another customer", o.Qty, o.SKU))
		return fmt.Errorf("%w: stock promised to another customer", negotiation.ErrDecline)
	}
	return nil
}

func (c *contractor) Work(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
	o, err := orderOf(task.Call)
	if err != nil {
		return nil, err
	}
	var in orderInput
	if err := json.Unmarshal(task.Input, &in); err != nil {
		return nil, fmt.Errorf("unreadable order input: %w", err)
	}
	d := c.show.dice
	c.mu.Lock()
	c.tasks++
	fail := c.failFirst && c.tasks == 1
	c.mu.Unlock()
	fail = fail || (c.failRate > 0 && d.float() < c.failRate)
	work := d.between(c.minWork, c.maxWork)

	if !sleep(ctx, work/2) {
		return nil, context.Cause(ctx)
	}
	note := map[string]string{"inventory": "picking", "pricing": "quoting", "shipping": "booking a truck"}[c.capability]
	task.Progress(0.5, note)
	c.show.line(o.Order, task.Capability, "progress  %-12s 50%% %s", c.name, note)
	if fail {
		c.show.trouble(o.Order, task.Capability, c.name, "failed", c.failure)
		return nil, errors.New(c.failure)
	}
	if !sleep(ctx, work-work/2) {
		return nil, context.Cause(ctx)
	}
	var res any
	switch c.capability {
	case "inventory":
		res = map[string]any{"sku": o.SKU, "reserved": o.Qty, "from": c.site}
	case "pricing":
		unit := float64(int(d.vary(0.25, 0.4)*1000+0.5)) / 1000
		res = map[string]any{"unit_eur": unit, "total_eur": float64(int(unit*float64(o.Qty)*100+0.5)) / 100}
	default:
		// Only the winner sees where the order goes.
		res = map[string]any{"tracking": fmt.Sprintf("PX-%06X", d.intN(1<<24)), "to": in.City, "days": 1 + d.intN(3)}
	}
	return json.Marshal(res)
}

// dice is the demo's seeded randomness, safe for the handlers' goroutines.
type dice struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newDice(seed uint64) *dice { return &dice{r: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))} }

func (d *dice) float() float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.r.Float64()
}

func (d *dice) intN(n int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.r.IntN(n)
}

func (d *dice) shuffle(n int, swap func(i, j int)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.r.Shuffle(n, swap)
}

// vary returns x give or take the share by of it.
func (d *dice) vary(x, by float64) float64 { return x * (1 + by*(2*d.float()-1)) }

func (d *dice) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(d.float()*float64(hi-lo))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// dur rounds a duration for printing.
func dur(d time.Duration) string {
	if d >= time.Second {
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func short(s string) string {
	if len(s) <= 16 {
		return s
	}
	return s[:10] + "…" + s[len(s)-5:]
}
