// Package negotiation owns parley's contract net: the
// /parley/negotiate/1.0.0 protocol, the requester's and the contractor's
// state machines, their timeouts, ranking strategies and fallback.
//
// A requester publishes a call for proposals as a task intent (through the
// Publish function its node gives it); contractors that can help open a
// stream to the requester and propose; when the bid window closes the
// requester ranks the bids, accepts the best on its stream and, once the
// winner commits, rejects the rest. Only the committed winner receives the
// task input. The winner streams progress and a result or a failure; the
// requester acks. A winner that declines, fails, goes silent or vanishes is
// replaced by the next best bid (re-awarded on a new stream), then by a new
// call, within the retry budget.
//
// A requester whose Strategy is also a CounterStrategy may answer bids with
// counter-offers before ranking, within MaxCounterRounds; a contractor's
// handler answers through the optional Counterer (counter.go). The node's
// own contractors bid on its own calls over in-process streams carrying
// the same signed frames (local.go).
//
// Every frame is a signed identity envelope (see negotiation/frame). The
// package does not own gossip or the host; package node wires them in.
package negotiation
