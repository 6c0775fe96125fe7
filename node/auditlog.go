package node

import (
	"encoding/json"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/negotiation"
)

// record appends to the audit log, if the node keeps one; it returns once
// the record is on disk.
func (n *Node) record(kind, task, agent, rationale string, detail any) error {
	return n.recordPeer(kind, task, agent, "", rationale, detail)
}

func (n *Node) recordPeer(kind, task, agent string, p peer.ID, rationale string, detail any) error {
	if n.cfg.AuditLog == nil {
		return nil
	}
	r := audit.Record{Kind: kind, Task: task, Agent: agent, Rationale: rationale}
	if p != "" {
		r.Peer = p.String()
	}
	if detail != nil {
		if b, err := json.Marshal(detail); err == nil {
			r.Detail = b
		}
	}
	if _, err := n.cfg.AuditLog.Append(r); err != nil {
		log.Errorw("audit log append failed", "kind", kind, "task", task, "err", err)
		return fmt.Errorf("audit %s: %w", kind, err)
	}
	return nil
}

// auditEvent records a negotiation step before it is acknowledged.
func (n *Node) auditEvent(e negotiation.Event) error {
	return n.recordPeer(e.Kind, e.Task, string(e.Agent), e.Peer, e.Rationale, e)
}
