package admission

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation/rpc"
	"github.com/parleynet/parley/policy"
)

// RPC returns the layer as the rpc service's Gate.
func (l *Layer) RPC() rpc.Gate { return rpcGate{l} }

type rpcGate struct{ l *Layer }

// Ask runs before a direct ask reaches an agent's handler. An ask is work
// done with no negotiation, so it passes what a negotiation would: the
// peer and agent lists, the agent's offer list, a commit-stage approval
// rule, and a task slot (max_concurrent_tasks) — plus the node's own bound
// on asks being answered, in all and per asking node.
func (g rpcGate) Ask(ctx context.Context, a *identity.Agent, req rpc.Request) (func(), error) {
	l := g.l
	r := refusal{entry: EntryRPC, agent: string(a.ID), peer: req.Peer, detail: map[string]any{"capability": req.Capability, "asker": req.From}}
	for _, d := range []policy.Decision{l.pol.Peer(req.Peer), l.pol.RemoteAgent(req.From), l.pol.Offer(a.Name, req.Capability)} {
		if err := l.decided(d, r); err != nil {
			return nil, err
		}
	}
	if rule, ok := l.pol.NeedsApproval(policy.StageCommit, req.Capability, 0); ok {
		if err := l.awaitApproval(ctx, EntryRPC, Approval{Rule: rule, Stage: policy.StageCommit, Capability: req.Capability,
			Agent: a.ID, Other: req.From, Peer: req.Peer}); err != nil {
			return nil, err
		}
	}
	freeAsk, full := l.slots.acquire(slot{allKey("ask"), l.lim.Asks}, slot{askOriginKey(req.Peer), l.lim.AsksPerOrigin})
	if full != nil {
		r.rule = "limits.asks"
		r.rationale = fmt.Sprintf("%d asks already being answered (%s)", full.limit, slotName(full.key))
		return nil, l.deny(r)
	}
	d, freeTask := l.pol.StartTask()
	if err := l.decided(d, r); err != nil {
		freeAsk()
		return nil, err
	}
	if l.record != nil {
		_ = l.record("ask", "", string(a.ID), req.Peer, fmt.Sprintf("ask from %s for %q admitted", req.From, req.Capability),
			map[string]any{"capability": req.Capability, "asker": req.From})
	}
	return func() { freeTask(); freeAsk() }, nil
}

// AskStream is asked when peer p opens a direct-ask stream, before
// anything on it is read or verified.
func (g rpcGate) AskStream(p peer.ID) error {
	_, err := g.l.rated(EntryRPC, g.l.askers, g.l.newcomers.askers, p, "limits.asks_per_peer", "opened asks")
	return err
}

// Card is asked before this node serves its agents' cards to peer p.
func (l *Layer) Card(p peer.ID) error {
	return l.decided(l.pol.Peer(p), refusal{entry: EntryCard, peer: p})
}
