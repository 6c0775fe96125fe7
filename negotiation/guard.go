package negotiation

import (
	"context"
	"errors"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
)

// ErrDenied is wrapped by a Guard's refusals.
var ErrDenied = errors.New("denied by policy")

// Guard is the admission layer as the negotiation sees it, consulted at
// every decision point; package admission implements it with the node's
// policy, quotas, budgets and human approvals. Every point where a remote
// peer's message could make a local agent's code run, or make this node
// hold something for it, asks the Guard first. A nil Guard allows
// everything. Methods may block (waiting for a human) within ctx; an
// error's text is the rationale given to the other side.
type Guard interface {
	// Request is asked before agent's call for proposals goes out.
	Request(ctx context.Context, agent *identity.Agent, need Need) error
	// Call is asked when a call for proposals reaches a local contractor
	// agent, before its Bid handler runs. On success release is called
	// once the handler has returned (it frees a concurrency slot).
	Call(ctx context.Context, agent *identity.Agent, call Call) (release func(), err error)
	// Proposal is asked when a bid reaches a local requester, before it
	// is taken into the bid window.
	Proposal(ctx context.Context, agent *identity.Agent, task string, bid BidInfo) error
	// Award is asked before the requester accepts a bid. On success the
	// Hold keeps the price against the node's budget: the requester
	// charges it when the result arrives and releases it when the award
	// comes to nothing.
	Award(ctx context.Context, agent *identity.Agent, task, capability string, bid BidInfo) (Hold, error)
	// Commit is asked before a local contractor commits to an award. On
	// success it returns a release func, called when the work ends (it
	// frees a concurrency slot, say).
	Commit(ctx context.Context, agent *identity.Agent, call Call, bid Bid) (release func(), err error)
}

// Hold is budget held for one award. A Hold may also have a
// HumanApproved() bool method: true when a person approved the award
// (parley_tasks_completed_total counts those apart).
type Hold interface {
	// Charge turns the hold into spend: the result arrived.
	Charge()
	// Release gives the budget back: declined, failed or canceled.
	Release()
}

// Event is one auditable step of a negotiation.
type Event struct {
	Kind       string // call, proposal, refusal, award, reject, commit, decline, task, ask, answer, result, failure, cancel, policy
	Role       Role
	Task       string
	Capability string
	Agent      identity.AgentID // this node's agent
	Other      identity.AgentID // the agent on the other side, if any
	Peer       peer.ID          // the other side's node, if any
	Price      float64
	Rationale  string
	// Trace is the task's trace ID (hex), when it has one: audit records
	// and log lines join its spans by it.
	Trace string `json:",omitempty"`
	// Queued marks a step that acknowledges nothing to the other side: a
	// call (its node records the intent durably before publishing it) or
	// a commit received. Its record may wait for the next commit group
	// rather than hold the step up.
	Queued bool `json:"-"`
}

// LogFields are e's fields for a structured log line: every line about a
// task carries its ID, trace ID, agent and peer.
func (e Event) LogFields() []any {
	f := []any{"kind", e.Kind, "task", e.Task, "role", e.Role, "agent", e.Agent}
	if e.Trace != "" {
		f = append(f, "trace_id", e.Trace)
	}
	if e.Peer != "" {
		f = append(f, "peer", e.Peer)
	}
	if e.Other != "" {
		f = append(f, "other", e.Other)
	}
	return f
}

// AuditFunc records an event durably before the step it records is
// acknowledged to the other side, or, if the event is Queued, in order
// with the records that follow it. An error stops that step.
type AuditFunc func(Event) error

func (s *Service) audit(e Event) error {
	if s.cfg.Audit == nil {
		return nil
	}
	if err := s.cfg.Audit(e); err != nil {
		log.Errorw("audit record failed; step not taken", append(e.LogFields(), "err", err)...)
		return err
	}
	return nil
}
