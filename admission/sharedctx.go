package admission

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/policy"
	"github.com/parleynet/parley/sharedctx"
)

// EntryContext is /parley/context/1.0.0: a participant reading or
// writing a workflow's shared context.
const EntryContext Entry = "context"

// SharedContext returns the layer as the shared context service's Gate.
func (l *Layer) SharedContext() sharedctx.Gate { return ctxGate{l} }

type ctxGate struct{ l *Layer }

// ContextStream is asked when peer p opens a context stream, before
// anything on it is read: the policy's peer list, then the peer's rate.
func (g ctxGate) ContextStream(p peer.ID) error {
	l := g.l
	if err := l.decided(l.pol.Peer(p), refusal{entry: EntryContext, peer: p}); err != nil {
		return err
	}
	_, err := l.rated(EntryContext, l.contexts, l.newcomers.contexts, p, "limits.contexts_per_peer", "opened context streams")
	return err
}

// ContextAccess is asked before a read or write of a workflow's context
// is served: the policy's peer and agent lists, then what the context
// service found — only the committed winner of a granted task that is
// still working may read and write, and only its step's keys. A refusal
// is audited like any other; an admitted write is recorded too, so the
// log tells who changed a context.
func (g ctxGate) ContextAccess(_ context.Context, a sharedctx.Access) error {
	l := g.l
	r := refusal{entry: EntryContext, stage: string(a.Op), task: a.Task, peer: a.Peer,
		detail: map[string]any{"writer": a.Agent, "workflow": a.Workflow, "keys": a.Keys}}
	for _, d := range []policy.Decision{l.pol.Peer(a.Peer), l.pol.RemoteAgent(a.Agent)} {
		if err := l.decided(d, r); err != nil {
			return err
		}
	}
	if a.Rule != "" {
		r.rule, r.rationale = a.Rule, a.Reason
		return l.deny(r)
	}
	if a.Op == sharedctx.OpWrite && len(a.Keys) > 0 && l.record != nil {
		_ = l.record("context.write", a.Task, string(a.Agent), a.Peer,
			fmt.Sprintf("%s admitted to write %v of workflow %s's context", a.Agent, a.Keys, a.Workflow), map[string]any{"workflow": a.Workflow, "keys": a.Keys})
	}
	return nil
}
