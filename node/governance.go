package node

import (
	"fmt"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/policy"
)

// Policy returns the policy in force.
func (n *Node) Policy() *policy.Policy { return n.policy.Policy() }

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
