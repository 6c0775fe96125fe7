package identity

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/record"
)

// Domain is the signature domain of parley envelopes (record.Envelope domain
// separation): a signature made for another domain does not verify here.
const Domain = "parley"

// payloadType is the envelope payload type of a parley Message.
const payloadType = "/parley/msg/1"

// PayloadType returns the envelope payload type of a parley Message,
// "/parley/msg/1". Each call returns a new slice.
func PayloadType() []byte { return []byte(payloadType) }

const (
	// DefaultTTL is the lifetime Seal gives a message without Expires.
	DefaultTTL = 5 * time.Minute
	// DefaultClockSkew is how far in the future a message's Created may be
	// when OpenOptions.MaxClockSkew is zero.
	DefaultClockSkew = 30 * time.Second
	// maxMessageIDLen is the longest valid Message.ID, in bytes.
	maxMessageIDLen = 128
)

// Errors returned by Open and OpenEnvelope, each wrapped with context.
var (
	// ErrMalformed: the data is not a protobuf envelope, has the wrong
	// payload type or signature domain, or its payload is not a valid
	// Message (invalid JSON, missing or invalid fields, bad From).
	ErrMalformed = errors.New("malformed envelope")
	// ErrBadSignature: the signature does not verify (tampered data).
	ErrBadSignature = errors.New("bad signature")
	// ErrWrongSigner: the signature is valid but was not made by the key
	// of the Message's From.
	ErrWrongSigner = errors.New("signer is not the claimed agent")
	// ErrExpired: the Message's Expires has passed.
	ErrExpired = errors.New("message expired")
	// ErrNotYetValid: the Message's Created is further in the future than
	// the allowed clock skew.
	ErrNotYetValid = errors.New("message created in the future")
	// ErrTooOld: the Message was created before the replay window, which
	// therefore cannot tell whether it was seen before.
	ErrTooOld = errors.New("message older than replay window")
	// ErrReplayed: a Message with the same From and ID was seen within the
	// replay window.
	ErrReplayed = errors.New("message replayed")
	// ErrTooLarge: the data is larger than OpenOptions.MaxSize.
	ErrTooLarge = errors.New("message too large")
	// ErrNotJSON: the envelope is well signed but its payload is not a
	// JSON message. It is distinct from ErrMalformed so that receivers can
	// tell a signed wrong payload from data that is no envelope at all.
	ErrNotJSON = errors.New("payload is not JSON")
	// ErrUnsupportedVersion: the message is well signed but its type's
	// schema version is one the receiver does not know. Open itself does
	// not check versions (it does not know the types); each type's
	// decoder does, and wraps this.
	ErrUnsupportedVersion = errors.New("unsupported message version")
)

// Forged reports whether err refused data no honest peer sends, of any
// version or configuration: no envelope, a payload that is no message, a
// signature that does not verify, or one by another key than the sender
// it names. Peers verify before they forward, so a node may stop hearing
// a peer that sends these; late, replayed or oversize data is not forged.
func Forged(err error) bool {
	return errors.Is(err, ErrMalformed) || errors.Is(err, ErrNotJSON) ||
		errors.Is(err, ErrBadSignature) || errors.Is(err, ErrWrongSigner)
}

// Message is the signed payload of a parley envelope. It is JSON, carries a
// type and a schema version, and is open to other implementations: unknown
// fields are ignored.
type Message struct {
	// Type says what the message is: "intent", "propose", ... Non-empty.
	Type string `json:"type"`
	// V is the schema version of Type, at least 1.
	V int `json:"v"`
	// ID is unique per sender, 1 to 128 bytes; the replay window keys on
	// (From, ID). Seal fills it with NewID when empty.
	ID string `json:"id"`
	// From is the sender. Seal sets it; Open checks it is the signer.
	From AgentID `json:"from"`
	// Created is when the message was made. Seal sets it to now if zero.
	Created time.Time `json:"created"`
	// Expires is when the message stops being valid; after Created. Seal
	// sets it to Created+DefaultTTL if zero.
	Expires time.Time `json:"expires"`
	// Body is the type-specific content: any JSON value but null.
	Body json.RawMessage `json:"body"`
}

// Domain implements record.Record.
func (m *Message) Domain() string { return Domain }

// Codec implements record.Record; it returns PayloadType().
func (m *Message) Codec() []byte { return PayloadType() }

// MarshalRecord implements record.Record: m as JSON.
func (m *Message) MarshalRecord() ([]byte, error) { return json.Marshal(m) }

// UnmarshalRecord implements record.Record. It replaces m with the JSON in
// data, ignoring unknown fields; invalid JSON is an error wrapping
// ErrMalformed. It does not validate the fields.
func (m *Message) UnmarshalRecord(data []byte) error {
	var dec Message
	if err := json.Unmarshal(data, &dec); err != nil {
		return fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	*m = dec
	return nil
}

// validate checks the fields of m but From (Seal sets it; OpenEnvelope
// decodes it); errors wrap ErrMalformed.
//
// bodyKnownValid skips re-scanning Body when it came out of json.Unmarshal,
// which already guarantees a RawMessage is valid JSON; verifying is on every
// gossip hop, so the second scan is worth saving.
func (m *Message) validate(bodyKnownValid bool) error {
	switch {
	case m.Type == "":
		return fmt.Errorf("%w: message has no type", ErrMalformed)
	case m.V < 1:
		return fmt.Errorf("%w: message %q has version %d, want >= 1", ErrMalformed, m.Type, m.V)
	case m.ID == "":
		return fmt.Errorf("%w: message %q has no id", ErrMalformed, m.Type)
	case len(m.ID) > maxMessageIDLen:
		return fmt.Errorf("%w: message %q id is %d bytes, want <= %d", ErrMalformed, m.Type, len(m.ID), maxMessageIDLen)
	case m.Created.IsZero():
		return fmt.Errorf("%w: message %q has no created time", ErrMalformed, m.ID)
	case m.Expires.IsZero():
		return fmt.Errorf("%w: message %q has no expires time", ErrMalformed, m.ID)
	case !m.Expires.After(m.Created):
		return fmt.Errorf("%w: message %q expires (%s) before it is created (%s)", ErrMalformed, m.ID,
			m.Expires.Format(time.RFC3339Nano), m.Created.Format(time.RFC3339Nano))
	case len(m.Body) == 0 || string(m.Body) == "null":
		return fmt.Errorf("%w: message %q has no body", ErrMalformed, m.ID)
	case !bodyKnownValid && !json.Valid(m.Body):
		return fmt.Errorf("%w: message %q body is not valid JSON", ErrMalformed, m.ID)
	}
	return nil
}

// NewID returns a new random message ID: 16 random bytes in hex.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// Seal signs m as agent a and returns the marshalled envelope. It sets
// m.From to a.ID, and fills an empty ID with NewID, a zero Created with the
// current time and a zero Expires with Created+DefaultTTL. Times are stored
// in UTC. An invalid message is an error wrapping ErrMalformed.
func Seal(a *Agent, m Message) ([]byte, error) {
	if a == nil || a.Key == nil {
		return nil, errors.New("identity: seal: agent has no key")
	}
	id, err := AgentIDFromPubKey(a.Key.GetPublic())
	if err != nil {
		return nil, fmt.Errorf("identity: seal: agent %q: %w", a.Name, err)
	}
	if a.ID != id {
		return nil, fmt.Errorf("identity: seal: agent %q: ID %s is not the ID of its key (%s)", a.Name, a.ID, id)
	}
	m.From = id
	if m.ID == "" {
		m.ID = NewID()
	}
	if m.Created.IsZero() {
		m.Created = time.Now()
	}
	m.Created = m.Created.UTC()
	if m.Expires.IsZero() {
		m.Expires = m.Created.Add(DefaultTTL)
	}
	m.Expires = m.Expires.UTC()
	if err := m.validate(false); err != nil {
		return nil, fmt.Errorf("identity: seal: %w", err)
	}
	env, err := record.Seal(&m, a.Key)
	if err != nil {
		return nil, fmt.Errorf("identity: seal message %q: %w", m.ID, err)
	}
	data, err := env.Marshal()
	if err != nil {
		return nil, fmt.Errorf("identity: seal message %q: marshal envelope: %w", m.ID, err)
	}
	return data, nil
}

// OpenOptions configures Open and OpenEnvelope. The zero value checks
// signatures and times with no size limit and no replay protection.
type OpenOptions struct {
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// MaxSize is the largest envelope accepted, in bytes, checked before
	// anything else; <= 0 means no limit.
	MaxSize int
	// MaxClockSkew is how far in the future a message's Created may be;
	// <= 0 means DefaultClockSkew.
	MaxClockSkew time.Duration
	// Replay, if not nil, refuses messages seen before and messages created
	// before its window (ErrTooOld) and records accepted ones. Without it
	// Open does not detect replays.
	Replay *ReplayWindow
}

// Open verifies the envelope in data and returns its message. See
// OpenEnvelope.
func Open(data []byte, opts OpenOptions) (*Message, error) {
	m, _, err := OpenEnvelope(data, opts)
	return m, err
}

// OpenEnvelope verifies the envelope in data and returns its message and the
// envelope, whose PublicKey is the signer's. On error both are nil.
//
// Checks run in this order, and the error wraps the sentinel of the first
// that fails:
//
//  1. size: len(data) > MaxSize: ErrTooLarge;
//  2. the envelope protobuf and its payload type: ErrMalformed;
//  3. the signature over Domain, payload type and payload: ErrBadSignature;
//  4. the payload as a JSON Message with valid fields: ErrMalformed;
//  5. the signer is the key of Message.From: ErrWrongSigner;
//  6. Created not after now+MaxClockSkew: ErrNotYetValid;
//  7. now not after Expires: ErrExpired;
//  8. with Replay: Created within Replay's window (ErrTooOld), then (From,
//     ID) not seen before (ErrReplayed). Only a message that passes every
//     check is recorded.
//
// A message whose lifetime (Expires-Created) exceeds the replay window is
// accepted only while it is inside the window: step 8 refuses anything
// created before it, so an old but unexpired message cannot be replayed after
// the window has forgotten it.
func OpenEnvelope(data []byte, opts OpenOptions) (*Message, *record.Envelope, error) {
	if opts.MaxSize > 0 && len(data) > opts.MaxSize {
		return nil, nil, fmt.Errorf("identity: open: envelope is %d bytes, limit %d: %w", len(data), opts.MaxSize, ErrTooLarge)
	}

	// ConsumeTypedEnvelope parses the envelope, verifies its signature and
	// only then decodes the payload into m.
	var m Message
	env, err := record.ConsumeTypedEnvelope(data, &m)
	if env == nil {
		if err == nil {
			err = errors.New("no envelope")
		}
		return nil, nil, fmt.Errorf("identity: open: %w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(env.PayloadType, []byte(payloadType)) {
		return nil, nil, fmt.Errorf("identity: open: %w: payload type %q, want %q", ErrMalformed, env.PayloadType, payloadType)
	}
	if err != nil {
		switch {
		case errors.Is(err, ErrNotJSON):
			// The signature verified; UnmarshalRecord failed.
			return nil, nil, fmt.Errorf("identity: open: %w", errors.Unwrap(err))
		case errors.Is(err, record.ErrInvalidSignature):
			return nil, nil, fmt.Errorf("identity: open: %w: %v", ErrBadSignature, err)
		default:
			// The signer's key could not check the signature at all.
			return nil, nil, fmt.Errorf("identity: open: %w: %v", ErrMalformed, err)
		}
	}
	if err := m.validate(true); err != nil {
		return nil, nil, fmt.Errorf("identity: open: %w", err)
	}

	claimed, err := m.From.PubKey()
	if err != nil {
		return nil, nil, fmt.Errorf("identity: open: %w: message %q from: %w", ErrMalformed, m.ID, err)
	}
	if !claimed.Equals(env.PublicKey) {
		signer, idErr := AgentIDFromPubKey(env.PublicKey)
		if idErr != nil {
			signer = AgentID(fmt.Sprintf("a %s key", env.PublicKey.Type()))
		}
		return nil, nil, fmt.Errorf("identity: open: message %q from %s signed by %s: %w", m.ID, m.From, signer, ErrWrongSigner)
	}

	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	t := now()
	skew := opts.MaxClockSkew
	if skew <= 0 {
		skew = DefaultClockSkew
	}
	if m.Created.After(t.Add(skew)) {
		return nil, nil, fmt.Errorf("identity: open: message %q from %s created %s, more than %s after now (%s): %w",
			m.ID, m.From, m.Created.Format(time.RFC3339Nano), skew, t.Format(time.RFC3339Nano), ErrNotYetValid)
	}
	if t.After(m.Expires) {
		return nil, nil, fmt.Errorf("identity: open: message %q from %s expired at %s, now %s: %w",
			m.ID, m.From, m.Expires.Format(time.RFC3339Nano), t.Format(time.RFC3339Nano), ErrExpired)
	}
	if opts.Replay != nil {
		if err := opts.Replay.Check(m.From, m.ID, m.Created, t); err != nil {
			return nil, nil, err // Check's error names the message
		}
	}
	return &m, env, nil
}
