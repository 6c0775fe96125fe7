package discovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
)

// CardType is the identity.Message type of an agent card.
const CardType = "card"

// DefaultCardTTL is how long a card is valid after it is signed.
const DefaultCardTTL = 10 * time.Minute

// ErrBadCard is wrapped by every card that fails to verify.
var ErrBadCard = errors.New("invalid agent card")

// Capability is one thing an agent offers.
type Capability struct {
	Name        string `json:"name"`
	Version     string `json:"version,omitempty"`
	Description string `json:"description,omitempty"`
}

// CardVersion is the schema version of a card. Version 2 added the
// delegation of the hosting node; other versions are refused.
const CardVersion = 2

// Card says what an agent offers and where it lives. It is signed by the
// agent's own key, so anyone can check it with no registry, and carries
// its node's delegation, so the node it names is proven by that node's
// key. An agent moves to another node by signing a new card with the new
// node's delegation.
type Card struct {
	Agent        identity.AgentID `json:"agent"`
	Name         string           `json:"name"`
	Capabilities []Capability     `json:"capabilities"`
	Peer         peer.ID          `json:"peer"`
	Addrs        []string         `json:"addrs,omitempty"`
	// Delegation is Peer's signed statement that it hosts Agent.
	Delegation []byte `json:"delegation"`
}

// Offers reports whether the card lists capability.
func (c *Card) Offers(capability string) bool {
	return slices.ContainsFunc(c.Capabilities, func(x Capability) bool { return x.Name == capability })
}

// SignedCard is a verified card with its validity and signed bytes.
type SignedCard struct {
	Card
	Expires time.Time `json:"expires"`
	Raw     []byte    `json:"-"`
}

// SealCard signs c as agent a, valid for ttl (0 means DefaultCardTTL).
func SealCard(a *identity.Agent, c Card, ttl time.Duration) (*SignedCard, error) {
	if ttl <= 0 {
		ttl = DefaultCardTTL
	}
	c.Agent = a.ID
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("marshal card: %w", err)
	}
	now := time.Now()
	m := identity.Message{Type: CardType, V: CardVersion, Created: now, Expires: now.Add(ttl), Body: body}
	raw, err := identity.Seal(a, m)
	if err != nil {
		return nil, fmt.Errorf("seal card of %s: %w", a.Name, err)
	}
	return &SignedCard{Card: c, Expires: m.Expires.UTC(), Raw: raw}, nil
}

// OpenCard verifies a signed card: the envelope's signature, that the
// signer is the agent the card is for, that it has not expired, and that
// the node it names delegated the agent.
func OpenCard(raw []byte, maxSize int) (*SignedCard, error) {
	m, err := identity.Open(raw, identity.OpenOptions{MaxSize: maxSize})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCard, err)
	}
	if m.Type != CardType {
		return nil, fmt.Errorf("%w: message type %q", ErrBadCard, m.Type)
	}
	if m.V != CardVersion {
		return nil, fmt.Errorf("%w: %w: card version %d, this node reads %d", ErrBadCard, identity.ErrUnsupportedVersion, m.V, CardVersion)
	}
	var c Card
	if err := json.Unmarshal(m.Body, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCard, err)
	}
	if c.Agent != m.From {
		return nil, fmt.Errorf("%w: card for %s signed by %s", ErrBadCard, c.Agent, m.From)
	}
	if c.Peer == "" {
		return nil, fmt.Errorf("%w: card of %s names no node", ErrBadCard, c.Agent)
	}
	node, err := (*identity.DelegationCache)(nil).Node(c.Delegation, c.Agent, time.Now())
	if err != nil {
		return nil, fmt.Errorf("%w: card of %s: %w", ErrBadCard, c.Agent, err)
	}
	if node != c.Peer {
		return nil, fmt.Errorf("%w: card of %s names node %s, delegated by %s: %w", ErrBadCard, c.Agent, c.Peer, node, identity.ErrNotDelegated)
	}
	return &SignedCard{Card: c, Expires: m.Expires, Raw: raw}, nil
}
