package home

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	logging "github.com/ipfs/go-log/v2"
	ma "github.com/multiformats/go-multiaddr"
	"go.yaml.in/yaml/v3"

	"github.com/parleynet/parley/admission"
	"github.com/parleynet/parley/discovery"
	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/policy"
	"github.com/parleynet/parley/sharedctx"
	"github.com/parleynet/parley/tracing"
)

// DefaultAPIListen is where the daemon's API listens unless configured.
const DefaultAPIListen = "127.0.0.1:0"

// maxConfigSize bounds how much of config.yaml is read.
const maxConfigSize = 1 << 20

// MinIntentSize is the smallest limits.max_intent_size accepted: below it
// even an intent with an empty payload would not fit.
const MinIntentSize = 1024

// Config is config.yaml. Every field is optional; zero values mean the
// defaults of node.DefaultConfig.
type Config struct {
	// Listen are the multiaddrs the node listens on.
	Listen []string `yaml:"listen"`
	// Bootstrap are the peers to join, each ending in /p2p/<PeerID>.
	Bootstrap []string `yaml:"bootstrap"`
	// Agents are the hosted agents; the first is the default agent.
	// Default: one agent called "default".
	Agents []AgentConfig `yaml:"agents"`
	// API configures the local HTTP API.
	API APIConfig `yaml:"api"`
	// Limits bound intents.
	Limits LimitsConfig `yaml:"limits"`
	// Admission bounds what remote peers may make this node do.
	Admission admission.Limits `yaml:"admission"`
	// Negotiation bounds what remote requesters may choose.
	Negotiation NegotiationConfig `yaml:"negotiation"`
	// SharedContext bounds the workflows' shared contexts this node keeps.
	SharedContext sharedctx.Limits `yaml:"shared_context"`
	// Tracing records spans (off unless enabled or an OTLP endpoint is
	// set, here or in OTEL_EXPORTER_OTLP_*).
	Tracing tracing.Config `yaml:"tracing"`
	// DialPrivateAddrs lets the node dial private and loopback addresses
	// learnt from gossip (LAN-only meshes).
	DialPrivateAddrs bool `yaml:"dial_private_addrs"`
	// RelayFilter applies the policy's peer and agent lists to relaying.
	RelayFilter bool `yaml:"relay_filter"`
	// AuditFailure is what the node does once its audit log is broken:
	// stop (default) or continue.
	AuditFailure string `yaml:"audit_failure"`
	// ConnMgr holds the connection manager's watermarks.
	ConnMgr ConnMgrConfig `yaml:"connmgr"`
	// MDNS finds peers on the LAN (default true).
	MDNS *bool `yaml:"mdns"`
	// DHT sets the Kademlia DHT.
	DHT DHTConfig `yaml:"dht"`
	// Announce are the addresses peers are told to dial (port forwarding).
	Announce []string `yaml:"announce"`
	// NAT sets NAT traversal.
	NAT NATConfig `yaml:"nat"`
	// Policy is a policy file (relative paths are to the home), reloaded
	// on SIGHUP; "" allows everything.
	Policy string `yaml:"policy"`
	// PSK is a private network key file (relative paths are to the home).
	PSK string `yaml:"psk"`
	// A2A is the A2A gateway (interop/a2a); off unless listen is set or
	// 'parley run --a2a-listen' is given.
	A2A A2AConfig `yaml:"a2a"`
	// LogLevel is the daemon's log level (debug, info, warn, error),
	// applied at start and on SIGHUP unless --log-level says otherwise;
	// "" leaves it as the process has it (info).
	LogLevel string `yaml:"log_level"`
}

// DHTConfig sets the Kademlia DHT.
type DHTConfig struct {
	Mode string `yaml:"mode"` // server (default), client, auto, off
}

// NATConfig sets NAT traversal; see node.NATConfig.
type NATConfig struct {
	AutoNATService bool  `yaml:"autonat_service"`
	RelayService   bool  `yaml:"relay_service"`
	RelayClient    *bool `yaml:"relay_client"`  // default true
	HolePunching   *bool `yaml:"hole_punching"` // default true
	PortMap        bool  `yaml:"port_map"`
	// Relays are static relays, each ending in /p2p/<PeerID>.
	Relays       []string          `yaml:"relays"`
	Reachability string            `yaml:"reachability"` // auto (default), public, private
	RelayLimits  RelayLimitsConfig `yaml:"relay_limits"`
}

// RelayLimitsConfig bounds a relay service; see node.RelayLimits.
type RelayLimitsConfig struct {
	Reservations int           `yaml:"reservations"`
	Circuits     int           `yaml:"circuits"`
	PerIP        int           `yaml:"per_ip"`
	Duration     time.Duration `yaml:"duration"`
	Data         int64         `yaml:"data"`
	Unlimited    bool          `yaml:"unlimited"`
}

// AgentConfig names one hosted agent; its key is keys/agents/<name>.key.
// With Exec, the agent is a command: it bids on calls for Capabilities
// and does the work it wins (see daemon/execagent). Without Exec it only
// signs what the node publishes and requests for it, and offers nothing.
type AgentConfig struct {
	Name         string        `yaml:"name"`
	Capabilities []string      `yaml:"capabilities"`
	Exec         []string      `yaml:"exec"`
	Timeout      time.Duration `yaml:"timeout"`
	// A2A, instead of Exec, backs the agent with a remote A2A agent: its
	// base URL or its card's URL. Capabilities may then be left out (the
	// card's skills); Price and ETA are the bid it makes on every call,
	// and A2ATokenFile a bearer token for the remote (relative paths are
	// to the home).
	A2A          string        `yaml:"a2a"`
	Price        float64       `yaml:"price"`
	ETA          time.Duration `yaml:"eta"`
	A2ATokenFile string        `yaml:"a2a_token_file"`
	// Line is the agent's line in config.yaml, for error messages.
	Line int `yaml:"-"`
}

// Equal reports whether two agent configurations are the same, Line aside.
func (a AgentConfig) Equal(b AgentConfig) bool {
	return a.Name == b.Name && slices.Equal(a.Capabilities, b.Capabilities) &&
		slices.Equal(a.Exec, b.Exec) && a.Timeout == b.Timeout &&
		a.A2A == b.A2A && a.Price == b.Price && a.ETA == b.ETA && a.A2ATokenFile == b.A2ATokenFile
}

// Contractor reports whether the agent bids and works (a command or a
// remote A2A agent) rather than only signing for the node.
func (a AgentConfig) Contractor() bool { return len(a.Exec) > 0 || a.A2A != "" }

// A2AConfig is the A2A gateway (see interop/a2a).
type A2AConfig struct {
	// Listen is host:port; empty (with no --a2a-listen) leaves the
	// gateway off.
	Listen string `yaml:"listen"`
	// GRPCListen, when set, also serves A2A's gRPC binding at this
	// host:port (same token and bounds).
	GRPCListen string `yaml:"grpc_listen"`
	// Public allows a listen address that is not loopback.
	Public bool `yaml:"public"`
	// URL is the base URL the cards name (default http://<listen>).
	URL string `yaml:"url"`
	// TokenFile holds the bearer token (default a2a.token in the home,
	// generated at the first start).
	TokenFile string `yaml:"token_file"`
	// Export are capabilities offered as skills besides those of this
	// node's agents: ones the mesh's other nodes serve.
	Export []string `yaml:"export"`
	// Agent is the agent of this node that requests for A2A clients
	// (default the first, the node's default agent): the policy's rules
	// for it bound what they may ask for.
	Agent string `yaml:"agent"`
	// MaxTasks bounds the A2A tasks remembered (default 1000), MaxLive
	// those running at once (default 64), MaxBody a request (default
	// 1 MiB).
	MaxTasks int `yaml:"max_tasks"`
	MaxLive  int `yaml:"max_live"`
	MaxBody  int `yaml:"max_body"`
}

// APIConfig configures the local HTTP API.
type APIConfig struct {
	// Listen is host:port; default 127.0.0.1:0 (any free port).
	Listen string `yaml:"listen"`
}

// LimitsConfig bounds intents.
type LimitsConfig struct {
	// MaxIntentSize caps a signed intent in bytes; default 65536.
	MaxIntentSize int `yaml:"max_intent_size"`
	// IntentTTL is how long a published intent stays valid; default 5m.
	IntentTTL time.Duration `yaml:"intent_ttl"`
}

// NegotiationConfig bounds what a remote requester may choose and what
// the node keeps; see negotiation.Config.
type NegotiationConfig struct {
	MaxBidWindow          time.Duration `yaml:"max_bid_window"`
	MaxTaskDuration       time.Duration `yaml:"max_task_duration"`
	MaxProgressTimeout    time.Duration `yaml:"max_progress_timeout"`
	MaxBidsPerCall        int           `yaml:"max_bids_per_call"`
	MaxContracts          int           `yaml:"max_contracts"`
	MaxContractsPerOrigin int           `yaml:"max_contracts_per_origin"`
	StandbyWait           time.Duration `yaml:"standby_wait"`
	KeepTasks             int           `yaml:"keep_tasks"`
	MaxCounterRounds      int           `yaml:"max_counter_rounds"`
}

// ConnMgrConfig holds the connection manager's watermarks.
type ConnMgrConfig struct {
	Low  int `yaml:"low"`
	High int `yaml:"high"`
}

// defaultConfigYAML is the config.yaml that Init writes. Open must accept
// it (a test checks).
const defaultConfigYAML = `# parley node configuration.
#
# Every field is optional; a commented-out field shows its default.
# Flags given to 'parley run' (--listen, --bootstrap, --api, --announce,
# --dht-mode, --no-mdns, --policy, --psk) override the fields of the same
# name. Unknown fields are an error.
#
# Besides bootstrap peers, a node finds others by mDNS on the LAN, through
# the DHT, and from <home>/peers.json: the peers it was connected to, saved
# as they connect and at shutdown, so a restarted node rejoins with no
# flags.

# Multiaddrs the node listens on. Port 0 picks a free port at every start;
# give a fixed port (e.g. /ip4/0.0.0.0/tcp/4001) to a node that others join
# by address.
# listen:
#   - /ip4/0.0.0.0/tcp/0
#   - /ip4/0.0.0.0/udp/0/quic-v1

# Peers to join at start, each ending in /p2p/<PeerID> (the 'listen:' lines
# that 'parley run' prints). They are re-dialled whenever the connection
# drops.
# bootstrap:
#   - /ip4/192.0.2.10/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN

# Agents this node hosts. Each has its key in keys/agents/<name>.key; the
# first is the default agent. An agent with exec is a command that bids on
# calls for its capabilities and does the work it wins: parley runs it
# with {"phase":"bid",...} or {"phase":"execute",...} on stdin and reads a
# JSON reply from stdout (see examples/shell/quote.sh). An agent without
# exec offers nothing: a program that does the work itself registers over
# the API instead ('parley agents register'). Added, removed and changed
# agents take effect on SIGHUP.
agents:
  - name: default
#  - name: quoter
#    capabilities: [quote]
#    exec: ["sh", "quote.sh"]
#    timeout: 30s
# An agent may instead be a remote A2A agent (its base URL or card URL):
# its card's skills are its capabilities unless listed, and it bids price
# and eta on every call.
#  - name: translator
#    a2a: https://translator.example/
#    price: 2
#    eta: 5s

# The local HTTP API. Clients find its URL in <home>/api and its bearer token
# in <home>/api.token.
# api:
#   listen: 127.0.0.1:0

# The A2A gateway: this node's mesh as an A2A v1.0 agent (JSON-RPC and
# REST), on when listen is set ('parley run --a2a-listen ADDR' sets it too).
# Its card is at <url>/.well-known/agent-card.json with a skill per
# capability of this node's agents and per exported one; every call needs
# the bearer token in token_file (generated at the first start).
# a2a:
#   listen: 127.0.0.1:7070
#   grpc_listen: 127.0.0.1:7071   # A2A's gRPC binding too
#   public: false          # allow an address that is not loopback
#   url: http://127.0.0.1:7070   # the base URL the card names
#   token_file: a2a.token
#   export: [translate]    # capabilities other nodes of the mesh serve
#   agent: default         # the agent that requests for A2A clients (its policy applies)
#   max_tasks: 1000        # A2A tasks remembered
#   max_live: 64           # running at once
#   max_body: 1048576      # bytes of one request

# The daemon's log level: debug, info, warn or error ('parley run
# --log-level' overrides it); reloaded on SIGHUP.
# log_level: info

# limits:
#   max_intent_size: 65536  # bytes, of the signed intent
#   intent_ttl: 5m          # how long a published intent stays valid

# What remote peers may make this node do, whatever the policy says. Keys
# cost nothing, so each bound is per node as well as per agent. Rates are
# token buckets; a negative per_second turns one off.
# admission:
#   intents_per_forwarder: {per_second: 200, burst: 100}  # per connected peer, before any signature is checked (its own agents' intents aside)
#   intents_relayed: {per_second: 150, burst: 75}         # other nodes' intents this node hands on, in all (past it they are delivered here only); keep under the peers' intents_per_forwarder
#   intents_per_origin: {per_second: 500, burst: 500}     # per node hosting the agents (proven by its delegation)
#   intents_per_agent: {per_second: 500, burst: 500}
#   asks_per_peer: {per_second: 100, burst: 100}          # direct-ask streams per connected peer
#   traces_per_peer: {per_second: 2, burst: 10}           # span requests (parley trace) per connected peer
#   trace_spans: 2000                                     # spans in one answer to a peer
#   contexts_per_peer: {per_second: 50, burst: 100}       # shared context streams per connected peer
#   connections_per_ip: {per_second: 32, burst: 64}       # inbound connections per remote IP, before their handshake
#   newcomer_age: 10m             # a peer seen for less, with no task committed with it and not a bootstrap peer, is a newcomer:
#                                 # newcomers together get one peer's worth of each per-peer rate above (negative: no newcomers)
#   bid_handlers: 64              # bid handlers running at once: in all,
#   bid_handlers_per_agent: 16    # per local agent,
#   bid_handlers_per_origin: 8    # per requesting node
#   asks: 128                     # direct asks answered at once, in all
#   asks_per_origin: 4            # and per asking node
#   pending_approvals: 256        # steps waiting for a human, in all
#   pending_approvals_per_peer: 4 # and per remote node
#   max_approval_wait: 10m        # the longest a step waits for a human

# What a remote requester may choose, clamped: its bid window, its task's
# deadline, its progress interval; and what the node remembers.
# negotiation:
#   max_bid_window: 10s
#   max_task_duration: 10m
#   max_progress_timeout: 1m
#   max_bids_per_call: 64
#   max_contracts: 1024   # calls this node's agents bid on or work on at once,
#   max_contracts_per_origin: 64  # from one requesting node
#   standby_wait: 30s     # how long after its window a bid waits for a verdict
#   keep_tasks: 1000      # tasks remembered on each side
#   max_counter_rounds: 3 # counter-offers per bid, either side (-1: none)

# Workflows' shared contexts this node keeps as a requester, and what a
# participant may write into them.
# shared_context:
#   max_value_size: 16384  # bytes of one value
#   max_keys: 256          # keys of one context
#   max_bytes: 1048576     # signed entries of one context
#   max_contexts: 1024     # contexts on this node
#   max_grants: 4096       # steps granted access at once
#   max_batch: 64          # entries in one write
#   max_clock_skew: 30s    # how far ahead of this node's clock an entry may be
#   timeout: 10s           # one exchange on /parley/context/1.0.0

# Traces: spans of publishing, validation, every negotiation phase, policy
# decisions and audit writes. Off unless enabled, or unless an OTLP
# endpoint is set here or in OTEL_EXPORTER_OTLP_ENDPOINT (the exporters
# read the other OTEL_EXPORTER_OTLP_* variables too). The recent spans
# stay in a bounded ring: GET /v1/traces/{id}, 'parley trace TASK'.
# tracing:
#   enabled: false
#   ring_size: 10000       # recent spans kept
#   sample_ratio: 1        # share of new traces recorded; a remote trace context never decides it
#   otlp:
#     protocol: grpc       # or http/protobuf
#     endpoint: 127.0.0.1:4317
#     insecure: true

# Dial private and loopback addresses that calls give as their reply-to
# (only for a mesh on one LAN or machine); by default only public ones are.
# dial_private_addrs: false

# Apply the policy's peer and agent lists to relaying too, not only to
# delivery to this node's agents.
# relay_filter: false

# When the audit log breaks (a disk error): stop taking any step that must
# be audited, or continue unaudited with an error in the log every few
# seconds. Either way 'parley status' and /v1/health say so.
# audit_failure: stop

# Connection manager watermarks: above high, connections are trimmed to low.
# connmgr:
#   low: 64
#   high: 192

# Find peers on the LAN with mDNS ('parley run --no-mdns' turns it off).
# mdns: true

# The Kademlia DHT: server (answers queries; right for private and LAN
# meshes), client, auto (server once AutoNAT finds the node reachable), off.
# dht:
#   mode: server

# Addresses to tell peers to dial instead of the listen addresses, for a
# node behind port forwarding.
# announce:
#   - /ip4/203.0.113.7/tcp/4001

# NAT traversal (go-libp2p): a publicly reachable node can serve AutoNAT
# checks and relay for others (relay_service, 'parley run --relay-service').
# A node behind NAT reserves a slot on a relay (the static relays, else the
# relays among its peers), advertises the relayed address, and hole
# punching then upgrades its connections to direct ones where the NATs
# allow. reachability: private skips waiting for AutoNAT to say so.
# nat:
#   autonat_service: false
#   relay_service: false
#   relay_client: true
#   hole_punching: true
#   port_map: false
#   reachability: auto             # auto, public or private
#   relays:
#     - /ip4/198.51.100.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN
#   relay_limits:                  # for relay_service; 0 keeps the default
#     reservations: 128            # slots in all
#     circuits: 16                 # relayed connections per peer
#     per_ip: 8                    # slots per IP address
#     duration: 2m                 # per relayed connection
#     data: 131072                 # bytes each way per relayed connection
#     unlimited: false             # no time or data limit: relayed connections carry gossip too

# Guardrails (see policy/testdata/example.yaml in parley's source); reloaded
# on SIGHUP. A private network key makes the mesh private (psk: swarm.key).
# policy: policy.yaml
# psk: swarm.key
`

// fileConfig is config.yaml as decoded, with line numbers kept for the
// values that are checked after decoding.
type fileConfig struct {
	Listen    []lineString `yaml:"listen"`
	Bootstrap []lineString `yaml:"bootstrap"`
	Agents    []struct {
		Name         lineString    `yaml:"name"`
		Capabilities []string      `yaml:"capabilities"`
		Exec         []string      `yaml:"exec"`
		Timeout      time.Duration `yaml:"timeout"`
		A2A          string        `yaml:"a2a"`
		Price        float64       `yaml:"price"`
		ETA          time.Duration `yaml:"eta"`
		A2ATokenFile string        `yaml:"a2a_token_file"`
	} `yaml:"agents"`
	API struct {
		Listen lineString `yaml:"listen"`
	} `yaml:"api"`
	Limits  LimitsConfig  `yaml:"limits"`
	ConnMgr ConnMgrConfig `yaml:"connmgr"`
	MDNS    *bool         `yaml:"mdns"`
	DHT     struct {
		Mode lineString `yaml:"mode"`
	} `yaml:"dht"`
	Announce []lineString `yaml:"announce"`
	NAT      NATConfig    `yaml:"nat"`
	Policy   string       `yaml:"policy"`
	PSK      string       `yaml:"psk"`
	LogLevel lineString   `yaml:"log_level"`
	A2A      A2AConfig    `yaml:"a2a"`

	Admission        admission.Limits  `yaml:"admission"`
	Negotiation      NegotiationConfig `yaml:"negotiation"`
	Tracing          tracing.Config    `yaml:"tracing"`
	DialPrivateAddrs bool              `yaml:"dial_private_addrs"`
	RelayFilter      bool              `yaml:"relay_filter"`
	AuditFailure     string            `yaml:"audit_failure"`
	SharedContext    sharedctx.Limits  `yaml:"shared_context"`
}

// lineString is a YAML string that remembers its line.
type lineString struct {
	s    string
	line int
}

func (l *lineString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a string", n.Line)
	}
	l.s, l.line = n.Value, n.Line
	return nil
}

var inType = regexp.MustCompile(` in type [\w.*\[\]]+`)

// loadConfig reads and checks config.yaml strictly: unknown fields, wrong
// types and bad values are errors that name the file and line.
func loadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxConfigSize {
		return Config{}, fmt.Errorf("%s: larger than %d bytes", path, maxConfigSize)
	}
	return parseConfig(path, data)
}

func parseConfig(path string, data []byte) (Config, error) {
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				msgs[i] = inType.ReplaceAllString(m, "")
			}
			return Config{}, fmt.Errorf("%s: %s", path, strings.Join(msgs, "; "))
		}
		return Config{}, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	bad := func(line int, format string, args ...any) error {
		if line == 0 {
			return fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...))
		}
		return fmt.Errorf("%s: line %d: %s", path, line, fmt.Sprintf(format, args...))
	}

	var c Config
	for _, a := range fc.Listen {
		if _, err := ma.NewMultiaddr(a.s); err != nil {
			return Config{}, bad(a.line, "listen: bad multiaddr %q: %v", a.s, err)
		}
		c.Listen = append(c.Listen, a.s)
	}
	for _, a := range fc.Bootstrap {
		if _, err := discovery.ParseAddrs([]string{a.s}); err != nil {
			return Config{}, bad(a.line, "bootstrap: %v", err)
		}
		c.Bootstrap = append(c.Bootstrap, a.s)
	}
	seen := map[string]bool{}
	for _, a := range fc.Agents {
		if err := identity.ValidAgentName(a.Name.s); err != nil {
			return Config{}, bad(a.Name.line, "agents: %v", err)
		}
		if seen[a.Name.s] {
			return Config{}, bad(a.Name.line, "agents: %q is listed twice", a.Name.s)
		}
		seen[a.Name.s] = true
		for _, k := range a.Capabilities {
			if err := intent.ValidCapability(k); err != nil {
				return Config{}, bad(a.Name.line, "agents: %s: %v", a.Name.s, err)
			}
		}
		if err := checkA2AAgent(a.Name.s, a.A2A, len(a.Exec) > 0, a.Price, a.ETA, a.A2ATokenFile); err != nil {
			return Config{}, bad(a.Name.line, "agents: %v", err)
		}
		switch {
		case a.A2A != "":
		case len(a.Exec) > 0 && len(a.Capabilities) == 0:
			return Config{}, bad(a.Name.line, "agents: %s runs a command but offers no capabilities", a.Name.s)
		case len(a.Capabilities) > 0 && len(a.Exec) == 0:
			return Config{}, bad(a.Name.line, "agents: %s offers %s but has no exec, so nothing would ever bid: give it exec: [command, args...], "+
				"or remove it here and register the program that does the work over the API (parley agents register --name %s --capability %s)",
				a.Name.s, strings.Join(a.Capabilities, ", "), a.Name.s, a.Capabilities[0])
		case len(a.Exec) > 0 && strings.TrimSpace(a.Exec[0]) == "":
			return Config{}, bad(a.Name.line, "agents: %s: exec: the command name is empty", a.Name.s)
		case a.Timeout < 0:
			return Config{}, bad(a.Name.line, "agents: %s: negative timeout %s", a.Name.s, a.Timeout)
		}
		c.Agents = append(c.Agents, AgentConfig{Name: a.Name.s, Capabilities: a.Capabilities, Exec: a.Exec, Timeout: a.Timeout,
			A2A: a.A2A, Price: a.Price, ETA: a.ETA, A2ATokenFile: a.A2ATokenFile, Line: a.Name.line})
	}
	if len(c.Agents) == 0 {
		c.Agents = []AgentConfig{{Name: DefaultAgent}}
	}
	c.API.Listen = DefaultAPIListen
	if l := fc.API.Listen; l.s != "" {
		if err := checkHostPort(l.s); err != nil {
			return Config{}, bad(l.line, "api.listen %q: %v", l.s, err)
		}
		c.API.Listen = l.s
	}
	c.Limits, c.ConnMgr = fc.Limits, fc.ConnMgr
	c.MDNS, c.NAT, c.Policy, c.PSK = fc.MDNS, fc.NAT, fc.Policy, fc.PSK
	c.Tracing, c.SharedContext = fc.Tracing, fc.SharedContext
	if err := checkA2A(fc.A2A); err != nil {
		return Config{}, bad(0, "a2a: %v", err)
	}
	if a := fc.A2A.Agent; a != "" && !slices.ContainsFunc(c.Agents, func(ac AgentConfig) bool { return ac.Name == a }) {
		return Config{}, bad(0, "a2a: agent %q is not one of the agents listed in agents:", a)
	}
	c.A2A = fc.A2A
	c.Admission, c.Negotiation, c.DialPrivateAddrs, c.RelayFilter, c.AuditFailure = fc.Admission, fc.Negotiation, fc.DialPrivateAddrs, fc.RelayFilter, fc.AuditFailure
	if l := fc.LogLevel; l.s != "" {
		if _, err := logging.Parse(l.s); err != nil {
			return Config{}, bad(l.line, "log_level %q: want debug, info, warn or error", l.s)
		}
		c.LogLevel = l.s
	}
	for _, a := range fc.Announce {
		if _, err := ma.NewMultiaddr(a.s); err != nil {
			return Config{}, bad(a.line, "announce: bad multiaddr %q: %v", a.s, err)
		}
		c.Announce = append(c.Announce, a.s)
	}
	switch m := fc.DHT.Mode; m.s {
	case "", discovery.DHTServer, discovery.DHTClient, discovery.DHTAuto, discovery.DHTOff:
		c.DHT.Mode = m.s
	default:
		return Config{}, bad(m.line, "dht.mode %q: want server, client, auto or off", m.s)
	}
	switch c.NAT.Reachability {
	case "", node.ReachabilityAuto, node.ReachabilityPublic, node.ReachabilityPrivate:
	default:
		return Config{}, fmt.Errorf("%s: nat.reachability %q: want auto, public or private", path, c.NAT.Reachability)
	}
	if _, err := discovery.ParseAddrs(c.NAT.Relays); err != nil {
		return Config{}, fmt.Errorf("%s: nat.relays: %w", path, err)
	}
	if l := c.NAT.RelayLimits; l.Reservations < 0 || l.Circuits < 0 || l.PerIP < 0 || l.Duration < 0 || l.Data < 0 {
		return Config{}, fmt.Errorf("%s: nat.relay_limits: limits must not be negative (0 keeps the default)", path)
	}
	switch {
	case c.Limits.MaxIntentSize < 0:
		return Config{}, fmt.Errorf("%s: limits.max_intent_size %d is negative", path, c.Limits.MaxIntentSize)
	case c.Limits.MaxIntentSize > 0 && c.Limits.MaxIntentSize < MinIntentSize:
		return Config{}, fmt.Errorf("%s: limits.max_intent_size %d: want at least %d bytes (a signed intent carries its agent's key, IDs and addresses besides the payload)", path, c.Limits.MaxIntentSize, MinIntentSize)
	case c.Limits.IntentTTL < 0:
		return Config{}, fmt.Errorf("%s: limits.intent_ttl %s is negative", path, c.Limits.IntentTTL)
	case c.ConnMgr.Low < 0 || c.ConnMgr.High < 0:
		return Config{}, fmt.Errorf("%s: connmgr: watermarks must not be negative", path)
	case c.ConnMgr.Low > 0 && c.ConnMgr.High > 0 && c.ConnMgr.Low > c.ConnMgr.High:
		return Config{}, fmt.Errorf("%s: connmgr: low %d is above high %d", path, c.ConnMgr.Low, c.ConnMgr.High)
	}
	return c, nil
}

// checkHostPort checks a host:port listen address.
func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

// NodeConfig turns the home into a node configuration: node.DefaultConfig
// with the home's keys, agents and config.yaml applied. Callers may then
// override fields (the CLI's --listen and --bootstrap do).
func (h *Home) NodeConfig() (node.Config, error) {
	cfg := node.DefaultConfig()
	cfg.NodeKey = h.NodeKey
	cfg.Agents = append([]*identity.Agent(nil), h.Agents...)
	c := h.Config
	if len(c.Listen) > 0 {
		cfg.ListenAddrs = nil
		for _, s := range c.Listen {
			a, err := ma.NewMultiaddr(s)
			if err != nil {
				return node.Config{}, fmt.Errorf("%s: listen: bad multiaddr %q: %w", h.ConfigPath(), s, err)
			}
			cfg.ListenAddrs = append(cfg.ListenAddrs, a)
		}
	}
	if len(c.Bootstrap) > 0 {
		if _, err := discovery.ParseAddrs(c.Bootstrap); err != nil { // named with the file here
			return node.Config{}, fmt.Errorf("%s: bootstrap: %w", h.ConfigPath(), err)
		}
		cfg.Bootstrap = c.Bootstrap
	}
	if c.Limits.MaxIntentSize > 0 {
		cfg.MaxIntentSize = c.Limits.MaxIntentSize
	}
	if c.Limits.IntentTTL > 0 {
		cfg.IntentTTL = c.Limits.IntentTTL
		// The replay window must cover an intent's whole life.
		cfg.ReplayWindow = max(cfg.ReplayWindow, cfg.IntentTTL)
	}
	cfg.Limits, cfg.SharedContext = c.Admission, c.SharedContext
	n := c.Negotiation
	cfg.Negotiation = negotiation.Config{MaxBidWindow: n.MaxBidWindow, MaxTaskDuration: n.MaxTaskDuration,
		MaxProgressTimeout: n.MaxProgressTimeout, MaxBidsPerCall: n.MaxBidsPerCall, MaxContracts: n.MaxContracts, MaxContractsPerOrigin: n.MaxContractsPerOrigin,
		StandbyWait: n.StandbyWait, KeepTasks: n.KeepTasks, MaxCounterRounds: n.MaxCounterRounds}
	cfg.DialPrivateAddrs, cfg.RelayFilter = c.DialPrivateAddrs, c.RelayFilter
	if err := c.Tracing.Validate(); err != nil {
		return node.Config{}, fmt.Errorf("%s: %w", h.ConfigPath(), err)
	}
	cfg.Tracing = c.Tracing
	switch c.AuditFailure {
	case "", node.AuditStop, node.AuditContinue:
		cfg.AuditFailure = c.AuditFailure
	default:
		return node.Config{}, fmt.Errorf("%s: audit_failure %q: want %s or %s", h.ConfigPath(), c.AuditFailure, node.AuditStop, node.AuditContinue)
	}
	if c.ConnMgr.Low > 0 {
		cfg.ConnLow = c.ConnMgr.Low
	}
	if c.ConnMgr.High > 0 {
		cfg.ConnHigh = c.ConnMgr.High
	}
	if cfg.ConnLow > cfg.ConnHigh {
		return node.Config{}, fmt.Errorf("%s: connmgr: low %d is above high %d", h.ConfigPath(), cfg.ConnLow, cfg.ConnHigh)
	}
	cfg.MDNS = c.MDNS == nil || *c.MDNS
	if c.DHT.Mode != "" {
		cfg.DHTMode = c.DHT.Mode
	}
	for _, s := range c.Announce {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return node.Config{}, fmt.Errorf("%s: announce: bad multiaddr %q: %w", h.ConfigPath(), s, err)
		}
		cfg.Announce = append(cfg.Announce, a)
	}
	cfg.NAT = node.NATConfig{
		AutoNATService: c.NAT.AutoNATService,
		RelayService:   c.NAT.RelayService,
		NoRelayClient:  c.NAT.RelayClient != nil && !*c.NAT.RelayClient,
		NoHolePunching: c.NAT.HolePunching != nil && !*c.NAT.HolePunching,
		PortMap:        c.NAT.PortMap,
		Relays:         c.NAT.Relays,
		Reachability:   c.NAT.Reachability,
		RelayLimits:    node.RelayLimits(c.NAT.RelayLimits),
	}
	cfg.PeersFile = filepath.Join(h.Dir, "peers.json")
	if c.PSK != "" {
		psk, err := node.LoadPSK(h.path(c.PSK))
		if err != nil {
			return node.Config{}, fmt.Errorf("%s: psk: %w", h.ConfigPath(), err)
		}
		cfg.PSK = psk
	}
	if c.Policy != "" {
		p, err := policy.Load(h.path(c.Policy))
		if err != nil {
			return node.Config{}, fmt.Errorf("%s: policy: %w", h.ConfigPath(), err)
		}
		cfg.Policy = p
	}
	return cfg, nil
}

// path resolves a config path against the home.
func (h *Home) path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(h.Dir, p)
}

// PolicyPath is the policy file named in config.yaml, resolved, or "".
func (h *Home) PolicyPath() string {
	if h.Config.Policy == "" {
		return ""
	}
	return h.path(h.Config.Policy)
}
