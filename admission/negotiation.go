package admission

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/policy"
)

// Negotiation returns the layer as the negotiation's Guard.
func (l *Layer) Negotiation() negotiation.Guard { return guard{l} }

type guard struct{ l *Layer }

// slot keys, typed so that an agent name and a PeerID never collide.
type (
	bidAgentKey  string
	bidOriginKey peer.ID
	askOriginKey peer.ID
	allKey       string
)

func (g guard) Request(_ context.Context, a *identity.Agent, need negotiation.Need) error {
	return g.l.decided(g.l.pol.Request(a.Name, need.Capability),
		refusal{entry: EntryNegotiate, agent: string(a.ID), stage: "request", detail: map[string]any{"capability": need.Capability}})
}

// Call runs before a local agent's bid handler: the policy first (may the
// agent offer this, does the node deal with the requester's node and
// agent), then a slot for the handler, per agent, per origin node and in
// all, so no requester, however many keys it has, can keep this node's
// agents busy bidding.
func (g guard) Call(_ context.Context, a *identity.Agent, call negotiation.Call) (func(), error) {
	l := g.l
	r := refusal{entry: EntryNegotiate, task: call.Task, agent: string(a.ID), peer: call.RequesterPeer,
		stage: "call", detail: map[string]any{"capability": call.Capability, "requester": call.Requester}}
	for _, d := range []policy.Decision{l.pol.Offer(a.Name, call.Capability), l.pol.Peer(call.RequesterPeer), l.pol.RemoteAgent(call.Requester)} {
		if err := l.decided(d, r); err != nil {
			return nil, err
		}
	}
	release, full := l.slots.acquire(
		slot{allKey("bid"), l.lim.BidHandlers},
		slot{bidAgentKey(a.Name), l.lim.BidHandlersPerAgent},
		slot{bidOriginKey(call.RequesterPeer), l.lim.BidHandlersPerOrigin},
	)
	if full != nil {
		r.rule = "limits.bid_handlers"
		r.rationale = fmt.Sprintf("%d bid handlers already running (%s)", full.limit, slotName(full.key))
		return nil, l.deny(r)
	}
	return release, nil
}

func (g guard) Proposal(_ context.Context, a *identity.Agent, task string, bid negotiation.BidInfo) error {
	l := g.l
	r := refusal{entry: EntryNegotiate, task: task, agent: string(a.ID), peer: bid.Peer, stage: "proposal", detail: map[string]any{"bidder": bid.Agent}}
	if err := l.decided(l.pol.Peer(bid.Peer), r); err != nil {
		return err
	}
	return l.decided(l.pol.RemoteAgent(bid.Agent), r)
}

// Award holds the price against the budget before the award goes out, so
// concurrent awards cannot together pass it, then asks a human if a rule
// says so.
func (g guard) Award(ctx context.Context, a *identity.Agent, task, capability string, bid negotiation.BidInfo) (negotiation.Hold, error) {
	l := g.l
	r := refusal{entry: EntryNegotiate, task: task, agent: string(a.ID), peer: bid.Peer,
		stage: "award", detail: map[string]any{"capability": capability, "bidder": bid.Agent, "price": bid.Price}}
	for _, d := range []policy.Decision{l.pol.Peer(bid.Peer), l.pol.RemoteAgent(bid.Agent)} {
		if err := l.decided(d, r); err != nil {
			return nil, err
		}
	}
	d, res := l.pol.Reserve(a.Name, capability, bid.Price, l.now())
	if err := l.decided(d, r); err != nil {
		return nil, err
	}
	h := hold{l: l, r: res}
	if rule, ok := l.pol.NeedsApproval(policy.StageAward, capability, bid.Price); ok {
		if err := l.awaitApproval(ctx, EntryNegotiate, Approval{Rule: rule, Stage: policy.StageAward, Task: task, Capability: capability,
			Agent: a.ID, Other: bid.Agent, Peer: bid.Peer, Price: bid.Price}); err != nil {
			h.Release()
			return nil, err
		}
		h.human = true
	}
	return h, nil
}

type hold struct {
	l     *Layer
	r     *policy.Reservation
	human bool // a person approved the award
}

// HumanApproved reports whether a person approved the award, for the
// negotiation's count of tasks completed with and without a human.
func (h hold) HumanApproved() bool { return h.human }

func (h hold) Charge()  { h.r.Charge(h.l.now()) }
func (h hold) Release() { h.r.Release() }

// Commit asks a human first if a rule says so, and only then takes a task
// slot (max_concurrent_tasks): a step waiting for a human holds no slot.
func (g guard) Commit(ctx context.Context, a *identity.Agent, call negotiation.Call, bid negotiation.Bid) (func(), error) {
	l := g.l
	if rule, ok := l.pol.NeedsApproval(policy.StageCommit, call.Capability, bid.Price); ok {
		if err := l.awaitApproval(ctx, EntryNegotiate, Approval{Rule: rule, Stage: policy.StageCommit, Task: call.Task, Capability: call.Capability,
			Agent: a.ID, Other: call.Requester, Peer: call.RequesterPeer, Price: bid.Price}); err != nil {
			return nil, err
		}
	}
	d, release := l.pol.StartTask()
	if err := l.decided(d, refusal{entry: EntryNegotiate, task: call.Task, agent: string(a.ID), peer: call.RequesterPeer,
		stage: "commit", detail: map[string]any{"capability": call.Capability}}); err != nil {
		return nil, err
	}
	return release, nil
}

func slotName(k any) string {
	switch k := k.(type) {
	case bidAgentKey:
		return "for agent " + string(k)
	case bidOriginKey:
		return "for calls from node " + peer.ID(k).String()
	case askOriginKey:
		return "for asks from node " + peer.ID(k).String()
	case allKey:
		return "on this node"
	}
	return fmt.Sprint(k)
}
