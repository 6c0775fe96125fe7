// Package a2a connects parley to the Agent2Agent protocol (A2A v1.0,
// through github.com/a2aproject/a2a-go/v2) in both directions.
//
// Gateway serves a node to A2A clients: an Agent Card at
// /.well-known/agent-card.json with a skill per exported capability, a
// card per hosted agent, and the JSON-RPC and REST bindings. A message
// naming a skill becomes node.Request — the same path as POST /v1/tasks,
// so admission, policy and the audit log decide and record it — and the
// negotiation's states and the winner's progress come back as A2A status
// updates, its result as an artifact (to a blocking SendMessage, which
// sees only the end, as one completed task: executor.go). A winner's
// question makes the task
// input-required until the client's next message on it answers
// (input.go). The bearer token, the bounds on bodies and tasks, and the
// audit record of every call are the gateway's.
//
// Agent is the other way: a negotiation.Handler backed by a remote A2A
// agent, so an existing A2A agent bids (at a configured price) and works
// in the mesh through a2a-go's client.
//
// When such an agent wins a workflow step with a shared context
// (AgentConfig.Context), the message it receives carries two metadata
// keys: "parley.context", an object of the keys its step may read (key →
// JSON value), and "parley.context_writes", the keys it may write (a
// trailing * is a prefix). It writes by putting a "parley.context" object
// (key → JSON value) in the metadata of its artifact, its reply message or
// its task; the writes are signed as the hosted agent and written on the
// requester's node before the result goes back, and one the context
// refuses (a key not granted, over its limits) fails the task with that
// error.
//
// It does not own the A2A protocol itself (a2a-go does), negotiation, or
// where its config comes from (daemon/home, daemon).
package a2a
