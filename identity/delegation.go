package identity

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
)

// DelegationDomain is the signature domain of delegations, apart from
// parley messages' so that neither can be passed off as the other.
const DelegationDomain = "parley-delegation"

// DelegationVersion is the version in a delegation's payload type,
// "/parley/delegation/<version>".
const DelegationVersion = 1

var delegationPayloadType = fmt.Sprintf("/parley/delegation/%d", DelegationVersion)

// DefaultDelegationTTL is how long Delegate's delegations are valid.
const DefaultDelegationTTL = 24 * time.Hour

// ErrNotDelegated: the delegation is valid but is not for this agent.
var ErrNotDelegated = errors.New("agent not delegated by that node")

// Delegation is a node's signed statement that it hosts an agent. An agent
// carries it with its intents and cards, so any receiver can tell the
// agent's node from the agent's key alone, without asking anyone: reply-to
// addresses, deny lists and rate limits then act on a node proven by its
// own key, not on a field the agent could fill with any PeerID.
//
// On the wire it is a go-libp2p record envelope in the DelegationDomain,
// payload type "/parley/delegation/1", signed by the node's key, whose
// payload is {"agent": did:key, "expires": unix seconds}. The node is the
// signer: its PeerID is the PeerID of the envelope's key. It rides in
// every intent, so it carries nothing a receiver can derive.
type Delegation struct {
	Agent   AgentID
	Node    peer.ID
	Expires time.Time
}

// delegationRecord is a delegation's payload as a record.Record.
type delegationRecord struct {
	Agent   AgentID `json:"agent"`
	Expires int64   `json:"expires"`
}

func (*delegationRecord) Domain() string { return DelegationDomain }
func (*delegationRecord) Codec() []byte  { return []byte(delegationPayloadType) }
func (r *delegationRecord) MarshalRecord() ([]byte, error) {
	return json.Marshal(r)
}
func (r *delegationRecord) UnmarshalRecord(b []byte) error {
	return json.Unmarshal(b, r)
}

// Delegate signs, with the node's key, that the node hosts agent, for ttl
// (DefaultDelegationTTL if zero).
func Delegate(nodeKey crypto.PrivKey, agent AgentID, ttl time.Duration) ([]byte, error) {
	if ttl <= 0 {
		ttl = DefaultDelegationTTL
	}
	if _, err := agent.PubKey(); err != nil {
		return nil, fmt.Errorf("identity: delegate %s: %w", agent, err)
	}
	env, err := record.Seal(&delegationRecord{Agent: agent, Expires: time.Now().Add(ttl).Unix()}, nodeKey)
	if err != nil {
		return nil, fmt.Errorf("identity: delegate %s: %w", agent, err)
	}
	data, err := env.Marshal()
	if err != nil {
		return nil, fmt.Errorf("identity: delegate %s: marshal envelope: %w", agent, err)
	}
	return data, nil
}

// maxDelegationSize bounds a delegation before it is parsed: one is about
// 220 bytes.
const maxDelegationSize = 1 << 10

// OpenDelegation verifies a delegation and returns it. Errors wrap
// ErrTooLarge, ErrMalformed, ErrBadSignature, ErrUnsupportedVersion or
// ErrExpired.
func OpenDelegation(data []byte, now time.Time) (*Delegation, error) {
	if len(data) > maxDelegationSize {
		return nil, fmt.Errorf("delegation: %d bytes, limit %d: %w", len(data), maxDelegationSize, ErrTooLarge)
	}
	var r delegationRecord
	env, err := record.ConsumeTypedEnvelope(data, &r)
	if env == nil {
		return nil, fmt.Errorf("delegation: %w: %v", ErrMalformed, err)
	}
	if pt := string(env.PayloadType); pt != delegationPayloadType {
		if v, ok := strings.CutPrefix(pt, "/parley/delegation/"); ok {
			return nil, fmt.Errorf("delegation: %w: version %s, this node knows %d", ErrUnsupportedVersion, v, DelegationVersion)
		}
		return nil, fmt.Errorf("delegation: %w: payload type %q, want %q", ErrMalformed, pt, delegationPayloadType)
	}
	if err != nil {
		if errors.Is(err, record.ErrInvalidSignature) {
			return nil, fmt.Errorf("delegation: %w: %v", ErrBadSignature, err)
		}
		return nil, fmt.Errorf("delegation: %w: %v", ErrMalformed, err)
	}
	if _, err := r.Agent.PubKey(); err != nil {
		return nil, fmt.Errorf("delegation: %w: agent: %v", ErrMalformed, err)
	}
	node, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("delegation: %w: signer: %v", ErrMalformed, err)
	}
	d := &Delegation{Agent: r.Agent, Node: node, Expires: time.Unix(r.Expires, 0)}
	if now.After(d.Expires) {
		return nil, fmt.Errorf("delegation of %s by %s expired at %s: %w", d.Agent, d.Node, d.Expires.UTC().Format(time.RFC3339), ErrExpired)
	}
	return d, nil
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
		return "", fmt.Errorf("delegation of %s by %s expired at %s: %w", d.Agent, d.Node, d.Expires.UTC().Format(time.RFC3339), ErrExpired)
	case d.Agent != agent:
		return "", fmt.Errorf("delegation by %s is for %s, not %s: %w", d.Node, d.Agent, agent, ErrNotDelegated)
	}
	return d.Node, nil
}
