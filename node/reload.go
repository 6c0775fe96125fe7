package node

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/policy"
)

// What a running node's owner (the daemon) changes while it runs: agents
// taken away or added without a handler, the policy swapped as part of a
// reload, and its own decisions recorded in the node's audit log.

// ErrDefaultAgent is returned by RemoveAgent for the node's default agent,
// which acts whenever no agent is named and so cannot go away.
var ErrDefaultAgent = errors.New("the default agent cannot be removed")

// RemoveAgent stops hosting the named agent: it no longer bids, answers
// direct asks or serves its card, and cannot be named to publish or
// request. Tasks it already holds run on to their end. Its capability
// topics stay joined (other agents may offer them; a call nobody here
// offers is ignored).
func (n *Node) RemoveAgent(name string) error {
	if _, err := n.running(); err != nil {
		return err
	}
	n.mu.Lock()
	a, ok := n.agents[name]
	switch {
	case !ok:
		n.mu.Unlock()
		return fmt.Errorf("%w %q", ErrUnknownAgent, name)
	case a == n.agentList[0]:
		n.mu.Unlock()
		return fmt.Errorf("agent %q: %w", name, ErrDefaultAgent)
	}
	delete(n.agents, name)
	n.agentList = slices.DeleteFunc(n.agentList, func(x *identity.Agent) bool { return x == a })
	neg, rpcs, disc := n.neg, n.rpc, n.disc
	n.mu.Unlock()
	neg.RemoveContractor(a.ID)
	rpcs.Remove(a.ID)
	disc.Withdraw(a.ID)
	return nil
}

// HostAgent adds an agent that signs intents and requests as one of the
// node's but offers nothing (AddAgent adds one that bids). A name the node
// already hosts is an error.
func (n *Node) HostAgent(a *identity.Agent) error {
	if _, err := n.running(); err != nil {
		return err
	}
	if a == nil || a.Key == nil {
		return errors.New("host agent: no key")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.agents[a.Name]; ok {
		return fmt.Errorf("host agent %q: the node already hosts an agent of that name", a.Name)
	}
	n.agents[a.Name] = a
	n.agentList = append(n.agentList, a)
	return nil
}

// SwapPolicy replaces the policy in force with p (nil allows everything),
// keeping rate-limit, spend and reservation state, and records the change
// in the audit log, naming source. The caller has validated p by loading
// it. It logs nothing: the daemon reports a whole reload, policy and
// configuration, in one line.
func (n *Node) SwapPolicy(p *policy.Policy, source string) error {
	n.policy.Swap(p)
	rationale := "policy reloaded from " + source
	if p == nil {
		rationale = "policy removed: everything is allowed"
	}
	return n.record("policy.reloaded", "", "", rationale, nil)
}

// Audit appends a record of kind to the node's audit log, if it keeps
// one, and returns once it is on disk. It is how the code around the node
// (the daemon and its API) records its own decisions in the same
// hash-chained log; detail is stored as JSON.
func (n *Node) Audit(kind, rationale string, detail any) error {
	return n.record(kind, "", "", rationale, detail)
}

// MaxIntentTTL is the longest an intent this node publishes stays valid
// (Config.IntentTTL).
func (n *Node) MaxIntentTTL() time.Duration { return n.cfg.IntentTTL }

// Running returns nil between Start and Close, else an error wrapping
// ErrNotStarted or ErrClosed: the node's liveness, for health checks.
func (n *Node) Running() error {
	_, err := n.running()
	return err
}
