package identity

import (
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// Agent is a named identity that signs messages.
type Agent struct {
	// Name is a local, human-readable name; see ValidAgentName. It is not
	// authenticated: peers know an agent by ID.
	Name string
	// ID is the did:key of Key's public half.
	ID AgentID
	// Key is the agent's ed25519 signing key.
	Key crypto.PrivKey
}

// ErrBadAgentName is wrapped by errors for names ValidAgentName refuses.
var ErrBadAgentName = errors.New("invalid agent name")

// maxAgentNameLen is the longest valid agent name.
const maxAgentNameLen = 64

// NewAgent returns the agent called name with the ed25519 key key.
func NewAgent(name string, key crypto.PrivKey) (*Agent, error) {
	if err := ValidAgentName(name); err != nil {
		return nil, err
	}
	if key == nil {
		return nil, fmt.Errorf("identity: agent %q: nil key", name)
	}
	id, err := AgentIDFromPubKey(key.GetPublic())
	if err != nil {
		return nil, fmt.Errorf("identity: agent %q: %w", name, err)
	}
	return &Agent{Name: name, ID: id, Key: key}, nil
}

// ValidAgentName reports whether name is 1 to 64 characters of [a-z0-9_-]
// starting with a letter or digit. Errors wrap ErrBadAgentName.
func ValidAgentName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrBadAgentName)
	}
	if len(name) > maxAgentNameLen {
		return fmt.Errorf("%w %.64q...: longer than %d characters", ErrBadAgentName, name, maxAgentNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '-' || c == '_') && i > 0:
		default:
			return fmt.Errorf("%w %q: want 1-%d characters of [a-z0-9_-] starting with a letter or digit",
				ErrBadAgentName, name, maxAgentNameLen)
		}
	}
	return nil
}
