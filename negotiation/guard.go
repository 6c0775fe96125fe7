package negotiation

import (
	"context"
	"errors"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
)

// ErrDenied is wrapped by a Guard's refusals.
var ErrDenied = errors.New("denied by policy")

// Guard is consulted at every decision point of a negotiation; the node
// implements it with its policy and human approvals. A nil Guard allows
// everything. Methods may block (waiting for a human) within ctx; an
// error's text is the rationale given to the other side.
type Guard interface {
	// Request is asked before agent's call for proposals goes out.
	Request(ctx context.Context, agent *identity.Agent, need Need) error
	// Bid is asked before a local agent proposes on a call.
	Bid(ctx context.Context, agent *identity.Agent, call Call, bid Bid) error
	// Award is asked before the requester accepts a bid.
	Award(ctx context.Context, agent *identity.Agent, task, capability string, bid BidInfo) error
	// Commit is asked before a local contractor commits to an award. On
	// success it returns a release func, called when the work ends (it
	// frees a concurrency slot, say).
	Commit(ctx context.Context, agent *identity.Agent, call Call, bid Bid) (release func(), err error)
}

// Event is one auditable step of a negotiation.
type Event struct {
	Kind       string // call, proposal, refusal, award, reject, commit, decline, task, result, failure, cancel, policy
	Role       Role
	Task       string
	Capability string
	Agent      identity.AgentID // this node's agent
	Other      identity.AgentID // the agent on the other side, if any
	Peer       peer.ID          // the other side's node, if any
	Price      float64
	Rationale  string
}

// AuditFunc records an event durably before the step it records is
// acknowledged to the other side. An error stops that step.
type AuditFunc func(Event) error

func (s *Service) audit(e Event) error {
	if s.cfg.Audit == nil {
		return nil
	}
	if err := s.cfg.Audit(e); err != nil {
		log.Errorw("audit record failed; step not taken", "kind", e.Kind, "task", e.Task, "err", err)
		return err
	}
	return nil
}
