package node

import (
	"testing"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/admission"
	"github.com/parleynet/parley/intent"
)

// An intent over its relay's rate is taken out of the RPC, so GossipSub
// never marks it seen and it still arrives from another relay; copies of
// an intent already let through cost no token; other topics pass.
func TestForwardersDropBeforeGossipSubSeesIt(t *testing.T) {
	adm, err := admission.New(admission.Config{Limits: admission.Limits{IntentsPerForwarder: admission.Rate{PerSecond: 1e-9, Burst: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	var dropped int
	f := newForwarders(adm, func(reason string) {
		if reason != admission.ReasonRateForwarder {
			t.Errorf("dropped for %q", reason)
		}
		dropped++
	})
	topic := intent.Topic("work")
	other := "/meshsub-other/topic"
	msg := func(data, topic string) *pb.Message { return &pb.Message{Data: []byte(data), Topic: &topic} }
	send := func(from peer.ID, ms ...*pb.Message) []string {
		rpc := &pubsub.RPC{RPC: pb.RPC{Publish: ms}}
		if err := f.inspect(from, rpc); err != nil {
			t.Fatalf("inspect refused the RPC: %v", err)
		}
		var kept []string
		for _, m := range rpc.Publish {
			kept = append(kept, string(m.Data))
		}
		return kept
	}
	a, b := peer.ID("relay-a"), peer.ID("relay-b")
	if got := send(a, msg("flood", topic), msg("honest", topic), msg("other topic", other)); len(got) != 2 || got[0] != "flood" || got[1] != "other topic" {
		t.Fatalf("relay a over its rate: kept %q, want the first intent and the other topic's message", got)
	}
	if got := send(b, msg("honest", topic)); len(got) != 1 {
		t.Fatalf("the intent relay a could not hand over, from relay b: kept %q, want it", got)
	}
	if got := send(a, msg("honest", topic), msg("flood", topic)); len(got) != 2 {
		t.Fatalf("copies of intents let through, from relay a: kept %q, want both (GossipSub drops duplicates)", got)
	}
	if dropped != 1 {
		t.Fatalf("%d drops counted, want 1", dropped)
	}
}
