package main

import "testing"

// TestNodeAgentWinsFromAnotherNode runs examples/node/agent.mjs (Node.js,
// no npm packages) as two external agents of one daemon and has another
// daemon's parley request win each, before and after their daemon restarts
// under them (see agentsWinAcrossRestart).
func TestNodeAgentWinsFromAnotherNode(t *testing.T) {
	argv := exampleAgent(t, "node", "../../examples/node/agent.mjs")
	agentsWinAcrossRestart(t, startMesh(t), testEnv(), argv, "js", "node")
}

// TestNodeAgentProblemsAreOneLine runs examples/node/agent.mjs where it
// cannot work (see problemsAreOneLine).
func TestNodeAgentProblemsAreOneLine(t *testing.T) {
	problemsAreOneLine(t, testEnv(), exampleAgent(t, "node", "../../examples/node/agent.mjs"), "agent.mjs")
}
