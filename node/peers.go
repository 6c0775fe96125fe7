package node

import (
	"sort"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// PeerInfo describes one connected peer.
type PeerInfo struct {
	ID        peer.ID  `json:"id"`
	Addrs     []string `json:"addrs"`     // remote addresses of the open connections
	Direction string   `json:"direction"` // "inbound" or "outbound" (of the first connection)
	// Source says how the peer was found: bootstrap, mdns, dht,
	// remembered, inbound (it dialled us) or direct (dialled by other code).
	Source string `json:"source"`
	// Connection is "direct", or "relayed" when every connection to the
	// peer goes through a relay (Via).
	Connection string  `json:"connection"`
	Via        peer.ID `json:"via,omitempty"`
	// HolePunched says a direct connection was made by hole punching
	// (DCUtR) from a relayed one.
	HolePunched bool `json:"hole_punched,omitempty"`
}

// Peers lists the peers the node is connected to, sorted by PeerID.
func (n *Node) Peers() []PeerInfo {
	h := n.Host()
	if h == nil {
		return nil
	}
	n.mu.Lock()
	disc := n.disc
	n.mu.Unlock()
	var out []PeerInfo
	for _, p := range h.Network().Peers() {
		conns := h.Network().ConnsToPeer(p)
		if len(conns) == 0 {
			continue
		}
		pi := PeerInfo{ID: p, Direction: "outbound"}
		if conns[0].Stat().Direction == network.DirInbound {
			pi.Direction = "inbound"
		}
		if disc != nil {
			pi.Source = disc.Source(p)
		}
		if pi.Source == "" {
			pi.Source = "direct"
		}
		for _, c := range conns {
			pi.Addrs = append(pi.Addrs, c.RemoteMultiaddr().String())
		}
		pi.Connection, pi.Via, pi.HolePunched = n.connection(conns, p)
		out = append(out, pi)
	}
	n.forgetPunched(h.Network().Peers())
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
