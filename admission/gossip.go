package admission

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/intent"
)

// Drop reasons of the gossip checks, as the node counts them.
const (
	ReasonRateForwarder = "rate_forwarder"
	ReasonRateNewcomers = "rate_newcomers"
	ReasonRateOrigin    = "rate_origin"
	ReasonRateAgent     = "rate_agent"
)

// Forwarded is asked for every intent a connected peer hands this node,
// before its signature is verified. It returns a drop reason, or "" to go
// on. A refused intent is ignored, not rejected, and costs the peer no
// score: an honest relay of a flood the mesh admitted elsewhere goes over
// its rate too, and an attacker must not be able to make honest nodes
// graylist each other. The drop itself is what bounds a peer: it costs
// this node no verification.
func (l *Layer) Forwarded(from peer.ID) string {
	newcomers, err := l.rated(EntryGossip, l.forwarders, l.newcomers.forwarders, from, "limits.intents_per_forwarder", "forwarded intents")
	switch {
	case err == nil:
		return ""
	case newcomers:
		return ReasonRateNewcomers
	}
	return ReasonRateForwarder
}

// OwnPass is asked for a peer over its forwarder rate before the node
// looks whether an intent it hands over is its own agents': that look
// costs a parse, so it is rated too (as IntentsPerOrigin), and a peer
// penalised for its own intents gets none.
func (l *Layer) OwnPass(from peer.ID) bool {
	now := l.now()
	return l.penalty.get(from, now) == 0 && l.ownPasses.take(from, now)
}

// Penalty is the score GossipSub should take off peer p for its own
// agents' intents refused by their node's or agent's rate lately (0 for a
// peer that kept to them). Only what a peer provably originated counts:
// intents it merely relays are other nodes' doing.
func (l *Layer) Penalty(p peer.ID) float64 { return l.penalty.get(p, l.now()) }

// Intent is asked for a verified intent, before it enters the replay
// window and is relayed: the rate limits of its proven origin node and of
// its agent (the node's and the policy's). It returns a drop reason, or ""
// to relay it. A refusal of an intent that from itself originated counts
// in from's Penalty.
func (l *Layer) Intent(in *intent.Intent, from peer.ID) string {
	reason := l.intentRate(in)
	if reason != "" && in.Origin == from {
		l.penalty.add(from, l.now())
	}
	return reason
}

func (l *Layer) intentRate(in *intent.Intent) string {
	now := l.now()
	if !l.origins.take(in.Origin, now) {
		_ = l.deny(refusal{entry: EntryGossip, rule: "limits.intents_per_origin", peer: in.Origin,
			rationale: fmt.Sprintf("agents of node %s published faster than %g/s (burst %d)", in.Origin, l.lim.IntentsPerOrigin.PerSecond, l.lim.IntentsPerOrigin.Burst)})
		return ReasonRateOrigin
	}
	if !l.agents.take(in.From, now) {
		_ = l.deny(refusal{entry: EntryGossip, rule: "limits.intents_per_agent", peer: in.Origin,
			rationale: fmt.Sprintf("agent %s published faster than %g/s (burst %d)", in.From, l.lim.IntentsPerAgent.PerSecond, l.lim.IntentsPerAgent.Burst)})
		return ReasonRateAgent
	}
	if d := l.pol.IntentRate(in.From, now); !d.Allow {
		_ = l.decided(d, refusal{entry: EntryGossip, peer: in.Origin})
		return ReasonRateAgent
	}
	return ""
}

// Relay is asked for another node's intent that passed every check, before
// it is handed on: false means deliver it to this node's agents but do
// not relay it, since the node already relays all its peers will take
// (Limits.IntentsRelayed). Under a flood that keeps the node's send queues
// short, so that its own intents and its agents' negotiations still get
// through them.
func (l *Layer) Relay() bool { return l.relayed.take(struct{}{}, l.now()) }

// Deliver is asked before a relayed intent is handed to this node's own
// agents and subscribers: the policy's lists of peers and agents. A refusal
// keeps it from local agents only; the mesh still gets it, since one
// node's local policy must not filter the mesh for everyone routed through
// it.
func (l *Layer) Deliver(in *intent.Intent, from peer.ID) error {
	d := l.pol.Peer(in.Origin)
	if d.Allow {
		d = l.pol.RemoteAgent(in.From)
	}
	if d.Allow {
		return nil // on every hop of every intent: no refusal built
	}
	return l.decided(d, refusal{entry: EntryGossip, peer: in.Origin, detail: map[string]any{"intent": in.ID, "capability": in.Capability, "via": from.String()}})
}
