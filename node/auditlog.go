package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/negotiation"
)

// What a node does when its audit log is broken (Config.AuditFailure).
const (
	// AuditStop refuses every step that must be audited: no intent is
	// published or delivered, no negotiation step taken, until the log
	// works again (a restart with a healthy log).
	AuditStop = "stop"
	// AuditContinue keeps working unaudited, with an error in the log
	// every few seconds and parley_audit_broken at 1.
	AuditContinue = "continue"
)

// record appends to the audit log, if the node keeps one; it returns once
// the record is on disk.
func (n *Node) record(kind, task, agent, rationale string, detail any) error {
	return n.recordPeer(kind, task, agent, "", rationale, detail)
}

func (n *Node) recordPeer(kind, task, agent string, p peer.ID, rationale string, detail any) error {
	return n.audit(context.Background(), false, kind, task, agent, p, rationale, detail)
}

// recordQueued records what acknowledges nothing (a received intent, a
// ban, a call about to be published) without waiting for the disk: it
// goes with the next commit group. It waits only when the log's queue is
// full, and no longer than the node runs.
func (n *Node) recordQueued(kind, task, agent string, p peer.ID, rationale string, detail any) error {
	return n.audit(n.ctx, true, kind, task, agent, p, rationale, detail)
}

func (n *Node) audit(ctx context.Context, queued bool, kind, task, agent string, p peer.ID, rationale string, detail any) error {
	l := n.cfg.AuditLog
	if l == nil {
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
	var err error
	if queued {
		err = l.Add(ctx, r)
	} else {
		_, err = l.Append(r)
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, audit.ErrBroken) && n.cfg.AuditFailure == AuditContinue {
		n.auditBroken.warn(err)
		return nil
	}
	log.Errorw("audit log append failed; the step is not taken", "kind", kind, "task", task, "err", err)
	return fmt.Errorf("audit %s: %w", kind, err)
}

// brokenWarning says, at most every few seconds, that the node works on
// without its audit log.
type brokenWarning struct{ last atomic.Int64 }

func (b *brokenWarning) warn(err error) {
	now := time.Now().UnixNano()
	if last := b.last.Load(); now-last > int64(5*time.Second) && b.last.CompareAndSwap(last, now) {
		log.Errorw("AUDIT LOG BROKEN: the node goes on unaudited (audit_failure: continue)", "err", err)
	}
}

// auditEvent records a negotiation step before it is acknowledged, and
// logs it (at debug) with the fields that join it to its trace.
func (n *Node) auditEvent(e negotiation.Event) error {
	if debugging() {
		log.Debugw("negotiation "+e.Kind, e.LogFields()...)
	}
	if e.Kind == "commit" && e.Peer != "" {
		// The peer's node and this one committed to a task: no
		// newcomer any more, before the work's context streams.
		n.adm.Vouch(e.Peer)
	}
	if e.Queued {
		return n.recordQueued(e.Kind, e.Task, string(e.Agent), e.Peer, e.Rationale, e)
	}
	return n.recordPeer(e.Kind, e.Task, string(e.Agent), e.Peer, e.Rationale, e)
}
