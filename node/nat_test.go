package node_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/parleynet/parley/negotiation/rpc"
	"github.com/parleynet/parley/node"
)

// TestReachableThroughRelay: a node that knows it is behind NAT reserves a
// slot on its static relay; a peer that has only the relayed address
// reaches it, sees the connection as relayed through the relay, and a
// direct ask goes over the (limited) relayed connection. (go-libp2p
// advertises relayed addresses only through relays with public addresses,
// so on loopback RelayAddrs stays empty: the netns NAT test checks that.)
func TestReachableThroughRelay(t *testing.T) {
	t.Run("open", func(t *testing.T) { testReachableThroughRelay(t, nil) })
	// A private network works through a relay of its own: the relayed
	// connection is a libp2p connection over one the PSK protects.
	_, psk := writePSK(t)
	t.Run("psk", func(t *testing.T) { testReachableThroughRelay(t, psk) })
}

func testReachableThroughRelay(t *testing.T, psk pnet.PSK) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	relay := startLoopback(t, ctx, node.Config{DialPrivateAddrs: true, PSK: psk,
		NAT: node.NATConfig{RelayService: true, Reachability: node.ReachabilityPublic}})
	private := startLoopback(t, ctx, node.Config{DialPrivateAddrs: true, PSK: psk,
		NAT: node.NATConfig{Reachability: node.ReachabilityPrivate, Relays: []string{relay.Addrs()[0].String()}, NoHolePunching: true}})
	if got := private.Reachability(); got != node.ReachabilityPrivate {
		t.Errorf("reachability %s, want private", got)
	}
	circuit := relay.Addrs()[0].Encapsulate(ma.StringCast("/p2p-circuit/p2p/" + private.ID().String()))
	if err := private.HandleAsk("", func(_ context.Context, req rpc.Request) (json.RawMessage, error) {
		return json.RawMessage(`"pong"`), nil
	}); err != nil {
		t.Fatal(err)
	}

	// DHT off: its queries open streams a limited connection does not
	// carry, and swarm then dials the private node directly, which on
	// loopback (unlike behind a NAT) works.
	other := startLoopback(t, ctx, node.Config{DialPrivateAddrs: true, DHTMode: "off", PSK: psk, NAT: node.NATConfig{NoHolePunching: true}})
	info, err := peer.AddrInfoFromP2pAddr(circuit)
	if err != nil {
		t.Fatal(err)
	}
	// Until the private node holds its reservation the relay refuses the
	// circuit; the reservation is made at start.
	start := time.Now()
	for other.Host().Connect(ctx, *info) != nil {
		select {
		case <-ctx.Done():
			t.Fatalf("no connection through the relay after %s", time.Since(start))
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Logf("reachable through the relay %s after the dial began", time.Since(start).Round(time.Millisecond))
	var seen *node.PeerInfo
	for _, p := range other.Peers() {
		if p.ID == private.ID() {
			seen = &p
		}
	}
	if seen == nil || seen.Connection != "relayed" || seen.Via != relay.ID() {
		t.Fatalf("the private node as its peer sees it: %+v, want relayed via %s", seen, relay.ID())
	}
	out, err := other.Ask(ctx, private.ID(), private.Agents()[0].ID, "ping", json.RawMessage(`{}`), "")
	if err != nil || string(out) != `"pong"` {
		t.Fatalf("ask over the relayed connection = %s, %v; want pong", out, err)
	}
}
