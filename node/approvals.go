package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/parleynet/parley/identity"
)

// ErrUnknownApproval is returned for an approval ID that is not pending.
var ErrUnknownApproval = errors.New("no such pending approval")

// Approval is a negotiation step held for a human's decision.
type Approval struct {
	ID         string           `json:"id"`
	Rule       string           `json:"rule"`  // the policy rule that asked for it
	Stage      string           `json:"stage"` // award or commit
	Task       string           `json:"task"`
	Capability string           `json:"capability"`
	Agent      identity.AgentID `json:"agent"`           // this node's agent
	Other      identity.AgentID `json:"other,omitempty"` // the agent on the other side
	Price      float64          `json:"price"`
	Created    time.Time        `json:"created"`
	// Deadline is when no answer becomes a denial.
	Deadline time.Time `json:"deadline"`
}

// approvals holds the pending approvals; each waits on its channel.
type approvals struct {
	mu      sync.Mutex
	pending map[string]*pendingApproval
}

type pendingApproval struct {
	Approval
	decided chan decision
}

type decision struct {
	approve bool
	by      string
}

// Approvals lists the approvals waiting for a decision, oldest first.
func (n *Node) Approvals() []Approval {
	n.appr.mu.Lock()
	defer n.appr.mu.Unlock()
	out := make([]Approval, 0, len(n.appr.pending))
	for _, p := range n.appr.pending {
		out = append(out, p.Approval)
	}
	slices.SortFunc(out, func(a, b Approval) int { return a.Created.Compare(b.Created) })
	return out
}

// Decide approves or denies a pending approval; by names who decided, for
// the audit log.
func (n *Node) Decide(id string, approve bool, by string) error {
	n.appr.mu.Lock()
	p, ok := n.appr.pending[id]
	if ok {
		delete(n.appr.pending, id)
	}
	n.appr.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownApproval, id)
	}
	p.decided <- decision{approve: approve, by: by}
	return nil
}

// awaitApproval holds a step until a human decides or ctx ends; no answer
// by then is a denial.
func (n *Node) awaitApproval(ctx context.Context, a Approval) error {
	a.ID, a.Created = identity.NewID()[:12], time.Now()
	if d, ok := ctx.Deadline(); ok {
		a.Deadline = d
	}
	p := &pendingApproval{Approval: a, decided: make(chan decision, 1)}
	n.appr.mu.Lock()
	if n.appr.pending == nil {
		n.appr.pending = map[string]*pendingApproval{}
	}
	n.appr.pending[a.ID] = p
	n.appr.mu.Unlock()
	log.Warnw("negotiation held for approval", "approval", a.ID, "rule", a.Rule, "stage", a.Stage, "task", a.Task, "price", a.Price,
		"hint", "parley approvals approve "+a.ID+" | parley approvals deny "+a.ID)
	n.record("approval.requested", a.Task, string(a.Agent), a.Rule, a)
	select {
	case d := <-p.decided:
		if d.approve {
			n.record("approval.granted", a.Task, string(a.Agent), "approved by "+d.by, a)
			return nil
		}
		n.record("approval.denied", a.Task, string(a.Agent), "denied by "+d.by, a)
		return fmt.Errorf("%w: %s denied by %s", errDeniedByHuman, a.Rule, d.by)
	case <-ctx.Done():
		n.appr.mu.Lock()
		delete(n.appr.pending, a.ID)
		n.appr.mu.Unlock()
		n.record("approval.denied", a.Task, string(a.Agent), "no answer before the deadline", a)
		return fmt.Errorf("%w: %s: no answer before the deadline", errDeniedByHuman, a.Rule)
	}
}

var errDeniedByHuman = errors.New("approval denied")
