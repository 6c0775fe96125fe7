package negotiation_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

// strategyFunc is a test's counter strategy: cheapest ranking, counters
// from f.
type strategyFunc struct {
	negotiation.Strategy
	f func(b negotiation.BidInfo, round int) (negotiation.Counter, bool)
}

func (s strategyFunc) Counter(b negotiation.BidInfo, round int) (negotiation.Counter, bool) {
	return s.f(b, round)
}

func counterEvery(fraction float64) negotiation.Strategy {
	return strategyFunc{negotiation.Cheapest(), func(b negotiation.BidInfo, _ int) (negotiation.Counter, bool) {
		return negotiation.Counter{Price: b.Price * fraction, ETA: b.ETA, Terms: "cheaper, please"}, true
	}}
}

func accept(_ context.Context, c negotiation.Counter) (negotiation.Bid, error) {
	return negotiation.Bid{Price: c.Price, ETA: c.ETA, Rationale: "deal"}, nil
}

func TestCounterOffers(t *testing.T) {
	const window = 300 * time.Millisecond
	cases := []struct {
		name     string
		agent    agentSpec
		strategy negotiation.Strategy
		budget   float64
		// want: the price the task settles at (0: it fails), the replies of
		// the bid's rounds, and how many counters the agent answered.
		wantPrice    float64
		wantReplies  []string
		wantCounters int32
		wantReason   string
		window       time.Duration // default 300ms
	}{
		{name: "contractor accepts: settles at the counter",
			agent:    agentSpec{price: 10, eta: time.Second, counter: accept},
			strategy: negotiation.CounterAt(0.8, nil), wantPrice: 8, wantReplies: []string{"accepted"}, wantCounters: 1},
		{name: "contractor without a Counterer refuses: settles at the bid",
			agent:    agentSpec{price: 10, eta: time.Second},
			strategy: negotiation.CounterAt(0.8, nil), wantPrice: 10, wantReplies: []string{"refused"}},
		{name: "contractor refuses with ErrRefuseCounter: settles at the bid",
			agent: agentSpec{price: 10, eta: time.Second, counter: func(context.Context, negotiation.Counter) (negotiation.Bid, error) {
				return negotiation.Bid{}, negotiation.ErrRefuseCounter
			}},
			strategy: negotiation.CounterAt(0.8, nil), wantPrice: 10, wantReplies: []string{"refused"}, wantCounters: 1},
		{name: "contractor whose handler never answers refuses in time: settles at the bid",
			agent: agentSpec{price: 10, eta: time.Second, counter: func(ctx context.Context, _ negotiation.Counter) (negotiation.Bid, error) {
				<-ctx.Done() // as an external agent that ignores counter events
				return negotiation.Bid{}, ctx.Err()
			}},
			strategy: negotiation.CounterAt(0.8, nil), wantPrice: 10, wantReplies: []string{"refused"}, wantCounters: 1, window: 600 * time.Millisecond},
		{name: "contractor revises forever: stops at the node's round limit",
			agent: agentSpec{price: 10, eta: time.Second, counter: func(_ context.Context, c negotiation.Counter) (negotiation.Bid, error) {
				return negotiation.Bid{Price: c.Bid.Price - 1, ETA: c.Bid.ETA}, nil
			}},
			strategy: counterEvery(0.5), wantPrice: 7, wantReplies: []string{"revised", "revised", "revised"}, wantCounters: 3},
		{name: "a counter over the budget is not made",
			agent: agentSpec{price: 8, eta: time.Second, counter: accept},
			strategy: strategyFunc{negotiation.Cheapest(), func(b negotiation.BidInfo, _ int) (negotiation.Counter, bool) {
				return negotiation.Counter{Price: b.Price * 1.5, ETA: b.ETA / 2, Terms: "twice as fast for 50% more"}, true
			}},
			budget: 10, wantPrice: 8},
		{name: "a revision over the budget is not awarded",
			agent: agentSpec{price: 8, eta: time.Second, counter: func(_ context.Context, c negotiation.Counter) (negotiation.Bid, error) {
				return negotiation.Bid{Price: 12, ETA: c.ETA}, nil
			}},
			strategy: negotiation.CounterAt(0.5, nil), budget: 10, wantReplies: []string{"revised"}, wantCounters: 1, wantReason: "over budget"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.agent.node, tc.agent.name = 1, "seller"
			m, agents := newNegMesh(t, 2, tc.agent)
			a := agents["seller"]
			if tc.window == 0 {
				tc.window = window
			}
			out, err := m.Nodes[0].Request(context.Background(), negotiation.Need{Capability: "echo", Input: []byte(`"x"`), Budget: tc.budget},
				negotiation.WithBidWindow(tc.window), negotiation.WithTimeout(10*time.Second), negotiation.WithStrategy(tc.strategy), negotiation.WithCalls(1))
			if tc.wantPrice == 0 {
				if err == nil || !strings.Contains(out.Reason, tc.wantReason) {
					t.Fatalf("Request: %v, reason %q; want a failure saying %q", err, out.Reason, tc.wantReason)
				}
			} else {
				if err != nil {
					t.Fatalf("Request: %v", err)
				}
				if got := winnerPrice(out); got != tc.wantPrice {
					t.Fatalf("settled at %g, want %g (bids %+v)", got, tc.wantPrice, out.Bids)
				}
				// The contractor works on the agreed terms.
				if w := a.worked.Load(); w == nil || w.Price != tc.wantPrice {
					t.Errorf("contractor worked on bid %+v, want price %g", w, tc.wantPrice)
				}
			}
			if len(out.Bids) != 1 {
				t.Fatalf("bids %+v, want one", out.Bids)
			}
			var replies []string
			for _, r := range out.Bids[0].Rounds {
				replies = append(replies, r.Reply)
			}
			if strings.Join(replies, ",") != strings.Join(tc.wantReplies, ",") {
				t.Errorf("rounds %+v, want replies %v", out.Bids[0].Rounds, tc.wantReplies)
			}
			// Counted in the requester's metrics, by answer.
			byReply := map[string]uint64{}
			for _, r := range tc.wantReplies {
				byReply[r]++
			}
			for _, r := range []string{"accepted", "revised", "refused", "silent", "failed"} {
				var n uint64
				if got := metricOf(t, m.Nodes[0].Registry(), "parley_negotiation_counters_total", map[string]string{"reply": r}); got != nil {
					n = uint64(got.Counter.GetValue())
				}
				if n != byReply[r] {
					t.Errorf("parley_negotiation_counters_total{reply=%q} = %d, want %d", r, n, byReply[r])
				}
			}
			if got := a.counters.Load(); got != tc.wantCounters {
				t.Errorf("the contractor answered %d counters, want %d", got, tc.wantCounters)
			}
			// The history shows every round.
			var notes int
			for _, h := range out.History {
				if strings.HasPrefix(h.Note, "counter ") {
					notes++
				}
			}
			if notes != len(tc.wantReplies) {
				t.Errorf("history has %d counter notes, want %d: %+v", notes, len(tc.wantReplies), out.History)
			}
		})
	}
}

// TestSlowCountererDoesNotStretchTheNegotiation: a bidder whose counter
// handler takes far longer than the bid window is dropped when the round's
// wait (the bid window) ends; the other bid wins, and the whole request
// takes about two windows, not the slow handler's time.
func TestSlowCountererDoesNotStretchTheNegotiation(t *testing.T) {
	const window = 300 * time.Millisecond
	m, agents := newNegMesh(t, 3,
		agentSpec{node: 1, name: "slow", price: 5, eta: time.Second, counter: func(context.Context, negotiation.Counter) (negotiation.Bid, error) {
			time.Sleep(4 * window) // ignores its context, as a bad handler may
			return negotiation.Bid{Price: 1}, nil
		}},
		agentSpec{node: 2, name: "steady", price: 6, eta: time.Second},
	)
	start := time.Now()
	out, err := request(t, m.Nodes[0], `"x"`, negotiation.WithBidWindow(window), negotiation.WithStrategy(negotiation.CounterAt(0.5, nil)))
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	if out.Winner != agents["steady"].id {
		t.Fatalf("winner %s, want steady (bids %+v)", out.WinnerName, out.Bids)
	}
	if st := bidStatus(out, agents["slow"].id); len(st) != 1 || st[0] != "silent" {
		t.Errorf("slow bidder's status %v, want silent", st)
	}
	if took > 2*window+time.Second {
		t.Errorf("request took %s, want about two bid windows (%s)", took, 2*window)
	}
}

// TestContractorBoundsCounterRounds: a requester allowed more rounds than
// the contractor's node takes gets its stream reset past the contractor's
// limit; the contractor's handler never runs more often than its own
// node allows.
func TestContractorBoundsCounterRounds(t *testing.T) {
	m, agents := newNegMeshOpts(t, 2, []nodetest.Option{nodetest.WithConfig(func(i int, c *node.Config) {
		c.Negotiation.MaxCounterRounds = []int{10, 2}[i]
	})}, agentSpec{node: 1, name: "haggler", price: 10, eta: time.Second, counter: func(_ context.Context, c negotiation.Counter) (negotiation.Bid, error) {
		return negotiation.Bid{Price: c.Bid.Price - 1, ETA: c.Bid.ETA}, nil
	}})
	out, err := request(t, m.Nodes[0], `"x"`, negotiation.WithStrategy(counterEvery(0.5)), negotiation.WithCalls(1))
	if !errors.Is(err, negotiation.ErrTaskFailed) {
		t.Fatalf("Request: %v, want the task failed (its only bid dropped)", err)
	}
	if got := agents["haggler"].counters.Load(); got != 2 {
		t.Errorf("the contractor's handler answered %d counters, want its node's limit of 2", got)
	}
	if n := len(out.Bids[0].Rounds); n != 3 {
		t.Errorf("rounds %+v, want two answered and the third failed", out.Bids[0].Rounds)
	}
}

func winnerPrice(out *negotiation.Outcome) float64 {
	for _, b := range out.Bids {
		if b.Agent == out.Winner {
			return b.Price
		}
	}
	return -1
}
