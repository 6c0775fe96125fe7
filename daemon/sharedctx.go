package daemon

import (
	"github.com/parleynet/parley/daemon/execagent"
	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/node"
)

// Agents hosted by the daemon get their tasks' shared context the same
// way: exec agents here, A2A-backed ones in hostA2A (interop/a2a's
// AgentConfig.Context).

// execAgentOn is the handler of a config.yaml agent with exec hosted by
// n: its commands get their tasks' shared context in and out.
func execAgentOn(n *node.Node, h *home.Home, ac home.AgentConfig) *execagent.Agent {
	a := execAgent(h, ac)
	a.Context = n.TaskContext
	return a
}
