package node_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

// rawRecord signs arbitrary bytes under parley's domain and payload type,
// as a hostile peer could.
type rawRecord struct{ b []byte }

func (r *rawRecord) Domain() string                 { return identity.Domain }
func (r *rawRecord) Codec() []byte                  { return identity.PayloadType() }
func (r *rawRecord) MarshalRecord() ([]byte, error) { return r.b, nil }
func (r *rawRecord) UnmarshalRecord(b []byte) error { r.b = b; return nil }
func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRawPublisherCannotInjectIntents joins a plain GossipSub peer (no
// parley code on the sending side) to a parley mesh and publishes every
// kind of bad intent; none may reach a subscriber, and each drop is counted
// under its reason by the node that first sees it.
func TestRawPublisherCannotInjectIntents(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const capability = "weather"
	// Scoring off: this test counts every drop, and scoring would rightly
	// graylist the attacker after a few (see TestFloodingPeerIsGraylisted).
	// Scoring off: this test counts every drop, and scoring rightly
	// graylists the attacker after a few (TestFloodingPeerIsGraylisted).
	m := nodetest.NewMesh(t, 2, nodetest.WithConfig(func(_ int, c *node.Config) { c.NoPeerScoring = true }))
	victim, behind := m.Nodes[0], m.Nodes[1]
	// behind is connected to victim only (the raw peer connects to victim
	// alone): what behind receives, victim forwarded.

	// An ed25519 key, like a parley node's, so the liar's node can
	// delegate it.
	rawHost, err := m.Net.AddPeer(nodetest.Key(t), nodetest.Addr(99))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Net.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Net.ConnectPeers(rawHost.ID(), victim.ID()); err != nil {
		t.Fatal(err)
	}
	raw, err := pubsub.NewGossipSub(ctx, rawHost,
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		// The attacker never deduplicates its own sends.
		pubsub.WithMessageIdFn(func(*pb.Message) string { return rand.Text() }),
		pubsub.WithFloodPublish(true))
	if err != nil {
		t.Fatal(err)
	}
	topic, err := raw.Join(intent.Topic(capability))
	if err != nil {
		t.Fatal(err)
	}

	wait := collect(t, ctx, []*node.Node{victim, behind}, capability)
	nodetest.WaitTopic(t, ctx, capability, victim, behind)
	honest := publish(t, ctx, behind, capability, `{"city":"Oslo"}`)
	wait(honest)

	liar, err := nodetest.NewAgent("liar")
	if err != nil {
		t.Fatal(err)
	}
	victimAgent, _ := victim.Agent("")
	now := time.Now()
	// The liar's node delegates it properly: each bad intent below fails
	// for the one reason it is built for.
	deleg, err := identity.Delegate(rawHost.Peerstore().PrivKey(rawHost.ID()), liar.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	replyAs := func(capability, payload string, node peer.ID) []byte {
		return mustJSON(t, intent.Body{Kind: intent.KindEvent, Capability: capability, Payload: json.RawMessage(payload),
			ReplyTo: intent.ReplyTo{Peer: node}, Delegation: deleg})
	}
	body := func(capability string, payload string) []byte { return replyAs(capability, payload, rawHost.ID()) }
	seal := func(m identity.Message) []byte {
		b, err := identity.Seal(liar, m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	msg := func(b []byte) identity.Message {
		return identity.Message{Type: intent.MessageType, V: intent.Version, Body: b}
	}
	forged := func() []byte {
		m := msg(body(capability, `{}`))
		m.ID, m.From, m.Created, m.Expires = identity.NewID(), victimAgent.ID, now, now.Add(time.Minute)
		env, err := record.Seal(&m, liar.Key)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := env.Marshal()
		return b
	}
	signedRaw := func(b []byte) []byte {
		env, err := record.Seal(&rawRecord{b}, liar.Key)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := env.Marshal()
		return out
	}
	tampered := bytes.Replace(honest.Raw, []byte("Oslo"), []byte("Oslp"), 1)
	if bytes.Equal(tampered, honest.Raw) {
		t.Fatal("payload not found in envelope bytes")
	}
	expired := msg(body(capability, `{}`))
	expired.Created, expired.Expires = now.Add(-2*time.Minute), now.Add(-time.Minute)

	bad := []struct {
		reason string
		data   []byte
	}{
		{"unsigned", body(capability, `{"plain":"json"}`)},
		{"unsigned", []byte("garbage")},
		{"bad_signature", tampered},
		{"wrong_signer", forged()},
		{"not_json", signedRaw([]byte("{not json"))},
		{"expired", seal(expired)},
		{"oversize", seal(msg(body(capability, `"`+string(bytes.Repeat([]byte("x"), intent.DefaultMaxSize))+`"`)))},
		{"wrong_topic", seal(msg(body("pricing", `{}`)))},
		// Reply-to naming the victim's node: the liar's delegation says
		// otherwise.
		{"not_delegated", seal(msg(replyAs(capability, `{}`, victim.ID())))},
		{"version", seal(identity.Message{Type: intent.MessageType, V: 1, Body: body(capability, `{}`)})},
	}
	// A verbatim replay is a GossipSub duplicate and never reaches the
	// validator; an envelope with an unknown protobuf field appended has
	// new bytes, a new message ID and the same valid signature, so only
	// the replay window stands in its way.
	for len(topic.ListPeers()) == 0 { // the attacker must know the victim subscribes
		time.Sleep(20 * time.Millisecond)
	}
	replayed := append(bytes.Clone(honest.Raw), 0x78, 0x01)
	want := map[string]uint64{"replayed": 1}
	if err := topic.Publish(ctx, replayed); err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		if err := topic.Publish(ctx, b.data); err != nil {
			t.Fatalf("raw publish (%s): %v", b.reason, err)
		}
		want[b.reason]++
	}
	// An honest intent published after the attack proves the subscribers
	// are live and that nothing bad arrived before it.
	after := publish(t, ctx, behind, capability, `{"city":"Lima"}`)
	wait(after)

	deadline := time.Now().Add(5 * time.Second)
	for {
		got := victim.Stats().Dropped
		ok := true
		for r, n := range want {
			if got[r] != n {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("victim's drops by reason = %v, want %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for r, n := range behind.Stats().Dropped {
		if n != 0 {
			t.Errorf("victim forwarded a bad intent: node behind it dropped %d as %s", n, r)
		}
	}
}

// TestFloodingPeerIsGraylisted floods a node with invalid intents from a
// raw GossipSub peer: peer scoring graylists it after a few, so the node
// stops even validating its traffic, while honest intents still flow.
func TestFloodingPeerIsGraylisted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := nodetest.NewMesh(t, 2)
	victim, honest := m.Nodes[0], m.Nodes[1]
	rawHost, err := m.Net.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Net.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Net.ConnectPeers(rawHost.ID(), victim.ID()); err != nil {
		t.Fatal(err)
	}
	raw, err := pubsub.NewGossipSub(ctx, rawHost,
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(*pb.Message) string { return rand.Text() }))
	if err != nil {
		t.Fatal(err)
	}
	topic, err := raw.Join(intent.Topic("weather"))
	if err != nil {
		t.Fatal(err)
	}
	wait := collect(t, ctx, []*node.Node{victim}, "weather")
	// Both the honest node and the flooder must know the victim is on the
	// topic, or their messages go nowhere.
	for len(honest.TopicPeers("weather")) == 0 || len(topic.ListPeers()) == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	const flood = 200
	for i := range flood {
		if err := topic.Publish(ctx, []byte(fmt.Sprintf("garbage %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	wait(publish(t, ctx, honest, "weather", `{"still":"working"}`))
	// Validation runs concurrently, so the honest intent may overtake the
	// flood: wait for the score, then count what was validated.
	deadline := time.Now().Add(5 * time.Second)
	for victim.PeerScores()[rawHost.ID()] >= -80 {
		if time.Now().After(deadline) {
			t.Fatalf("flooder's score = %v, want below the graylist threshold", victim.PeerScores()[rawHost.ID()])
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := victim.Stats().Dropped["unsigned"]; got == 0 || got >= flood {
		t.Fatalf("victim validated %d of %d flood messages; want a few, then the flooder graylisted (drops %v)", got, flood, victim.Stats().Dropped)
	}

	// Graylisted, its bytes would still be read: it is disconnected and
	// refused for a back-off instead, and the honest peer stays.
	for victim.Host().Network().Connectedness(rawHost.ID()) == network.Connected {
		if time.Now().After(deadline) {
			t.Fatal("graylisted flooder still connected")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := m.Net.ConnectPeers(rawHost.ID(), victim.ID()); err == nil {
		deadline := time.Now().Add(5 * time.Second)
		for victim.Host().Network().Connectedness(rawHost.ID()) == network.Connected {
			if time.Now().After(deadline) {
				t.Fatal("banned flooder reconnected and stayed")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if victim.Host().Network().Connectedness(honest.ID()) != network.Connected {
		t.Fatal("the honest peer was disconnected with the flooder")
	}
	if got := metricValue(t, victim, "parley_peers_banned_total"); got != 1 {
		t.Fatalf("parley_peers_banned_total = %v, want 1", got)
	}
}
