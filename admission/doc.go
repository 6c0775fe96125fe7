// Package admission owns parley's trust boundary: the one layer every way
// into a node passes before any agent code runs or the node holds anything
// for a remote peer. Gossip (relay and delivery of intents), negotiation
// (calls, proposals, awards, commits), direct asks and card fetches all
// ask a Layer; the local API, A2A, MCP, workflow and context entry points
// are to ask it too.
//
// A Layer decides with the node's policy (package policy: what agents may
// offer and request, peers and agents allowed, budgets, approval rules)
// and with node-side limits that hold whatever the policy says: rate
// limits per forwarding peer, per proven origin node and per agent;
// concurrency per local agent, per origin node and in all; a bounded
// queue of approvals per peer with a node-chosen longest wait; budgets
// reserved at award, released or charged later. It records its refusals,
// with their rationale, in the audit log — aggregated per entry, rule and
// peer, so a flood cannot flood the log.
//
// Identities are proven, never taken from a field a peer fills in: the
// forwarding peer and a stream's peer come from the libp2p connection, an
// intent's origin node from the delegation its node signed (package
// identity), an agent from its signature. Keys cost nothing, so every
// bound that matters is per node as well as per agent.
//
// The package does not verify messages (identity and intent do), run the
// protocols (negotiation, negotiation/rpc, discovery) or keep the policy
// file (policy).
package admission
