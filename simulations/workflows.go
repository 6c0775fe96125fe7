package simulations

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/workflow"
)

// WorkflowStats are the workflow results.
type WorkflowStats struct {
	Submitted int `json:"submitted"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	// SuccessRatio is Completed over Submitted; every workflow's
	// capability has live contractors throughout (churn kills some, never
	// all).
	SuccessRatio float64 `json:"success_ratio"`
	// CycleMs is the completed workflows' cycle time, submission to end.
	CycleMs Latency `json:"cycle_ms"`
	// Failures counts failed workflows by reason (the first 20 reasons).
	Failures map[string]int `json:"failures,omitempty"`
}

// workflowSource is the scenario's workflow: an order checked, then
// priced and shipped in parallel, each step a negotiation with retries
// on another agent.
const workflowSource = `version: 1
name: sim-order
steps:
  check: {capability: ` + taskCapability + `, input: '{order: $input.order, step: "check"}', bid_window: %s, retry: {attempts: 3}}
  price: {capability: ` + taskCapability + `, needs: [check], input: '{order: $input.order, step: "price"}', bid_window: %s, retry: {attempts: 3}}
  ship:  {capability: ` + taskCapability + `, needs: [check], input: '{order: $input.order, step: "ship"}', bid_window: %s, retry: {attempts: 3}}
`

// engines are the workflow engines of the nodes that requested
// workflows, each with its store in a directory of the run.
type engines struct {
	dir string
	mu  sync.Mutex
	by  map[*node.Node]*workflow.Engine
}

func newEngines() (*engines, error) {
	dir, err := os.MkdirTemp("", "parley-sim-workflows-")
	if err != nil {
		return nil, fmt.Errorf("workflow stores: %w", err)
	}
	return &engines{dir: dir, by: map[*node.Node]*workflow.Engine{}}, nil
}

// of returns n's engine, opening it at its first workflow.
func (es *engines) of(n *node.Node) (*workflow.Engine, error) {
	es.mu.Lock()
	defer es.mu.Unlock()
	if e, ok := es.by[n]; ok {
		return e, nil
	}
	cfg := workflow.DefaultConfig()
	cfg.Path, cfg.Node = filepath.Join(es.dir, n.ID().String()+".db"), n
	e, err := workflow.Open(cfg)
	if err == nil {
		err = e.Start()
	}
	if err != nil {
		return nil, err
	}
	es.by[n] = e
	return e, nil
}

func (es *engines) close() error {
	es.mu.Lock()
	defer es.mu.Unlock()
	var errs []error
	for _, e := range es.by {
		errs = append(errs, e.Close())
	}
	return errors.Join(append(errs, os.RemoveAll(es.dir))...)
}

// runWorkflows submits the scenario's workflows from random live
// non-contractor nodes, one every Every, and waits for each to end.
func (r *runner) runWorkflows(ctx context.Context, es *engines) {
	var wg sync.WaitGroup
	defer wg.Wait()
	bw := r.sc.Tasks.BidWindow.String()
	src := []byte(fmt.Sprintf(workflowSource, bw, bw, bw))
	for k := range r.sc.Workflows.Count {
		if ctx.Err() != nil {
			return
		}
		_, n := r.pick()
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			reason := ""
			var run *workflow.Run
			e, err := es.of(n)
			if err == nil {
				run, err = e.Submit(ctx, "sim-order.yaml", src, []byte(fmt.Sprintf(`{"order":%d}`, k)))
			}
			if err == nil {
				run, err = e.Wait(ctx, run.ID)
			}
			switch {
			case err != nil:
				reason = err.Error()
			case run.State != workflow.StateCompleted:
				reason = fmt.Sprintf("%s: %s", run.State, run.Error)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			w := &r.flows
			w.Submitted++
			if reason == "" {
				w.Completed++
				r.flowLat = append(r.flowLat, time.Since(start))
				return
			}
			w.Failed++
			if w.Failures == nil {
				w.Failures = map[string]int{}
			}
			if len(w.Failures) < 20 {
				w.Failures[reason]++
			}
		}()
		r.step()
		sleep(ctx, r.sc.Workflows.Every)
	}
}
