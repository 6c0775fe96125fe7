package frame_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation/frame"
)

func agent(t testing.TB, name string) *identity.Agent {
	t.Helper()
	k, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := identity.NewAgent(name, k)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func sealed(t testing.TB, a *identity.Agent, typ string, body any) []byte {
	t.Helper()
	b, _ := json.Marshal(body)
	data, err := identity.Seal(a, identity.Message{Type: typ, V: 1, Body: b})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestDecode(t *testing.T) {
	alice, bob := agent(t, "alice"), agent(t, "bob")
	good := sealed(t, alice, "propose", map[string]any{"task": "t1", "price": 2})
	cases := []struct {
		name   string
		data   []byte
		peer   identity.AgentID
		reason string
	}{
		{"good", good, alice.ID, ""},
		{"from someone else", good, bob.ID, "wrong_signer"},
		{"garbage", []byte("nope"), "", "unsigned"},
		{"body not an object", sealed(t, alice, "propose", []int{1}), "", "malformed"},
		{"oversize", make([]byte, frame.DefaultMaxSize+1), "", "oversize"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body struct {
				Task  string  `json:"task"`
				Price float64 `json:"price"`
			}
			m, err := frame.Decode(tc.data, tc.peer, frame.Options{}, &body)
			if got := frame.Reason(err); got != tc.reason {
				t.Fatalf("Decode: %v (reason %q), want reason %q", err, got, tc.reason)
			}
			if tc.reason == "" && (m.Type != "propose" || body.Task != "t1" || body.Price != 2) {
				t.Fatalf("decoded %+v %+v", m, body)
			}
		})
	}
	if _, err := frame.Decode(good, "", frame.Options{}, nil); err != nil {
		t.Fatal(err)
	}
	r := identity.NewReplayWindow(identity.ReplayConfig{})
	if _, err := frame.Decode(good, "", frame.Options{Replay: r}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := frame.Decode(good, "", frame.Options{Replay: r}, nil); !errors.Is(err, identity.ErrReplayed) {
		t.Fatalf("replayed frame: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	a := agent(f, "a")
	f.Add(sealed(f, a, "propose", map[string]any{"task": "t", "price": 1}))
	f.Add(sealed(f, a, "result", map[string]any{"task": "t", "output": map[string]int{"x": 1}}))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var body map[string]any
		m, err := frame.Decode(data, "", frame.Options{}, &body)
		if err == nil && m == nil {
			t.Fatal("nil message without error")
		}
	})
}
