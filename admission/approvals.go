package admission

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
)

// ErrUnknownApproval is returned for an approval ID that is not pending.
var ErrUnknownApproval = errors.New("no such pending approval")

// errDeniedByHuman is wrapped by a step a human (or the clock) refused.
var errDeniedByHuman = errors.New("approval denied")

// Approval is a negotiation step held for a human's decision.
type Approval struct {
	ID         string           `json:"id"`
	Rule       string           `json:"rule"`  // the policy rule that asked for it
	Stage      string           `json:"stage"` // award or commit
	Task       string           `json:"task"`
	Capability string           `json:"capability"`
	Agent      identity.AgentID `json:"agent"`           // this node's agent
	Other      identity.AgentID `json:"other,omitempty"` // the agent on the other side
	Peer       peer.ID          `json:"peer,omitempty"`  // the node on the other side
	Price      float64          `json:"price"`
	Created    time.Time        `json:"created"`
	// Deadline is when no answer becomes a denial.
	Deadline time.Time `json:"deadline"`
}

// approvals holds the pending approvals; each waits on its channel.
type approvals struct {
	max, perPeer int
	wait         time.Duration

	mu      sync.Mutex
	pending map[string]*pendingApproval
	byPeer  map[peer.ID]int
}

type pendingApproval struct {
	Approval
	decided chan decision
}

type decision struct {
	approve bool
	by      string
}

func (a *approvals) init(l Limits) {
	a.max, a.perPeer, a.wait = l.PendingApprovals, l.PendingApprovalsPerPeer, l.MaxApprovalWait
	a.pending = map[string]*pendingApproval{}
	a.byPeer = map[peer.ID]int{}
}

// Approvals lists the approvals waiting for a decision, oldest first.
func (l *Layer) Approvals() []Approval {
	a := &l.appr
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Approval, 0, len(a.pending))
	for _, p := range a.pending {
		out = append(out, p.Approval)
	}
	slices.SortFunc(out, func(x, y Approval) int { return x.Created.Compare(y.Created) })
	return out
}

// Decide approves or denies a pending approval; by names who decided, for
// the audit log.
func (l *Layer) Decide(id string, approve bool, by string) error {
	p := l.appr.take(id)
	if p == nil {
		return fmt.Errorf("%w: %q", ErrUnknownApproval, id)
	}
	p.decided <- decision{approve: approve, by: by}
	return nil
}

func (a *approvals) take(id string) *pendingApproval {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.pending[id]
	if !ok {
		return nil
	}
	delete(a.pending, id)
	if a.byPeer[p.Peer]--; a.byPeer[p.Peer] <= 0 {
		delete(a.byPeer, p.Peer)
	}
	return p
}

// awaitApproval holds a step until a human decides, ctx ends or the
// node's longest wait passes; no answer by then is a denial. The queue is
// bounded in all and per peer: past either bound the step is refused at
// once, so strangers cannot fill it.
func (l *Layer) awaitApproval(ctx context.Context, entry Entry, ap Approval) error {
	a := &l.appr
	ctx, cancel := context.WithTimeout(ctx, a.wait)
	defer cancel()
	ap.ID, ap.Created = identity.NewID()[:12], l.now()
	if d, ok := ctx.Deadline(); ok {
		ap.Deadline = d
	}
	p := &pendingApproval{Approval: ap, decided: make(chan decision, 1)}
	a.mu.Lock()
	switch {
	case len(a.pending) >= a.max:
		a.mu.Unlock()
		return l.deny(refusal{entry: entry, rule: "limits.pending_approvals", task: ap.Task, agent: string(ap.Agent), peer: ap.Peer,
			rationale: fmt.Sprintf("%d steps already wait for approval (%s)", a.max, ap.Rule)})
	case a.byPeer[ap.Peer] >= a.perPeer:
		a.mu.Unlock()
		return l.deny(refusal{entry: entry, rule: "limits.pending_approvals_per_peer", task: ap.Task, agent: string(ap.Agent), peer: ap.Peer,
			rationale: fmt.Sprintf("%d steps with node %s already wait for approval (%s)", a.perPeer, ap.Peer, ap.Rule)})
	}
	a.pending[ap.ID] = p
	a.byPeer[ap.Peer]++
	a.mu.Unlock()

	log.Warnw("negotiation held for approval", "approval", ap.ID, "rule", ap.Rule, "stage", ap.Stage, "task", ap.Task, "price", ap.Price,
		"hint", "parley approvals approve "+ap.ID+" | parley approvals deny "+ap.ID)
	l.audit("approval.requested", ap, ap.Rule)
	var d decision
	select {
	case d = <-p.decided:
	case <-ctx.Done():
		if a.take(ap.ID) != nil {
			l.audit("approval.denied", ap, "no answer before the deadline")
			return fmt.Errorf("%w: %s: no answer before the deadline", errDeniedByHuman, ap.Rule)
		}
		d = <-p.decided // decided just as the wait ended
	}
	if d.approve {
		l.audit("approval.granted", ap, "approved by "+d.by)
		return nil
	}
	l.audit("approval.denied", ap, "denied by "+d.by)
	return fmt.Errorf("%w: %s denied by %s", errDeniedByHuman, ap.Rule, d.by)
}

func (l *Layer) audit(kind string, ap Approval, rationale string) {
	if l.record != nil {
		_ = l.record(kind, ap.Task, string(ap.Agent), ap.Peer, rationale, ap)
	}
}
