package identity

import (
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestDelegation(t *testing.T) {
	nodeKey, _ := GenerateKey()
	otherKey, _ := GenerateKey()
	node, _ := peer.IDFromPrivateKey(nodeKey)
	agent := newAgentID(t)
	other := newAgentID(t)
	good, err := Delegate(nodeKey, agent, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := NewDelegationCache(0)
	for range 2 { // the second answer comes from the cache
		got, err := c.Node(good, agent, now)
		if err != nil || got != node {
			t.Fatalf("Node = %s, %v; want %s", got, err, node)
		}
	}
	// A delegation whose body names another node than its signer: sealed
	// by hand, the way a forger would.
	forger, _ := NewAgent("node", otherKey)
	forged, err := Seal(forger, Message{Type: DelegationType, V: 1, Body: []byte(`{"agent":"` + string(agent) + `","node":"` + node.String() + `"}`)})
	if err != nil {
		t.Fatal(err)
	}
	future, _ := Seal(forger, Message{Type: DelegationType, V: 2, Body: []byte(`{"agent":"` + string(agent) + `","node":"` + node.String() + `"}`)})
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-1] ^= 1
	tests := []struct {
		name  string
		data  []byte
		agent AgentID
		now   time.Time
		want  error
	}{
		{"other agent", good, other, now, ErrNotDelegated},
		{"expired", good, agent, now.Add(2 * time.Hour), ErrExpired},
		{"signed by another node", forged, agent, now, ErrNotDelegated},
		{"unknown version", future, agent, now, ErrUnsupportedVersion},
		{"tampered", tampered, agent, now, ErrBadSignature},
		{"not an envelope", []byte("nope"), agent, now, ErrMalformed},
	}
	for _, tt := range tests {
		if _, err := NewDelegationCache(4).Node(tt.data, tt.agent, tt.now); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
		// The cache must not turn a refusal into an answer.
		if _, err := c.Node(tt.data, tt.agent, tt.now); !errors.Is(err, tt.want) {
			t.Errorf("%s (shared cache): %v, want %v", tt.name, err, tt.want)
		}
	}
}
