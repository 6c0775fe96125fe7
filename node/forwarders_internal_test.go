package node

import (
	"errors"
	"maps"
	"testing"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/admission"
	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
)

// An intent over its relay's rate is taken out of the RPC, so GossipSub
// never marks it seen and it still arrives from another relay; copies of
// an intent already let through cost no token; other topics pass.
func TestForwardersDropBeforeGossipSubSeesIt(t *testing.T) {
	// Per relay, with no newcomers' budget shared on top.
	adm, err := admission.New(admission.Config{Limits: admission.Limits{IntentsPerForwarder: admission.Rate{PerSecond: 1e-9, Burst: 1}, NewcomerAge: -1}})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	var dropped int
	f := newForwarders(adm, func(peer.ID) bool { return false }, func(reason string) {
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

// A peer over its rate is still heard for its own agents' intents, a
// rated number of looks a second, until going over its origin's rate has
// cost it a penalty; another node's intents it relays are not let through.
func TestForwardersHearAPeerForItself(t *testing.T) {
	adm, err := admission.New(admission.Config{Limits: admission.Limits{
		IntentsPerForwarder: admission.Rate{PerSecond: 1e-9, Burst: 1},
		IntentsPerOrigin:    admission.Rate{PerSecond: 1e-9, Burst: 5},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	f := newForwarders(adm, func(peer.ID) bool { return false }, func(string) {})
	// newOrigin returns a node and a function sealing a new intent of one
	// of its agents each call.
	newOrigin := func() (peer.ID, func() []byte) {
		nodeKey, _ := identity.GenerateKey()
		node, _ := peer.IDFromPrivateKey(nodeKey)
		agentKey, _ := identity.GenerateKey()
		a, err := identity.NewAgent("a", agentKey)
		if err != nil {
			t.Fatal(err)
		}
		d, err := identity.Delegate(nodeKey, a.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		return node, func() []byte {
			in, err := intent.Seal(a, intent.Body{Kind: intent.KindEvent, Capability: "work", Delegation: d}, 0)
			if err != nil {
				t.Fatal(err)
			}
			return in.Raw
		}
	}
	topic := intent.Topic("work")
	kept := func(from peer.ID, data []byte) bool {
		rpc := &pubsub.RPC{RPC: pb.RPC{Publish: []*pb.Message{{Data: data, Topic: &topic}}}}
		if err := f.inspect(from, rpc); err != nil {
			t.Fatal(err)
		}
		return len(rpc.Publish) == 1
	}
	relay, own := newOrigin()
	_, other := newOrigin()
	if !kept(relay, other()) {
		t.Fatal("another node's intent was dropped within the relay's burst")
	}
	if kept(relay, other()) {
		t.Fatal("another node's intent passed a relay over its rate")
	}
	for i := range 3 {
		if !kept(relay, own()) {
			t.Fatalf("own intent %d of a peer over its rate was dropped", i)
		}
	}
	// Its node's rate refuses the sixth of its own intents once verified:
	// that costs the peer a penalty, and the pass.
	data, _ := intent.Open(own(), "work", intent.OpenOptions{})
	for range 6 {
		adm.Intent(data, relay)
	}
	if adm.Penalty(relay) == 0 {
		t.Fatal("no penalty for going over its own origin's rate")
	}
	if kept(relay, own()) {
		t.Fatal("a penalised peer over its rate passed with its own intent")
	}
}

// A banned peer's RPCs, still queued when the ban closed its connection,
// are refused whole, each intent in them counted as dropped unread;
// other peers' go on.
func TestForwardersRefuseABannedPeer(t *testing.T) {
	adm, err := admission.New(admission.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	banned := peer.ID("banned")
	drops := map[string]int{}
	f := newForwarders(adm, func(p peer.ID) bool { return p == banned }, func(reason string) { drops[reason]++ })
	topic := intent.Topic("work")
	rpc := func() *pubsub.RPC {
		return &pubsub.RPC{RPC: pb.RPC{Publish: []*pb.Message{{Data: []byte("a"), Topic: &topic}, {Data: []byte("b"), Topic: &topic}}}}
	}
	if err := f.inspect(banned, rpc()); !errors.Is(err, errBanned) {
		t.Fatalf("the banned peer's RPC: %v, want %v", err, errBanned)
	}
	if err := f.inspect("honest", rpc()); err != nil {
		t.Fatalf("another peer's RPC: %v", err)
	}
	if want := map[string]int{reasonBanned: 2}; !maps.Equal(drops, want) {
		t.Fatalf("drops %v, want %v", drops, want)
	}
}
