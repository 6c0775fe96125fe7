package node_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

func waitConnected(t *testing.T, a, b *node.Node, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for a.Host().Network().Connectedness(b.ID()) != network.Connected {
		if time.Now().After(deadline) {
			t.Fatalf("%s not connected to %s after %s", a.ID(), b.ID(), within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBootstrapRedials starts a node whose bootstrap peer is unreachable at
// first (not yet linked), then checks that it connects once the peer can be
// reached and reconnects after the connection drops.
func TestBootstrapRedials(t *testing.T) {
	seedKey := nodetest.Key(t)
	seedID, err := peer.IDFromPrivateKey(seedKey)
	if err != nil {
		t.Fatal(err)
	}
	m := nodetest.NewMesh(t, 2, nodetest.WithTopology(nodetest.None), nodetest.WithConfig(func(i int, c *node.Config) {
		if i == 0 {
			c.NodeKey = seedKey
			return
		}
		c.Bootstrap = []string{nodetest.P2PAddr(0, seedID)}
		c.BootstrapBackoff = 20 * time.Millisecond
		c.BootstrapMaxBackoff = 200 * time.Millisecond
	}))
	seed, joiner := m.Nodes[0], m.Nodes[1]
	waitConnected(t, joiner, seed, 5*time.Second)

	if got := joiner.Peers(); len(got) != 1 || got[0].ID != seedID || got[0].Source != "bootstrap" {
		t.Errorf("joiner's peers = %+v, want the seed, found by bootstrap", got)
	}
	if err := m.Net.DisconnectPeers(joiner.ID(), seed.ID()); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, joiner, seed, 5*time.Second)
}

// newLoopbackNode starts a node on a real TCP socket on 127.0.0.1.
func newLoopbackNode(t *testing.T, bootstrap ...*node.Node) *node.Node {
	t.Helper()
	agent, err := nodetest.NewAgent("agent")
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	cfg.NodeKey = nodetest.Key(t)
	cfg.Agents = []*identity.Agent{agent}
	cfg.ListenAddrs = []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}
	cfg.BootstrapBackoff = 50 * time.Millisecond
	for _, b := range bootstrap {
		for _, a := range b.Addrs() {
			cfg.Bootstrap = append(cfg.Bootstrap, a.String())
		}
	}
	nd, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nd.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nd.Close() })
	return nd
}

// TestLoopbackTCPChain joins three real nodes on loopback TCP in a chain,
// each knowing only the previous one, and exchanges intents on two
// capabilities across it.
func TestLoopbackTCPChain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := newLoopbackNode(t)
	b := newLoopbackNode(t, a)
	c := newLoopbackNode(t, b)
	waitConnected(t, b, a, 5*time.Second)
	waitConnected(t, c, b, 5*time.Second)
	nodes := []*node.Node{a, b, c}

	waitJobs := collect(t, ctx, nodes, "jobs")
	waitNews := collect(t, ctx, nodes, "news")
	nodetest.WaitTopic(t, ctx, "jobs", nodes...)
	nodetest.WaitTopic(t, ctx, "news", nodes...)
	j := publish(t, ctx, a, "jobs", `{"job":1}`)
	n := publish(t, ctx, c, "news", `{"headline":"hi"}`)
	waitJobs(j)
	waitNews(n)
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// TestUnreachableBootstrapDoesNotStopNode checks that a node whose only
// bootstrap peer never answers starts, publishes and closes promptly.
func TestUnreachableBootstrapDoesNotStopNode(t *testing.T) {
	ghost := nodetest.Key(t)
	ghostID, _ := peer.IDFromPrivateKey(ghost)
	agent, _ := nodetest.NewAgent("agent")
	cfg := node.DefaultConfig()
	cfg.NodeKey = nodetest.Key(t)
	cfg.Agents = []*identity.Agent{agent}
	cfg.ListenAddrs = []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}
	cfg.Bootstrap = []string{"/ip4/127.0.0.1/tcp/1/p2p/" + ghostID.String()}
	cfg.PublishWait = 10 * time.Millisecond
	nd, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nd.Start(context.Background()); err != nil {
		t.Fatalf("Start with an unreachable bootstrap peer: %v", err)
	}
	if _, err := nd.Publish(context.Background(), node.PublishRequest{Capability: "alone", Payload: json.RawMessage(`{}`)}); err != nil {
		t.Fatalf("Publish while alone: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- nd.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close took over 5 s while a bootstrap dial was pending")
	}
}
