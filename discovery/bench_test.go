package discovery_test

import (
	"context"
	"testing"
	"time"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

// BenchmarkJoin measures, on mocknet with 50 ms links, how long a new node
// that knows one bootstrap peer of a 20-node mesh takes to its first
// connected peer and to its first FindAgents answer for a capability one
// agent in the mesh offers. One op is one join.
func BenchmarkJoin(b *testing.B) {
	const link = 50 * time.Millisecond
	m := bootstrapMesh(b, 20, nodetest.WithLatency(link))
	a, err := m.Nodes[13].AddAgent(node.AgentCard{Name: "xer", Capabilities: []string{"x"}}, nop)
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(2 * time.Second) // let the advertisement land
	var toPeer, toFind time.Duration
	b.ResetTimer()
	for i := range b.N {
		agent, _ := nodetest.NewAgent("newcomer")
		key := nodetest.Key(b)
		h, err := m.Net.AddPeer(key, nodetest.Addr(1000+i))
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Net.LinkAll(); err != nil {
			b.Fatal(err)
		}
		cfg := node.DefaultConfig()
		cfg.NodeKey, cfg.Host, cfg.Agents = key, h, []*identity.Agent{agent}
		cfg.Bootstrap = []string{nodetest.P2PAddr(0, m.Nodes[0].ID())}
		start := time.Now()
		n, err := node.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := n.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		for len(n.Peers()) == 0 {
			time.Sleep(time.Millisecond)
		}
		toPeer += time.Since(start)
		for {
			cards, err := n.FindAgents(context.Background(), "x")
			if err == nil && len(cards) == 1 && cards[0].Agent == a.ID {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		toFind += time.Since(start)
		_ = n.Close()
	}
	b.ReportMetric(float64(toPeer.Milliseconds())/float64(b.N), "ms-to-peer")
	b.ReportMetric(float64(toFind.Milliseconds())/float64(b.N), "ms-to-find")
}
