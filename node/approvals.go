package node

import "github.com/parleynet/parley/admission"

// Approval is a negotiation step held for a human's decision.
type Approval = admission.Approval

// ErrUnknownApproval is returned for an approval ID that is not pending.
var ErrUnknownApproval = admission.ErrUnknownApproval

// Approvals lists the approvals waiting for a decision, oldest first.
func (n *Node) Approvals() []Approval { return n.adm.Approvals() }

// Decide approves or denies a pending approval; by names who decided, for
// the audit log.
func (n *Node) Decide(id string, approve bool, by string) error { return n.adm.Decide(id, approve, by) }
