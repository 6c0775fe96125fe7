package negotiation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	"github.com/libp2p/go-msgio"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/negotiation/frame"
	"github.com/parleynet/parley/node"
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

// TestContractsPerOriginBound: a node bids on at most
// MaxContractsPerOrigin live calls from one requester node at a time;
// the next is dropped and counted, and another requester's call is still
// taken. Ended contracts do not count.
func TestContractsPerOriginBound(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	bids := map[peer.ID]int{}
	worker := negotiation.HandlerFuncs{
		BidFunc: func(ctx context.Context, call negotiation.Call) (negotiation.Bid, error) {
			mu.Lock()
			bids[call.RequesterPeer]++
			mu.Unlock()
			select { // a live contract until the test lets it go
			case <-release:
			case <-ctx.Done():
			}
			return negotiation.Bid{}, errors.New("busy")
		},
	}
	m := nodetest.NewMesh(t, 3, nodetest.WithConfig(func(i int, c *node.Config) {
		if i == 2 {
			c.Negotiation.MaxContractsPerOrigin = 2
		}
	}))
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free()
	if _, err := m.Nodes[2].AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{"slow"}}, worker); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range m.Nodes[:2] {
		if err := n.WaitReady(ctx, "slow"); err != nil {
			t.Fatal(err)
		}
	}
	call := func(n *node.Node) {
		go func() {
			_, _ = n.Request(ctx, negotiation.Need{Capability: "slow"}, negotiation.WithBidWindow(5*time.Second))
		}()
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			if ctx.Err() != nil {
				t.Fatalf("%s: bids %v, dropped %v", what, bids, m.Nodes[2].NegotiationDropped())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	bidsFrom := func(n *node.Node) int { mu.Lock(); defer mu.Unlock(); return bids[n.ID()] }
	for range 3 {
		call(m.Nodes[0])
	}
	waitFor("two calls taken from node 0, the third dropped", func() bool {
		return bidsFrom(m.Nodes[0]) == 2 && m.Nodes[2].NegotiationDropped()["contracts_per_origin"] == 1
	})
	call(m.Nodes[1])
	waitFor("node 1's call taken", func() bool { return bidsFrom(m.Nodes[1]) == 1 })
	if got := bidsFrom(m.Nodes[0]); got != 2 {
		t.Errorf("the worker bid on %d calls from node 0, want its bound of 2", got)
	}
	// Once the worker refuses them, node 0's contracts are over and no
	// longer count against it.
	free()
	waitFor("node 0's contracts ended", func() bool {
		ts := m.Nodes[2].Tasks()
		for _, ti := range ts {
			if !ti.State.Terminal() {
				return false
			}
		}
		return len(ts) == 3
	})
	call(m.Nodes[0])
	waitFor("node 0's next call taken once its others ended", func() bool { return bidsFrom(m.Nodes[0]) == 3 })
}
