package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/mr-tron/base58"
)

// did:key test vectors. The ed25519 public key of the all-zero seed is
// 3b6a27bc...; its did:key appears throughout the did:key ecosystem. The
// did:key spec's example key 2e6fcce3... is did:key:z6MkhaXg... (not
// z6MkiTBz..., which is the all-zero-seed key).
var didKeyVectors = []struct {
	name   string
	seed   string // hex, or "" if only the public key is known
	pubHex string
	did    string
}{
	{
		name:   "all-zero seed",
		seed:   strings.Repeat("00", 32),
		pubHex: "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29",
		did:    "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
	},
	{
		name:   "did:key spec example",
		pubHex: "2e6fcce36701dc791488e0d0b1745cc1e33a4c1c9fcc41c63bd343dbbe0970e6",
		did:    "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
	},
}

func TestAgentIDVectors(t *testing.T) {
	for _, v := range didKeyVectors {
		t.Run(v.name, func(t *testing.T) {
			pub, err := hex.DecodeString(v.pubHex)
			if err != nil {
				t.Fatal(err)
			}
			if v.seed != "" {
				seed, _ := hex.DecodeString(v.seed)
				derived := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
				if !derived.Equal(ed25519.PublicKey(pub)) {
					t.Fatalf("public key of seed = %x, want %s", []byte(derived), v.pubHex)
				}
			}
			// Independent encoding: "did:key:z" + base58(0xed 0x01 || key).
			if got := "did:key:z" + base58.Encode(append([]byte{0xed, 0x01}, pub...)); got != v.did {
				t.Fatalf("manual encoding = %s, want %s", got, v.did)
			}

			pk, err := crypto.UnmarshalEd25519PublicKey(pub)
			if err != nil {
				t.Fatal(err)
			}
			id, err := AgentIDFromPubKey(pk)
			if err != nil {
				t.Fatal(err)
			}
			if id.String() != v.did {
				t.Fatalf("AgentIDFromPubKey = %s, want %s", id, v.did)
			}

			parsed, err := ParseAgentID(v.did)
			if err != nil {
				t.Fatal(err)
			}
			back, err := parsed.PubKey()
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := back.Raw()
			if hex.EncodeToString(raw) != v.pubHex {
				t.Fatalf("PubKey = %x, want %s", raw, v.pubHex)
			}
			again, err := AgentIDFromPubKey(back)
			if err != nil {
				t.Fatal(err)
			}
			if again != parsed {
				t.Fatalf("round trip = %s, want %s", again, parsed)
			}
		})
	}
}

func TestParseAgentIDBad(t *testing.T) {
	key := make([]byte, 32)
	enc := func(b []byte) string { return "did:key:z" + base58.Encode(b) }
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"no prefix", "z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"},
		{"other method", "did:web:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"},
		{"other multibase", "did:key:f6d6b6579206e6f74206d756c746962617365"},
		{"prefix only", "did:key:z"},
		{"bad base58", "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDoo0O"},
		{"wrong multicodec x25519", enc(append([]byte{0xec, 0x01}, key...))},
		{"wrong multicodec secp256k1", enc(append([]byte{0xe7, 0x01}, key...))},
		{"short key", enc(append([]byte{0xed, 0x01}, key[:31]...))},
		{"long key", enc(append([]byte{0xed, 0x01}, append(key, 0)...))},
		{"codec only", enc([]byte{0xed, 0x01})},
		{"one byte", enc([]byte{0xed})},
		{"trailing fragment", "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp#z6Mk"},
		{"huge", "did:key:z" + strings.Repeat("z", 100_000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAgentID(tt.in)
			if !errors.Is(err, ErrBadAgentID) {
				t.Fatalf("ParseAgentID(%q) error = %v, want ErrBadAgentID", tt.in, err)
			}
			if len(tt.in) < 100 && !strings.Contains(err.Error(), `"`+tt.in+`"`) {
				t.Errorf("error %q does not quote the input", err)
			}
			if _, err := AgentID(tt.in).PubKey(); !errors.Is(err, ErrBadAgentID) {
				t.Errorf("PubKey error = %v, want ErrBadAgentID", err)
			}
		})
	}
}

func TestAgentIDFromPubKeyNotEd25519(t *testing.T) {
	_, pub, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AgentIDFromPubKey(pub); !errors.Is(err, ErrBadAgentID) {
		t.Fatalf("error = %v, want ErrBadAgentID", err)
	}
	if _, err := AgentIDFromPubKey(nil); !errors.Is(err, ErrBadAgentID) {
		t.Fatalf("nil key error = %v, want ErrBadAgentID", err)
	}
}

func TestValidAgentName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"0", true},
		{"agent-1_b", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{"-agent", false},
		{"_agent", false},
		{"Agent", false},
		{"agent.1", false},
		{"agent 1", false},
		{"agént", false},
	}
	for _, tt := range tests {
		err := ValidAgentName(tt.name)
		if tt.ok && err != nil {
			t.Errorf("ValidAgentName(%q) = %v, want nil", tt.name, err)
		}
		if !tt.ok && !errors.Is(err, ErrBadAgentName) {
			t.Errorf("ValidAgentName(%q) = %v, want ErrBadAgentName", tt.name, err)
		}
	}
}

func TestNewAgent(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAgent("alice", key)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := AgentIDFromPubKey(key.GetPublic())
	if a.Name != "alice" || a.ID != want || a.Key != key {
		t.Fatalf("NewAgent = %+v", a)
	}
	if _, err := NewAgent("Alice", key); !errors.Is(err, ErrBadAgentName) {
		t.Fatalf("bad name error = %v, want ErrBadAgentName", err)
	}
	if _, err := NewAgent("alice", nil); err == nil {
		t.Fatal("nil key: no error")
	}
	secp, _, _ := crypto.GenerateSecp256k1Key(rand.Reader)
	if _, err := NewAgent("alice", secp); !errors.Is(err, ErrBadAgentID) {
		t.Fatalf("secp256k1 key error = %v, want ErrBadAgentID", err)
	}
}
