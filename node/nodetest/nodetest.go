// Package nodetest builds meshes of real parley nodes on go-libp2p's mocknet
// for tests and benchmarks: one call gives N started, connected nodes that
// are closed when the test ends.
package nodetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/node"
)

// Topology says which nodes of a mesh are connected.
type Topology func(n int) [][2]int

// Full connects every pair of nodes.
func Full(n int) [][2]int {
	var e [][2]int
	for i := range n {
		for j := i + 1; j < n; j++ {
			e = append(e, [2]int{i, j})
		}
	}
	return e
}

// Chain connects node i to node i+1, the sparsest connected mesh.
func Chain(n int) [][2]int {
	var e [][2]int
	for i := 1; i < n; i++ {
		e = append(e, [2]int{i - 1, i})
	}
	return e
}

// Random connects each node to d others chosen with the seed, on top of a
// chain so the mesh is always connected.
func Random(d int, seed uint64) Topology {
	return func(n int) [][2]int {
		r := rand.New(rand.NewPCG(seed, seed))
		seen := map[[2]int]bool{}
		var e [][2]int
		add := func(i, j int) {
			if i == j {
				return
			}
			if i > j {
				i, j = j, i
			}
			if !seen[[2]int{i, j}] {
				seen[[2]int{i, j}] = true
				e = append(e, [2]int{i, j})
			}
		}
		for i := 1; i < n; i++ {
			add(i-1, i)
		}
		for i := range n {
			for range d - 1 {
				add(i, r.IntN(n))
			}
		}
		return e
	}
}

type options struct {
	sparse    bool
	topology  Topology
	configure func(i int, cfg *node.Config)
	latency   time.Duration
	bandwidth float64
}

// Option changes how NewMesh builds a mesh.
type Option func(*options)

// None connects no nodes; they must find each other (bootstrap peers).
func None(int) [][2]int { return nil }

// WithTopology sets which nodes connect; the default is Full.
func WithTopology(t Topology) Option { return func(o *options) { o.topology = t } }

// WithConfig edits each node's config before New.
func WithConfig(f func(i int, cfg *node.Config)) Option { return func(o *options) { o.configure = f } }

// WithSparseLinks links only the pairs the topology connects, instead of
// every pair: mocknet keeps an object per link, so LinkAll is quadratic
// and dominates memory at thousands of nodes. Nodes can then dial only
// their topology neighbours (no DHT walks, no redials elsewhere).
func WithSparseLinks() Option { return func(o *options) { o.sparse = true } }

// WithBandwidth caps every mocknet link, in bytes per second.
func WithBandwidth(bps float64) Option { return func(o *options) { o.bandwidth = bps } }

// WithLatency sets the latency of every mocknet link.
func WithLatency(d time.Duration) Option { return func(o *options) { o.latency = d } }

// Mesh is a set of started parley nodes on one mocknet.
type Mesh struct {
	Net   mocknet.Mocknet
	Nodes []*node.Node
}

// NewMesh starts n nodes, each hosting one agent named "agent", connects
// them and closes them when tb ends.
func NewMesh(tb testing.TB, n int, opts ...Option) *Mesh {
	tb.Helper()
	m, err := Build(n, opts...)
	if m != nil {
		tb.Cleanup(m.Close)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// Build is NewMesh for code that has no testing.TB (simulations): the
// caller closes the mesh. On error the nodes started so far are returned
// too, so they can be closed.
func Build(n int, opts ...Option) (*Mesh, error) {
	o := options{topology: Full}
	for _, opt := range opts {
		opt(&o)
	}
	mn := mocknet.New()
	m := &Mesh{Net: mn}
	if o.latency > 0 || o.bandwidth > 0 {
		mn.SetLinkDefaults(mocknet.LinkOptions{Latency: o.latency, Bandwidth: o.bandwidth})
	}
	for i := range n {
		nd, err := newNode(mn, i, o.configure)
		if err != nil {
			return m, fmt.Errorf("node %d: %w", i, err)
		}
		m.Nodes = append(m.Nodes, nd)
	}
	edges := o.topology(n)
	if o.sparse {
		for _, e := range edges {
			if _, err := mn.LinkPeers(m.Nodes[e[0]].ID(), m.Nodes[e[1]].ID()); err != nil {
				return m, fmt.Errorf("link %d-%d: %w", e[0], e[1], err)
			}
		}
	} else if err := mn.LinkAll(); err != nil {
		return m, fmt.Errorf("link mocknet: %w", err)
	}
	for _, e := range edges {
		if _, err := mn.ConnectPeers(m.Nodes[e[0]].ID(), m.Nodes[e[1]].ID()); err != nil {
			return m, fmt.Errorf("connect %d-%d: %w", e[0], e[1], err)
		}
	}
	return m, nil
}

// Close closes every node and the mocknet.
func (m *Mesh) Close() {
	for _, nd := range m.Nodes {
		_ = nd.Close()
	}
	_ = m.Net.Close()
}

func newNode(mn mocknet.Mocknet, i int, configure func(int, *node.Config)) (*node.Node, error) {
	nodeKey, err := identity.GenerateKey()
	if err != nil {
		return nil, err
	}
	agent, err := NewAgent("agent")
	if err != nil {
		return nil, err
	}
	cfg := node.DefaultConfig()
	cfg.NodeKey = nodeKey
	cfg.Agents = []*identity.Agent{agent}
	if configure != nil {
		configure(i, &cfg)
	}
	if cfg.Host == nil {
		h, err := mn.AddPeer(cfg.NodeKey, Addr(i))
		if err != nil {
			return nil, fmt.Errorf("add mocknet peer: %w", err)
		}
		cfg.Host = h
	}
	nd, err := node.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := nd.Start(context.Background()); err != nil {
		return nil, err
	}
	return nd, nil
}

// Addr is the mocknet address NewMesh gives node i: 10.X.Y.Z, in a /24
// of its own among any 65,536 consecutive nodes, as nodes on separate
// machines are. identify takes a peer's pushes (its protocols changed
// since it last answered) at 10, then one per 5 s, from each /24, and
// a host that answers its first identify before its new protocols
// reach its snapshot is known for them only by the push.
func Addr(i int) ma.Multiaddr {
	return ma.StringCast(fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4001", i>>8&0xff, i&0xff, 1+i>>16&0xff))
}

// P2PAddr is the address of mesh node i with PeerID id, as a bootstrap
// entry: Addr(i)/p2p/id.
func P2PAddr(i int, id peer.ID) string { return Addr(i).String() + "/p2p/" + id.String() }

// NewAgent makes an agent with a fresh key.
func NewAgent(name string) (*identity.Agent, error) {
	k, err := identity.GenerateKey()
	if err != nil {
		return nil, err
	}
	return identity.NewAgent(name, k)
}

// Key is a convenience for tests that need a fresh ed25519 key.
func Key(tb testing.TB) crypto.PrivKey {
	tb.Helper()
	k, err := identity.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// GossipHeartbeat is GossipSub's heartbeat: meshes graft on it.
const GossipHeartbeat = time.Second

// WaitTopic waits until each of nodes sees every connected node of the set
// on capability's topic, then one heartbeat more so the meshes have
// grafted. An intent published into a topic whose mesh has not formed can
// miss a peer that grafted after its first hop, so tests that count
// deliveries wait for this first.
func WaitTopic(tb testing.TB, ctx context.Context, capability string, nodes ...*node.Node) {
	tb.Helper()
	in := map[peer.ID]bool{}
	byID := map[peer.ID]*node.Node{}
	for _, n := range nodes {
		in[n.ID()] = true
		byID[n.ID()] = n
	}
	for {
		var missing string // the first node missing a connected peer
		for _, n := range nodes {
			topic := map[peer.ID]bool{}
			for _, p := range n.TopicPeers(capability) {
				topic[p] = true
			}
			for _, p := range n.Host().Network().Peers() {
				if in[p] && !topic[p] {
					missing = fmt.Sprintf("%s is connected to %s but does not see it on the topic (its streams to it: %v; the peer's back: %v)",
						n.ID(), p, streams(n, p), streams(byID[p], n.ID()))
					break
				}
			}
			if missing != "" {
				break
			}
		}
		if missing == "" {
			break
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("topic %s did not form: %v: %s", capability, ctx.Err(), missing)
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case <-ctx.Done():
	case <-time.After(GossipHeartbeat + 200*time.Millisecond):
	}
}

// streams names the protocol and direction of every stream n has open to
// p: when a topic does not form, whether GossipSub's streams exist says
// which side lost the other.
func streams(n *node.Node, p peer.ID) []string {
	var out []string
	for _, c := range n.Host().Network().ConnsToPeer(p) {
		for _, s := range c.GetStreams() {
			out = append(out, fmt.Sprintf("%s %s", s.Protocol(), s.Stat().Direction))
		}
	}
	return out
}
