package identity

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// DelegationType is the Message type of a delegation.
const DelegationType = "delegation"

// DelegationVersion is the schema version of a delegation's body.
const DelegationVersion = 1

// DefaultDelegationTTL is how long Delegate's delegations are valid.
const DefaultDelegationTTL = 24 * time.Hour

// ErrNotDelegated: the delegation is valid but is not for this agent, or
// the agent's node is not the one its message names.
var ErrNotDelegated = errors.New("agent not delegated by that node")

// Delegation is a node's signed statement that it hosts an agent. An agent
// carries it with its intents and cards, so any receiver can tell the
// agent's node from the agent's key alone, without asking anyone: reply-to
// addresses, deny lists and rate limits then act on a node proven by its
// own key, not on a field the agent could fill with any PeerID.
//
// On the wire it is an ordinary parley envelope (see Seal) of type
// "delegation", version 1, signed by the node's ed25519 key (so its from is
// the did:key of that key), whose body is {"agent": did:key, "node":
// PeerID}; the node's PeerID must be the PeerID of the signing key.
type Delegation struct {
	Agent   AgentID   `json:"agent"`
	Node    peer.ID   `json:"node"`
	Expires time.Time `json:"-"`
}

type delegationBody struct {
	Agent AgentID `json:"agent"`
	Node  peer.ID `json:"node"`
}

// Delegate signs, with the node's key, that the node hosts agent, for ttl
// (DefaultDelegationTTL if zero).
func Delegate(nodeKey crypto.PrivKey, agent AgentID, ttl time.Duration) ([]byte, error) {
	if ttl <= 0 {
		ttl = DefaultDelegationTTL
	}
	node, err := peer.IDFromPrivateKey(nodeKey)
	if err != nil {
		return nil, fmt.Errorf("identity: delegate %s: node key: %w", agent, err)
	}
	signer, err := NewAgent("node", nodeKey)
	if err != nil {
		return nil, fmt.Errorf("identity: delegate %s: %w", agent, err)
	}
	body, err := json.Marshal(delegationBody{Agent: agent, Node: node})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return Seal(signer, Message{Type: DelegationType, V: DelegationVersion, Created: now, Expires: now.Add(ttl), Body: body})
}

// OpenDelegation verifies a delegation and returns it. Errors wrap the
// sentinels of Open, ErrUnsupportedVersion, or ErrNotDelegated when the
// named node is not the signer.
func OpenDelegation(data []byte, now time.Time) (*Delegation, error) {
	m, env, err := OpenEnvelope(data, OpenOptions{Now: func() time.Time { return now }, MaxSize: 4 << 10})
	if err != nil {
		return nil, fmt.Errorf("delegation: %w", err)
	}
	if m.Type != DelegationType {
		return nil, fmt.Errorf("delegation: %w: message type %q", ErrMalformed, m.Type)
	}
	if m.V != DelegationVersion {
		return nil, fmt.Errorf("delegation: %w: version %d, this node knows %d", ErrUnsupportedVersion, m.V, DelegationVersion)
	}
	var b delegationBody
	if err := json.Unmarshal(m.Body, &b); err != nil {
		return nil, fmt.Errorf("delegation: %w: body: %v", ErrMalformed, err)
	}
	if _, err := b.Agent.PubKey(); err != nil {
		return nil, fmt.Errorf("delegation: %w: agent: %v", ErrMalformed, err)
	}
	signer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("delegation: %w: %v", ErrMalformed, err)
	}
	if b.Node != signer {
		return nil, fmt.Errorf("delegation: names node %s but is signed by %s: %w", b.Node, signer, ErrNotDelegated)
	}
	return &Delegation{Agent: b.Agent, Node: b.Node, Expires: m.Expires}, nil
}

// DefaultDelegationCacheSize is how many verified delegations a
// DelegationCache keeps when NewDelegationCache is given no size.
const DefaultDelegationCacheSize = 4096

// DelegationCache remembers verified delegations, so that an agent's many
// messages cost one verification of its node's signature, not one each. It
// is bounded (least recently used first out) and safe for concurrent use.
type DelegationCache struct {
	c *lru.Cache[[sha256.Size]byte, *Delegation]
}

// NewDelegationCache returns a cache of size entries (or
// DefaultDelegationCacheSize).
func NewDelegationCache(size int) *DelegationCache {
	if size <= 0 {
		size = DefaultDelegationCacheSize
	}
	c, _ := lru.New[[sha256.Size]byte, *Delegation](size) // only fails for size <= 0
	return &DelegationCache{c: c}
}

// Node verifies that data delegates agent and returns the delegating
// node. A nil cache verifies every time.
func (c *DelegationCache) Node(data []byte, agent AgentID, now time.Time) (peer.ID, error) {
	var d *Delegation
	key := sha256.Sum256(data)
	if c != nil {
		d, _ = c.c.Get(key)
	}
	if d == nil {
		var err error
		if d, err = OpenDelegation(data, now); err != nil {
			return "", err
		}
		if c != nil {
			c.c.Add(key, d)
		}
	}
	switch {
	case now.After(d.Expires):
		return "", fmt.Errorf("delegation of %s by %s expired at %s: %w", d.Agent, d.Node, d.Expires.Format(time.RFC3339), ErrExpired)
	case d.Agent != agent:
		return "", fmt.Errorf("delegation by %s is for %s, not %s: %w", d.Node, d.Agent, agent, ErrNotDelegated)
	}
	return d.Node, nil
}
