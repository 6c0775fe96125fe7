package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/parleynet/parley/admission"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/negotiation/rpc"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
	"github.com/parleynet/parley/sharedctx"
)

// The two context benchmarks share a two-node mocknet mesh and a value
// of benchPayload's size, so one `go test -bench Context` run shows what a
// context write costs over a direct ask (rpc), the plainest signed
// round trip parley has: each op is one stream, one signed request and
// one signed answer. A write adds the entry's own signature, its
// verification, the grant check and the apply.

// BenchmarkContextWrite: a step's winner writes one key of the
// requester's context per op.
func BenchmarkContextWrite(b *testing.B) {
	// The benchmark writes faster than a peer may open context streams.
	m := nodetest.NewMesh(b, 2, nodetest.WithConfig(func(_ int, c *node.Config) {
		c.Limits.ContextsPerPeer = admission.Rate{PerSecond: -1}
	}))
	req, worker := m.Nodes[0], m.Nodes[1]
	owner, _ := req.Agent("")
	if _, err := req.SharedContext().Open("wf-bench", owner); err != nil {
		b.Fatal(err)
	}
	clients := make(chan *sharedctx.Client, 1)
	done := make(chan struct{})
	_, err := worker.AddAgent(node.AgentCard{Name: "w", Capabilities: []string{"job"}}, &stepWorker{n: worker,
		body: func(ctx context.Context, cl *sharedctx.Client) (json.RawMessage, error) {
			clients <- cl
			select {
			case <-done:
			case <-ctx.Done():
			}
			return json.RawMessage(`1`), nil
		}})
	if err != nil {
		b.Fatal(err)
	}
	for len(req.TopicPeers("job")) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	finished := make(chan error, 1)
	go func() {
		_, err := req.Request(sharedctx.WithStep(ctx, sharedctx.Step{Workflow: "wf-bench", Writes: []string{"k.*"}}), negotiation.Need{Capability: "job"},
			negotiation.WithBidWindow(100*time.Millisecond), negotiation.WithTimeout(time.Hour), negotiation.WithCalls(1))
		finished <- err
	}()
	cl := <-clients
	defer func() {
		if done != nil {
			close(done) // a failed op must not leave the work holding the node
		}
	}()
	b.ResetTimer()
	for i := range b.N {
		if _, err := cl.Put(ctx, fmt.Sprintf("k.%d", i%64), json.RawMessage(benchPayload)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	close(done)
	done = nil
	if err := <-finished; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkContextAskBaseline: the same two nodes, one direct ask with
// the same payload per op, answered at once.
func BenchmarkContextAskBaseline(b *testing.B) {
	m := nodetest.NewMesh(b, 2, nodetest.WithConfig(func(_ int, c *node.Config) {
		c.Limits.AsksPerPeer = admission.Rate{PerSecond: -1}
	}))
	req, worker := m.Nodes[0], m.Nodes[1]
	owner, _ := req.Agent("")
	if err := req.HandleAsk("", func(_ context.Context, r rpc.Request) (json.RawMessage, error) { return json.RawMessage(`true`), nil }); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		if _, err := worker.Ask(ctx, req.ID(), owner.ID, "", json.RawMessage(benchPayload), ""); err != nil {
			b.Fatal(err)
		}
	}
}
