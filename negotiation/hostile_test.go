package negotiation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/record"
	"github.com/libp2p/go-msgio"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/negotiation/frame"
	"github.com/parleynet/parley/node/nodetest"
)

// TestBadFramesResetTheirStreamOnly opens raw libp2p streams to a node
// that is negotiating and sends every kind of bad frame; each stream is
// reset and counted, and the honest negotiation completes.
func TestBadFramesResetTheirStreamOnly(t *testing.T) {
	m, _ := newNegMesh(t, 2, agentSpec{node: 1, name: "honest", price: 1, work: func(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
		time.Sleep(300 * time.Millisecond)
		return task.Input, nil
	}})
	victim := m.Nodes[0]
	raw, err := m.Net.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Net.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Net.ConnectPeers(raw.ID(), victim.ID()); err != nil {
		t.Fatal(err)
	}
	liar, err := nodetest.NewAgent("liar")
	if err != nil {
		t.Fatal(err)
	}
	victimAgent, _ := victim.Agent("")
	now := time.Now()
	body, _ := json.Marshal(map[string]any{"task": "nope", "price": 1})
	forged := identity.Message{Type: "propose", V: 1, ID: identity.NewID(), From: victimAgent.ID, Created: now, Expires: now.Add(time.Minute), Body: body}
	env, err := record.Seal(&forged, liar.Key)
	if err != nil {
		t.Fatal(err)
	}
	forgedBytes, _ := env.Marshal()
	unknownTask, err := identity.Seal(liar, identity.Message{Type: "propose", V: 1, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	futureVersion, err := identity.Seal(liar, identity.Message{Type: "propose", V: 2, Body: body})
	if err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		out, err := request(t, victim, `{"honest":true}`)
		if err == nil && string(out.Result) != `{"honest":true}` {
			err = errors.New("wrong result " + string(out.Result))
		}
		done <- err
	}()

	cases := []struct {
		name, reason string
		frame        []byte
	}{
		{"garbage", "unsigned", []byte("this is not an envelope")},
		{"unsigned JSON", "unsigned", []byte(`{"type":"propose","body":{"task":"x"}}`)},
		{"oversize", "oversize", bytes.Repeat([]byte("x"), frame.DefaultMaxSize+1)},
		{"wrongly signed", "wrong_signer", forgedBytes},
		{"unknown task", "unknown_task", unknownTask},
		{"a version this node does not speak", "version", futureVersion},
	}
	for _, tc := range cases {
		s, err := raw.NewStream(context.Background(), victim.ID(), negotiation.ProtocolID)
		if err != nil {
			t.Fatalf("%s: open stream: %v", tc.name, err)
		}
		// An oversize frame may be cut off mid-write: the node resets the
		// stream as soon as it reads the length.
		_ = msgio.NewVarintWriter(s).WriteMsg(tc.frame)
		// The node must end the stream without answering.
		if n, _ := io.ReadAll(s); len(n) > 0 {
			t.Errorf("%s: node answered %q", tc.name, n)
		}
		_ = s.Reset()
	}
	if err := <-done; err != nil {
		t.Fatalf("honest negotiation during the attack: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	want := map[string]uint64{"unsigned": 2, "oversize": 1, "wrong_signer": 1, "unknown_task": 1, "version": 1}
	for {
		got := victim.NegotiationDropped()
		ok := true
		for r, n := range want {
			ok = ok && got[r] == n
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("frames dropped by reason = %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
