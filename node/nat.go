package node

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
)

// nat is what the node knows of its own reachability and of the direct
// connections hole punching made. Both are written by go-libp2p's
// goroutines and read by Peers and Reachability.
type nat struct {
	mu           sync.Mutex
	reachability network.Reachability
	punched      map[peer.ID]bool // hole punched to, among connected peers
}

// natOptions are the go-libp2p options of cfg: the relay service and its
// limits, the relay client (static relays, else relays among the node's
// peers), hole punching and an assumed reachability.
func (n *Node) natOptions() []libp2p.Option {
	c := n.cfg.NAT
	var opts []libp2p.Option
	if c.AutoNATService {
		opts = append(opts, libp2p.EnableNATService())
	}
	if c.RelayService {
		opts = append(opts, libp2p.EnableRelayService(relayv2.WithResources(relayResources(c.RelayLimits))))
	}
	switch c.Reachability {
	case ReachabilityPublic:
		opts = append(opts, libp2p.ForceReachabilityPublic())
	case ReachabilityPrivate:
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	}
	if c.NoRelayClient {
		return append(opts, libp2p.DisableRelay())
	}
	// A node that learns it is behind NAT reserves a slot at once: one
	// relay is enough to be reachable, and hole punching then makes the
	// connections that matter direct.
	// autorelay asks for candidates at start, before the node has met
	// any, and by default then only every 30 s; the source only lists
	// connected peers, so asking every second costs nothing.
	arOpts := []autorelay.Option{autorelay.WithNumRelays(2), autorelay.WithMinCandidates(1), autorelay.WithBootDelay(0),
		autorelay.WithMinInterval(time.Second)}
	if len(n.relays) > 0 {
		opts = append(opts, libp2p.EnableAutoRelayWithStaticRelays(n.relays, arOpts...))
	} else {
		opts = append(opts, libp2p.EnableAutoRelayWithPeerSource(n.relayCandidates, arOpts...))
	}
	if !c.NoHolePunching {
		opts = append(opts, libp2p.EnableHolePunching(holepunch.WithTracer(punchTracer{&n.nat})))
	}
	return opts
}

// relayResources are go-libp2p's relay defaults with l's limits.
func relayResources(l RelayLimits) relayv2.Resources {
	r := relayv2.DefaultResources()
	if l.Reservations > 0 {
		r.MaxReservations = l.Reservations
	}
	if l.Circuits > 0 {
		r.MaxCircuits = l.Circuits
	}
	if l.PerIP > 0 {
		r.MaxReservationsPerIP = l.PerIP
	}
	if l.Duration > 0 {
		r.Limit.Duration = l.Duration
	}
	if l.Data > 0 {
		r.Limit.Data = l.Data
	}
	if l.Unlimited {
		r.Limit = nil
	}
	return r
}

// relayCandidates offers autorelay the connected peers that serve circuit
// relay v2: those the node met through bootstrap, the DHT or mDNS. It
// never dials anyone itself.
func (n *Node) relayCandidates(ctx context.Context, num int) <-chan peer.AddrInfo {
	out := make(chan peer.AddrInfo, num)
	defer close(out)
	h := n.Host()
	if h == nil {
		return out
	}
	for _, p := range h.Network().Peers() {
		if len(out) == num {
			break
		}
		if ok, _ := h.Peerstore().SupportsProtocols(p, proto.ProtoIDv2Hop); len(ok) == 0 {
			continue
		}
		out <- peer.AddrInfo{ID: p, Addrs: h.Peerstore().Addrs(p)}
	}
	return out
}

// watchReachability keeps n.nat.reachability as go-libp2p's AutoNAT (or
// the configured assumption) says, until ctx ends.
func (n *Node) watchReachability(ctx context.Context, h host.Host) error {
	sub, err := h.EventBus().Subscribe(new(event.EvtLocalReachabilityChanged))
	if err != nil {
		return err
	}
	// An assumed reachability holds from the start; AutoNAT's own word
	// arrives later.
	n.nat.mu.Lock()
	switch n.cfg.NAT.Reachability {
	case ReachabilityPublic:
		n.nat.reachability = network.ReachabilityPublic
	case ReachabilityPrivate:
		n.nat.reachability = network.ReachabilityPrivate
	}
	n.nat.mu.Unlock()
	n.wg.Go(func() {
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-sub.Out():
				if !ok {
					return
				}
				n.nat.mu.Lock()
				n.nat.reachability = e.(event.EvtLocalReachabilityChanged).Reachability
				n.nat.mu.Unlock()
			}
		}
	})
	return nil
}

// Reachability is the node's reachability as AutoNAT (or the configured
// assumption) has it: ReachabilityPublic, ReachabilityPrivate or
// ReachabilityUnknown.
func (n *Node) Reachability() string {
	n.nat.mu.Lock()
	defer n.nat.mu.Unlock()
	switch n.nat.reachability {
	case network.ReachabilityPublic:
		return ReachabilityPublic
	case network.ReachabilityPrivate:
		return ReachabilityPrivate
	}
	return ReachabilityUnknown
}

// RelayAddrs are the node's addresses through relays (/p2p-circuit), each
// ending in /p2p/<PeerID> like Addrs.
func (n *Node) RelayAddrs() []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range n.Addrs() {
		if isRelayed(a) {
			out = append(out, a)
		}
	}
	return out
}

func isRelayed(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// punchTracer records which peers hole punching reached, so that Peers
// can say how a direct connection was made. Entries of peers no longer
// connected are dropped when Peers looks, so the map holds at most the
// peers the node is connected to (or was, until the next look).
type punchTracer struct{ nat *nat }

// maxPunched bounds the hole-punch marks kept between two looks.
const maxPunched = 1024

func (t punchTracer) Trace(e *holepunch.Event) {
	end, ok := e.Evt.(*holepunch.EndHolePunchEvt)
	if !ok || !end.Success {
		return
	}
	t.nat.mu.Lock()
	defer t.nat.mu.Unlock()
	if t.nat.punched == nil || len(t.nat.punched) >= maxPunched {
		t.nat.punched = map[peer.ID]bool{} // only what Peers shows is lost
	}
	t.nat.punched[e.Remote] = true
}

// connection says how p is connected: "relayed" (through relay via) when
// every connection is relayed, else "direct", and whether hole punching
// made it.
func (n *Node) connection(conns []network.Conn, p peer.ID) (kind string, via peer.ID, punched bool) {
	kind = "direct"
	relayed := slices.IndexFunc(conns, func(c network.Conn) bool { return !isRelayed(c.RemoteMultiaddr()) }) < 0
	if relayed && len(conns) > 0 {
		kind = "relayed"
		if s, _, ok := strings.Cut(conns[0].RemoteMultiaddr().String(), "/p2p-circuit"); ok {
			if i := strings.LastIndex(s, "/p2p/"); i >= 0 {
				via, _ = peer.Decode(s[i+len("/p2p/"):])
			}
		}
	}
	n.nat.mu.Lock()
	punched = !relayed && n.nat.punched[p]
	n.nat.mu.Unlock()
	return kind, via, punched
}

// forgetPunched drops the hole-punch marks of peers not in connected.
func (n *Node) forgetPunched(connected []peer.ID) {
	n.nat.mu.Lock()
	defer n.nat.mu.Unlock()
	for p := range n.nat.punched {
		if !slices.Contains(connected, p) {
			delete(n.nat.punched, p)
		}
	}
}
