package daemon

import (
	"github.com/parleynet/parley/daemon/execagent"
	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/node"
)

// execAgentOn is the handler of a config.yaml agent with exec hosted by
// n: its commands get their tasks' shared context in and out.
func execAgentOn(n *node.Node, h *home.Home, ac home.AgentConfig) *execagent.Agent {
	a := execAgent(h, ac)
	a.Context = n.TaskContext
	return a
}
