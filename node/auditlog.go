package node

import (
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/negotiation"
)

// record appends to the audit log, if the node keeps one. (Wired to
// package audit in the next step.)
func (n *Node) record(kind, task, agent, rationale string, detail any) error { return nil }

func (n *Node) recordPeer(kind, task, agent string, p peer.ID, rationale string, detail any) error {
	return nil
}

// auditEvent records a negotiation step before it is acknowledged.
func (n *Node) auditEvent(e negotiation.Event) error {
	return n.recordPeer(e.Kind, e.Task, string(e.Agent), e.Peer, e.Rationale, e)
}
