// Package workflow owns multi-step work that a node runs for its own
// agents, with no coordinator: the workflow file (YAML, `version: 1`),
// its strict parser with file:line errors, the steps' dependency graph,
// their jq expressions (github.com/itchyny/gojq), the engine that runs
// every step as a full negotiation through the node (retries, deadlines,
// budgets, approvals, conditions, compensations in reverse order), and the
// durable store (bbolt, one file in the home) that lets a workflow resume
// after a crash without re-running a step that completed.
//
// It does not own negotiation, admission or policy: a step is a
// node.Request like any other, so it passes the same admission layer and
// is audited the same way; the engine adds an audit record for each of its
// own decisions. The shared context is reached through the SharedContext
// interface declared here, so the engine does not depend on its
// implementation.
//
// A file:
//
//	version: 1
//	name: order
//	input:
//	  required: [sku, qty]
//	steps:
//	  forecast:
//	    capability: forecast
//	    input: '{sku: $input.sku}'
//	  stock:
//	    capability: inventory
//	    needs: [forecast]
//	    input: '{sku: $input.sku, units: $steps.forecast.output.units}'
//	    retry: {attempts: 3, backoff: 500ms}
//	    compensate:
//	      capability: inventory.release
//	      input: '{reservation: $steps.stock.output.id}'
//	success: '$steps.stock.output.reserved == true'
//	output: '$steps.stock.output'
package workflow
