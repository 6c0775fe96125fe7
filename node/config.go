package node

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/parleynet/parley/admission"
	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/policy"
	"github.com/parleynet/parley/sharedctx"
	"github.com/parleynet/parley/tracing"
)

// ErrBadConfig is wrapped by every configuration error New returns.
var ErrBadConfig = errors.New("invalid node config")

// Config says how to build a Node. A zero field means its default, so
// Config{} is a working node: a fresh identity, one agent, TCP and QUIC
// on every interface, no peers until it is told some.
type Config struct {
	// NodeKey is the node's libp2p identity; its PeerID names the node.
	// Nil is a fresh key for this process (Host's key when Host is set):
	// keep one (identity.WriteKeyFile) for a PeerID that survives restarts.
	NodeKey crypto.PrivKey
	// Agents are the agents this node hosts. The first is the default agent
	// that acts when no agent is named. None is one agent named "default"
	// with a fresh key.
	Agents []*identity.Agent

	// ListenAddrs are where the host listens (TCP and QUIC by default).
	ListenAddrs []ma.Multiaddr
	// Bootstrap peers are dialled at start and re-dialled when their
	// connection drops: multiaddrs that end in /p2p/<PeerID>, as `parley
	// id` prints them. Addresses of one peer are merged.
	Bootstrap []string
	// BootstrapBackoff is the first retry delay for an unreachable bootstrap
	// peer; it doubles up to BootstrapMaxBackoff.
	BootstrapBackoff    time.Duration
	BootstrapMaxBackoff time.Duration

	// MDNS turns on LAN discovery (the daemon turns it on; in-process
	// meshes leave it off).
	MDNS bool
	// DHTMode is the Kademlia DHT's mode: server (default), client, auto
	// or off. Server by default so that private meshes have a routing
	// table; auto lets AutoNAT keep unreachable nodes out of it.
	DHTMode string
	// PeersFile remembers the peers met, to rejoin them after a restart;
	// "" remembers nothing.
	PeersFile string
	// Announce, if set, are the addresses other peers are told to dial
	// instead of the listen addresses (port forwarding, public IPs).
	Announce []ma.Multiaddr
	// NAT sets NAT traversal.
	NAT NATConfig
	// PSK, if set, makes this a private network: only nodes with the same
	// 32-byte key can connect. QUIC cannot carry a private network, so
	// such a node listens and dials on TCP only.
	PSK pnet.PSK
	// Policy is the node's guardrails; nil allows everything. Reload it
	// with Node.SwapPolicy.
	Policy *policy.Policy
	// AuditLog, if set, records every intent published and received and
	// every negotiation step and policy decision, each on disk before the
	// step is acknowledged (received intents, which acknowledge nothing,
	// are queued). The node does not close it.
	AuditLog *audit.Log
	// AuditFailure is what the node does once its audit log is broken:
	// AuditStop (default) refuses every step that must be audited;
	// AuditContinue goes on unaudited, loudly.
	AuditFailure string
	// NoPeerScoring turns off GossipSub peer scoring, which otherwise
	// costs a peer its mesh place (and then its hearing) when it forwards
	// invalid intents.
	NoPeerScoring bool
	// BanBackoff is how long a peer whose GossipSub score fell below the
	// graylist threshold is disconnected and refused; each repeat doubles
	// it, up to an hour. Zero is DefaultBanBackoff.
	BanBackoff time.Duration
	// CardTTL is how long agent cards are valid; they are re-signed.
	CardTTL time.Duration

	// ConnLow and ConnHigh are the connection manager's watermarks.
	ConnLow, ConnHigh int

	// MaxIntentSize caps a marshalled intent envelope in bytes.
	MaxIntentSize int
	// IntentTTL is how long a published intent stays valid.
	IntentTTL time.Duration
	// ReplayWindow is how long message IDs are remembered; older messages
	// are refused. It must be at least IntentTTL.
	ReplayWindow time.Duration
	// ReplayEntries bounds the replay window's memory.
	ReplayEntries int
	// SeenTTL is how long GossipSub remembers message IDs it has seen.
	SeenTTL time.Duration
	// PublishWait is how long Publish waits for a first peer on a topic
	// that has none before it sends anyway.
	PublishWait time.Duration

	// Limits are the admission layer's node-side bounds (rates per
	// forwarding peer, origin node and agent; concurrent bid handlers and
	// asks; pending approvals). Zero fields take admission's defaults.
	Limits admission.Limits
	// Negotiation bounds what remote requesters may choose and what the
	// negotiation keeps: MaxBidWindow, MaxTaskDuration,
	// MaxProgressTimeout, MaxBidsPerCall, MaxContracts,
	// MaxContractsPerOrigin, StandbyWait, MaxCounterRounds, MaxAsks,
	// MaxQuestion, MaxAnswer and KeepTasks of
	// negotiation.Config (zero fields take its defaults; other fields are
	// ignored).
	Negotiation negotiation.Config
	// SharedContext bounds the workflows' shared contexts this node holds
	// and the context protocol; zero fields take sharedctx's defaults.
	SharedContext sharedctx.Limits
	// Tracing records spans of publishing, validation, every negotiation
	// phase, policy decisions and audit writes, keeps the recent ones for
	// the API and the task's peers, and exports them by OTLP when
	// configured. The zero value is off.
	Tracing tracing.Config
	// DialPrivateAddrs lets this node dial private and loopback addresses
	// learnt from gossip (a call's reply-to); by default only public ones
	// are, so a call cannot aim the node at internal hosts. A LAN-only or
	// loopback mesh turns it on; peers found by mDNS or connected already
	// need no dial.
	DialPrivateAddrs bool
	// RelayFilter applies the policy's peer and agent lists to relaying
	// too: intents they refuse are not forwarded. Off by default, since
	// one node's local lists should not filter the mesh for everyone
	// routed through it; the lists always apply to delivery to this
	// node's agents.
	RelayFilter bool

	// Host, when set, is used instead of building a libp2p host (tests and
	// simulations pass mocknet hosts). The node does not close it.
	Host host.Host
}

// NATConfig sets go-libp2p's NAT traversal. The zero value is a node
// that, once AutoNAT finds it behind NAT, reserves a slot on a relay found
// among its peers, advertises the relayed address and upgrades relayed
// connections to direct ones by hole punching; it serves neither.
type NATConfig struct {
	// Relays are static relays, multiaddrs ending in /p2p/<PeerID>: a
	// node behind NAT reserves its slot on these. Without them it uses
	// the relays among the peers it meets (bootstrap, DHT, mDNS).
	Relays []string
	// Reachability is what the node assumes of itself: "auto" (or "",
	// AutoNAT decides), "public" or "private" (reserve a relay slot at
	// once; for a node known to be behind NAT).
	Reachability string
	// RelayLimits bound what a RelayService node relays for others.
	RelayLimits RelayLimits
	// AutoNATService answers other peers' reachability checks.
	AutoNATService bool
	// RelayService makes this node a circuit relay v2 for others; for
	// publicly reachable nodes.
	RelayService bool
	// NoRelayClient stops the node from using relays to be reachable.
	NoRelayClient bool
	// NoHolePunching turns off DCUtR hole punching.
	NoHolePunching bool
	// PortMap asks the router for a port mapping (UPnP / NAT-PMP).
	PortMap bool
}

// RelayLimits bound a relay service; zero fields take go-libp2p's
// defaults (128 reservations, 16 circuits per peer, 8 reservations per
// IP, relayed connections of 2 minutes and 128 KiB each way).
type RelayLimits struct {
	Reservations int
	Circuits     int
	PerIP        int
	Duration     time.Duration
	Data         int64
	// Unlimited relays connections with no time or data limit, so that
	// they carry gossip as well as negotiations (GossipSub does not use a
	// limited connection): for a relay of one's own mesh, such as a
	// private (PSK) one. Reservations and circuits stay bounded.
	Unlimited bool
}

// Reachabilities a node can be configured with or find itself in.
const (
	ReachabilityAuto    = "auto"
	ReachabilityPublic  = "public"
	ReachabilityPrivate = "private"
	ReachabilityUnknown = "unknown" // AutoNAT has not decided yet
)

// DefaultConfig returns a working configuration without keys.
func DefaultConfig() Config {
	return Config{
		ListenAddrs: []ma.Multiaddr{
			ma.StringCast("/ip4/0.0.0.0/tcp/0"),
			ma.StringCast("/ip4/0.0.0.0/udp/0/quic-v1"),
		},
		BootstrapBackoff:    time.Second,
		BootstrapMaxBackoff: time.Minute,
		ConnLow:             64,
		ConnHigh:            192,
		MaxIntentSize:       intent.DefaultMaxSize,
		IntentTTL:           identity.DefaultTTL,
		ReplayWindow:        identity.DefaultReplayWindow,
		ReplayEntries:       identity.DefaultReplayEntries,
		SeenTTL:             2 * time.Minute,
		PublishWait:         2 * time.Second,
		DHTMode:             "server",
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if len(c.ListenAddrs) == 0 {
		c.ListenAddrs = d.ListenAddrs
	}
	if c.BootstrapBackoff <= 0 {
		c.BootstrapBackoff = d.BootstrapBackoff
	}
	if c.BootstrapMaxBackoff <= 0 {
		c.BootstrapMaxBackoff = d.BootstrapMaxBackoff
	}
	if c.ConnLow <= 0 {
		c.ConnLow = d.ConnLow
	}
	if c.BanBackoff <= 0 {
		c.BanBackoff = DefaultBanBackoff
	}
	if c.ConnHigh <= 0 {
		c.ConnHigh = d.ConnHigh
	}
	if c.MaxIntentSize <= 0 {
		c.MaxIntentSize = d.MaxIntentSize
	}
	if c.IntentTTL <= 0 {
		c.IntentTTL = d.IntentTTL
	}
	if c.ReplayWindow <= 0 {
		c.ReplayWindow = d.ReplayWindow
	}
	if c.ReplayEntries <= 0 {
		c.ReplayEntries = d.ReplayEntries
	}
	if c.SeenTTL <= 0 {
		c.SeenTTL = d.SeenTTL
	}
	if c.PublishWait <= 0 {
		c.PublishWait = d.PublishWait
	}
	if c.DHTMode == "" {
		c.DHTMode = d.DHTMode
	}
	if c.AuditFailure == "" {
		c.AuditFailure = AuditStop
	}
	return c
}

// DefaultAgentName names the agent a node hosts when Config.Agents is empty.
const DefaultAgentName = "default"

// keys fills a missing NodeKey (Host's, or a fresh one) and a missing
// agent list (one fresh agent named DefaultAgentName).
func (c *Config) keys() error {
	if c.NodeKey == nil && c.Host != nil {
		c.NodeKey = c.Host.Peerstore().PrivKey(c.Host.ID())
		if c.NodeKey == nil {
			return fmt.Errorf("%w: NodeKey is nil and Host's peerstore has no private key for %s", ErrBadConfig, c.Host.ID())
		}
	}
	if c.NodeKey == nil {
		k, err := identity.GenerateKey()
		if err != nil {
			return fmt.Errorf("node key: %w", err)
		}
		c.NodeKey = k
	}
	if len(c.Agents) == 0 {
		k, err := identity.GenerateKey()
		if err != nil {
			return fmt.Errorf("default agent key: %w", err)
		}
		a, err := identity.NewAgent(DefaultAgentName, k)
		if err != nil {
			return fmt.Errorf("default agent: %w", err)
		}
		c.Agents = []*identity.Agent{a}
	}
	return nil
}

func (c Config) validate() error {
	if c.NodeKey == nil {
		return fmt.Errorf("%w: NodeKey is required", ErrBadConfig)
	}
	if c.NodeKey.Type() != crypto.Ed25519 {
		return fmt.Errorf("%w: NodeKey must be ed25519, got %v", ErrBadConfig, c.NodeKey.Type())
	}
	if c.Host != nil {
		pid, err := peer.IDFromPrivateKey(c.NodeKey)
		if err != nil || pid != c.Host.ID() {
			return fmt.Errorf("%w: Host's PeerID %s is not NodeKey's", ErrBadConfig, c.Host.ID())
		}
	}
	seen := map[string]bool{}
	for i, a := range c.Agents {
		if a == nil || a.Key == nil {
			return fmt.Errorf("%w: Agents[%d] has no key", ErrBadConfig, i)
		}
		if seen[a.Name] {
			return fmt.Errorf("%w: Agents: name %q is used twice", ErrBadConfig, a.Name)
		}
		seen[a.Name] = true
	}
	if c.PSK != nil && len(c.PSK) != 32 {
		return fmt.Errorf("%w: PSK is %d bytes, want 32", ErrBadConfig, len(c.PSK))
	}
	if c.ConnLow > c.ConnHigh {
		return fmt.Errorf("%w: ConnLow %d is above ConnHigh %d", ErrBadConfig, c.ConnLow, c.ConnHigh)
	}
	switch c.NAT.Reachability {
	case "", ReachabilityAuto, ReachabilityPublic, ReachabilityPrivate:
	default:
		return fmt.Errorf("%w: NAT.Reachability %q: want auto, public or private", ErrBadConfig, c.NAT.Reachability)
	}
	if l := c.NAT.RelayLimits; l.Reservations < 0 || l.Circuits < 0 || l.PerIP < 0 || l.Duration < 0 || l.Data < 0 {
		return fmt.Errorf("%w: NAT.RelayLimits %+v: want no negative limit (0 is the default)", ErrBadConfig, l)
	}
	switch c.DHTMode {
	case "server", "client", "auto", "off":
	default:
		return fmt.Errorf("%w: DHTMode %q: want server, client, auto or off", ErrBadConfig, c.DHTMode)
	}
	switch c.AuditFailure {
	case AuditStop, AuditContinue:
	default:
		return fmt.Errorf("%w: AuditFailure %q: want %s or %s", ErrBadConfig, c.AuditFailure, AuditStop, AuditContinue)
	}
	if c.ReplayWindow < c.IntentTTL {
		return fmt.Errorf("%w: ReplayWindow %s is shorter than IntentTTL %s", ErrBadConfig, c.ReplayWindow, c.IntentTTL)
	}
	return nil
}
