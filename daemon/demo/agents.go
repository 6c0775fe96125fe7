package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
)

// The contractors. Each is a Go handler hosted on one of the demo's
// nodes: it bids from what the call's public summary says, works with
// the private input, and reads and writes the workflow's shared context
// through its own node (node.TaskContext), over /parley/context/1.0.0 to
// the shop's node. What each one says goes to the show as it happens.

// summary is a call's public part, as order.yaml's summary: expressions
// build it.
type summary struct {
	Order       string `json:"order"`
	SKU         string `json:"sku,omitempty"`
	Qty         int    `json:"qty,omitempty"`
	Country     string `json:"country,omitempty"`
	Service     string `json:"service,omitempty"` // shipping: parcel or freight
	Reservation string `json:"reservation,omitempty"`
}

func readSummary(call negotiation.Call) (summary, error) {
	var s summary
	if err := json.Unmarshal(call.Summary, &s); err != nil || s.Order == "" {
		return s, fmt.Errorf("%w: the call's summary is not one of the shop's orders", negotiation.ErrNoBid)
	}
	return s, nil
}

// label is the step a call is for, as the show names it.
func label(call negotiation.Call, s summary) string {
	switch call.Capability {
	case "inventory":
		return "stock"
	case "inventory.release":
		return "undo"
	case "pricing":
		return "price"
	case "shipping":
		if s.Service == "freight" {
			return "freight"
		}
		return "ship"
	}
	return call.Capability
}

// base is what every contractor shares: who it is, where, what it
// charges, and the show it talks to.
type base struct {
	name, site string
	fee        float64       // its usual price; each bid varies it a little
	eta        time.Duration // its usual promise
	work       time.Duration // how long the work takes
	node       *node.Node
	show       *show
	// dice is the agent's own, so that agents bidding at once do not
	// race for one generator and a seed gives the same run every time.
	dice *dice
}

// heard tells the call the agent heard, if nobody has yet.
// The shop tells a compensation's call itself, once it knows the
// workflow is undoing a step.
func (b *base) heard(call negotiation.Call, s summary) {
	if step := label(call, s); step != "undo" {
		b.show.call(s.Order, step, call.Capability, call.Task, call.BidWindow)
	}
}

func (b *base) say(order, step, format string, args ...any) {
	b.show.step(order, step, format, args...)
}

// bid is the agent's fee and ETA, varied by the seed's dice.
func (b *base) bid(fee float64, why string) negotiation.Bid {
	d := b.dice
	return negotiation.Bid{
		Price:     cents(d.vary(fee, 0.03)),
		ETA:       time.Duration(d.vary(float64(b.eta), 0.08)).Round(time.Millisecond),
		Rationale: why,
	}
}

// putContext writes key in the task's shared context, as this agent.
func (b *base) putContext(ctx context.Context, task negotiation.Task, key string, v any) error {
	cl, err := b.node.TaskContext(task)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := cl.Put(ctx, key, raw); err != nil {
		return fmt.Errorf("%s: write %s to the shared context: %w", b.name, key, err)
	}
	return nil
}

// getContext reads keys of the task's shared context into out (by key).
func (b *base) getContext(ctx context.Context, task negotiation.Task, out map[string]any, keys ...string) error {
	cl, err := b.node.TaskContext(task)
	if err != nil {
		return err
	}
	es, err := cl.Get(ctx, keys...)
	if err != nil {
		return fmt.Errorf("%s: read %s from the shared context: %w", b.name, strings.Join(keys, ", "), err)
	}
	for _, k := range keys {
		e, ok := es[k]
		if !ok {
			return fmt.Errorf("%s: the shared context has no %s yet", b.name, k)
		}
		if err := json.Unmarshal(e.Value, out[k]); err != nil {
			return fmt.Errorf("%s: shared context %s: %w", b.name, k, err)
		}
	}
	return nil
}

// forecaster predicts next week's demand for an item.
type forecaster struct{ base }

// forecast is the shared context's forecast entry.
type forecast struct {
	SKU      string `json:"sku"`
	NextWeek int    `json:"next_week"`
}

func (f *forecaster) Bid(_ context.Context, call negotiation.Call) (negotiation.Bid, error) {
	s, err := readSummary(call)
	if err != nil {
		return negotiation.Bid{}, err
	}
	f.heard(call, s)
	b := f.bid(f.fee, "demand model from "+f.site)
	f.say(s.Order, label(call, s), "bid      %-12s €%.2f  eta %s", f.name, b.Price, dur(b.ETA))
	return b, nil
}

func (f *forecaster) Work(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
	s, err := readSummary(task.Call)
	if err != nil {
		return nil, err
	}
	var in struct {
		SKU string `json:"sku"`
		Qty int    `json:"qty"`
	}
	if err := json.Unmarshal(task.Input, &in); err != nil {
		return nil, fmt.Errorf("forecast input: %w", err)
	}
	if !sleep(ctx, f.work) {
		return nil, context.Cause(ctx)
	}
	fc := forecast{SKU: in.SKU, NextWeek: int(float64(in.Qty) * (1.5 + f.dice.float()))}
	f.say(s.Order, "forecast", "%-12s expects %d× %s next week; writes forecast", f.name, fc.NextWeek, fc.SKU)
	if err := f.putContext(ctx, task, "forecast", fc); err != nil {
		return nil, err
	}
	return json.Marshal(fc)
}

// stocker holds stock at its warehouse: it bids only for what it has,
// reserves it, and releases a reservation when asked (the compensation).
type stocker struct {
	base

	mu       sync.Mutex
	onHand   map[string]int         // by SKU
	reserved map[string]reservation // by reservation ID
	next     int
}

type reservation struct {
	sku string
	qty int
}

// stock is the shared context's stock entry.
type stock struct {
	Warehouse   string `json:"warehouse"`
	SKU         string `json:"sku"`
	Reserved    int    `json:"reserved"`
	Left        int    `json:"left"`
	Reservation string `json:"reservation"`
}

func (s *stocker) Bid(_ context.Context, call negotiation.Call) (negotiation.Bid, error) {
	o, err := readSummary(call)
	if err != nil {
		return negotiation.Bid{}, err
	}
	s.heard(call, o)
	s.mu.Lock()
	have := s.onHand[o.SKU]
	_, holds := s.reserved[o.Reservation]
	s.mu.Unlock()
	if call.Capability == "inventory.release" {
		if !holds {
			return negotiation.Bid{}, fmt.Errorf("%w: not our reservation", negotiation.ErrNoBid)
		}
		// Only the holder bids; the shop tells the call and its winner.
		return s.bid(0.10, "our reservation"), nil
	}
	if have < o.Qty {
		s.say(o.Order, "stock", "no bid   %-12s has %d of %d× %s", s.name, have, o.Qty, o.SKU)
		return negotiation.Bid{}, fmt.Errorf("%w: %d of %d in stock", negotiation.ErrNoBid, have, o.Qty)
	}
	b := s.bid(s.fee, fmt.Sprintf("%d× %s at %s", have, o.SKU, s.site))
	s.say(o.Order, "stock", "bid      %-12s €%.2f  eta %s  (has %d)", s.name, b.Price, dur(b.ETA), have)
	return b, nil
}

func (s *stocker) Work(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
	o, err := readSummary(task.Call)
	if err != nil {
		return nil, err
	}
	if !sleep(ctx, s.work) {
		return nil, context.Cause(ctx)
	}
	if task.Capability == "inventory.release" {
		var in struct {
			Reservation string `json:"reservation"`
		}
		if err := json.Unmarshal(task.Input, &in); err != nil {
			return nil, fmt.Errorf("release input: %w", err)
		}
		s.mu.Lock()
		r, ok := s.reserved[in.Reservation]
		if ok {
			delete(s.reserved, in.Reservation)
			s.onHand[r.sku] += r.qty
		}
		left := s.onHand[r.sku]
		s.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("no reservation %q", in.Reservation)
		}
		s.say(o.Order, "undo", "%-12s released %s: %d× %s back on the shelf (%d now)", s.name, in.Reservation, r.qty, r.sku, left)
		return json.Marshal(map[string]any{"released": in.Reservation, "qty": r.qty})
	}
	var in struct {
		SKU string `json:"sku"`
		Qty int    `json:"qty"`
	}
	if err := json.Unmarshal(task.Input, &in); err != nil {
		return nil, fmt.Errorf("stock input: %w", err)
	}
	s.mu.Lock()
	if s.onHand[in.SKU] < in.Qty {
		have := s.onHand[in.SKU]
		s.mu.Unlock()
		return nil, fmt.Errorf("only %d of %d× %s left", have, in.Qty, in.SKU)
	}
	s.onHand[in.SKU] -= in.Qty
	s.next++
	id := fmt.Sprintf("%s-%d", strings.ToUpper(s.site[:1]), 100+s.next)
	s.reserved[id] = reservation{in.SKU, in.Qty}
	st := stock{Warehouse: s.site, SKU: in.SKU, Reserved: in.Qty, Left: s.onHand[in.SKU], Reservation: id}
	s.mu.Unlock()
	s.say(o.Order, "stock", "%-12s reserved %d× %s as %s, %d left; writes stock", s.name, in.Qty, in.SKU, id, st.Left)
	if err := s.putContext(ctx, task, "stock", st); err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{"reservation": id, "warehouse": s.site})
}

// pricer prices an order from the list price, and from what the
// forecaster and the stocker wrote in the shared context.
type pricer struct{ base }

// price is the shared context's price entry: the price agreed for the
// order.
type price struct {
	Unit  float64 `json:"unit"`
	Total float64 `json:"total"`
	Note  string  `json:"note"`
}

// listPrice is each item's price per unit, in euros.
func listPrice(sku string) float64 {
	return map[string]float64{"bearing-608": 2.40, "gear-12t": 1.90, "spring-k3": 0.60}[sku]
}

func (p *pricer) Bid(_ context.Context, call negotiation.Call) (negotiation.Bid, error) {
	s, err := readSummary(call)
	if err != nil {
		return negotiation.Bid{}, err
	}
	p.heard(call, s)
	if listPrice(s.SKU) == 0 {
		return negotiation.Bid{}, fmt.Errorf("%w: no list price for %s", negotiation.ErrNoBid, s.SKU)
	}
	b := p.bid(p.fee, "price list of "+p.site)
	p.say(s.Order, "price", "bid      %-12s €%.2f  eta %s", p.name, b.Price, dur(b.ETA))
	return b, nil
}

func (p *pricer) Work(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
	s, err := readSummary(task.Call)
	if err != nil {
		return nil, err
	}
	var in struct {
		SKU string `json:"sku"`
		Qty int    `json:"qty"`
	}
	if err := json.Unmarshal(task.Input, &in); err != nil {
		return nil, fmt.Errorf("price input: %w", err)
	}
	var fc forecast
	var st stock
	if err := p.getContext(ctx, task, map[string]any{"forecast": &fc, "stock": &st}, "forecast", "stock"); err != nil {
		return nil, err
	}
	p.say(s.Order, "price", "%-12s reads forecast (%d next week) and stock (%d left at %s)", p.name, fc.NextWeek, st.Left, st.Warehouse)
	if !sleep(ctx, p.work) {
		return nil, context.Cause(ctx)
	}
	// The constraint the others told it: stock that outlasts the demand
	// is worth moving, stock that does not is not discounted.
	pr := price{Unit: listPrice(in.SKU), Note: "stock runs short of next week's demand: list price"}
	if st.Left >= fc.NextWeek {
		pr.Unit, pr.Note = cents(pr.Unit*0.95), "enough left for next week's demand: 5% off"
	}
	pr.Total = cents(pr.Unit * float64(in.Qty))
	p.say(s.Order, "price", "%-12s €%.2f × %d = €%.2f (%s); writes price", p.name, pr.Unit, in.Qty, pr.Total, pr.Note)
	if err := p.putContext(ctx, task, "price", pr); err != nil {
		return nil, err
	}
	return json.Marshal(pr)
}

// carrier ships orders: it bids by parcel or freight, answers
// counter-offers its own way, and may fail its first job.
type carrier struct {
	base
	freight   float64 // its fee for a freight booking
	answer    string  // to a counter-offer: accept, revise or refuse
	failFirst string  // if set, why its first job fails

	mu   sync.Mutex
	jobs int
}

var _ negotiation.Counterer = (*carrier)(nil)

func (c *carrier) Bid(_ context.Context, call negotiation.Call) (negotiation.Bid, error) {
	s, err := readSummary(call)
	if err != nil {
		return negotiation.Bid{}, err
	}
	c.heard(call, s)
	step := label(call, s)
	if s.Country == "IS" {
		c.say(s.Order, step, "no bid   %-12s does not ship to Iceland", c.name)
		return negotiation.Bid{}, fmt.Errorf("%w: no route to %s", negotiation.ErrNoBid, s.Country)
	}
	fee := c.fee
	if s.Service == "freight" {
		fee = c.freight
	}
	b := c.bid(fee, s.Service+" from "+c.site)
	c.say(s.Order, step, "bid      %-12s €%.2f  eta %s", c.name, b.Price, dur(b.ETA))
	return b, nil
}

func (c *carrier) Counter(_ context.Context, call negotiation.Call, k negotiation.Counter) (negotiation.Bid, error) {
	s, err := readSummary(call)
	if err != nil {
		return negotiation.Bid{}, err
	}
	step := label(call, s)
	offer := fmt.Sprintf("shop counters %-12s €%.2f → €%.2f (%s):", c.name, k.Bid.Price, k.Price, k.Terms)
	switch c.answer {
	case "accept":
		c.say(s.Order, step, "%s ACCEPTED", offer)
		return negotiation.Bid{Price: k.Price, ETA: k.ETA, Rationale: "accepted the counter"}, nil
	case "revise":
		mid := cents((k.Price + k.Bid.Price) / 2)
		c.say(s.Order, step, "%s revised to €%.2f", offer, mid)
		return negotiation.Bid{Price: mid, ETA: k.Bid.ETA, Rationale: "met halfway"}, nil
	}
	c.say(s.Order, step, "%s refused, its bid stands", offer)
	return negotiation.Bid{}, negotiation.ErrRefuseCounter
}

func (c *carrier) Work(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
	s, err := readSummary(task.Call)
	if err != nil {
		return nil, err
	}
	step := label(task.Call, s)
	var in struct {
		City string `json:"city"`
		From string `json:"from"`
	}
	if err := json.Unmarshal(task.Input, &in); err != nil {
		return nil, fmt.Errorf("shipping input: %w", err)
	}
	c.mu.Lock()
	c.jobs++
	fail := c.failFirst != "" && c.jobs == 1
	c.mu.Unlock()
	var (
		st stock
		pr price
	)
	if err := c.getContext(ctx, task, map[string]any{"stock": &st, "price": &pr}, "stock", "price"); err != nil {
		return nil, err
	}
	if !sleep(ctx, c.work/2) {
		return nil, context.Cause(ctx)
	}
	if fail {
		c.say(s.Order, step, "FAILED   %-12s %s", c.name, c.failFirst)
		return nil, errors.New(c.failFirst)
	}
	if !sleep(ctx, c.work-c.work/2) {
		return nil, context.Cause(ctx)
	}
	tracking := fmt.Sprintf("PX-%06X", c.dice.intN(1<<24))
	// Where from and what it is worth (the insurance) come from what the
	// stocker and the pricer wrote.
	c.say(s.Order, step, "%-12s booked %d× %s, %s → %s, insured for €%.2f: %s",
		c.name, st.Reserved, st.SKU, st.Warehouse, in.City, pr.Total, tracking)
	return json.Marshal(map[string]any{"tracking": tracking, "from": st.Warehouse, "to": in.City})
}

func cents(x float64) float64 { return math.Round(x*100) / 100 }
