// Package workflowtest gives tests a started workflow engine on a node,
// the way a daemon builds one: its store in the test's directory, its
// shared context on the node's, owned by the node's default agent.
package workflowtest

import (
	"path/filepath"
	"testing"

	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/workflow"
)

// Engine is a started engine for n, closed when the test ends.
func Engine(tb testing.TB, n *node.Node) *workflow.Engine {
	tb.Helper()
	owner, err := n.Agent("")
	if err != nil {
		tb.Fatal(err)
	}
	e, err := workflow.Open(workflow.Config{Path: filepath.Join(tb.TempDir(), "workflows.db"), Node: n,
		Context: workflow.NodeContext(n.SharedContext(), owner)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = e.Close() })
	if err := e.Start(); err != nil {
		tb.Fatal(err)
	}
	return e
}
