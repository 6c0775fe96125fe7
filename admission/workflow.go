package admission

import (
	"context"

	"github.com/parleynet/parley/identity"
)

// EntryWorkflow is a workflow step of this node's own, held for a human.
const EntryWorkflow Entry = "workflow"

// StageWorkflow is the stage of a workflow step's approval: before its
// call for proposals goes out, at its budget.
const StageWorkflow = "workflow"

// ApproveStep holds a workflow step that asks for approval (approval:
// true in its file) in the same bounded queue as the policy's approval
// rules, until a human decides (parley approvals approve ID), ctx ends or
// the node's max_approval_wait passes; no answer is a denial.
func (l *Layer) ApproveStep(ctx context.Context, workflow, step, capability string, agent identity.AgentID, budget float64) error {
	return l.awaitApproval(ctx, EntryWorkflow, Approval{Rule: "workflow " + workflow + " step " + step, Stage: StageWorkflow,
		Task: workflow + "/" + step, Capability: capability, Agent: agent, Price: budget})
}
