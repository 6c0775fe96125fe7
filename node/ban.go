package node

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/prometheus/client_golang/prometheus"
)

// Graylist bans. GossipSub ignores a graylisted peer's RPCs, but it still
// reads and decodes every byte of them, so a flood costs the node as much
// ignored as accepted. A peer whose score falls below the graylist
// threshold is therefore disconnected and refused at the connection
// gater for a back-off, doubled on each repeat. Its score outlives the
// connection (RetainScore), so a banned peer that returns early is
// graylisted again at once.
const (
	// DefaultBanBackoff is the first ban's length (Config.BanBackoff).
	DefaultBanBackoff = time.Minute
	// maxBanBackoff caps the doubling.
	maxBanBackoff = time.Hour
	// maxBans bounds the table: fresh peer IDs cost nothing, so a full
	// table forgets the ban that ends soonest.
	maxBans = 4096

	// forgedStrikes forged frames or intents (identity.Forged) within
	// forgedWindow ban a peer at once: an honest peer sends none, and the
	// score inspector runs only every second, a second in which a flood
	// is read and verified.
	forgedStrikes = 8
	forgedWindow  = 10 * time.Second
)

// reasonBanned counts the intents of a banned peer dropped unread.
const reasonBanned = "banned"

type ban struct {
	until   time.Time
	strikes int
	// forged counts the peer's forged frames since forgedSince.
	forged      int
	forgedSince time.Time
}

// bans is the node's table of refused peers. It is a
// connmgr.ConnectionGater for hosts the node builds; for hosts it is given
// (mocknet, embedders), refuser closes a banned peer's new connections.
type bans struct {
	base time.Duration
	now  func() time.Time
	// accept admits an inbound connection from a remote IP before its
	// handshake (admission's ConnectionsPerIP); nil admits all.
	accept func(netip.Addr) bool

	mu    sync.Mutex
	peers map[peer.ID]ban

	total prometheus.Counter
}

func newBans(base time.Duration, reg prometheus.Registerer) *bans {
	b := &bans{base: base, now: time.Now, peers: map[peer.ID]ban{},
		total: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_peers_banned_total",
			Help: "Peers disconnected and refused for a back-off because their GossipSub score fell below the graylist threshold.",
		})}
	reg.MustRegister(b.total)
	return b
}

// banned reports whether p is refused now.
func (b *bans) banned(p peer.ID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.peers[p]
	return ok && b.now().Before(e.until)
}

// ban refuses p for its next back-off. It returns the back-off, and false
// if p was already banned.
func (b *bans) ban(p peer.ID) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	e, ok := b.peers[p]
	if ok && now.Before(e.until) {
		return time.Until(e.until), false
	}
	if !ok && len(b.peers) >= maxBans {
		b.evictLocked(now)
	}
	d := b.base << min(e.strikes, 16)
	d = min(d, maxBanBackoff)
	b.peers[p] = ban{until: now.Add(d), strikes: e.strikes + 1}
	b.total.Inc()
	return d, true
}

// evictLocked makes room: expired bans go first, else the one ending
// soonest.
func (b *bans) evictLocked(now time.Time) {
	var soonest peer.ID
	var at time.Time
	for p, e := range b.peers {
		if !now.Before(e.until) {
			delete(b.peers, p)
			continue
		}
		if soonest == "" || e.until.Before(at) {
			soonest, at = p, e.until
		}
	}
	if len(b.peers) >= maxBans {
		delete(b.peers, soonest)
	}
}

// forged counts a forged frame from p and reports whether p has sent
// forgedStrikes of them within forgedWindow.
func (b *bans) forged(p peer.ID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	e, ok := b.peers[p]
	if !ok && len(b.peers) >= maxBans {
		b.evictLocked(now)
	}
	if now.Sub(e.forgedSince) > forgedWindow {
		e.forged, e.forgedSince = 0, now
	}
	e.forged++
	b.peers[p] = e
	return e.forged >= forgedStrikes
}

func (b *bans) InterceptPeerDial(p peer.ID) bool             { return !b.banned(p) }
func (b *bans) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }
func (b *bans) InterceptAccept(c network.ConnMultiaddrs) bool {
	ip, err := manet.ToIP(c.RemoteMultiaddr())
	if err != nil || b.accept == nil {
		return true
	}
	a, ok := netip.AddrFromSlice(ip)
	return !ok || b.accept(a.Unmap())
}
func (b *bans) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

func (b *bans) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !b.banned(p)
}

// graylisted bans the peers whose score is below the graylist threshold.
// pubsub runs the inspector on a goroutine of its own, holding none of
// its locks, so it may block here.
func (n *Node) graylisted(net network.Network, scores map[peer.ID]float64) {
	for p, s := range scores {
		if s < graylistThreshold {
			n.banPeer(net, p, fmt.Sprintf("GossipSub score %.0f below the graylist threshold %d", s, graylistThreshold))
		}
	}
}

// forgedFrame hears of a forged negotiation or rpc frame, or a forged
// intent, from p, on the handler's or validator's goroutine, and bans p
// at its forgedStrikes-th.
func (n *Node) forgedFrame(net network.Network, p peer.ID, reason string) {
	if n.bans.forged(p) {
		n.banPeer(net, p, fmt.Sprintf("%d forged frames within %s (the last %s)", forgedStrikes, forgedWindow, reason))
	}
}

// banPeer refuses p for its next back-off, disconnects it and audits the
// ban; a peer already banned is left as it is.
//
// The ban holds from the table entry on: the gater, the stream gate, the
// RPC inspector and the validator refuse p. Closing its connections and
// recording the ban happen on a goroutine of the node's, because bans are
// decided on GossipSub's validation workers and the negotiation handlers,
// and both can wait: a close waits on the connection's muxer (20 ms seen
// under a flood) and a record on the disk. There is at most one such
// goroutine per peer connected when banned.
func (n *Node) banPeer(net network.Network, p peer.ID, why string) {
	d, fresh := n.bans.ban(p)
	if !fresh {
		return
	}
	log.Infow("peer banned: disconnected and refused", "peer", p, "why", why, "for", d.String())
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		_ = net.ClosePeer(p)
		_ = n.recordQueued("ban", "", "", p, fmt.Sprintf("%s; refused for %s", why, d), nil)
	}()
}

// refuseBanned is the network notifiee that closes a banned peer's new
// connections on a host the node did not build (its gater is not ours).
// Notifications are delivered under the network's lock, which closing
// takes too, so the close runs on a goroutine of the node's; the node
// stops the notifiee before it waits for its goroutines.
func (n *Node) refuseBanned() network.Notifiee {
	return &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		if n.bans.banned(c.RemotePeer()) {
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				_ = c.Close()
			}()
		}
	}}
}

// gatedHost is a host the node did not build, as the node's services see
// it: every stream handler they set (GossipSub's, the negotiation's, the
// rpc's, the cards', the traces') refuses a banned peer's streams before
// reading them, as the gater of a host the node builds refuses its
// connections.
type gatedHost struct {
	host.Host
	bans *bans
}

func (g gatedHost) SetStreamHandler(pid protocol.ID, h network.StreamHandler) {
	g.Host.SetStreamHandler(pid, g.gate(h))
}

func (g gatedHost) SetStreamHandlerMatch(pid protocol.ID, m func(protocol.ID) bool, h network.StreamHandler) {
	g.Host.SetStreamHandlerMatch(pid, m, g.gate(h))
}

func (g gatedHost) gate(h network.StreamHandler) network.StreamHandler {
	return func(s network.Stream) {
		if g.bans.banned(s.Conn().RemotePeer()) {
			_ = s.Reset()
			return
		}
		h(s)
	}
}
