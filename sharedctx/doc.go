// Package sharedctx owns a workflow's shared context: a small key–value
// store that the workflow's participants — its requester and the agents
// that won its steps, while their step runs — read and write, and nobody
// else.
//
// Every entry is an identity envelope signed by the agent that wrote it,
// carrying the writer, the wall time it was written and a hybrid logical
// clock timestamp. Each key is a last-writer-wins register ordered by
// (HLC, writer, entry digest), a total order, so replicas that have seen the
// same entries hold the same state whatever order they saw them in.
//
// The requester's node holds a workflow's home replica (Service.Open). A
// Grant lets the committed winner of one task read and write the keys its
// step declared, while that task runs; the contractor's node reaches the
// home replica over /parley/context/1.0.0 (ProtocolID: the handler and
// Client in protocol.go) and keeps a replica of what it read, synced by
// pulling what the home applied since. Every stream passes the node's
// admission layer (Gate); entries with a bad signature, from a writer not
// granted, or over the node's limits are never applied.
//
// The package does not decide who won a task (negotiation does, read
// through TaskSource), audit (admission records refusals) or persist
// (Replica.Snapshot and Restore hand the workflow engine bytes to keep).
package sharedctx
