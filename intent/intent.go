// Package intent owns parley's intent: the signed, gossiped announcement an
// agent makes to the mesh (a call for proposals, a capability advert or an
// event). It defines the wire format, the topic an intent travels on, and
// the checks every receiver applies before an intent is forwarded or
// delivered. It does not own the gossip itself; package node does.
//
// On the wire an intent is a go-libp2p record.Envelope (see package
// identity) whose payload is an identity.Message of type "intent" and whose
// body is the JSON object Body. Any libp2p implementation can read and
// verify it from the envelope and the JSON alone.
package intent

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"

	"github.com/parleynet/parley/identity"
)

// MessageType is the identity.Message type of an intent.
const MessageType = "intent"

// Version is the schema version of Body. Version 2 added the delegation
// that proves the agent's node; version 1 intents are refused.
const Version = 2

// TopicPrefix is prepended to a capability to name its GossipSub topic.
const TopicPrefix = "/parley/1/intent/"

// DefaultMaxSize is the default limit on a marshalled intent envelope.
const DefaultMaxSize = 64 << 10

// Kind says what an intent asks of its readers.
type Kind string

// The kinds of intent.
const (
	KindTask  Kind = "task"  // a call for proposals
	KindOffer Kind = "offer" // a capability advert
	KindEvent Kind = "event" // something that happened
)

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool {
	switch k {
	case KindTask, KindOffer, KindEvent:
		return true
	}
	return false
}

// Sentinel errors callers branch on.
var (
	ErrBadCapability = errors.New("invalid capability name")
	ErrBadKind       = errors.New("invalid intent kind")
	ErrBadPayload    = errors.New("invalid intent payload")
	ErrWrongTopic    = errors.New("intent capability does not match its topic")
)

var capabilityRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidCapability checks a capability name: 1 to 64 characters of lower-case
// letters, digits, '.', '_' and '-', starting with a letter or digit.
func ValidCapability(c string) error {
	if !capabilityRE.MatchString(c) {
		return fmt.Errorf("%w %q: want 1-64 of [a-z0-9._-], starting with a letter or digit", ErrBadCapability, c)
	}
	return nil
}

// Topic returns the GossipSub topic of a capability.
func Topic(capability string) string { return TopicPrefix + capability }

// Constraints bound what a requester will accept. All are optional.
type Constraints struct {
	Deadline  time.Time `json:"deadline,omitzero"`   // work must be done by then
	BidWindow Duration  `json:"bid_window,omitzero"` // how long bids are taken
	Budget    float64   `json:"budget,omitempty"`    // the most the requester will pay
}

// ReplyTo says how to reach the requester's node directly.
type ReplyTo struct {
	// Peer is the agent's node. It may be left out, since the delegation
	// proves it (Open fills it in); if given it must be that node.
	Peer  peer.ID  `json:"peer,omitempty"`
	Addrs []string `json:"addrs,omitempty"`
}

// Body is the signed JSON body of an intent message.
type Body struct {
	Kind        Kind            `json:"kind"`
	Capability  string          `json:"capability"`
	Payload     json.RawMessage `json:"payload"`
	Constraints *Constraints    `json:"constraints,omitempty"`
	// ReplyTo is the agent's node, the one that signed Delegation.
	ReplyTo ReplyTo `json:"reply_to"`
	// Delegation is the agent's node's signed statement that it hosts the
	// agent (an identity delegation envelope; base64 in JSON).
	Delegation []byte `json:"delegation"`
	Trace      string `json:"trace,omitempty"` // W3C traceparent
}

// Intent is a verified intent as a receiver sees it.
type Intent struct {
	ID      string           `json:"id"`
	From    identity.AgentID `json:"from"`
	Created time.Time        `json:"created"`
	Expires time.Time        `json:"expires"`
	// Origin is the node hosting From, proven by the delegation.
	Origin peer.ID `json:"origin"`
	Body
	// Raw is the signed envelope exactly as received, so it can be
	// forwarded, audited or re-verified.
	Raw []byte `json:"-"`
}

// validate checks b; payloadKnownValid skips the JSON scan of a payload that
// came out of json.Unmarshal.
func (b *Body) validate(payloadKnownValid bool) error {
	if err := ValidCapability(b.Capability); err != nil {
		return err
	}
	if !b.Kind.Valid() {
		return fmt.Errorf("%w %q: want task, offer or event", ErrBadKind, b.Kind)
	}
	if len(b.Payload) == 0 {
		b.Payload = json.RawMessage("null")
	}
	if !payloadKnownValid && !json.Valid(b.Payload) {
		return fmt.Errorf("%w: not valid JSON", ErrBadPayload)
	}
	if len(b.Delegation) == 0 {
		return fmt.Errorf("%w: no delegation from the agent's node", identity.ErrNotDelegated)
	}
	return nil
}

// Seal validates b and signs it as agent a. ttl bounds its life (zero means
// identity.DefaultTTL). It returns the envelope bytes and the intent as
// receivers will see it. b's delegation must be valid and for a; the
// intent's origin is the node that signed it.
func Seal(a *identity.Agent, b Body, ttl time.Duration) (*Intent, error) {
	return SealCached(a, b, ttl, nil)
}

// SealCached is Seal checking b's delegation through delegations, so that
// a node publishing many intents verifies its own delegation once.
func SealCached(a *identity.Agent, b Body, ttl time.Duration, delegations *identity.DelegationCache) (*Intent, error) {
	if err := b.validate(false); err != nil {
		return nil, err
	}
	origin, err := delegations.Node(b.Delegation, a.ID, time.Now())
	if err != nil {
		return nil, fmt.Errorf("seal intent: %w", err)
	}
	if b.ReplyTo.Peer != "" && b.ReplyTo.Peer != origin {
		return nil, fmt.Errorf("seal intent: reply-to names %s, but the agent's node is %s: %w", b.ReplyTo.Peer, origin, identity.ErrNotDelegated)
	}
	raw, err := json.Marshal(&b)
	if err != nil {
		return nil, fmt.Errorf("marshal intent body: %w", err)
	}
	now := time.Now()
	if ttl <= 0 {
		ttl = identity.DefaultTTL
	}
	m := identity.Message{
		Type:    MessageType,
		V:       Version,
		ID:      identity.NewID(),
		Created: now,
		Expires: now.Add(ttl),
		Body:    raw,
	}
	data, err := identity.Seal(a, m)
	if err != nil {
		return nil, fmt.Errorf("seal intent: %w", err)
	}
	b.ReplyTo.Peer = origin
	return &Intent{ID: m.ID, From: a.ID, Created: m.Created, Expires: m.Expires, Origin: origin, Body: b, Raw: data}, nil
}

// OpenOptions configure Open.
type OpenOptions struct {
	identity.OpenOptions
	// Delegations caches verified delegations; nil verifies each one.
	Delegations *identity.DelegationCache
}

// Open verifies data as an intent published on the topic of capability
// (empty skips the topic check) and returns it: the envelope, the schema
// version, the body, and the delegation proving that ReplyTo is the
// signing agent's node. Errors wrap identity's sentinels or this
// package's.
func Open(data []byte, capability string, opts OpenOptions) (*Intent, error) {
	m, err := identity.Open(data, opts.OpenOptions)
	if err != nil {
		return nil, err
	}
	if m.Type != MessageType {
		return nil, fmt.Errorf("%w: message type %q is not %q", identity.ErrMalformed, m.Type, MessageType)
	}
	if m.V != Version {
		return nil, fmt.Errorf("%w: intent version %d, this node reads version %d", identity.ErrUnsupportedVersion, m.V, Version)
	}
	var b Body
	if err := json.Unmarshal(m.Body, &b); err != nil {
		return nil, fmt.Errorf("%w: intent body: %v", ErrBadPayload, err)
	}
	if err := b.validate(true); err != nil {
		return nil, err
	}
	if capability != "" && b.Capability != capability {
		return nil, fmt.Errorf("%w: %q on the topic of %q", ErrWrongTopic, b.Capability, capability)
	}
	now := time.Now()
	if opts.Now != nil {
		now = opts.Now()
	}
	origin, err := opts.Delegations.Node(b.Delegation, m.From, now)
	if err != nil {
		return nil, fmt.Errorf("intent %q from %s: %w", m.ID, m.From, err)
	}
	switch b.ReplyTo.Peer {
	case origin:
	case "":
		b.ReplyTo.Peer = origin
	default:
		return nil, fmt.Errorf("intent %q from %s: reply-to names %s, but the agent's node is %s: %w",
			m.ID, m.From, b.ReplyTo.Peer, origin, identity.ErrNotDelegated)
	}
	return &Intent{ID: m.ID, From: m.From, Created: m.Created, Expires: m.Expires, Origin: origin, Body: b, Raw: data}, nil
}

// DropReason names why a received intent was dropped, for counters and logs.
func DropReason(err error) string {
	switch {
	case errors.Is(err, identity.ErrTooLarge):
		return "oversize"
	case errors.Is(err, identity.ErrUnsupportedVersion):
		return "version"
	case errors.Is(err, identity.ErrNotDelegated):
		return "not_delegated"
	case errors.Is(err, identity.ErrNotJSON):
		return "not_json"
	case errors.Is(err, identity.ErrMalformed):
		return "unsigned"
	case errors.Is(err, identity.ErrBadSignature):
		return "bad_signature"
	case errors.Is(err, identity.ErrWrongSigner):
		return "wrong_signer"
	case errors.Is(err, identity.ErrExpired), errors.Is(err, identity.ErrTooOld), errors.Is(err, identity.ErrNotYetValid):
		return "expired"
	case errors.Is(err, identity.ErrReplayed):
		return "replayed"
	case errors.Is(err, ErrWrongTopic):
		return "wrong_topic"
	case errors.Is(err, ErrBadPayload), errors.Is(err, ErrBadKind), errors.Is(err, ErrBadCapability):
		return "invalid"
	}
	return "other"
}

// DropReasons lists every reason DropReason can return, so counters can be
// created up front and read as zero.
func DropReasons() []string {
	return []string{"oversize", "version", "not_delegated", "not_json", "unsigned", "bad_signature", "wrong_signer", "expired", "replayed", "wrong_topic", "invalid", "other",
		// Admission drops, counted by the node.
		"rate_forwarder", "rate_newcomers", "rate_origin", "rate_agent",
		// Handed over by a peer the node has banned, before it was
		// disconnected: left unread.
		"banned",
		// Relayed, but kept from local agents by the policy's lists.
		"denied",
		// Relayed, but not delivered: the audit log could not record it.
		"audit"}
}

// ClaimedOrigin returns the node an intent's delegation names, without
// verifying anything: for deciding how much to spend on verifying it, never
// for trusting it. An intent that lies here fails Open.
func ClaimedOrigin(data []byte) (peer.ID, error) {
	env, err := record.UnmarshalEnvelope(data)
	if err != nil {
		return "", err
	}
	var m struct {
		Body struct {
			Delegation []byte `json:"delegation"`
		} `json:"body"`
	}
	if err := json.Unmarshal(env.RawPayload, &m); err != nil {
		return "", err
	}
	d, err := record.UnmarshalEnvelope(m.Body.Delegation)
	if err != nil {
		return "", err
	}
	return peer.IDFromPublicKey(d.PublicKey)
}
