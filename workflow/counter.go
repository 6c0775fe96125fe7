package workflow

import (
	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation"
)

// rankAvoiding is the strategy of an attempt: base, with the agents that
// let the step down ranked last. When base counters (strategy:
// counter:FRACTION) the wrapper keeps its Counter method, or the
// negotiation would never see it and no counter-offer would be made.
func rankAvoiding(base negotiation.Strategy, bad []identity.AgentID) negotiation.Strategy {
	a := avoid{base, bad}
	if cs, ok := base.(negotiation.CounterStrategy); ok {
		return avoidCounter{a, cs}
	}
	return a
}

// avoidCounter is avoid for a strategy that makes counter-offers.
type avoidCounter struct {
	avoid
	cs negotiation.CounterStrategy
}

func (a avoidCounter) Counter(b negotiation.BidInfo, round int) (negotiation.Counter, bool) {
	return a.cs.Counter(b, round)
}
