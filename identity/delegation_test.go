package identity

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
)

// rawRecord is any payload in any domain, for envelopes built by hand.
type rawRecord struct {
	domain, codec string
	payload       []byte
}

func (r *rawRecord) Domain() string                 { return r.domain }
func (r *rawRecord) Codec() []byte                  { return []byte(r.codec) }
func (r *rawRecord) MarshalRecord() ([]byte, error) { return r.payload, nil }
func (r *rawRecord) UnmarshalRecord(b []byte) error { r.payload = b; return nil }

func TestDelegation(t *testing.T) {
	nodeKey, _ := GenerateKey()
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
	// Sealed by hand, the way a peer that read docs/WIRE.md would.
	seal := func(payloadType string, domain string, payload string) []byte {
		t.Helper()
		env, err := record.Seal(&rawRecord{domain: domain, codec: payloadType, payload: []byte(payload)}, nodeKey)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := env.Marshal()
		return b
	}
	later := time.Now().Add(time.Hour).Unix()
	body := fmt.Sprintf(`{"agent":%q,"expires":%d}`, agent, later)
	byHand := seal("/parley/delegation/1", DelegationDomain, body)
	future := seal("/parley/delegation/2", DelegationDomain, body)
	message := seal("/parley/msg/1", DelegationDomain, body)
	otherDomain := seal("/parley/delegation/1", Domain, body)
	badAgent := seal("/parley/delegation/1", DelegationDomain, fmt.Sprintf(`{"agent":"did:key:nope","expires":%d}`, later))
	if got, err := c.Node(byHand, agent, now); err != nil || got != node {
		t.Fatalf("a delegation sealed by hand: %s, %v; want %s", got, err, node)
	}
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
		{"unknown version", future, agent, now, ErrUnsupportedVersion},
		{"not a delegation", message, agent, now, ErrMalformed},
		{"signed in another domain", otherDomain, agent, now, ErrBadSignature},
		{"agent not a did:key", badAgent, agent, now, ErrMalformed},
		{"too large", make([]byte, 2<<10), agent, now, ErrTooLarge},
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
