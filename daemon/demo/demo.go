// Package demo runs parley's demo, the order story of the source
// article: inventory, pricing and shipping agents (and a forecaster) that
// "exchange intentions, acknowledge constraints, and iteratively refine a
// plan". Six real daemons (package daemon) run on loopback TCP in one
// process, each in its own temporary home: a shop and five businesses
// whose Go agents bid for work. Each order is a workflow (order.yaml, run
// by the shop daemon's own workflow engine through its local API): the
// forecast and the stock check run at once, the price agent reads what
// they wrote in the workflow's shared context, small orders ship by
// parcel after a counter-offer round, big ones by freight after a human's
// approval (which the demo gives itself, and says so), a carrier that
// fails is replaced by the next bid, and an order nobody can ship is
// undone: its stock reservation is released.
//
// The package keeps no state between runs: every node, home and goroutine
// a run starts is gone when Run returns. Negotiation, workflows and the
// shared context live in their packages; the demo only plays the agents,
// watches and tells.
package demo

import (
	"context"
	_ "embed"
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

	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/daemon"
	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/workflow"
)

// orderFlow is the workflow every order runs.
//
//go:embed order.yaml
var orderFlow []byte

// MaxOrders bounds Config.Orders, so that a run stays well within its
// time limit.
const MaxOrders = 9

// timeLimit is how long a whole run may take.
const timeLimit = 28 * time.Second

// Config tunes the demo. The zero value is the default demo.
type Config struct {
	// Orders is how many orders the shop places, 1 to MaxOrders; default
	// 3. They take turns at the story's three kinds: a parcel (counter-
	// offers, a carrier that fails), a freight booking (a human's
	// approval), and one nobody can ship (a compensation).
	Orders int
	// Seed seeds the orders, prices and forecasts, so that runs are
	// alike; default 1.
	Seed uint64
	// Quiet prints the opening, one line per order and the summary.
	Quiet bool
}

func (c Config) withDefaults() Config {
	if c.Orders <= 0 {
		c.Orders = 3
	}
	c.Orders = min(c.Orders, MaxOrders)
	if c.Seed == 0 {
		c.Seed = 1
	}
	return c
}

// Summary is what one run achieved.
type Summary struct {
	Orders       int // orders placed
	Completed    int // orders shipped
	Undone       int // orders that failed and whose finished steps were compensated
	Negotiations int // negotiations the workflows ran: attempts of steps and compensations
	Counters     int // counter-offers the shop made
	Accepted     int // of which the carrier accepted
	ReAwards     int // jobs handed to the next bid after a winner failed
	Retries      int // steps negotiated again by their retry rule
	Approvals    int // steps a human had to approve (the demo did)
	Entries      int // shared context entries written, each verified
	// AuditRecords are the signed records in the AuditLogs daemons'
	// audit logs, whose chains and signatures verified.
	AuditRecords, AuditLogs int
	Elapsed                 time.Duration
}

// role is one agent of the cast: its card and how to make its handler
// on its node.
type role struct {
	card node.AgentCard
	make func(base) negotiation.Handler
}

// site is one demo node and the agents it hosts.
type site struct {
	name  string
	roles []role
}

// cast is the demo's businesses; each role has competitors on different
// nodes.
func cast() []site {
	const ms = time.Millisecond
	fc := func(name string, fee float64, eta time.Duration) role {
		return role{node.AgentCard{Name: name, Capabilities: []string{"forecast"}}, func(b base) negotiation.Handler {
			b.name, b.fee, b.eta, b.work = name, fee, eta, 60*ms
			return &forecaster{base: b}
		}}
	}
	inv := func(name string, fee float64, eta time.Duration, stockOf map[string]int) role {
		return role{node.AgentCard{Name: name, Capabilities: []string{"inventory", "inventory.release"}}, func(b base) negotiation.Handler {
			b.name, b.fee, b.eta, b.work = name, fee, eta, 80*ms
			return &stocker{base: b, onHand: stockOf, reserved: map[string]reservation{}}
		}}
	}
	pr := func(name string, fee float64, eta time.Duration) role {
		return role{node.AgentCard{Name: name, Capabilities: []string{"pricing"}}, func(b base) negotiation.Handler {
			b.name, b.fee, b.eta, b.work = name, fee, eta, 60*ms
			return &pricer{base: b}
		}}
	}
	// answer is how the carrier meets a counter-offer; failFirst, why its
	// first job fails (if it does).
	sh := func(name string, parcel, freight float64, eta time.Duration, answer, failFirst string) role {
		return role{node.AgentCard{Name: name, Capabilities: []string{"shipping"}}, func(b base) negotiation.Handler {
			b.name, b.fee, b.eta, b.work = name, parcel, eta, 120*ms
			return &carrier{base: b, freight: freight, answer: answer, failFirst: failFirst}
		}}
	}
	return []site{
		{name: "shop"},
		{"north-depot", []role{
			inv("inventory-a", 1.20, 150*ms, map[string]int{"bearing-608": 200, "gear-12t": 900, "spring-k3": 60}),
			sh("shipping-a", 11.5, 180, 200*ms, "accept", ""),
		}},
		{"south-depot", []role{
			inv("inventory-b", 0.90, 250*ms, map[string]int{"bearing-608": 120, "gear-12t": 300, "spring-k3": 80}),
			pr("pricing-a", 0.40, 120*ms),
		}},
		{"exchange", []role{
			fc("forecast-a", 0.80, 120*ms),
			pr("pricing-b", 0.30, 180*ms),
			sh("shipping-b", 11, 160, 250*ms, "revise", ""),
		}},
		{"harbor", []role{
			inv("inventory-c", 1.05, 100*ms, map[string]int{"bearing-608": 15, "gear-12t": 1200, "spring-k3": 40}),
			// The cheapest parcel carrier, and the one that lets the shop down once.
			sh("shipping-c", 8.5, 210, 150*ms, "refuse", "the truck broke down on the way to the depot"),
		}},
		{"workshop", []role{
			fc("forecast-b", 0.70, 160*ms),
		}},
	}
}

// Run starts the nodes and their agents, lets the shop place its orders,
// tells each one as it happens and sums up, and stops everything. It
// returns an error if an order did not end as its story says.
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
	ctx, cancel := context.WithTimeout(ctx, timeLimit)
	defer cancel()
	flow, err := workflow.Parse("order.yaml", orderFlow)
	if err != nil {
		return Summary{}, fmt.Errorf("demo: %w", err)
	}
	s := &show{flow: flow, out: out, quiet: cfg.Quiet, start: time.Now(), dice: newDice(cfg.Seed), names: map[identity.AgentID]string{},
		calls: map[string]bool{}, open: map[string][]string{},
		done: map[string]bool{}, held: map[string][]string{}}

	fmt.Fprintf(out, `parley demo: an order's story, told by six real nodes on loopback TCP in this
process — a shop and five businesses whose agents forecast demand, hold stock,
price orders and ship them. Each order is a workflow (daemon/demo/order.yaml)
that the shop's own node runs; every step is a negotiation in the mesh:

  forecast ─┐
            ├─ price ─┬─ ship     (under €500: parcel; the shop counters each bid)
  stock ────┘         └─ freight  (€500 and over: a human approves it first)

forecast and stock run at once; the agents share what they learn in the
workflow's shared context (signed, each entry by its writer); a carrier that
fails is replaced; an order nobody can ship is undone. %s, seed %d
('parley demo --seed N' for another run).

`, plural(cfg.Orders, "order"), cfg.Seed)
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
	hosts := map[string][]peer.ID{} // capability -> nodes offering it
	for _, st := range cast() {
		d, err := startNode(ctx, tmp, st.name, daemons)
		if err != nil {
			return Summary{}, err
		}
		daemons = append(daemons, d)
		n := d.Node()
		var names []string
		for _, r := range st.roles {
			card := r.card
			a, err := n.AddAgent(card, r.make(base{site: st.name, node: n, show: s, dice: newDice(cfg.Seed ^ hash(card.Name))}))
			if err != nil {
				return Summary{}, fmt.Errorf("demo: add %s on %s: %w", card.Name, st.name, err)
			}
			s.name(a.ID, card.Name)
			for _, c := range card.Capabilities {
				if !slices.Contains(hosts[c], n.ID()) {
					hosts[c] = append(hosts[c], n.ID())
				}
			}
			names = append(names, card.Name)
		}
		if len(names) == 0 {
			if a, err := n.Agent(""); err == nil {
				s.name(a.ID, "shop")
			}
			names = append(names, "the shop: runs the order workflows, asks and pays")
		}
		s.say("%-12s up  peer %s  %s", st.name, short(n.ID().String()), strings.Join(names, ", "))
	}
	shop := daemons[0]
	if err := waitMesh(ctx, shop.Node(), hosts); err != nil {
		return Summary{}, err
	}
	s.say("mesh formed: %d nodes, every agent's node on the shop's capability topics", len(daemons))

	var sum Summary
	var failures []string
	for i, o := range makeOrders(cfg.Orders, s.dice) {
		if ctx.Err() != nil {
			break
		}
		res := s.placeOrder(ctx, shop, o)
		sum.add(res)
		if why := o.kind.check(res); why != "" {
			failures = append(failures, fmt.Sprintf("order #%d: %s", i+1, why))
		}
	}
	sum.Elapsed = time.Since(s.start)
	records, err := verifyAudits(daemons)
	if err != nil {
		failures = append(failures, err.Error())
	}
	sum.AuditRecords, sum.AuditLogs = records, len(daemons)
	s.table(sum)
	switch {
	case ctx.Err() != nil:
		return sum, fmt.Errorf("demo: stopped after %d of %d orders: %w", sum.Orders, cfg.Orders, context.Cause(ctx))
	case len(failures) > 0:
		return sum, fmt.Errorf("demo: %s", strings.Join(failures, "; "))
	}
	return sum, nil
}

// verifyAudits checks every daemon's audit log, as 'parley audit verify'
// does, and counts the records: what a daemon kept of the story.
func verifyAudits(daemons []*daemon.Daemon) (int, error) {
	total := 0
	for _, d := range daemons {
		n := d.Node()
		pub, err := n.ID().ExtractPublicKey()
		if err != nil {
			return total, fmt.Errorf("audit of %s: %w", n.ID(), err)
		}
		rep, err := audit.Verify(filepath.Join(d.Home(), home.AuditDir), pub)
		if err != nil {
			return total, fmt.Errorf("audit of %s: %w", n.ID(), err)
		}
		total += rep.Records
	}
	return total, nil
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
		// Each daemon keeps its audit log, as a deployed one does: the
		// summary counts and verifies them.
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

// kind is which of the story's orders one is.
type kind int

const (
	parcel  kind = iota // small: counter-offers, a carrier fails and is replaced
	freight             // big: a human approves the booking
	nowhere             // to where no carrier goes: undone
)

// check says how an order's result departs from its story; "" if not.
func (k kind) check(r orderResult) string {
	switch {
	case r.err != nil:
		return r.err.Error()
	case k == nowhere && r.state != "failed":
		return fmt.Sprintf("ended %s, want failed (no carrier ships there)", r.state)
	case k == nowhere && !r.compensated:
		return "failed without releasing its stock reservation"
	case k != nowhere && r.state != "completed":
		return fmt.Sprintf("ended %s: %s", r.state, r.why)
	}
	return ""
}

// order is one order the shop places: the workflow's input.
type order struct {
	kind     kind
	Order    string `json:"order"`
	SKU      string `json:"sku"`
	Qty      int    `json:"qty"`
	Customer string `json:"customer"`
	City     string `json:"city"`
	Country  string `json:"country"`
}

func makeOrders(n int, d *dice) []order {
	type dest struct{ customer, city, country string }
	dests := []dest{
		{"Greta Schmidt", "Hamburg", "DE"}, {"Ola Nordmann", "Oslo", "NO"}, {"Anna Svensson", "Stockholm", "SE"},
		{"Jan de Vries", "Amsterdam", "NL"}, {"Marie Dubois", "Paris", "FR"}, {"Søren Jensen", "Copenhagen", "DK"},
	}
	d.shuffle(len(dests), func(i, j int) { dests[i], dests[j] = dests[j], dests[i] })
	out := make([]order, n)
	for i := range out {
		k := kind(i % 3)
		o := order{kind: k, Order: fmt.Sprintf("#%d", i+1)}
		switch k {
		case parcel:
			o.SKU, o.Qty = "bearing-608", 30+d.intN(21)
		case freight:
			o.SKU, o.Qty = "gear-12t", 400+d.intN(201)
		case nowhere:
			o.SKU, o.Qty = "spring-k3", 10+d.intN(21)
		}
		dst := dests[i%len(dests)]
		o.Customer, o.City, o.Country = dst.customer, dst.city, dst.country
		if k == nowhere {
			o.Customer, o.City, o.Country = "Guðrún Jónsdóttir", "Reykjavík", "IS"
		}
		out[i] = o
	}
	return out
}

func (s *Summary) add(r orderResult) {
	s.Orders++
	switch {
	case r.state == "completed":
		s.Completed++
	case r.compensated:
		s.Undone++
	}
	s.Negotiations += r.negotiations
	s.Counters += r.counters
	s.Accepted += r.accepted
	s.ReAwards += r.reAwards
	s.Retries += r.retries
	s.Approvals += r.approvals
	s.Entries += r.entries
}

// table prints the summary.
func (s *show) table(sum Summary) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.out
	fmt.Fprintf(w, "\nsummary\n")
	fmt.Fprintf(w, "  orders               %d placed: %d shipped, %d undone (nobody could ship them)\n", sum.Orders, sum.Completed, sum.Undone)
	fmt.Fprintf(w, "  negotiations         %d (steps and compensations, retries included)\n", sum.Negotiations)
	fmt.Fprintf(w, "  counter-offers       %d made, %d accepted\n", sum.Counters, sum.Accepted)
	fmt.Fprintf(w, "  re-awards            %d (a winner failed; the next bid took the job)\n", sum.ReAwards)
	fmt.Fprintf(w, "  retries              %d (a step negotiated again by its retry rule)\n", sum.Retries)
	fmt.Fprintf(w, "  approvals            %d (auto-approved by the demo; a person runs 'parley approvals approve ID')\n", sum.Approvals)
	fmt.Fprintf(w, "  context entries      %d written by the agents, each signature checked\n", sum.Entries)
	fmt.Fprintf(w, "  audit                %d signed records in the %d daemons' logs, every step decision, each log's chain and signatures verified ('parley audit verify')\n", sum.AuditRecords, sum.AuditLogs)
	fmt.Fprintf(w, "  elapsed              %s\n", dur(sum.Elapsed))
	fmt.Fprintf(w, "  the workflow         daemon/demo/order.yaml ('parley flow run FILE' runs one on any node)\n")
}

// dice is the demo's seeded randomness, safe for the handlers' goroutines.
type dice struct {
	mu sync.Mutex
	r  *rand.Rand
}

// hash is FNV-1a, to give each agent its own stream of one seed.
func hash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
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

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func short(s string) string {
	if len(s) <= 16 {
		return s
	}
	return s[:10] + "…" + s[len(s)-5:]
}
