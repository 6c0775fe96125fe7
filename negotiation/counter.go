package negotiation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation/frame"
)

// Counter-offers. Once a call's bid window closes, a requester whose
// strategy is a CounterStrategy may answer each bid with a counter: the
// terms it would take. The bidder's handler (a Counterer) accepts them,
// revises its bid or refuses (its last bid stands), on the stream it bid
// on. Rounds repeat, per bid and in parallel across bids, until the
// strategy is content, the bidder refuses, or MaxCounterRounds is reached;
// this node's bound, not the other side's, caps them on both sides. Each
// round's wait is the request's own bid window, never past its deadline,
// so a slow bidder drops out rather than stretching the negotiation. The
// bids are then ranked on their final terms, and the budget (the call's
// and the policy's, at the award) applies to the final price.

// Counter is a requester's counter-offer to a bid.
type Counter struct {
	Price float64       `json:"price"`
	ETA   time.Duration `json:"eta"`
	// Terms says what else the requester asks or offers, in a few words.
	Terms string `json:"terms,omitempty"`
	// Round is the counter's place in this bid's bargaining (1 = first).
	Round int `json:"round"`
	// Bid is the bid it answers: the bidder's last terms. The service
	// fills it.
	Bid Bid `json:"bid"`
}

// Round is one counter-offer to a bid and what came of it.
type Round struct {
	Counter Counter `json:"counter"`
	// Reply is the bidder's answer: "accepted" (the counter's terms),
	// "revised" (other terms), "refused" (its bid stands), "silent" (no
	// answer within the bid window) or "failed" (a bad answer); after the
	// last two the bid is dropped.
	Reply string `json:"reply"`
	// Bid is the bid after the round.
	Bid  Bid    `json:"bid"`
	Note string `json:"note,omitempty"`
}

// ErrRefuseCounter is what a Counterer returns to refuse a counter-offer:
// its last bid stands.
var ErrRefuseCounter = errors.New("counter-offer refused")

// Counterer is an optional Handler method: the answer to a requester's
// counter-offer to this agent's bid. Return the counter's terms to accept
// it, other terms to revise the bid, or an error (ErrRefuseCounter) to
// refuse; the last bid then stands. A handler without it refuses every
// counter. The node's policy is asked first, as for a bid. ctx ends after
// two thirds of the call's bid window, so that a refusal still reaches a
// requester who waits one window.
type Counterer interface {
	Counter(ctx context.Context, call Call, counter Counter) (Bid, error)
}

// CounterStrategy is an optional Strategy method: asked about every bid
// once the bid window closes (round 1) and again after each revision or
// acceptance (round 2, …, up to the node's MaxCounterRounds), it returns
// the counter to make, or false to take the bid as it stands. A counter
// whose price is over the call's budget is not made.
type CounterStrategy interface {
	Counter(bid BidInfo, round int) (Counter, bool)
}

// counterAt counters every bid once at a fraction of its price and ranks
// the final terms with rank.
type counterAt struct {
	Strategy
	fraction float64
}

// CounterAt returns a strategy that counters each bid once, at fraction
// (0 < fraction < 1) of its price with the same ETA, and ranks the final
// terms as rank does (Cheapest if nil).
func CounterAt(fraction float64, rank Strategy) Strategy {
	if rank == nil {
		rank = Cheapest()
	}
	return counterAt{rank, fraction}
}

func (c counterAt) Name() string {
	return fmt.Sprintf("counter(%g%%)+%s", c.fraction*100, c.Strategy.Name())
}

func (c counterAt) Counter(b BidInfo, round int) (Counter, bool) {
	if round > 1 || b.Price <= 0 {
		return Counter{}, false
	}
	return Counter{Price: b.Price * c.fraction, ETA: b.ETA, Terms: fmt.Sprintf("%g%% of your price", c.fraction*100)}, true
}

// bargain runs the counter rounds of one call's bids, in parallel, and
// returns the bids still standing on their final terms.
func (r *request) bargain(ctx context.Context, cs CounterStrategy, bids []*bidder) []*bidder {
	keep := make([]bool, len(bids))
	var wg sync.WaitGroup
	for i, b := range bids {
		wg.Go(func() { keep[i] = r.bargainOne(ctx, cs, b) })
	}
	wg.Wait()
	var out []*bidder
	for i, b := range bids {
		if keep[i] {
			out = append(out, b)
		}
	}
	return out
}

// bargainOne counters one bid until the strategy is content, the bidder
// refuses or goes silent, or the round limit; false if the bid is gone.
func (r *request) bargainOne(ctx context.Context, cs CounterStrategy, b *bidder) bool {
	for round := 1; round <= r.s.cfg.MaxCounterRounds; round++ {
		r.mu.Lock()
		info := b.info
		info.Rounds = append([]Round(nil), b.info.Rounds...)
		conn := b.conn
		r.mu.Unlock()
		if conn == nil || ctx.Err() != nil {
			return conn != nil
		}
		c, ok := safeCounterStrategy(cs, info, round)
		if !ok {
			return true
		}
		c.Round, c.Bid = round, info.Bid
		if bad := checkTerms(c.Price, c.ETA); bad != "" {
			r.hist.note(fmt.Sprintf("no counter to %s: the strategy's %s", short(info.Agent), bad))
			return true
		}
		if r.need.Budget > 0 && c.Price > r.need.Budget {
			r.hist.note(fmt.Sprintf("no counter to %s at %g: over the budget %g", short(info.Agent), c.Price, r.need.Budget))
			return true
		}
		reply, ok := r.counterRound(ctx, b, conn, c)
		if !ok {
			return false
		}
		if reply == "refused" || reply == "not made" {
			return true
		}
	}
	return true
}

// counterRound sends one counter and reads the answer. It reports the
// reply and whether the bid still stands.
func (r *request) counterRound(ctx context.Context, b *bidder, conn *frame.Conn, c Counter) (string, bool) {
	ctx, span := r.s.span(ctx, spanCounter, trace.SpanKindClient, r.id)
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(append(bidAttrs(b.info), attribute.Int("parley.round", c.Round), attribute.Float64("parley.counter_price", c.Price))...)
	}
	ev := Event{Kind: "counter", Role: RoleRequester, Task: r.id, Capability: r.need.Capability, Agent: r.agent.ID, Other: b.info.Agent,
		Peer: b.info.Peer, Price: c.Price, Rationale: fmt.Sprintf("round %d: price %g, eta %s; %s", c.Round, c.Price, c.ETA, c.Terms)}
	if err := r.s.auditIn(ctx, ev); err != nil {
		r.hist.note("counter not made: the audit log failed")
		return "not made", true
	}
	w := wire{Task: r.id, Agent: b.info.Agent, Price: c.Price, ETAMillis: c.ETA.Milliseconds(), Terms: c.Terms, Round: c.Round}
	if err := conn.Send(msgCounter, wireVersion, w); err != nil {
		return r.dropBidder(b, conn, c, "failed", "could not be sent the counter: "+err.Error()), false
	}
	// The bidder has as long to answer as it had to bid, within the
	// deadline: this node's bound, whatever the bidder does.
	wait := r.opts.BidWindow
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Reset() })
	defer stop()
	conn.SetReadTimeout(max(wait, time.Millisecond))
	var in wire
	m, err := r.s.recv(conn, &in)
	if err != nil {
		if reason := frame.Reason(err); reason != "" {
			r.s.m.dropped.WithLabelValues(reason).Inc()
			return r.dropBidder(b, conn, c, "failed", "bad frame after a counter: "+reason), false
		}
		failSpan(span, "no answer")
		return r.dropBidder(b, conn, c, "silent", fmt.Sprintf("no answer to counter %d within %s", c.Round, wait.Round(time.Millisecond))), false
	}
	reply, note := "", ""
	bid := b.info.Bid
	switch m.Type {
	case msgPropose:
		bid = in.bid()
		bid.Rationale = clip(bid.Rationale)
		reply = "revised"
		if bid.Price == c.Price && bid.ETA <= c.ETA {
			reply = "accepted"
		}
		if bad := checkTerms(bid.Price, bid.ETA); bad != "" {
			return r.dropBidder(b, conn, c, "failed", "revised to bad terms: "+bad), false
		}
	case msgRefuse:
		reply, note = "refused", clip(in.Reason)
	default:
		r.s.m.dropped.WithLabelValues("malformed").Inc()
		return r.dropBidder(b, conn, c, "failed", "answered a counter with "+m.Type), false
	}
	ev.Kind, ev.Price, ev.Rationale = "revision", bid.Price, fmt.Sprintf("round %d %s: price %g, eta %s", c.Round, reply, bid.Price, bid.ETA)
	if note != "" {
		ev.Rationale += ": " + note
	}
	if err := r.s.auditIn(ctx, ev); err != nil {
		return r.dropBidder(b, conn, c, "failed", "answer to a counter not recorded (audit log failed)"), false
	}
	if span.IsRecording() {
		span.SetAttributes(attribute.String("parley.reply", reply), attribute.Float64("parley.price", bid.Price))
	}
	r.s.m.counters.WithLabelValues(reply).Inc()
	r.mu.Lock()
	b.info.Bid = bid
	b.info.Rounds = append(b.info.Rounds, Round{Counter: c, Reply: reply, Bid: bid, Note: note})
	r.mu.Unlock()
	r.hist.note(fmt.Sprintf("counter %d to %s at %g: %s (price %g, eta %s)", c.Round, short(b.info.Agent), c.Price, reply, bid.Price, bid.ETA))
	if reply == "revised" && r.need.Budget > 0 && bid.Price > r.need.Budget {
		r.setStatus(b, "over_budget", fmt.Sprintf("revised price %g over budget %g", bid.Price, r.need.Budget))
		r.mu.Lock()
		b.conn = nil
		r.mu.Unlock()
		r.reject(conn, fmt.Sprintf("revised price %g over budget %g", bid.Price, r.need.Budget))
		return reply, false
	}
	return reply, true
}

// dropBidder ends a bid that failed its counter round: its stream is
// reset and it is not ranked.
func (r *request) dropBidder(b *bidder, conn *frame.Conn, c Counter, status, note string) string {
	_ = conn.Reset()
	r.mu.Lock()
	b.conn = nil
	b.info.Status, b.info.Note = status, note
	reply := "failed"
	if status == "silent" {
		reply = "silent"
	}
	r.s.m.counters.WithLabelValues(reply).Inc()
	b.info.Rounds = append(b.info.Rounds, Round{Counter: c, Reply: reply, Bid: b.info.Bid, Note: note})
	r.mu.Unlock()
	r.hist.note(fmt.Sprintf("%s dropped: %s", short(b.info.Agent), note))
	return "silent"
}

// maxRemoteText bounds the text a peer's counter or answer puts in this
// node's history and audit log.
const maxRemoteText = 256

// clip cuts a peer's text to maxRemoteText bytes, on a rune boundary.
func clip(s string) string {
	if len(s) <= maxRemoteText {
		return s
	}
	cut := maxRemoteText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// checkTerms names what is wrong with a price and ETA, or "".
func checkTerms(price float64, eta time.Duration) string {
	switch {
	case price < 0 || math.IsNaN(price) || math.IsInf(price, 0):
		return fmt.Sprintf("price %g is not a number ≥ 0", price)
	case eta < 0:
		return fmt.Sprintf("eta %s is negative", eta)
	}
	return ""
}

// The strategy is the requester's code: a panic in it must not take the
// node down.
func safeCounterStrategy(cs CounterStrategy, b BidInfo, round int) (c Counter, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			log.Errorw("counter strategy panicked; bid taken as it stands", "panic", p)
			c, ok = Counter{}, false
		}
	}()
	return cs.Counter(b, round)
}

// answerCounter is the contractor's side of one counter round, on the
// stream it bid on: the Guard first, then the handler (if it takes
// counters), then a revised bid or a refusal. It returns false if the
// stream is done.
func (s *Service) answerCounter(ctx context.Context, c *contract, conn *frame.Conn, w wire, rounds int) bool {
	call := c.call
	counter := Counter{Price: w.Price, ETA: time.Duration(w.ETAMillis) * time.Millisecond, Terms: clip(w.Terms), Round: rounds, Bid: c.lastBid()}
	if rounds > s.cfg.MaxCounterRounds {
		// Our bound, not the requester's: past it the conversation ends.
		s.m.dropped.WithLabelValues("too_many_counters").Inc()
		c.hist.set(StateRejected, fmt.Sprintf("counter %d is past this node's limit of %d rounds", rounds, s.cfg.MaxCounterRounds))
		_ = conn.Reset()
		return false
	}
	ctx, span := s.span(ctx, spanCounter, trace.SpanKindServer, call.Task)
	defer span.End()
	ev := Event{Kind: "counter", Role: RoleContractor, Task: call.Task, Capability: call.Capability, Agent: c.agent.ID, Other: call.Requester,
		Peer: call.RequesterPeer, Price: counter.Price, Rationale: fmt.Sprintf("round %d: price %g, eta %s; %s", rounds, counter.Price, counter.ETA, counter.Terms)}
	if err := s.auditIn(ctx, ev); err != nil {
		_ = conn.Reset()
		return false
	}
	var bid Bid
	var err error
	if bad := checkTerms(counter.Price, counter.ETA); bad != "" {
		err = fmt.Errorf("%w: the counter's %s", ErrRefuseCounter, bad)
	} else {
		bid, err = s.counterHandler(ctx, c, counter)
	}
	if err == nil {
		if bad := checkTerms(bid.Price, bid.ETA); bad != "" {
			err = fmt.Errorf("handler's revision: %s", bad)
		}
	}
	if err != nil {
		reason := err.Error()
		c.hist.note(fmt.Sprintf("refused counter %d at %g: %s; bid stands at %g", rounds, counter.Price, reason, counter.Bid.Price))
		ev.Kind, ev.Price, ev.Rationale = "revision", counter.Bid.Price, fmt.Sprintf("round %d refused: %s", rounds, reason)
		_ = s.auditIn(ctx, ev)
		if err := conn.Send(msgRefuse, wireVersion, wire{Task: call.Task, Name: c.agent.Name, Reason: reason, Round: rounds}); err != nil {
			_ = conn.Reset()
			return false
		}
		return true
	}
	ev.Kind, ev.Price, ev.Rationale = "revision", bid.Price, fmt.Sprintf("round %d: price %g, eta %s; %s", rounds, bid.Price, bid.ETA, bid.Rationale)
	if err := s.auditIn(ctx, ev); err != nil {
		_ = conn.Reset()
		return false
	}
	c.setBid(bid)
	c.hist.note(fmt.Sprintf("answered counter %d at %g with price %g, eta %s", rounds, counter.Price, bid.Price, bid.ETA))
	w2 := bidWire(call.Task, bid)
	w2.Name, w2.Round = c.agent.Name, rounds
	if err := conn.Send(msgPropose, wireVersion, w2); err != nil {
		_ = conn.Reset()
		return false
	}
	return true
}

// counterHandler asks the Guard and then the agent's Counterer about a
// counter, within the call's (clamped) bid window.
func (s *Service) counterHandler(ctx context.Context, c *contract, counter Counter) (Bid, error) {
	cr, ok := c.con.h.(Counterer)
	if !ok {
		return Bid{}, fmt.Errorf("%w: %s does not take counter-offers", ErrRefuseCounter, c.agent.Name)
	}
	// The requester waits one bid window for the answer: a handler that
	// takes most of it is refused in time for the refusal to arrive, so
	// the bid stands rather than being dropped as silent.
	hctx, cancel := context.WithTimeout(ctx, c.call.BidWindow*2/3)
	defer cancel()
	if g := s.cfg.Guard; g != nil {
		release, err := g.Call(hctx, c.agent, c.call)
		if err != nil {
			return Bid{}, fmt.Errorf("%w: %v", ErrRefuseCounter, err)
		}
		defer release()
	}
	return safeCounter(hctx, cr, c.call, counter)
}

func safeCounter(ctx context.Context, cr Counterer, call Call, counter Counter) (b Bid, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("counter handler panicked: %v", p)
		}
	}()
	return cr.Counter(ctx, call, counter)
}

type counterJSON struct {
	Price float64         `json:"price"`
	ETA   intent.Duration `json:"eta"`
	Terms string          `json:"terms,omitempty"`
	Round int             `json:"round"`
	Bid   Bid             `json:"bid"`
}

// MarshalJSON implements json.Marshaler.
func (c Counter) MarshalJSON() ([]byte, error) {
	return json.Marshal(counterJSON{c.Price, intent.Duration(c.ETA), c.Terms, c.Round, c.Bid})
}

// UnmarshalJSON implements json.Unmarshaler.
func (c *Counter) UnmarshalJSON(data []byte) error {
	var j counterJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*c = Counter{j.Price, time.Duration(j.ETA), j.Terms, j.Round, j.Bid}
	return nil
}
