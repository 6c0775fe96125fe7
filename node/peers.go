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
	Source    string   `json:"source"`    // how the peer was found: "bootstrap" or "direct"
}

// Peers lists the peers the node is connected to, sorted by PeerID.
func (n *Node) Peers() []PeerInfo {
	h := n.Host()
	if h == nil {
		return nil
	}
	n.mu.Lock()
	boot := n.boot
	n.mu.Unlock()
	var out []PeerInfo
	for _, p := range h.Network().Peers() {
		conns := h.Network().ConnsToPeer(p)
		if len(conns) == 0 {
			continue
		}
		pi := PeerInfo{ID: p, Source: "direct", Direction: "outbound"}
		if conns[0].Stat().Direction == network.DirInbound {
			pi.Direction = "inbound"
		}
		if boot != nil && boot.IsBootstrap(p) {
			pi.Source = "bootstrap"
		}
		for _, c := range conns {
			pi.Addrs = append(pi.Addrs, c.RemoteMultiaddr().String())
		}
		out = append(out, pi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
