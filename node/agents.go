package node

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/parleynet/parley/discovery"
	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
)

// AgentCard describes an agent to add to a running node.
type AgentCard struct {
	// Name is the agent's local name. If the node already hosts an agent
	// of that name (from its config), that agent and its key are used.
	Name string
	// Capabilities the agent offers; the node subscribes to their topics
	// and asks the handler about every call for proposals on them.
	Capabilities []string
	// Key is the agent's key for a new agent; nil generates one.
	Key crypto.PrivKey
}

// AddAgent makes a hosted agent a contractor: it bids on calls for the
// card's capabilities through h and does the work it wins. The node must
// be started.
func (n *Node) AddAgent(card AgentCard, h negotiation.Handler) (*identity.Agent, error) {
	if _, err := n.running(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("agent %q: nil handler", card.Name)
	}
	for _, c := range card.Capabilities {
		if err := intent.ValidCapability(c); err != nil {
			return nil, fmt.Errorf("agent %q: %w", card.Name, err)
		}
	}
	a, err := n.hostAgent(card)
	if err != nil {
		return nil, err
	}
	if err := n.neg.AddContractor(a, card.Capabilities, h); err != nil {
		return nil, err
	}
	n.rpc.Handle(a, askByWork(h))
	caps := make([]discovery.Capability, 0, len(card.Capabilities))
	for _, c := range card.Capabilities {
		if err := n.watchCalls(c); err != nil {
			return nil, err
		}
		caps = append(caps, discovery.Capability{Name: c})
	}
	if err := n.disc.Offer(a, caps); err != nil {
		return nil, fmt.Errorf("agent %q: offer card: %w", card.Name, err)
	}
	return a, nil
}

// FindAgents returns the verified cards of agents in the mesh that offer
// capability, found through the DHT's capability rendezvous and fetched
// from their nodes, plus this node's own.
func (n *Node) FindAgents(ctx context.Context, capability string) ([]*discovery.SignedCard, error) {
	if _, err := n.running(); err != nil {
		return nil, err
	}
	if err := intent.ValidCapability(capability); err != nil {
		return nil, err
	}
	return n.disc.FindAgents(ctx, capability)
}

// Discovery returns the node's discovery service, or nil before Start.
func (n *Node) Discovery() *discovery.Service {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.disc
}

// hostAgent returns the hosted agent named by card, creating it if new.
func (n *Node) hostAgent(card AgentCard) (*identity.Agent, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if a, ok := n.agents[card.Name]; ok {
		return a, nil
	}
	key := card.Key
	if key == nil {
		var err error
		if key, err = identity.GenerateKey(); err != nil {
			return nil, err
		}
	}
	a, err := identity.NewAgent(card.Name, key)
	if err != nil {
		return nil, err
	}
	n.agents[a.Name] = a
	n.agentList = append(n.agentList, a)
	return a, nil
}

// watchCalls subscribes once to a capability's topic and hands every call
// for proposals on it to the negotiation service.
func (n *Node) watchCalls(capability string) error {
	n.mu.Lock()
	if n.watching[capability] {
		n.mu.Unlock()
		return nil
	}
	n.watching[capability] = true
	n.mu.Unlock()
	sub, err := n.Subscribe(n.ctx, capability)
	if err != nil {
		n.mu.Lock()
		delete(n.watching, capability)
		n.mu.Unlock()
		return err
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer sub.Close()
		for {
			in, err := sub.Next(n.ctx)
			if err != nil {
				return
			}
			if in.Kind == intent.KindTask {
				n.neg.HandleCall(in)
			}
		}
	}()
	return nil
}

// Request runs a whole negotiation as a hosted agent: it calls for
// proposals, awards, falls over to the next best bid or calls again when a
// contractor fails, and returns the outcome. The error wraps
// negotiation.ErrTaskFailed or ErrCanceled when the task did not complete;
// the outcome is returned either way.
func (n *Node) Request(ctx context.Context, need negotiation.Need, opts ...negotiation.RequestOption) (*negotiation.Outcome, error) {
	if _, err := n.running(); err != nil {
		return nil, err
	}
	var o negotiation.RequestOptions
	for _, opt := range opts {
		opt(&o)
	}
	a, err := n.Agent(o.Agent)
	if err != nil {
		return nil, err
	}
	n.reachProviders(ctx, need.Capability)
	return n.neg.Request(ctx, a, need, opts...)
}

// reachProviders connects to agents offering capability, found through
// the DHT, when no peer of this node is on its topic: GossipSub carries a
// topic only among subscribers, so a call from a node none of whose
// neighbours offers the capability would reach nobody.
func (n *Node) reachProviders(ctx context.Context, capability string) {
	if len(n.TopicPeers(capability)) > 0 {
		return
	}
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cards, err := n.disc.FindAgents(fctx, capability)
	if err != nil {
		return
	}
	h := n.Host()
	for _, c := range cards {
		if c.Peer == n.ID() {
			continue
		}
		ai := peer.AddrInfo{ID: c.Peer}
		for _, a := range c.Addrs {
			m, err := ma.NewMultiaddr(a)
			if err != nil || !n.cfg.DialPrivateAddrs && (manet.IsPrivateAddr(m) || manet.IsIPLoopback(m) || manet.IsIPUnspecified(m)) {
				continue
			}
			ai.Addrs = append(ai.Addrs, m)
		}
		if err := h.Connect(fctx, ai); err != nil {
			log.Debugw("could not reach a provider", "capability", capability, "peer", c.Peer, "err", err)
		}
	}
}

// Tasks lists this node's tasks, on both sides, newest first.
func (n *Node) Tasks() []negotiation.TaskInfo {
	if _, err := n.running(); err != nil {
		return nil
	}
	return n.neg.Tasks()
}

// Task returns one task by ID, or an error wrapping
// negotiation.ErrUnknownTask.
func (n *Node) Task(id string) (negotiation.TaskInfo, error) {
	if _, err := n.running(); err != nil {
		return negotiation.TaskInfo{}, err
	}
	return n.neg.Task(id)
}

// CancelTask cancels a task this node requested or works on. It returns
// an error wrapping negotiation.ErrUnknownTask or ErrAlreadyEnded.
func (n *Node) CancelTask(id string) error {
	if _, err := n.running(); err != nil {
		return err
	}
	return n.neg.Cancel(id)
}

// NegotiationDropped returns how many negotiation frames were refused, by
// reason.
func (n *Node) NegotiationDropped() map[string]uint64 {
	if _, err := n.running(); err != nil {
		return nil
	}
	return n.neg.Dropped()
}
