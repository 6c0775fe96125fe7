package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/admission"
	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

// collect subscribes every node to capability and returns a function that
// waits until each node has received want intents (by ID) or fails.
func collect(t *testing.T, ctx context.Context, nodes []*node.Node, capability string) func(want ...*intent.Intent) {
	t.Helper()
	got := make([]chan *intent.Intent, len(nodes))
	for i, nd := range nodes {
		sub, err := nd.Subscribe(ctx, capability)
		if err != nil {
			t.Fatalf("node %d subscribe %s: %v", i, capability, err)
		}
		t.Cleanup(sub.Close)
		ch := make(chan *intent.Intent, 64)
		got[i] = ch
		go func() {
			for {
				in, err := sub.Next(ctx)
				if err != nil {
					return
				}
				ch <- in
			}
		}()
	}
	return func(want ...*intent.Intent) {
		t.Helper()
		for i, ch := range got {
			missing := map[string]*intent.Intent{}
			for _, w := range want {
				missing[w.ID] = w
			}
			for len(missing) > 0 {
				select {
				case in := <-ch:
					w, ok := missing[in.ID]
					if !ok {
						t.Fatalf("node %d got unexpected intent %s on %s", i, in.ID, capability)
					}
					if in.From != w.From || in.Capability != capability || string(in.Payload) != string(w.Payload) {
						t.Fatalf("node %d got %+v, want %+v", i, in.Body, w.Body)
					}
					delete(missing, in.ID)
				case <-ctx.Done():
					t.Fatalf("node %d on %s: %d of %d intents never arrived", i, capability, len(missing), len(want))
				}
			}
		}
	}
}

func publish(t *testing.T, ctx context.Context, nd *node.Node, capability, payload string) *intent.Intent {
	t.Helper()
	in, err := nd.Publish(ctx, node.PublishRequest{Capability: capability, Payload: json.RawMessage(payload)})
	if err != nil {
		t.Fatalf("publish %s: %v", capability, err)
	}
	return in
}

func TestMeshIntentsOnTwoCapabilities(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := nodetest.NewMesh(t, 12, nodetest.WithTopology(nodetest.Random(3, 7)))

	waitWeather := collect(t, ctx, m.Nodes, "weather")
	waitPricing := collect(t, ctx, m.Nodes[:6], "pricing")
	nodetest.WaitTopic(t, ctx, "weather", m.Nodes...)
	nodetest.WaitTopic(t, ctx, "pricing", m.Nodes[:6]...)

	w1 := publish(t, ctx, m.Nodes[0], "weather", `{"city":"Oslo"}`)
	w2 := publish(t, ctx, m.Nodes[11], "weather", `{"city":"Lima"}`)
	p1 := publish(t, ctx, m.Nodes[3], "pricing", `{"sku":"A-1","qty":3}`)

	waitWeather(w1, w2)
	waitPricing(p1)

	st := m.Nodes[5].Stats()
	if st.Received < 2 {
		t.Errorf("node 5 counted %d received intents, want >= 2", st.Received)
	}
	// The wire counters hold at least the two intents' RPCs and bytes.
	if min := uint64(len(w1.Raw) + len(w2.Raw)); st.RPCs < 2 || st.RPCBytes < min {
		t.Errorf("node 5 counted %d gossip RPCs of %d bytes, want >= 2 RPCs and >= %d bytes", st.RPCs, st.RPCBytes, min)
	}
	for i, nd := range m.Nodes {
		for reason, c := range nd.Stats().Dropped {
			if c != 0 {
				t.Errorf("node %d dropped %d honest intents as %s", i, c, reason)
			}
		}
	}
}

// TestRelayRate: past its relay rate a node still delivers other nodes'
// intents to its own subscribers, and no longer hands them on.
func TestRelayRate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const relayed, sent = 2, 5
	m := nodetest.NewMesh(t, 3, nodetest.WithTopology(nodetest.Chain), nodetest.WithConfig(func(i int, c *node.Config) {
		if i == 1 {
			c.Limits.IntentsRelayed = admission.Rate{PerSecond: 1e-6, Burst: relayed}
		}
	}))
	waitAll := collect(t, ctx, m.Nodes[:2], "weather")
	sub, err := m.Nodes[2].Subscribe(ctx, "weather")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Close)
	nodetest.WaitTopic(t, ctx, "weather", m.Nodes...)

	var all []*intent.Intent
	for i := range sent {
		all = append(all, publish(t, ctx, m.Nodes[0], "weather", fmt.Sprintf(`{"n":%d}`, i)))
	}
	waitAll(all...)
	for range relayed {
		if _, err := sub.Next(ctx); err != nil {
			t.Fatalf("node 2, past the relay: %v", err)
		}
	}
	// The rest was delivered on node 1 and counted there as not relayed,
	// so it can no longer reach node 2, whose only peer is node 1.
	if got := m.Nodes[1].Stats().NotRelayed; got != sent-relayed {
		t.Errorf("node 1 did not relay %d intents, want %d", got, sent-relayed)
	}
}

// TestSlowSubscriberLoss: a subscriber that stops reading misses intents,
// and the node counts them as lost rather than dropping them silently,
// whether GossipSub delivers them or the node keeps them local past its
// relay rate.
func TestSlowSubscriberLoss(t *testing.T) {
	fast := admission.Rate{PerSecond: 1e6, Burst: 1e6}
	for _, c := range []struct {
		name  string
		relay admission.Rate
	}{
		{"relayed", fast},
		{"kept local", admission.Rate{PerSecond: 1e-6, Burst: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			m := nodetest.NewMesh(t, 2, nodetest.WithConfig(func(_ int, cfg *node.Config) {
				cfg.Limits.IntentsPerForwarder, cfg.Limits.IntentsPerOrigin, cfg.Limits.IntentsPerAgent = fast, fast, fast
				cfg.Limits.IntentsRelayed = c.relay
			}))
			own, err := m.Nodes[0].Subscribe(ctx, "weather") // the publisher reads its own
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				for {
					if _, err := own.Next(ctx); err != nil {
						return
					}
				}
			}()
			sub, err := m.Nodes[1].Subscribe(ctx, "weather") // never read
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(sub.Close)
			nodetest.WaitTopic(t, ctx, "weather", m.Nodes...)
			// More than the subscription's buffer of 256 (and GossipSub's
			// in front of it, on the relayed path).
			const sent, buffer = 600, 256
			for i := range sent {
				publish(t, ctx, m.Nodes[0], "weather", fmt.Sprintf(`{"n":%d}`, i))
			}
			for {
				st := m.Nodes[1].Stats()
				if st.Received == sent {
					if lost := st.Lost["slow_subscriber"]; lost == 0 || lost > sent-buffer {
						t.Errorf("%d of %d intents counted lost to the slow subscriber, want 1 to %d", lost, sent, sent-buffer)
					}
					return
				}
				select {
				case <-ctx.Done():
					t.Fatalf("node 1 received %d of %d intents", st.Received, sent)
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
	}
}

func TestPublishRejectsBadInput(t *testing.T) {
	m := nodetest.NewMesh(t, 1)
	nd := m.Nodes[0]
	ctx := context.Background()
	cases := []struct {
		name string
		req  node.PublishRequest
		want error
	}{
		{"bad capability", node.PublishRequest{Capability: "Bad Name!", Payload: json.RawMessage(`{}`)}, intent.ErrBadCapability},
		{"capability with slash", node.PublishRequest{Capability: "a/b", Payload: json.RawMessage(`{}`)}, intent.ErrBadCapability},
		{"payload not JSON", node.PublishRequest{Capability: "ok", Payload: json.RawMessage(`{nope`)}, intent.ErrBadPayload},
		{"bad kind", node.PublishRequest{Capability: "ok", Kind: "shout", Payload: json.RawMessage(`1`)}, intent.ErrBadKind},
		{"unknown agent", node.PublishRequest{Agent: "ghost", Capability: "ok", Payload: json.RawMessage(`1`)}, node.ErrUnknownAgent},
		{"too large", node.PublishRequest{Capability: "ok", Payload: json.RawMessage(`"` + strings.Repeat("x", intent.DefaultMaxSize) + `"`)}, node.ErrPayloadTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := nd.Publish(ctx, tc.req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Publish: got %v, want %v", err, tc.want)
			}
		})
	}
	if got := nd.Stats().Published; got != 0 {
		t.Errorf("published counter = %d after only bad input, want 0", got)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	agent, err := nodetest.NewAgent("a")
	if err != nil {
		t.Fatal(err)
	}
	key := nodetest.Key(t)
	cases := []struct {
		name string
		edit func(*node.Config)
		want string
	}{
		{"bootstrap without /p2p/", func(c *node.Config) { c.Bootstrap = []string{"/ip4/1.2.3.4/tcp/1"} }, "/ip4/1.2.3.4/tcp/1"},
		{"bootstrap not a multiaddr", func(c *node.Config) { c.Bootstrap = []string{"host:4001"} }, "host:4001"},
		{"duplicate agent", func(c *node.Config) { c.Agents = []*identity.Agent{agent, agent} }, "used twice"},
		{"watermarks", func(c *node.Config) { c.ConnLow, c.ConnHigh = 10, 5 }, "ConnLow"},
		{"replay shorter than ttl", func(c *node.Config) { c.IntentTTL, c.ReplayWindow = time.Hour, time.Minute }, "ReplayWindow"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := node.DefaultConfig()
			cfg.NodeKey = key
			cfg.Agents = []*identity.Agent{agent}
			tc.edit(&cfg)
			_, err := node.New(cfg)
			if !errors.Is(err, node.ErrBadConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: got %v, want ErrBadConfig naming %q", err, tc.want)
			}
		})
	}
}
