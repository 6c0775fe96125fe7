package nodetest

import (
	"context"
	"testing"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/node"
)

// Loopback starts a real node on 127.0.0.1 TCP, with one agent, no mDNS
// and no DHT, bootstrapped to the nodes given, for tests and benchmarks
// that need real hosts (the connection gater, real transports); configure,
// if not nil, changes its config first. It closes with the test.
func Loopback(tb testing.TB, configure func(*node.Config), bootstrap ...*node.Node) *node.Node {
	tb.Helper()
	agent, err := NewAgent("agent")
	if err != nil {
		tb.Fatal(err)
	}
	cfg := node.DefaultConfig()
	cfg.NodeKey, cfg.Agents = Key(tb), []*identity.Agent{agent}
	cfg.ListenAddrs = []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}
	cfg.MDNS, cfg.DHTMode = false, "off"
	for _, b := range bootstrap {
		for _, a := range b.Addrs() {
			cfg.Bootstrap = append(cfg.Bootstrap, a.String())
		}
	}
	if configure != nil {
		configure(&cfg)
	}
	n, err := node.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = n.Close() })
	return n
}
