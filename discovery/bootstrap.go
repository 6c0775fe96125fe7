package discovery

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

var log = logging.Logger("parley/discovery")

// BootstrapConfig says which peers to keep connected and how to pace
// retries.
type BootstrapConfig struct {
	Peers []peer.AddrInfo
	// Backoff is the first retry delay for an unreachable peer; it doubles
	// up to MaxBackoff. Zero means one second and one minute.
	Backoff, MaxBackoff time.Duration
	// DialTimeout bounds one dial; zero means 15 s.
	DialTimeout time.Duration
	// Hint is added to dial failure logs (e.g. that this node is on a
	// private network, whose handshakes fail without saying why).
	Hint string
}

// Bootstrapper keeps a host connected to its bootstrap peers: it dials
// each with exponential backoff and dials again when the connection drops.
// An unreachable peer never stops it; it is logged and retried.
type Bootstrapper struct {
	h     host.Host
	cfg   BootstrapConfig
	peers []peer.AddrInfo
	// lost wakes a peer's loop when its last connection closes. The map is
	// filled in NewBootstrapper and only read after.
	lost      map[peer.ID]chan struct{}
	connected atomic.Int32
	notifee   *network.NotifyBundle

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewBootstrapper prepares a Bootstrapper for h; Start begins dialling.
// The host's own PeerID and repeated peers are skipped.
func NewBootstrapper(h host.Host, cfg BootstrapConfig) *Bootstrapper {
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.MaxBackoff < cfg.Backoff {
		cfg.MaxBackoff = max(time.Minute, cfg.Backoff)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 15 * time.Second
	}
	b := &Bootstrapper{h: h, cfg: cfg, lost: make(map[peer.ID]chan struct{})}
	for _, p := range cfg.Peers {
		if p.ID == h.ID() {
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

// Start begins keeping every bootstrap peer connected, one goroutine per
// peer, until Close.
func (b *Bootstrapper) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	if len(b.peers) == 0 {
		return
	}
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
	b.h.Network().Notify(b.notifee)
	for _, p := range b.peers {
		b.h.ConnManager().Protect(p.ID, "parley-bootstrap")
		b.h.Peerstore().AddAddrs(p.ID, p.Addrs, time.Hour)
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.keep(ctx, p)
		}()
	}
}

// Close stops dialling and waits for the dialling goroutines to end. It
// leaves open connections alone.
func (b *Bootstrapper) Close() {
	if b.cancel != nil {
		b.cancel()
	}
	if b.notifee != nil {
		b.h.Network().StopNotify(b.notifee)
	}
	b.wg.Wait()
}

// keep owns the connection to one bootstrap peer until ctx ends.
func (b *Bootstrapper) keep(ctx context.Context, p peer.AddrInfo) {
	backoff := b.cfg.Backoff
	attempt := 0
	for ctx.Err() == nil {
		if b.h.Network().Connectedness(p.ID) != network.Connected {
			attempt++
			dctx, cancel := context.WithTimeout(ctx, b.cfg.DialTimeout)
			// Our own backoff paces the retries; the swarm's would only
			// delay a peer that has just come back.
			dctx = network.WithForceDirectDial(dctx, "parley bootstrap")
			err := b.h.Connect(dctx, p)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				wait := jitter(backoff)
				if b.cfg.Hint != "" {
					log.Warnw("bootstrap peer unreachable; retrying", "peer", p.ID, "addrs", p.Addrs, "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", err, "hint", b.cfg.Hint)
				} else {
					log.Warnw("bootstrap peer unreachable; retrying", "peer", p.ID, "addrs", p.Addrs, "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", err)
				}
				if b.connected.Load() == 0 {
					log.Warnw("no bootstrap peer reachable; the node keeps running and keeps trying", "bootstrap_peers", len(b.peers))
				}
				if !sleep(ctx, wait) {
					return
				}
				backoff = min(backoff*2, b.cfg.MaxBackoff)
				continue
			}
			log.Infow("connected to bootstrap peer", "peer", p.ID, "attempt", attempt)
		}
		attempt, backoff = 0, b.cfg.Backoff
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

// IsBootstrap reports whether p is one of the bootstrap peers.
func (b *Bootstrapper) IsBootstrap(p peer.ID) bool {
	if b == nil {
		return false
	}
	_, ok := b.lost[p]
	return ok
}

// ParseAddrs parses multiaddrs that end in /p2p/<PeerID> into the
// peers to dial, merging addresses of the same peer.
func ParseAddrs(addrs []string) ([]peer.AddrInfo, error) {
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
