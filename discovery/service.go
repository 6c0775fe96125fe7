package discovery

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/internal/promcount"
)

// Sources say how a peer was found.
const (
	SourceBootstrap  = "bootstrap"
	SourceMDNS       = "mdns"
	SourceDHT        = "dht"
	SourceRemembered = "remembered"
	SourceInbound    = "inbound" // it dialled us
)

// DHT modes.
const (
	DHTServer = "server" // answers queries: the default, so LAN and private meshes have a routing table
	DHTClient = "client" // only asks
	DHTAuto   = "auto"   // server once AutoNAT says we are publicly reachable
	DHTOff    = "off"
)

// NamespacePrefix prefixes a capability to name its rendezvous namespace.
const NamespacePrefix = "parley/cap/"

// ServiceName is parley's mDNS service name, so parley nodes find each
// other and not every libp2p node on the LAN.
const ServiceName = "_parley._udp"

// Config sets up discovery. Zero values take the defaults noted.
type Config struct {
	Bootstrap BootstrapConfig
	// MDNS turns on LAN discovery.
	MDNS bool
	// DHTMode is server (default), client, auto or off.
	DHTMode string
	// PeersFile remembers peers across restarts; "" remembers nothing.
	PeersFile string
	// RememberEvery is how often the peers file is rewritten (default
	// 30 s); it is also written a second after a new peer connects, so a
	// node killed without a clean close still remembers its mesh.
	RememberEvery time.Duration
	// CardTTL is how long the cards this node signs are valid (default
	// DefaultCardTTL); they are re-signed before they expire.
	CardTTL time.Duration
	// MaxCardSize caps one card envelope (default 16 KiB).
	MaxCardSize int
	// Registerer receives discovery's metrics; nil registers none.
	Registerer prometheus.Registerer
	// AdmitCard is asked before this node's cards are served to a peer
	// (the admission layer); nil serves everyone.
	AdmitCard func(peer.ID) error
	// Delegate returns this node's delegation of a hosted agent, carried in
	// its cards. Required to Offer.
	Delegate func(*identity.Agent) ([]byte, error)
}

// Service finds peers (bootstrap, remembered, mDNS, DHT) and agents (by
// capability rendezvous and the card protocol) for one host.
type Service struct {
	h    host.Host
	cfg  Config
	boot *Bootstrapper
	dht  *dht.IpfsDHT
	rd   *drouting.RoutingDiscovery
	mdns mdns.Service

	dropped *prometheus.CounterVec

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}
	// met wakes rememberLoop when a new peer connects.
	met chan struct{}

	mu      sync.Mutex
	sources map[peer.ID]string
	offers  map[identity.AgentID]*offer
	cache   map[identity.AgentID]*SignedCard
	notifee *network.NotifyBundle
}

// offer is an agent this node advertises, with its current signed card.
type offer struct {
	agent *identity.Agent
	caps  []Capability
	card  *SignedCard
	raw   bool // served as set by ServeRawCard, never re-signed
}

// New prepares discovery for h and serves the card protocol. Start begins
// finding peers.
func New(h host.Host, cfg Config) (*Service, error) {
	if cfg.CardTTL <= 0 {
		cfg.CardTTL = DefaultCardTTL
	}
	if cfg.MaxCardSize <= 0 {
		cfg.MaxCardSize = 16 << 10
	}
	if cfg.DHTMode == "" {
		cfg.DHTMode = DHTServer
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		h: h, cfg: cfg, ctx: ctx, cancel: cancel,
		wake:    make(chan struct{}, 1),
		met:     make(chan struct{}, 1),
		sources: map[peer.ID]string{},
		offers:  map[identity.AgentID]*offer{},
		cache:   map[identity.AgentID]*SignedCard{},
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_discovery_cards_dropped_total",
			Help: "Agent cards from peers that failed verification, by reason.",
		}, []string{"reason"}),
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.dropped); err != nil {
			cancel()
			return nil, fmt.Errorf("register discovery metrics: %w", err)
		}
	}
	var mode dht.ModeOpt
	switch cfg.DHTMode {
	case DHTServer:
		mode = dht.ModeServer
	case DHTClient:
		mode = dht.ModeClient
	case DHTAuto:
		mode = dht.ModeAuto
	case DHTOff:
	default:
		cancel()
		return nil, fmt.Errorf("DHT mode %q: want server, client, auto or off", cfg.DHTMode)
	}
	if cfg.DHTMode != DHTOff {
		d, err := dht.New(h, dht.ProtocolPrefix("/parley"), dht.Mode(mode),
			dht.BootstrapPeers(cfg.Bootstrap.Peers...))
		if err != nil {
			cancel()
			return nil, fmt.Errorf("start DHT: %w", err)
		}
		s.dht = d
		s.rd = drouting.NewRoutingDiscovery(d)
	}
	h.SetStreamHandler(CardProtocolID, func(st network.Stream) {
		if cfg.AdmitCard != nil && cfg.AdmitCard(st.Conn().RemotePeer()) != nil {
			_ = st.Reset()
			return
		}
		serveCards(st, s.localCards)
	})
	return s, nil
}

// Start dials the bootstrap and remembered peers, starts mDNS and keeps
// this node's capabilities advertised until Close.
func (s *Service) Start() error {
	remembered, err := s.loadRemembered()
	if err != nil {
		log.Warnw("remembered peers not used", "err", err)
	}
	s.notifee = &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		select {
		case s.met <- struct{}{}:
		default:
		}
		if c.Stat().Direction != network.DirInbound {
			return
		}
		s.mu.Lock()
		if _, ok := s.sources[c.RemotePeer()]; !ok {
			s.sources[c.RemotePeer()] = SourceInbound
		}
		s.mu.Unlock()
	}, DisconnectedF: func(_ network.Network, c network.Conn) { s.forgetIfGone(c.RemotePeer()) }}
	s.h.Network().Notify(s.notifee)
	s.boot = NewBootstrapper(s.h, s.cfg.Bootstrap)
	s.boot.Start()
	for _, p := range remembered {
		s.spawn(func() {
			if relayedOnly(p) {
				s.awaitHolePunching()
			}
			s.connect(p, SourceRemembered)
		})
	}
	if s.cfg.MDNS {
		s.mdns = mdns.NewMdnsService(s.h, ServiceName, mdnsNotifee{s})
		if err := s.mdns.Start(); err != nil {
			return fmt.Errorf("start mDNS: %w", err)
		}
	}
	if s.dht != nil {
		if err := s.dht.Bootstrap(s.ctx); err != nil {
			return fmt.Errorf("bootstrap DHT: %w", err)
		}
		s.spawn(s.advertiseLoop)
	}
	if s.cfg.PeersFile != "" {
		s.spawn(s.rememberLoop)
	}
	addrs, err := s.h.EventBus().Subscribe(new(event.EvtLocalAddressesUpdated))
	if err != nil {
		return fmt.Errorf("watch the host's addresses: %w", err)
	}
	s.spawn(func() { s.resignOnNewAddrs(addrs) })
	return nil
}

// resignOnNewAddrs signs the local agents' cards again whenever the host's
// addresses change — a relay slot reserved, a NAT mapping learnt — so that
// a card gives the addresses the node has now, not those it had when the
// agent was added.
func (s *Service) resignOnNewAddrs(sub event.Subscription) {
	defer sub.Close()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-sub.Out():
		}
		s.mu.Lock()
		var offers []*offer
		for _, o := range s.offers {
			if !o.raw {
				offers = append(offers, o)
			}
		}
		s.mu.Unlock()
		for _, o := range offers {
			if err := s.sign(o); err != nil {
				log.Warnw("could not re-sign agent card after an address change", "agent", o.agent.ID, "err", err)
			}
		}
	}
}

// holePunchWait bounds how long a relayed redial waits for this node's
// hole punching to be ready (go-libp2p starts it a moment after the host).
const holePunchWait = 3 * time.Second

// relayedOnly reports whether p can be reached only through a relay.
func relayedOnly(p peer.AddrInfo) bool {
	for _, a := range p.Addrs {
		if _, err := a.ValueForProtocol(ma.P_CIRCUIT); err != nil {
			return false
		}
	}
	return len(p.Addrs) > 0
}

// awaitHolePunching waits until this host answers DCUtR, at most
// holePunchWait. A relayed connection made before that is never made
// direct: the other side starts the hole punch at once, finds no handler
// and does not try again.
func (s *Service) awaitHolePunching() {
	sub, err := s.h.EventBus().Subscribe(new(event.EvtLocalProtocolsUpdated))
	if err != nil {
		return
	}
	defer sub.Close()
	if slices.Contains(s.h.Mux().Protocols(), holepunch.Protocol) {
		return
	}
	timer := time.NewTimer(holePunchWait)
	defer timer.Stop()
	for {
		select {
		case e := <-sub.Out():
			if slices.Contains(e.(event.EvtLocalProtocolsUpdated).Added, holepunch.Protocol) {
				return
			}
		case <-timer.C: // hole punching is off, or late: dial anyway
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// Close stops discovery, remembers the current peers and waits for every
// goroutine it started.
func (s *Service) Close() error {
	s.cancel()
	if s.mdns != nil {
		_ = s.mdns.Close()
	}
	if s.boot != nil {
		s.boot.Close()
	}
	if s.notifee != nil {
		s.h.Network().StopNotify(s.notifee)
	}
	s.wg.Wait()
	s.h.RemoveStreamHandler(CardProtocolID)
	s.remember()
	if s.dht != nil {
		return s.dht.Close()
	}
	return nil
}

func (s *Service) spawn(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// connect dials p once and records how it was found.
func (s *Service) connect(p peer.AddrInfo, source string) { s.dial(p, source, false) }

// dial connects to p, bypassing the swarm's dial backoff if force, records
// how p was found, and reports whether p is connected.
//
// The source is recorded before the dial, so that a peer is never seen
// connected with its source still unknown, and it replaces "inbound": a
// peer that dialled us while we dialled it (a restarted node's remembered
// peer often does) was still found by source.
func (s *Service) dial(p peer.AddrInfo, source string, force bool) bool {
	if p.ID == s.h.ID() {
		return true
	}
	s.mu.Lock()
	cur, known := s.sources[p.ID]
	if !known || cur == SourceInbound {
		s.sources[p.ID] = source
	}
	s.mu.Unlock()
	if s.h.Network().Connectedness(p.ID) == network.Connected {
		return true
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if force {
		ctx = network.WithForceDirectDial(ctx, "retry a crossed dial")
	}
	if err := s.h.Connect(ctx, p); err != nil {
		log.Debugw("could not connect to discovered peer", "peer", p.ID, "source", source, "err", err)
		s.forgetIfGone(p.ID)
		return false
	}
	log.Infow("connected to discovered peer", "peer", p.ID, "source", source)
	return true
}

// forgetIfGone drops the source of a peer with no connection left, so the
// table holds only connected peers.
func (s *Service) forgetIfGone(p peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h.Network().Connectedness(p) != network.Connected {
		delete(s.sources, p)
	}
}

// Source says how p was found: bootstrap, mdns, dht, remembered, inbound
// or "" if not known.
func (s *Service) Source(p peer.ID) string {
	if s.boot != nil && s.boot.IsBootstrap(p) {
		return SourceBootstrap
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sources[p]
}

type mdnsNotifee struct{ s *Service }

func (n mdnsNotifee) HandlePeerFound(p peer.AddrInfo) {
	s := n.s
	if s.ctx.Err() != nil {
		return
	}
	s.spawn(func() {
		// Two nodes that hear each other at once dial at once, and crossed
		// TCP dials (same ports, reuseport) can both fail the handshake.
		// mDNS reports a peer only once, so try again after a random pause,
		// past the swarm's dial backoff.
		for i := range 3 {
			if i > 0 {
				select {
				case <-s.ctx.Done():
					return
				case <-time.After(time.Duration(250+rand.IntN(1000)) * time.Millisecond):
				}
			}
			if s.dial(p, SourceMDNS, i > 0) {
				return
			}
		}
	})
}

// Offer advertises agent's capabilities and serves its signed card,
// re-signed before it expires, until Withdraw.
func (s *Service) Offer(agent *identity.Agent, caps []Capability) error {
	o := &offer{agent: agent, caps: slices.Clone(caps)}
	if err := s.sign(o); err != nil {
		return err
	}
	s.mu.Lock()
	s.offers[agent.ID] = o
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// Withdraw stops serving an agent's card. Advertisements lapse by TTL.
func (s *Service) Withdraw(id identity.AgentID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.offers, id)
}

// ServeRawCard serves data as a card of agent id as it is, unverified. It
// exists so tests can play a peer that serves bad cards.
func (s *Service) ServeRawCard(id identity.AgentID, card *SignedCard) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.offers[id]; o != nil {
		o.card, o.raw = card, true
		return
	}
	s.offers[id] = &offer{card: card, caps: card.Capabilities, raw: true}
}

func (s *Service) sign(o *offer) error {
	var addrs []string
	for _, a := range s.h.Addrs() {
		addrs = append(addrs, a.String())
	}
	if s.cfg.Delegate == nil {
		return fmt.Errorf("card of %s: discovery has no Delegate function", o.agent.Name)
	}
	d, err := s.cfg.Delegate(o.agent)
	if err != nil {
		return fmt.Errorf("card of %s: %w", o.agent.Name, err)
	}
	sc, err := SealCard(o.agent, Card{Name: o.agent.Name, Capabilities: o.caps, Peer: s.h.ID(), Addrs: addrs, Delegation: d}, s.cfg.CardTTL)
	if err != nil {
		return err
	}
	s.mu.Lock()
	o.card = sc
	s.mu.Unlock()
	return nil
}

// localCards returns the signed cards of local agents offering capability
// ("" for all).
func (s *Service) localCards(capability string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, o := range s.offers {
		if o.card != nil && (capability == "" || o.card.Offers(capability)) {
			out = append(out, o.card.Raw)
		}
	}
	return out
}

// advertiseLoop keeps every offered capability advertised in the DHT and
// every card signed, renewing both before they expire.
func (s *Service) advertiseLoop() {
	for {
		next := s.cfg.CardTTL / 2
		s.mu.Lock()
		var offers []*offer
		caps := map[string]bool{}
		for _, o := range s.offers {
			if !o.raw {
				offers = append(offers, o)
			}
			for _, c := range o.caps {
				caps[c.Name] = true
			}
		}
		s.mu.Unlock()
		for _, o := range offers {
			s.mu.Lock()
			stale := time.Until(o.card.Expires) < s.cfg.CardTTL/2
			s.mu.Unlock()
			if stale {
				if err := s.sign(o); err != nil {
					log.Warnw("could not re-sign agent card", "agent", o.agent.ID, "err", err)
				}
			}
		}
		for c := range caps {
			ttl, err := s.rd.Advertise(s.ctx, NamespacePrefix+c)
			switch {
			case s.ctx.Err() != nil:
				return
			case err != nil:
				// Usually an empty routing table: try again soon.
				log.Debugw("advertise failed; retrying", "capability", c, "err", err)
				next = min(next, 2*time.Second)
			default:
				next = min(next, ttl*4/5)
			}
		}
		t := time.NewTimer(next)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// FindAgents returns the verified, unexpired cards of agents that offer
// capability: this node's own, those of nodes that advertise it in the
// DHT (fetched over the card protocol), and cached ones. Cards that fail
// verification are dropped and counted.
func (s *Service) FindAgents(ctx context.Context, capability string) ([]*SignedCard, error) {
	found := map[identity.AgentID]*SignedCard{}
	for _, raw := range s.localCards(capability) {
		if sc, err := OpenCard(raw, s.cfg.MaxCardSize); err == nil {
			found[sc.Agent] = sc
		}
	}
	if s.rd != nil {
		ch, err := s.rd.FindPeers(ctx, NamespacePrefix+capability)
		if err != nil {
			return nil, fmt.Errorf("find providers of %s: %w", capability, err)
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for ai := range ch {
			if ai.ID == s.h.ID() {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, sc := range s.fetch(ctx, ai, capability) {
					mu.Lock()
					found[sc.Agent] = sc
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	now := time.Now()
	s.mu.Lock()
	for id, sc := range s.cache {
		switch {
		case now.After(sc.Expires):
			delete(s.cache, id)
		case sc.Offers(capability) && found[id] == nil:
			found[id] = sc
		}
	}
	for id, sc := range found {
		s.cache[id] = sc
	}
	s.mu.Unlock()
	out := make([]*SignedCard, 0, len(found))
	for _, sc := range found {
		out = append(out, sc)
	}
	slices.SortFunc(out, func(a, b *SignedCard) int { return strings.Compare(string(a.Agent), string(b.Agent)) })
	return out, nil
}

// fetch connects to a provider and returns its verified cards for
// capability.
func (s *Service) fetch(ctx context.Context, ai peer.AddrInfo, capability string) []*SignedCard {
	if s.h.Network().Connectedness(ai.ID) != network.Connected {
		s.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
		s.connect(ai, SourceDHT)
	}
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	raws, err := FetchCards(fctx, s.h, ai.ID, capability)
	if err != nil {
		s.dropped.WithLabelValues("unreachable").Inc()
		log.Debugw("card fetch failed", "peer", ai.ID, "err", err)
		return nil
	}
	var out []*SignedCard
	for _, raw := range raws {
		sc, err := OpenCard(raw, s.cfg.MaxCardSize)
		switch {
		case err != nil:
			s.dropped.WithLabelValues("invalid").Inc()
			log.Debugw("dropped bad card", "peer", ai.ID, "err", err)
		case sc.Peer != ai.ID:
			// A node may only vouch for agents it hosts.
			s.dropped.WithLabelValues("wrong_node").Inc()
		case !sc.Offers(capability):
			s.dropped.WithLabelValues("wrong_capability").Inc()
		default:
			out = append(out, sc)
		}
	}
	return out
}

// Dropped returns how many cards were dropped, by reason.
func (s *Service) Dropped() map[string]uint64 { return promcount.ByLabel(s.dropped) }

// loadRemembered reads the peers file, if any.
func (s *Service) loadRemembered() ([]peer.AddrInfo, error) {
	if s.cfg.PeersFile == "" {
		return nil, nil
	}
	return LoadPeers(s.cfg.PeersFile)
}

// rememberLoop saves the connected peers every RememberEvery and soon
// after a new peer connects.
func (s *Service) rememberLoop() {
	every := s.cfg.RememberEvery
	if every <= 0 {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-s.met:
			// Let a burst of connections settle into one write.
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
		s.remember()
	}
}

// remember writes the peers this node is connected to, merged with the
// ones it remembered before (still useful if they were away), newest
// first.
func (s *Service) remember() {
	if s.cfg.PeersFile == "" {
		return
	}
	seen := map[peer.ID]bool{s.h.ID(): true}
	var peers []peer.AddrInfo
	for _, p := range s.h.Network().Peers() {
		addrs := s.h.Peerstore().Addrs(p)
		if len(addrs) == 0 || seen[p] {
			continue
		}
		seen[p] = true
		peers = append(peers, peer.AddrInfo{ID: p, Addrs: addrs})
	}
	if old, err := parsePeersFile(s.cfg.PeersFile); err == nil {
		for _, p := range old {
			if !seen[p.ID] {
				seen[p.ID] = true
				peers = append(peers, p)
			}
		}
	}
	if len(peers) == 0 {
		return
	}
	if err := SavePeers(s.cfg.PeersFile, peers); err != nil {
		log.Warnw("could not remember peers", "err", err)
	}
}
