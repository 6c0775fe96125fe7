package node

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// bootstrapper keeps the node connected to its bootstrap peers: it dials
// each with exponential backoff and dials again when the connection drops.
// An unreachable peer never stops the node; it is logged and retried.
type bootstrapper struct {
	n     *Node
	peers []peer.AddrInfo
	// lost wakes a peer's loop when its last connection closes. The map is
	// filled before any goroutine starts and only read after.
	lost      map[peer.ID]chan struct{}
	connected atomic.Int32
	notifee   *network.NotifyBundle
}

func newBootstrapper(n *Node, peers []peer.AddrInfo) *bootstrapper {
	b := &bootstrapper{n: n, lost: make(map[peer.ID]chan struct{})}
	self := n.ID()
	for _, p := range peers {
		if p.ID == self {
			continue
		}
		if _, dup := b.lost[p.ID]; dup {
			continue
		}
		b.peers = append(b.peers, p)
		b.lost[p.ID] = make(chan struct{}, 1)
	}
	return b
}

func (b *bootstrapper) start(ctx context.Context, wg *sync.WaitGroup) {
	if len(b.peers) == 0 {
		return
	}
	h := b.n.host
	b.notifee = &network.NotifyBundle{
		DisconnectedF: func(nw network.Network, c network.Conn) {
			p := c.RemotePeer()
			ch, ok := b.lost[p]
			if !ok || nw.Connectedness(p) == network.Connected {
				return
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		},
	}
	h.Network().Notify(b.notifee)
	for _, p := range b.peers {
		h.ConnManager().Protect(p.ID, "parley-bootstrap")
		h.Peerstore().AddAddrs(p.ID, p.Addrs, time.Hour)
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.keep(ctx, p)
		}()
	}
}

func (b *bootstrapper) stop() {
	if b.notifee != nil {
		b.n.host.Network().StopNotify(b.notifee)
	}
}

// keep owns the connection to one bootstrap peer until ctx ends.
func (b *bootstrapper) keep(ctx context.Context, p peer.AddrInfo) {
	h := b.n.host
	cfg := b.n.cfg
	backoff := cfg.BootstrapBackoff
	attempt := 0
	for ctx.Err() == nil {
		if h.Network().Connectedness(p.ID) != network.Connected {
			attempt++
			dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			// Our own backoff paces the retries; the swarm's would only
			// delay a peer that has just come back.
			dctx = network.WithForceDirectDial(dctx, "parley bootstrap")
			err := h.Connect(dctx, p)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				wait := jitter(backoff)
				log.Warnw("bootstrap peer unreachable; retrying", "peer", p.ID, "addrs", p.Addrs, "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", err)
				if b.connected.Load() == 0 {
					log.Warnw("no bootstrap peer reachable; the node keeps running and keeps trying", "bootstrap_peers", len(b.peers))
				}
				if !sleep(ctx, wait) {
					return
				}
				backoff = min(backoff*2, cfg.BootstrapMaxBackoff)
				continue
			}
			log.Infow("connected to bootstrap peer", "peer", p.ID, "attempt", attempt)
		}
		attempt, backoff = 0, cfg.BootstrapBackoff
		b.connected.Add(1)
		select {
		case <-ctx.Done():
			return
		case <-b.lost[p.ID]:
			b.connected.Add(-1)
			if ctx.Err() != nil {
				return // the node is closing its own connections
			}
			log.Warnw("lost connection to bootstrap peer; redialling", "peer", p.ID)
		}
	}
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// isBootstrap reports whether p is one of the node's bootstrap peers.
func (b *bootstrapper) isBootstrap(p peer.ID) bool {
	if b == nil {
		return false
	}
	_, ok := b.lost[p]
	return ok
}

// ParseBootstrap parses multiaddrs that end in /p2p/<PeerID> into the
// peers to dial, merging addresses of the same peer.
func ParseBootstrap(addrs []string) ([]peer.AddrInfo, error) {
	var mas []ma.Multiaddr
	for _, s := range addrs {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, &AddrError{Addr: s, Err: err}
		}
		if _, err := peer.AddrInfoFromP2pAddr(m); err != nil {
			return nil, &AddrError{Addr: s, Err: err}
		}
		mas = append(mas, m)
	}
	return peer.AddrInfosFromP2pAddrs(mas...)
}

// AddrError names a multiaddr that could not be used.
type AddrError struct {
	Addr string
	Err  error
}

func (e *AddrError) Error() string { return "bad multiaddr " + quote(e.Addr) + ": " + e.Err.Error() }
func (e *AddrError) Unwrap() error { return e.Err }

func quote(s string) string { return "\"" + s + "\"" }
