package node

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/policy"
)

// ReloadPolicy replaces the node's policy (for SIGHUP). The caller has
// already validated it by loading it; rate limiter and budget state carry
// over. The change is audited.
func (n *Node) ReloadPolicy(p *policy.Policy, source string) {
	n.policy.Swap(p)
	log.Infow("policy reloaded", "source", source)
	_ = n.record("policy.reloaded", "", "", "policy reloaded from "+source, nil)
}

// Policy returns the policy in force.
func (n *Node) Policy() *policy.Policy { return n.policy.Policy() }

// guard is the node's negotiation.Guard: policy decisions, human approval
// where a rule asks for it, and an audit record of every refusal.
type guard struct{ n *Node }

func denied(d policy.Decision) error {
	return fmt.Errorf("%w: %s", negotiation.ErrDenied, d.Rationale)
}

func (g guard) Request(_ context.Context, a *identity.Agent, need negotiation.Need) error {
	if d := g.n.policy.Request(a.Name, need.Capability); !d.Allow {
		return denied(d)
	}
	return nil
}

func (g guard) Bid(_ context.Context, a *identity.Agent, call negotiation.Call, _ negotiation.Bid) error {
	e := g.n.policy
	for _, d := range []policy.Decision{e.Offer(a.Name, call.Capability), e.Peer(call.RequesterPeer), e.RemoteAgent(call.Requester)} {
		if !d.Allow {
			return denied(d)
		}
	}
	return nil
}

func (g guard) Award(ctx context.Context, a *identity.Agent, task, capability string, bid negotiation.BidInfo) error {
	e := g.n.policy
	now := time.Now()
	for _, d := range []policy.Decision{e.Peer(bid.Peer), e.RemoteAgent(bid.Agent), e.Award(a.Name, capability, bid.Price, now)} {
		if !d.Allow {
			return denied(d)
		}
	}
	if rule, ok := e.NeedsApproval("award", capability, bid.Price); ok {
		if err := g.n.awaitApproval(ctx, Approval{Rule: rule, Stage: "award", Task: task, Capability: capability,
			Agent: a.ID, Other: bid.Agent, Price: bid.Price}); err != nil {
			return err
		}
	}
	e.RecordSpend(a.Name, bid.Price, now)
	return nil
}

func (g guard) Commit(ctx context.Context, a *identity.Agent, call negotiation.Call, bid negotiation.Bid) (func(), error) {
	e := g.n.policy
	d, release := e.StartTask()
	if !d.Allow {
		return nil, denied(d)
	}
	if rule, ok := e.NeedsApproval("commit", call.Capability, bid.Price); ok {
		actx, cancel := context.WithDeadline(ctx, call.Deadline)
		defer cancel()
		if err := g.n.awaitApproval(actx, Approval{Rule: rule, Stage: "commit", Task: call.Task, Capability: call.Capability,
			Agent: a.ID, Other: call.Requester, Price: bid.Price}); err != nil {
			release()
			return nil, err
		}
	}
	return release, nil
}

// admitIntent applies the policy to a received intent: the forwarding
// peer, the origin agent and its rate. It returns a drop reason or "".
func (n *Node) admitIntent(in *intent.Intent, from peer.ID) (string, policy.Decision) {
	e := n.policy
	if d := e.Peer(from); !d.Allow {
		return "denied_peer", d
	}
	if d := e.RemoteAgent(in.From); !d.Allow {
		return "denied_agent", d
	}
	if d := e.Intent(in.From, from, time.Now()); !d.Allow {
		return "rate_limited", d
	}
	return "", policy.Decision{Allow: true}
}

// admitPublish applies the policy to a local agent's intent.
func (n *Node) admitPublish(a *identity.Agent, kind intent.Kind, capability string) error {
	var d policy.Decision
	switch kind {
	case intent.KindTask:
		d = n.policy.Request(a.Name, capability)
	case intent.KindOffer:
		d = n.policy.Offer(a.Name, capability)
	default:
		return nil
	}
	if !d.Allow {
		_ = n.record("policy", "", string(a.ID), "publish refused: "+d.Rationale, map[string]string{"capability": capability, "kind": string(kind)})
		return fmt.Errorf("%w: %s", negotiation.ErrDenied, d.Rationale)
	}
	return nil
}
