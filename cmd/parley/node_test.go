package main

import (
	"os/exec"
	"testing"
)

// TestNodeAgentWinsFromAnotherNode runs examples/node/agent.mjs (Node.js,
// no npm packages) as two external agents of one daemon and has another
// daemon's parley request win each, before and after their daemon restarts
// under them (see agentsWinAcrossRestart).
func TestNodeAgentWinsFromAnotherNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the JavaScript agent cannot run")
	}
	agentsWinAcrossRestart(t, startMesh(t), testEnv(), []string{node, "../../examples/node/agent.mjs"}, "js", "node")
}

// TestNodeAgentProblemsAreOneLine runs examples/node/agent.mjs where it
// cannot work (see problemsAreOneLine).
func TestNodeAgentProblemsAreOneLine(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the JavaScript agent cannot run")
	}
	problemsAreOneLine(t, testEnv(), []string{node, "../../examples/node/agent.mjs"}, "agent.mjs")
}
