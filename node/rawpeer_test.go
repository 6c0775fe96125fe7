package node_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

// rawPeer is a peer with no parley node: a mocknet host with an ed25519
// key (so it can delegate agents as a node does), plain GossipSub, and as
// many agent keys as it likes. It signs perfectly valid messages with
// whatever parameters a test gives it.
type rawPeer struct {
	t    *testing.T
	h    host.Host
	key  crypto.PrivKey
	ps   *pubsub.PubSub
	tops map[string]*pubsub.Topic
}

// newRawPeer adds a raw peer to m's mocknet, linked to every node and
// connected to those given.
func newRawPeer(t *testing.T, m *nodetest.Mesh, connect ...peer.ID) *rawPeer {
	t.Helper()
	key := nodetest.Key(t)
	h, err := m.Net.AddPeer(key, nodetest.Addr(200+len(m.Net.Peers())))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Net.LinkAll(); err != nil {
		t.Fatal(err)
	}
	for _, p := range connect {
		if _, err := m.Net.ConnectPeers(h.ID(), p); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ps, err := pubsub.NewGossipSub(ctx, h,
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(*pb.Message) string { return rand.Text() }),
		pubsub.WithFloodPublish(true))
	if err != nil {
		t.Fatal(err)
	}
	return &rawPeer{t: t, h: h, key: key, ps: ps, tops: map[string]*pubsub.Topic{}}
}

// agent is a fresh agent key this peer's node delegates.
func (r *rawPeer) agent() (*identity.Agent, []byte) {
	r.t.Helper()
	a, err := nodetest.NewAgent("raw")
	if err != nil {
		r.t.Fatal(err)
	}
	d, err := identity.Delegate(r.key, a.ID, time.Hour)
	if err != nil {
		r.t.Fatal(err)
	}
	return a, d
}

// topic joins a capability's topic and waits until n peers are on it.
func (r *rawPeer) topic(capability string, n int) *pubsub.Topic {
	r.t.Helper()
	tp, ok := r.tops[capability]
	if !ok {
		var err error
		if tp, err = r.ps.Join(intent.Topic(capability)); err != nil {
			r.t.Fatal(err)
		}
		r.tops[capability] = tp
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(tp.ListPeers()) < n {
		if time.Now().After(deadline) {
			r.t.Fatalf("raw peer: %d peers on %s, want %d", len(tp.ListPeers()), capability, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return tp
}

// publish signs body as agent a (with delegation d) for ttl and gossips it.
func (r *rawPeer) publish(capability string, a *identity.Agent, d []byte, body intent.Body, created time.Time, ttl time.Duration) []byte {
	r.t.Helper()
	body.Capability, body.Delegation = capability, d
	if body.ReplyTo.Peer == "" {
		body.ReplyTo.Peer = r.h.ID()
	}
	raw, err := json.Marshal(body)
	if err != nil {
		r.t.Fatal(err)
	}
	data, err := identity.Seal(a, identity.Message{Type: intent.MessageType, V: intent.Version, Created: created, Expires: created.Add(ttl), Body: raw})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.topic(capability, 1).Publish(context.Background(), data); err != nil {
		r.t.Fatal(err)
	}
	return data
}

// call is the body of a call for proposals for task.
func call(task string, bidWindow time.Duration, deadline time.Time) intent.Body {
	payload, _ := json.Marshal(map[string]any{"task": task})
	return intent.Body{Kind: intent.KindTask, Payload: payload,
		Constraints: &intent.Constraints{BidWindow: intent.Duration(bidWindow), Deadline: deadline}}
}

// openAudit opens an audit log for a node key in a temporary directory.
func openAudit(t *testing.T, key crypto.PrivKey) (*audit.Log, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := audit.Open(dir, key, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the mesh's cleanup, so it runs after the nodes
	// have closed.
	t.Cleanup(func() { _ = l.Close() })
	return l, dir
}

// records returns the audit records of kind in dir.
func records(t *testing.T, dir, kind string) []audit.Record {
	t.Helper()
	all, err := audit.Tail(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for _, r := range all {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// metricValue sums every series of the metric name on n's registry.
func metricValue(t *testing.T, n *node.Node, name string) float64 {
	t.Helper()
	mfs, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, s := range mf.GetMetric() {
				v += s.GetCounter().GetValue()
			}
		}
	}
	return v
}
