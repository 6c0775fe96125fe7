// Package node owns a parley node: the libp2p host, GossipSub, the agents
// the node hosts, intent gossip (publish, subscribe and the validators that
// guard every topic), the bootstrap dialler that keeps the node in its mesh,
// and the node's lifecycle. It does not own the wire format of intents
// (package intent), keys and envelopes (package identity), or peer discovery
// beyond bootstrap addresses (package discovery).
package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleynet/parley/admission"
	"github.com/parleynet/parley/discovery"
	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/negotiation/rpc"
	"github.com/parleynet/parley/policy"
	"github.com/parleynet/parley/sharedctx"
	"github.com/parleynet/parley/tracing"
)

var log = logging.Logger("parley/node")

// Sentinel errors callers branch on.
var (
	ErrNotStarted     = errors.New("node not started")
	ErrClosed         = errors.New("node closed")
	ErrUnknownAgent   = errors.New("unknown agent")
	ErrAlreadyStarted = errors.New("node already started")
)

// Node is one parley node. Build it with New, run it with Start, stop it
// with Close. Its methods are safe for concurrent use.
type Node struct {
	cfg       Config
	bootstrap []peer.AddrInfo // cfg.Bootstrap, parsed
	relays    []peer.AddrInfo // cfg.NAT.Relays, parsed
	nat       nat
	router    *routerTracer // GossipSub's losses and open streams
	replay    *identity.ReplayWindow
	metrics   *metrics

	// ctx lives from Start to Close; every goroutine the node starts
	// watches it and is counted in wg.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	started  bool
	closed   bool
	host     host.Host
	ownsHost bool
	ps       *pubsub.PubSub
	topics   map[string]*pubsub.Topic
	disc     *discovery.Service
	neg      *negotiation.Service
	rpc      *rpc.Service
	ctxs     *sharedctx.Service // workflows' shared contexts (node/sharedctx.go)
	// agents are the hosted agents, by name and in order (default first);
	// AddAgent can add more while the node runs.
	agents    map[string]*identity.Agent
	agentList []*identity.Agent
	// subs are the open subscriptions by capability, for the intents the
	// node delivers without relaying (deliverLocal).
	subsMu sync.Mutex
	subs   map[string]map[*Subscription]struct{}
	// watching holds the capabilities whose calls reach the contractors.
	watching map[string]bool
	// scores are the GossipSub peer scores, refreshed every second by
	// pubsub's inspector, under their own lock so it never waits on mu.
	scoresMu sync.Mutex
	scores   map[peer.ID]float64
	// bans refuses graylisted peers for a back-off (ban.go).
	bans    *bans
	refuser network.Notifiee // on a host the node did not build
	// policy decides what the node's agents may do; adm is the admission
	// layer every way into the node passes (it holds the approvals too).
	policy *policy.Engine
	adm    *admission.Layer
	// delegations verifies other nodes' delegations; own holds this
	// node's delegation of each agent it hosts, re-signed before expiry.
	delegations *identity.DelegationCache
	own         map[identity.AgentID]delegation
	// publishing holds this node's own intents while GossipSub validates
	// them in Publish, by message ID, so that the validator takes the
	// intent as sealed instead of verifying the signature just made.
	publishing  sync.Map // string → *intent.Intent
	auditBroken brokenWarning
	// tracing records spans when configured; nil is off.
	tracing *tracing.Tracing
}

// delegation is a signed delegation and when it expires.
type delegation struct {
	raw     []byte
	expires time.Time
}

// New checks cfg and prepares a node. It opens no sockets; Start does.
func New(cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.keys(); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	boot, err := discovery.ParseAddrs(cfg.Bootstrap)
	if err != nil {
		return nil, fmt.Errorf("%w: Bootstrap: %w", ErrBadConfig, err)
	}
	relays, err := discovery.ParseAddrs(cfg.NAT.Relays)
	if err != nil {
		return nil, fmt.Errorf("%w: NAT.Relays: %w", ErrBadConfig, err)
	}
	n := &Node{
		cfg:         cfg,
		agents:      make(map[string]*identity.Agent, len(cfg.Agents)),
		policy:      policy.NewEngine(cfg.Policy),
		watching:    map[string]bool{},
		subs:        map[string]map[*Subscription]struct{}{},
		replay:      identity.NewReplayWindow(identity.ReplayConfig{Window: cfg.ReplayWindow, MaxEntries: cfg.ReplayEntries}),
		metrics:     newMetrics(),
		topics:      make(map[string]*pubsub.Topic),
		delegations: identity.NewDelegationCache(0),
		own:         map[identity.AgentID]delegation{},
		bootstrap:   boot,
		relays:      relays,
	}
	n.router = newRouterTracer(n.metrics)
	n.bans = newBans(cfg.BanBackoff, n.metrics.registry)
	n.bans.accept = func(ip netip.Addr) bool { return n.adm.Connection(ip) == nil }
	known := make([]peer.ID, len(boot))
	for i, ai := range boot {
		known[i] = ai.ID
	}
	adm, err := admission.New(admission.Config{Policy: n.policy, Limits: cfg.Limits, Record: n.recordPeer, Registerer: n.metrics.registry, Known: known})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadConfig, err)
	}
	n.adm = adm
	for _, a := range cfg.Agents {
		n.agents[a.Name] = a
		n.agentList = append(n.agentList, a)
	}
	pid, err := peer.IDFromPrivateKey(cfg.NodeKey)
	if err != nil {
		return nil, fmt.Errorf("%w: NodeKey: %w", ErrBadConfig, err)
	}
	if n.tracing, err = tracing.New(cfg.Tracing, tracing.Options{Node: pid.String()}); err != nil {
		return nil, fmt.Errorf("%w: Tracing: %w", ErrBadConfig, err)
	}
	return n, nil
}

// Admission returns the node's admission layer.
func (n *Node) Admission() *admission.Layer { return n.adm }

// delegationOf returns this node's delegation of agent a, signing a new
// one when there is none or it expires within the hour.
func (n *Node) delegationOf(a *identity.Agent) ([]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if d, ok := n.own[a.ID]; ok && time.Until(d.expires) > time.Hour {
		return d.raw, nil
	}
	raw, err := identity.Delegate(n.cfg.NodeKey, a.ID, identity.DefaultDelegationTTL)
	if err != nil {
		return nil, err
	}
	n.own[a.ID] = delegation{raw: raw, expires: time.Now().Add(identity.DefaultDelegationTTL)}
	return raw, nil
}

// Start opens the host (unless Config.Host was given), starts GossipSub and
// begins dialling the bootstrap peers. It returns once the node is ready to
// publish and subscribe; unreachable bootstrap peers do not fail it.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	if n.started {
		return ErrAlreadyStarted
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())

	h := n.cfg.Host
	if h == nil {
		var err error
		if h, err = n.newHost(); err != nil {
			n.cancel()
			return err
		}
		n.ownsHost = true
	}
	n.host = h
	if !n.ownsHost {
		// Its gater is not the node's: a banned peer that redials is
		// closed, and until then its streams are refused unread.
		n.refuser = n.refuseBanned()
		h.Network().Notify(n.refuser)
		h = gatedHost{Host: h, bans: n.bans}
	}
	if err := n.watchReachability(n.ctx, h); err != nil {
		n.shutdownLocked()
		return fmt.Errorf("watch reachability: %w", err)
	}

	psOpts := []pubsub.Option{
		// Intents carry their own agent signature in the envelope, so a
		// second per-message peer signature would only double the cost.
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(messageID),
		// A call for proposals must not be lost to a mesh that has not
		// grafted yet: send own messages to every known topic peer.
		pubsub.WithFloodPublish(true),
		pubsub.WithSeenMessagesTTL(n.cfg.SeenTTL),
		pubsub.WithMaxMessageSize(max(n.cfg.MaxIntentSize*2, 1<<20)),
		pubsub.WithGossipSubParams(gossipParams()),
		// GossipSub's queues of 32 overflow under a burst the admission
		// layer lets through, and what they drop is honest traffic as
		// much as the flood's: deeper queues, with the forwarder's rate
		// bounding what fills them.
		pubsub.WithPeerOutboundQueueSize(1024),
		pubsub.WithValidateQueueSize(1024),
		pubsub.WithRawTracer(n.router),
		pubsub.WithAppSpecificRpcInspector(newForwarders(n.adm, n.bans.banned, func(reason string) {
			n.metrics.dropped.WithLabelValues(reason).Inc()
		}).inspect),
	}
	if !n.cfg.NoPeerScoring {
		params, thresholds := peerScoreParams(func(p peer.ID) float64 { return -n.adm.Penalty(p) })
		psOpts = append(psOpts, pubsub.WithPeerScore(params, thresholds),
			pubsub.WithPeerScoreInspect(func(scores map[peer.ID]float64) {
				n.scoresMu.Lock()
				n.scores = scores
				n.scoresMu.Unlock()
				n.graylisted(h.Network(), scores)
			}, time.Second))
	}
	ps, err := pubsub.NewGossipSub(n.ctx, h, psOpts...)
	if err != nil {
		n.shutdownLocked()
		return fmt.Errorf("start gossipsub: %w", err)
	}
	n.ps = ps

	b := n.cfg.Negotiation
	n.neg = negotiation.New(h, negotiation.Config{
		Publish:               n.publishAs,
		Replay:                n.replay,
		Registerer:            n.metrics.registry,
		Guard:                 stepGuard{n.adm.Negotiation(), n},
		Audit:                 n.auditEvent,
		KeepTasks:             b.KeepTasks,
		MaxBidWindow:          b.MaxBidWindow,
		MaxTaskDuration:       b.MaxTaskDuration,
		MaxProgressTimeout:    b.MaxProgressTimeout,
		MaxBidsPerCall:        b.MaxBidsPerCall,
		MaxContracts:          b.MaxContracts,
		MaxContractsPerOrigin: b.MaxContractsPerOrigin,
		StandbyWait:           b.StandbyWait,
		MaxCounterRounds:      b.MaxCounterRounds,
		MaxAsks:               b.MaxAsks,
		MaxQuestion:           b.MaxQuestion,
		MaxAnswer:             b.MaxAnswer,
		Reach:                 n.reach,
		DialPrivateAddrs:      n.cfg.DialPrivateAddrs,
		Tracer:                n.tracing.Tracer("parley/negotiation"),
		Forged:                func(p peer.ID, why string) { n.forgedFrame(h.Network(), p, why) },
	})
	h.SetStreamHandler(TraceProtocolID, n.serveTraces)
	n.ctxs = n.newSharedContext(h)
	n.rpc = rpc.New(h, rpc.Config{Replay: n.replay, Gate: n.adm.RPC(), Tracer: n.tracing.Tracer("parley/rpc"), Registerer: n.metrics.registry,
		Forged: func(p peer.ID, why string) { n.forgedFrame(h.Network(), p, why) }})
	disc, err := discovery.New(h, discovery.Config{
		Bootstrap: discovery.BootstrapConfig{
			Peers:      n.bootstrap,
			Backoff:    n.cfg.BootstrapBackoff,
			MaxBackoff: n.cfg.BootstrapMaxBackoff,
			Hint:       pskHint(n.cfg.PSK),
		},
		MDNS:       n.cfg.MDNS,
		DHTMode:    n.cfg.DHTMode,
		PeersFile:  n.cfg.PeersFile,
		CardTTL:    n.cfg.CardTTL,
		Registerer: n.metrics.registry,
		AdmitCard:  n.adm.Card,
		Delegate:   n.delegationOf,
	})
	if err != nil {
		n.shutdownLocked()
		return fmt.Errorf("start discovery: %w", err)
	}
	n.disc = disc
	if err := disc.Start(); err != nil {
		// mDNS needs a multicast-capable interface; the rest still works.
		log.Warnw("discovery started with an error", "err", err)
	}
	n.started = true
	log.Infow("node started", "peer", h.ID(), "agents", len(n.agents))
	return nil
}

func (n *Node) newHost() (host.Host, error) {
	cm, err := connmgr.NewConnManager(n.cfg.ConnLow, n.cfg.ConnHigh)
	if err != nil {
		return nil, fmt.Errorf("connection manager: %w", err)
	}
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	// Caps per peer on parley's own protocols, so one peer cannot hold
	// open unbounded negotiations or card fetches.
	limits.AddProtocolPeerLimit(negotiation.ProtocolID,
		rcmgr.BaseLimit{StreamsInbound: 64, StreamsOutbound: 64, Streams: 128, Memory: 16 << 20}, rcmgr.BaseLimitIncrease{})
	limits.AddProtocolPeerLimit(discovery.CardProtocolID,
		rcmgr.BaseLimit{StreamsInbound: 4, StreamsOutbound: 4, Streams: 8, Memory: 1 << 20}, rcmgr.BaseLimitIncrease{})
	limits.AddProtocolPeerLimit(rpc.ID,
		rcmgr.BaseLimit{StreamsInbound: 16, StreamsOutbound: 16, Streams: 32, Memory: 4 << 20}, rcmgr.BaseLimitIncrease{})
	limits.AddProtocolPeerLimit(sharedctx.ProtocolID,
		rcmgr.BaseLimit{StreamsInbound: 8, StreamsOutbound: 16, Streams: 24, Memory: 8 << 20}, rcmgr.BaseLimitIncrease{})
	// And in all, so that many peers together cannot either.
	limits.AddProtocolLimit(negotiation.ProtocolID,
		rcmgr.BaseLimit{StreamsInbound: 2048, StreamsOutbound: 2048, Streams: 4096, Memory: 256 << 20}, rcmgr.BaseLimitIncrease{})
	limits.AddProtocolLimit(rpc.ID,
		rcmgr.BaseLimit{StreamsInbound: 256, StreamsOutbound: 256, Streams: 512, Memory: 64 << 20}, rcmgr.BaseLimitIncrease{})
	limits.AddProtocolLimit(sharedctx.ProtocolID,
		rcmgr.BaseLimit{StreamsInbound: 128, StreamsOutbound: 256, Streams: 384, Memory: 64 << 20}, rcmgr.BaseLimitIncrease{})
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()),
		rcmgr.WithMetricsDisabled())
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	listen := n.cfg.ListenAddrs
	// SO_REUSEPORT would let this node share a fixed TCP port another
	// process holds (peers dialling it then reach the wrong node), so the
	// kernel is left to refuse it. Nodes on port 0 keep reuseport, which
	// hole punching uses for outbound dials.
	var tcpOpts []any
	if fixedTCP(listen) {
		tcpOpts = append(tcpOpts, tcp.DisableReuseport())
	}
	transports := []libp2p.Option{libp2p.Transport(tcp.NewTCPTransport, tcpOpts...)}
	if n.cfg.PSK != nil {
		listen = tcpOnly(listen)
		if len(listen) == 0 {
			return nil, fmt.Errorf("%w: a private network (PSK) needs a TCP listen address; QUIC cannot carry one", ErrBadConfig)
		}
	} else {
		transports = append(transports, libp2p.Transport(quic.NewTransport))
	}
	opts := []libp2p.Option{
		libp2p.Identity(n.cfg.NodeKey),
		libp2p.ListenAddrs(listen...),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ConnectionManager(cm),
		libp2p.ConnectionGater(n.bans),
		libp2p.ResourceManager(rm),
		libp2p.PrometheusRegisterer(n.metrics.registry),
	}
	opts = append(opts, transports...)
	if n.cfg.PSK != nil {
		opts = append(opts, libp2p.PrivateNetwork(n.cfg.PSK))
	}
	if len(n.cfg.Announce) > 0 {
		announce := n.cfg.Announce
		opts = append(opts, libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return announce }))
	}
	opts = append(opts, n.natOptions()...)
	if n.cfg.NAT.PortMap {
		opts = append(opts, libp2p.NATPortMap())
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		_ = rm.Close()
		return nil, fmt.Errorf("start libp2p host on %v: %w", n.cfg.ListenAddrs, err)
	}
	// go-libp2p fails only when every address fails; a fixed address that
	// did not listen is an error of its own.
	if missing := notListening(listen, h.Network().ListenAddresses()); missing != nil {
		_ = h.Close()
		return nil, fmt.Errorf("%w: listen address %s: could not listen (is the port held by another process?)", ErrBadConfig, missing)
	}
	return h, nil
}

// fixedTCP reports whether any address is TCP on a fixed port.
func fixedTCP(addrs []ma.Multiaddr) bool {
	for _, a := range addrs {
		if p, err := a.ValueForProtocol(ma.P_TCP); err == nil && p != "0" {
			return true
		}
	}
	return false
}

// notListening returns the first of want with a fixed port that no
// address in got listens on (comparing ports and transports; a wildcard
// IP is listed as such).
func notListening(want, got []ma.Multiaddr) ma.Multiaddr {
	for _, w := range want {
		port, proto := "", 0
		for _, p := range []int{ma.P_TCP, ma.P_UDP} {
			if v, err := w.ValueForProtocol(p); err == nil {
				port, proto = v, p
			}
		}
		if port == "" || port == "0" {
			continue
		}
		found := false
		for _, g := range got {
			if v, err := g.ValueForProtocol(proto); err == nil && v == port {
				found = true
				break
			}
		}
		if !found {
			return w
		}
	}
	return nil
}

// Close stops every goroutine the node started and closes its host (if it
// built it). It is safe to call more than once.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	p := n.detachLocked()
	n.mu.Unlock()
	// Shut down without the lock: the services wait for goroutines that
	// may need it (a negotiation publishing a call, say).
	err := p.shutdown()
	n.wg.Wait()
	// Spans ended by the shutdown are exported within a few seconds, or
	// dropped.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if terr := n.tracing.Close(ctx); terr != nil {
		log.Warnw("tracing did not shut down cleanly", "err", terr)
	}
	return err
}

// parts are what shutdown stops, detached from the node under its lock.
type parts struct {
	cancel context.CancelFunc
	neg    *negotiation.Service
	rpc    *rpc.Service
	ctxs   *sharedctx.Service
	adm    *admission.Layer
	disc   *discovery.Service
	topics map[string]*pubsub.Topic
	host   host.Host // only if the node built it
}

func (n *Node) detachLocked() parts {
	p := parts{cancel: n.cancel, neg: n.neg, rpc: n.rpc, ctxs: n.ctxs, adm: n.adm, disc: n.disc, topics: n.topics}
	if n.host != nil {
		n.host.RemoveStreamHandler(TraceProtocolID)
		if n.refuser != nil {
			n.host.Network().StopNotify(n.refuser)
		}
	}
	if n.ownsHost {
		p.host = n.host
	}
	n.topics = map[string]*pubsub.Topic{}
	return p
}

func (p parts) shutdown() error {
	if p.cancel != nil {
		p.cancel()
	}
	if p.neg != nil {
		_ = p.neg.Close()
	}
	if p.rpc != nil {
		_ = p.rpc.Close()
	}
	if p.ctxs != nil {
		_ = p.ctxs.Close()
	}
	if p.adm != nil {
		p.adm.Close()
	}
	if p.disc != nil {
		_ = p.disc.Close()
	}
	for _, t := range p.topics {
		_ = t.Close()
	}
	if p.host != nil {
		if err := p.host.Close(); err != nil {
			return fmt.Errorf("close host: %w", err)
		}
	}
	return nil
}

// shutdownLocked undoes a Start that failed part way; nothing the node
// started can be waiting for its lock yet.
func (n *Node) shutdownLocked() error { return n.detachLocked().shutdown() }

// running returns the host and pubsub, or an error if the node is not
// between Start and Close.
func (n *Node) running() (*pubsub.PubSub, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.closed:
		return nil, ErrClosed
	case !n.started:
		return nil, ErrNotStarted
	}
	return n.ps, nil
}

// Host returns the libp2p host, or nil before Start.
func (n *Node) Host() host.Host {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.host
}

// ID returns the node's PeerID.
func (n *Node) ID() peer.ID {
	id, _ := peer.IDFromPrivateKey(n.cfg.NodeKey)
	return id
}

// Addrs returns the node's listen addresses, each ending in /p2p/<PeerID>
// so it can be given to another node's --bootstrap as it is.
func (n *Node) Addrs() []ma.Multiaddr {
	h := n.Host()
	if h == nil {
		return nil
	}
	p2p, err := ma.NewComponent("p2p", h.ID().String())
	if err != nil {
		return nil
	}
	var out []ma.Multiaddr
	for _, a := range h.Addrs() {
		out = append(out, a.Encapsulate(p2p.Multiaddr()))
	}
	return out
}

// Agents returns the agents this node hosts, the default agent first.
func (n *Node) Agents() []*identity.Agent {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*identity.Agent(nil), n.agentList...)
}

// Agent returns the hosted agent with the given name; "" names the default
// agent.
func (n *Node) Agent(name string) (*identity.Agent, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if name == "" {
		return n.agentList[0], nil
	}
	a, ok := n.agents[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownAgent, name)
	}
	return a, nil
}

// Registry returns the Prometheus registry holding the node's metrics and
// go-libp2p's.
func (n *Node) Registry() *prometheus.Registry { return n.metrics.registry }

// tcpOnly drops the addresses that are not TCP.
func tcpOnly(addrs []ma.Multiaddr) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range addrs {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// pskHint explains failed dials on a private network: a peer with another
// key (or none) fails the handshake without a useful error.
func pskHint(psk pnet.PSK) string {
	if psk == nil {
		return ""
	}
	return "this node is on a private network (PSK); peers with a different key or none cannot connect"
}
