package node

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/negotiation/rpc"
)

// Ask sends input directly to agent to on node p, with no negotiation,
// signed by the hosted agent fromAgent ("" for the default), and returns
// the answer. Agents added with AddAgent answer asks with their Work.
// Errors wrap rpc.ErrUnknownAgent when p does not host to, and
// rpc.ErrRemote with the message of to's handler when it failed.
func (n *Node) Ask(ctx context.Context, p peer.ID, to identity.AgentID, capability string, input json.RawMessage, fromAgent string) (json.RawMessage, error) {
	s, err := n.rpcService()
	if err != nil {
		return nil, err
	}
	a, err := n.Agent(fromAgent)
	if err != nil {
		return nil, err
	}
	return s.Ask(ctx, a, p, to, capability, input)
}

// HandleAsk answers direct asks addressed to the hosted agent agentName
// with fn, in place of the agent's Work.
func (n *Node) HandleAsk(agentName string, fn rpc.Handler) error {
	if fn == nil {
		return fmt.Errorf("agent %q: nil ask handler", agentName)
	}
	s, err := n.rpcService()
	if err != nil {
		return err
	}
	a, err := n.Agent(agentName)
	if err != nil {
		return err
	}
	s.Handle(a, fn)
	return nil
}

// rpcService returns the node's rpc service once the node runs.
func (n *Node) rpcService() (*rpc.Service, error) {
	if _, err := n.running(); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rpc, nil
}

// askByWork answers a direct ask with a contractor's Work.
func askByWork(h negotiation.Handler) rpc.Handler {
	return func(ctx context.Context, req rpc.Request) (json.RawMessage, error) {
		return h.Work(ctx, negotiation.Task{
			Call:     negotiation.Call{Capability: req.Capability, Requester: req.From},
			Input:    req.Input,
			Progress: func(float64, string) {},
		})
	}
}
