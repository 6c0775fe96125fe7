package node

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/parleynet/parley/workflow"
)

// RunWorkflow runs a workflow file on this node until it ends, its state
// kept in the bbolt file at store: each step a Request of this node's,
// the shared context this node's, owned by its default agent. A workflow
// that store holds as running from an earlier, interrupted run is
// resumed too (and run to its end by the engine while this call lasts).
// A long-lived process keeps one workflow.Engine instead, as the daemon
// does; this is the one-call form.
func (n *Node) RunWorkflow(ctx context.Context, store, file string, src []byte, input json.RawMessage) (*workflow.Run, error) {
	if _, err := n.running(); err != nil {
		return nil, err
	}
	owner, err := n.Agent("")
	if err != nil {
		return nil, err
	}
	cfg := workflow.DefaultConfig()
	cfg.Path, cfg.Node, cfg.Audit = store, n, n.Audit
	cfg.Context, cfg.ContextOwner = workflow.NodeContext(n.SharedContext(), owner), owner.Name
	cfg.Tracer = n.Tracing().Tracer("parley/workflow")
	e, err := workflow.Open(cfg)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	if err := e.Start(); err != nil {
		return nil, err
	}
	r, err := e.Submit(ctx, file, src, input)
	if err != nil {
		return nil, err
	}
	if r, err = e.Wait(ctx, r.ID); err != nil {
		return r, fmt.Errorf("workflow %s: %w", r.ID, err)
	}
	return r, nil
}
