package workflow_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
	"github.com/parleynet/parley/workflow"
)

// BenchmarkWorkflowLatency runs a 4-step workflow (a, then b and c at
// once, then d) on mocknet with 50 ms links, one contractor node per
// capability, and reports its median time against the sum of its
// critical path's negotiation floors: three negotiations (a, b or c, d),
// each a gossip hop plus five one-way legs, as BenchmarkNegotiationLatency
// counts them. The baseline in the same run is the median of three plain
// node.Request negotiations back to back on the same mesh.
func BenchmarkWorkflowLatency(b *testing.B) {
	const link = 50 * time.Millisecond
	m := nodetest.NewMesh(b, 5, nodetest.WithLatency(link))
	caps := []string{"a", "b", "c", "d"}
	for i, c := range caps {
		if _, err := m.Nodes[i+1].AddAgent(node.AgentCard{Name: "agent-" + c, Capabilities: []string{c}}, negotiation.HandlerFuncs{
			BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
				return negotiation.Bid{Price: 1, ETA: time.Millisecond}, nil
			},
			WorkFunc: func(_ context.Context, t negotiation.Task) (json.RawMessage, error) { return t.Input, nil },
		}); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range caps {
		for len(m.Nodes[0].TopicPeers(c)) < 1 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	e, err := workflow.Open(workflow.Config{Path: filepath.Join(b.TempDir(), "workflows.db"), Node: m.Nodes[0], KeepEnded: 1000})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	if err := e.Start(); err != nil {
		b.Fatal(err)
	}
	src := []byte(`version: 1
steps:
  a: {capability: a, bid_window: 5s, enough_bids: 1, input: '{n: $input.n}'}
  b: {capability: b, bid_window: 5s, enough_bids: 1, needs: [a], input: '$steps.a.output'}
  c: {capability: c, bid_window: 5s, enough_bids: 1, needs: [a], input: '$steps.a.output'}
  d: {capability: d, bid_window: 5s, enough_bids: 1, needs: [b, c], input: '{b: $steps.b.output, c: $steps.c.output}'}
`)
	ctx := context.Background()
	// Baseline: three plain negotiations, one after another.
	var base []time.Duration
	for range 5 {
		start := time.Now()
		for _, c := range []string{"a", "b", "d"} {
			if _, err := m.Nodes[0].Request(ctx, negotiation.Need{Capability: c, Input: json.RawMessage(`{"n":1}`)},
				negotiation.WithEnoughBids(1), negotiation.WithBidWindow(5*time.Second)); err != nil {
				b.Fatal(err)
			}
		}
		base = append(base, time.Since(start))
	}
	var lat []time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		r, err := e.Submit(ctx, "bench.yaml", src, json.RawMessage(`{"n":1}`))
		if err != nil {
			b.Fatal(err)
		}
		if r, err = e.Wait(ctx, r.ID); err != nil || r.State != workflow.StateCompleted {
			b.Fatalf("workflow %v: %v", r.State, err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	slices.Sort(base)
	floor := 3 * 6 * link
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(floor.Milliseconds()), "floor-ms")
	b.ReportMetric(float64(lat[len(lat)/2])/float64(floor), "x-floor")
	b.ReportMetric(float64(base[len(base)/2].Milliseconds()), "3-requests-ms")
}
