package node_test

import (
	"context"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"

	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/node/nodetest"
)

// TestRouterRejectionsAreCounted: a peer running GossipSub with message
// signing on (parley's mesh signs nothing: the envelope does) is rejected
// by GossipSub itself, before parley's validator, and that is counted in
// parley_gossip_rejected_total rather than nowhere.
func TestRouterRejectionsAreCounted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := nodetest.NewMesh(t, 1)
	sub, err := m.Nodes[0].Subscribe(ctx, "chat")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	h, err := m.Net.AddPeer(nodetest.Key(t), nodetest.Addr(99))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Net.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Net.ConnectPeers(h.ID(), m.Nodes[0].ID()); err != nil {
		t.Fatal(err)
	}
	psCtx, psCancel := context.WithCancel(ctx)
	defer psCancel()
	ps, err := pubsub.NewGossipSub(psCtx, h, pubsub.WithFloodPublish(true)) // signs and names its author
	if err != nil {
		t.Fatal(err)
	}
	tp, err := ps.Join(intent.Topic("chat"))
	if err != nil {
		t.Fatal(err)
	}
	for len(tp.ListPeers()) == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the node never joined the raw peer's topic view")
		case <-time.After(20 * time.Millisecond):
		}
	}
	rejected := func() float64 { return metricValue(t, m.Nodes[0], "parley_gossip_rejected_total") }
	for rejected() == 0 {
		if err := tp.Publish(ctx, []byte("junk")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("no rejection counted for signed junk")
		case <-time.After(50 * time.Millisecond):
		}
	}
	for reason, n := range m.Nodes[0].Stats().Dropped {
		if n != 0 {
			t.Errorf("parley's validator dropped %d as %s: the junk should never reach it", n, reason)
		}
	}
}
