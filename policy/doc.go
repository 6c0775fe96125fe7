// Package policy owns a node's guardrails: which capabilities its local
// agents may offer and request, which peers and remote agents it deals
// with, how many intents a remote agent may send it, what its agents may
// spend, how many tasks it works on at once, and which decisions wait for
// a human's approval. It parses and validates the policy file (Load, Parse)
// and answers questions about it (Engine), each answer a Decision with a
// short human rationale.
//
// It does not own the enforcement points (package node and package
// negotiation ask the Engine at publish, receive, bid, award and commit),
// the human approval queue, or the audit log that records decisions.
//
// # File format
//
// The policy file is YAML and strict: unknown keys, keys given twice, values
// of the wrong type and bad values are errors that name the file and line
// ("policy.yaml:12: peers.deny: bad peer ID ..."). Every section is
// optional and an empty file allows everything. A key with no value is an
// error (write [] for an empty list), except that a section with no value
// is the same as an omitted section.
//
//	agents:                  # per local agent name; "*" is the default
//	  "*":
//	    offer: [weather]     # capabilities it may bid on; omitted = any; [] = none
//	  default:
//	    offer: [weather, pricing]
//	    request: [shipping]  # capabilities it may request; omitted = any
//	peers:
//	  allow: [12D3KooW...]   # if non-empty, only these peers
//	  deny: [12D3KooW...]
//	remote_agents:
//	  allow: [did:key:z6Mk...]
//	  deny: [did:key:z6Mk...]
//	rate_limits:
//	  intents_per_origin: {per_second: 10, burst: 20}
//	budgets:
//	  max_price_per_task: 100
//	  max_spend_per_hour: 1000
//	max_concurrent_tasks: 8
//	approvals:
//	  - name: big-payments
//	    stage: award         # award (requester, before accept) or commit (contractor, before commit)
//	    capability: payments # optional
//	    min_price: 50        # optional
//
// Semantics, section by section:
//
//   - agents: a listed agent's offer or request list applies to it; a list
//     it omits falls back to the same list of "*", and one that "*" omits
//     too allows any capability. So "*" can restrict every agent and a
//     named entry loosens or tightens one of them without reopening the
//     other list.
//   - peers and remote_agents: deny wins; a non-empty allow list admits
//     only its members. An entry in both allow and deny is an error.
//   - rate_limits.intents_per_origin: a token bucket per remote AgentID
//     (the signer of a received intent) refilling at per_second (> 0) and
//     holding burst tokens (default: per_second rounded up, at least 1).
//     The Engine keeps at most 10,000 buckets and forgets one idle for 10
//     minutes (by then it is full again at any useful rate).
//   - budgets: limits of a given value hold even when that value is 0
//     (max_price_per_task: 0 allows free tasks only). max_spend_per_hour
//     caps the sum of the prices this node's agents award in any sliding
//     hour, counted per node (all local agents together), not per agent: a
//     node is one budget holder, and per-agent caps could be sidestepped by
//     adding agents.
//   - max_concurrent_tasks: tasks this node's agents work on at once as
//     contractors; 0 means none.
//   - approvals: a negotiation matching any rule (same stage, the rule's
//     capability if it names one, a price at or above its min_price if it
//     gives one) is held for a human. Rule names are unique.
package policy
