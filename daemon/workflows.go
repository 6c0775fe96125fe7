package daemon

import (
	"context"
	"path/filepath"

	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/workflow"
)

// WorkflowsFile is the workflow store in a home.
const WorkflowsFile = "workflows.db"

// openWorkflows opens the home's workflow store and starts its engine,
// which resumes the workflows a crash or a stop left running. Steps are
// requested as the default agent unless they name one; approval: true
// waits in the node's approval queue (parley approvals); each workflow's
// shared context is the node's, owned by the default agent.
func openWorkflows(h *home.Home, n *node.Node) (*workflow.Engine, error) {
	cfg := workflow.DefaultConfig()
	cfg.Path = filepath.Join(h.Dir, WorkflowsFile)
	cfg.Node = n
	cfg.Audit = n.Audit
	cfg.Tracer = n.Tracing().Tracer("parley/workflow")
	cfg.Registerer = n.Registry()
	owner, err := n.Agent("")
	if err != nil {
		return nil, err
	}
	// The default agent owns the workflows' shared contexts: steps that
	// read or write it must be requested as that agent.
	cfg.Context, cfg.ContextOwner = workflow.NodeContext(n.SharedContext(), owner), owner.Name
	cfg.Approve = func(ctx context.Context, a workflow.StepApproval) error {
		ag, err := n.Agent("")
		if err != nil {
			return err
		}
		return n.Admission().ApproveStep(ctx, a.Workflow, a.Step, a.Capability, ag.ID, a.Budget)
	}
	e, err := workflow.Open(cfg)
	if err != nil {
		return nil, err
	}
	if err := e.Start(); err != nil {
		_ = e.Close()
		return nil, err
	}
	return e, nil
}
