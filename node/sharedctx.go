package node

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/host"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/sharedctx"
)

// newSharedContext starts the workflows' shared contexts on h: the
// context protocol's handler, through the admission layer, with the
// negotiation telling who won which task.
func (n *Node) newSharedContext(h host.Host) *sharedctx.Service {
	return sharedctx.New(sharedctx.Config{
		Host:       h,
		Tasks:      n.neg,
		Gate:       n.adm.SharedContext(),
		Replay:     n.replay,
		Limits:     n.cfg.SharedContext,
		Registerer: n.metrics.registry,
	})
}

// SharedContext returns the node's shared contexts (the workflows' home
// replicas and their grants); nil before Start.
func (n *Node) SharedContext() *sharedctx.Service {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ctxs
}

// TaskContext returns the shared context client of a task one of this
// node's agents won: Get and Put reach the workflow's context on the
// requester's node, as the agent, within the keys the step declared. A
// Go handler calls it from its Work.
func (n *Node) TaskContext(task negotiation.Task) (*sharedctx.Client, error) {
	svc := n.SharedContext()
	if svc == nil {
		return nil, ErrNotStarted
	}
	a, err := n.contractorOf(task.Task)
	if err != nil {
		return nil, err
	}
	return svc.Client(a, task.RequesterPeer, task.Requester, task.Task), nil
}

// contractorOf returns the hosted agent working on task.
func (n *Node) contractorOf(task string) (*identity.Agent, error) {
	neg := n.negotiation()
	if neg == nil {
		return nil, ErrNotStarted
	}
	for _, ti := range neg.Tasks() {
		if ti.Task != task || ti.Role != negotiation.RoleContractor || ti.State != negotiation.StateWorking {
			continue
		}
		for _, a := range n.Agents() {
			if a.ID == ti.Agent {
				return a, nil
			}
		}
	}
	return nil, fmt.Errorf("task %q: no agent of this node works on it: %w", task, negotiation.ErrUnknownTask)
}

// stepGuard is the admission layer's negotiation Guard plus one step: an
// award of a Request whose context carries a sharedctx.Step grants that
// step's keys to the bidder awarded (the grant holds only while it is the
// task's committed, working winner), so a workflow engine need not know
// the task's ID before it runs.
type stepGuard struct {
	negotiation.Guard
	n *Node
}

// Award implements negotiation.Guard.
func (g stepGuard) Award(ctx context.Context, agent *identity.Agent, task, capability string, bid negotiation.BidInfo) (negotiation.Hold, error) {
	h, err := g.Guard.Award(ctx, agent, task, capability, bid)
	if err != nil {
		return h, err
	}
	st, ok := sharedctx.StepFrom(ctx)
	if !ok {
		return h, nil
	}
	svc := g.n.SharedContext()
	if svc == nil {
		h.Release()
		return nil, fmt.Errorf("%w: shared context not running", negotiation.ErrDenied)
	}
	if err := svc.Grant(st.Workflow, task, st.Reads, st.Writes); err != nil {
		h.Release()
		return nil, fmt.Errorf("%w: %v", negotiation.ErrDenied, err)
	}
	return h, nil
}
