package identity

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/mr-tron/base58"
)

// AgentID names an agent by its ed25519 public key as a did:key:
// "did:key:z" followed by the base58btc encoding of the multicodec
// ed25519-pub prefix (0xed 0x01) and the 32-byte public key, for example
// "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp".
type AgentID string

// ErrBadAgentID is wrapped by errors for strings or keys that are not a
// valid ed25519 did:key.
var ErrBadAgentID = errors.New("invalid agent id")

const (
	// agentIDPrefix is the did:key method prefix plus the multibase
	// base58btc prefix 'z'.
	agentIDPrefix = "did:key:z"
	// maxAgentIDLen bounds the input to ParseAgentID before base58 decoding,
	// whose cost grows with the square of the input length. An ed25519
	// did:key is 56 bytes.
	maxAgentIDLen = 64
)

// multicodecEd25519Pub is the unsigned-varint multicodec for ed25519-pub.
var multicodecEd25519Pub = [2]byte{0xed, 0x01}

// AgentIDFromPubKey returns the AgentID of an ed25519 public key.
func AgentIDFromPubKey(pk crypto.PubKey) (AgentID, error) {
	if pk == nil {
		return "", fmt.Errorf("%w: nil public key", ErrBadAgentID)
	}
	if pk.Type() != crypto.Ed25519 {
		return "", fmt.Errorf("%w: key type is %s, want Ed25519", ErrBadAgentID, pk.Type())
	}
	raw, err := pk.Raw()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadAgentID, err)
	}
	if len(raw) != ed25519.PublicKeySize {
		return "", fmt.Errorf("%w: ed25519 public key is %d bytes, want %d", ErrBadAgentID, len(raw), ed25519.PublicKeySize)
	}
	var b [len(multicodecEd25519Pub) + ed25519.PublicKeySize]byte
	copy(b[:], multicodecEd25519Pub[:])
	copy(b[len(multicodecEd25519Pub):], raw)
	return AgentID(agentIDPrefix + base58.Encode(b[:])), nil
}

// ParseAgentID checks that s is an ed25519 did:key and returns it as an
// AgentID. Errors wrap ErrBadAgentID and quote s.
func ParseAgentID(s string) (AgentID, error) {
	if _, err := agentIDKey(s); err != nil {
		return "", err
	}
	return AgentID(s), nil
}

// agentIDKey decodes the raw 32-byte public key of the did:key s.
func agentIDKey(s string) ([]byte, error) {
	bad := func(format string, args ...any) error {
		q := s
		if len(q) > 2*maxAgentIDLen {
			q = q[:2*maxAgentIDLen] + "..."
		}
		return fmt.Errorf("%w %q: %s", ErrBadAgentID, q, fmt.Sprintf(format, args...))
	}
	if len(s) > maxAgentIDLen {
		return nil, bad("longer than %d bytes", maxAgentIDLen)
	}
	enc, ok := strings.CutPrefix(s, agentIDPrefix)
	if !ok {
		return nil, bad("want prefix %q", agentIDPrefix)
	}
	if enc == "" {
		return nil, bad("empty key")
	}
	b, err := base58.Decode(enc)
	if err != nil {
		return nil, bad("bad base58btc: %v", err)
	}
	if len(b) < len(multicodecEd25519Pub) || b[0] != multicodecEd25519Pub[0] || b[1] != multicodecEd25519Pub[1] {
		return nil, bad("multicodec is not ed25519-pub (0xed01)")
	}
	key := b[len(multicodecEd25519Pub):]
	if len(key) != ed25519.PublicKeySize {
		return nil, bad("ed25519 public key is %d bytes, want %d", len(key), ed25519.PublicKeySize)
	}
	return key, nil
}

// String returns the did:key string.
func (a AgentID) String() string { return string(a) }

// PubKey returns the ed25519 public key named by a.
func (a AgentID) PubKey() (crypto.PubKey, error) {
	raw, err := agentIDKey(string(a))
	if err != nil {
		return nil, err
	}
	pk, err := crypto.UnmarshalEd25519PublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrBadAgentID, string(a), err)
	}
	return pk, nil
}
