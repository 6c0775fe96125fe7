// Package daemon builds and runs a parley node from a home and a config:
// it is what 'parley run', the tests and the demo call. It owns the wiring
// — the home's keys and config.yaml, the policy, the audit log, the node,
// its exec agents and external agents, the local API and the files that
// publish it — and the daemon's lifecycle: New checks everything and writes
// nothing, Start brings it all up, Reload applies a changed policy and
// config.yaml while it runs, and Close takes it down in order.
//
// It does not own what a node does (package node), the API's endpoints
// (node/api), the home's layout (daemon/home), or flags, signals and
// printing (cmd/parley).
package daemon

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/parleynet/parley/admission"
	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/daemon/execagent"
	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/discovery"
	"github.com/parleynet/parley/interop/mcp"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/api"
	"github.com/parleynet/parley/policy"
	"github.com/parleynet/parley/workflow"
)

var log = logging.Logger("parley/daemon")

// ShutdownTimeout is how long a daemon is given to stop (the CLI bounds
// Close's context with it).
const ShutdownTimeout = 5 * time.Second

// Sentinel errors callers branch on.
var (
	// ErrAlreadyRunning: another daemon answers for the home.
	ErrAlreadyRunning = errors.New("a daemon is already running for this home")
	// ErrAddrInUse: a fixed listen port is held by another process.
	ErrAddrInUse = errors.New("address already in use")
	// ErrNotStarted: the daemon has not been started.
	ErrNotStarted = errors.New("daemon not started")
	// ErrClosed: the daemon is closed.
	ErrClosed = errors.New("daemon closed")
)

// OptionError is an Options field whose value New refuses.
type OptionError struct {
	Option string // the Options field: Listen, Bootstrap, API, …
	Value  string
	Err    error
}

func (e *OptionError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %v", e.Option, e.Err)
	}
	return fmt.Sprintf("%s %q: %v", e.Option, e.Value, e.Err)
}

func (e *OptionError) Unwrap() error { return e.Err }

// Options say how to run a daemon. Only Home is required; every other
// field, left empty, means config.yaml's value (or its default).
type Options struct {
	// Home is the node's home directory, made by 'parley init'.
	Home string
	// Listen, Bootstrap and Announce replace config.yaml's lists when
	// set: multiaddrs, Bootstrap's each ending in /p2p/<PeerID>.
	Listen, Bootstrap, Announce []string
	// API is the local API's host:port.
	API string
	// APIPublic allows the API on an address that is not loopback (only
	// its tokens then protect it).
	APIPublic bool
	// NoMDNS turns LAN discovery off.
	NoMDNS bool
	// DHTMode is server, client, auto or off.
	DHTMode string
	// PSK is a private network key file.
	PSK string
	// PolicyFile is the policy; reloaded by Reload. When set, config.yaml's
	// policy is ignored.
	PolicyFile string
	// NoAudit keeps no audit log.
	NoAudit bool
	// LogLevel, when set, is a log level the caller has fixed (a flag, the
	// environment); config.yaml's log_level is then ignored. Empty lets
	// config.yaml's log_level set the level, at Start and on Reload.
	LogLevel string
	// Version is what the API reports (default "devel").
	Version string

	// RelayService serves circuit relay v2 (or config.yaml's
	// nat.relay_service); Relays replace nat.relays; Reachability, when
	// set, replaces nat.reachability (auto, public, private).
	RelayService bool
	Relays       []string
	Reachability string

	// A2AListen, when set, turns the A2A gateway on at this host:port
	// (or config.yaml's a2a.listen); A2APublic allows an address that is
	// not loopback.
	A2AListen string
	A2APublic bool
}

// Daemon is one running node with its API. Build it with New, run it with
// Start, apply a changed config with Reload, stop it with Close. Its
// methods are safe for concurrent use.
type Daemon struct {
	opts    Options
	ncfg    node.Config // checked by New; the audit log is added by Start
	apiAddr string
	listen  []ma.Multiaddr // what the node will listen on

	mu         sync.Mutex
	state      state
	h          *home.Home // the configuration in force
	policyPath string     // the policy file in force; "" allows everything
	policySum  [sha256.Size]byte
	baseLevel  string // the log level before config.yaml's log_level
	reloadErr  error  // why the last Reload was refused
	started    time.Time
	a2a        a2aState

	// Set by Start, read-only after it.
	n      *node.Node
	alog   *audit.Log
	flows  *workflow.Engine // closed before the node, so no step is cut short unrecorded
	srv    *api.Server
	url    string
	token  string
	done   chan struct{} // closed when the API server stops
	apiErr error         // why it stopped, written before done closes
	// nodeDone is closed when the node's Close returns, which may be after
	// Close gave up waiting for it.
	nodeDone chan struct{}
}

type state int

const (
	stateNew state = iota
	stateStarting
	stateRunning
	stateClosed
)

// New checks opts and the home — its config.yaml, keys, policy, exec
// agents' commands — and prepares a daemon. It opens no socket and writes
// nothing; Start does. Errors name what is wrong: an *OptionError for a
// field of opts, the file and line for config.yaml.
func New(opts Options) (*Daemon, error) {
	if opts.Home == "" {
		return nil, &OptionError{Option: "Home", Err: errors.New("required")}
	}
	if opts.Version == "" {
		opts.Version = "devel"
	}
	listen, err := parseAddrs("Listen", opts.Listen)
	if err != nil {
		return nil, err
	}
	announce, err := parseAddrs("Announce", opts.Announce)
	if err != nil {
		return nil, err
	}
	for i, a := range announce {
		if p, err := a.ValueForProtocol(ma.P_TCP); err == nil && p == "0" {
			return nil, &OptionError{Option: "Announce", Value: opts.Announce[i], Err: errors.New("port 0 cannot be dialled: announce the port peers reach")}
		}
		if p, err := a.ValueForProtocol(ma.P_UDP); err == nil && p == "0" {
			return nil, &OptionError{Option: "Announce", Value: opts.Announce[i], Err: errors.New("port 0 cannot be dialled: announce the port peers reach")}
		}
	}
	boot, err := discovery.ParseAddrs(opts.Bootstrap)
	if err != nil {
		var ae *discovery.AddrError
		if errors.As(err, &ae) {
			return nil, &OptionError{Option: "Bootstrap", Value: ae.Addr, Err: fmt.Errorf("not a peer multiaddr ending in /p2p/<PeerID>: %w", ae.Err)}
		}
		return nil, &OptionError{Option: "Bootstrap", Err: err}
	}
	switch opts.DHTMode {
	case "", discovery.DHTServer, discovery.DHTClient, discovery.DHTAuto, discovery.DHTOff:
	default:
		return nil, &OptionError{Option: "DHTMode", Value: opts.DHTMode, Err: errors.New("want server, client, auto or off")}
	}
	if opts.A2AListen != "" {
		if err := checkHostPort(opts.A2AListen); err != nil {
			return nil, &OptionError{Option: "A2AListen", Value: opts.A2AListen, Err: fmt.Errorf("want host:port, such as 127.0.0.1:7070: %w", err)}
		}
	}
	if opts.API != "" {
		if err := checkHostPort(opts.API); err != nil {
			return nil, &OptionError{Option: "API", Value: opts.API, Err: fmt.Errorf("want host:port, such as 127.0.0.1:5001: %w", err)}
		}
	}
	var pol *policy.Policy
	var polSum [sha256.Size]byte
	if opts.PolicyFile != "" {
		if pol, polSum, err = loadPolicy(opts.PolicyFile); err != nil {
			return nil, &OptionError{Option: "PolicyFile", Value: opts.PolicyFile, Err: err}
		}
	}

	h, err := home.Load(opts.Home)
	if err != nil {
		return nil, err
	}
	cfg, err := h.NodeConfig()
	if err != nil {
		return nil, err
	}
	explicitListen := len(h.Config.Listen) > 0
	if len(listen) > 0 {
		cfg.ListenAddrs, explicitListen = listen, true
	}
	if len(boot) > 0 {
		cfg.Bootstrap = opts.Bootstrap
	}
	if len(announce) > 0 {
		cfg.Announce = announce
	}
	if opts.NoMDNS {
		cfg.MDNS = false
	}
	if opts.DHTMode != "" {
		cfg.DHTMode = opts.DHTMode
	}
	if opts.RelayService {
		cfg.NAT.RelayService = true
	}
	if len(opts.Relays) > 0 {
		if _, err := discovery.ParseAddrs(opts.Relays); err != nil {
			return nil, &OptionError{Option: "Relays", Value: strings.Join(opts.Relays, " "), Err: err}
		}
		cfg.NAT.Relays = opts.Relays
	}
	switch opts.Reachability {
	case "":
	case node.ReachabilityAuto, node.ReachabilityPublic, node.ReachabilityPrivate:
		cfg.NAT.Reachability = opts.Reachability
	default:
		return nil, &OptionError{Option: "Reachability", Value: opts.Reachability, Err: errors.New("want auto, public or private")}
	}
	// A DHT server behind NAT hands its relayed address to every DHT peer,
	// which then connect through the relay before hole punching can answer
	// them, and those connections stay relayed: a node known to be private
	// is a DHT client unless told otherwise.
	if cfg.NAT.Reachability == node.ReachabilityPrivate && opts.DHTMode == "" && h.Config.DHT.Mode == "" {
		cfg.DHTMode = discovery.DHTClient
	}
	if opts.PSK != "" {
		if cfg.PSK, err = node.LoadPSK(opts.PSK); err != nil {
			return nil, &OptionError{Option: "PSK", Value: opts.PSK, Err: err}
		}
	}
	policyPath := h.PolicyPath()
	if opts.PolicyFile != "" {
		cfg.Policy, policyPath = pol, opts.PolicyFile
	} else if policyPath != "" {
		if _, polSum, err = loadPolicy(policyPath); err != nil {
			return nil, fmt.Errorf("%s: policy: %w", h.ConfigPath(), err)
		}
	}
	bootPeers, err := discovery.ParseAddrs(cfg.Bootstrap) // both sources are checked above
	if err != nil {
		return nil, err
	}
	for _, b := range bootPeers {
		if b.ID == h.PeerID() {
			return nil, bootstrapSelf(h, opts, b.ID)
		}
	}
	for _, ac := range h.Config.Agents {
		if err := checkExec(h, ac); err != nil {
			return nil, err
		}
	}
	if cfg.PSK != nil {
		tcp := tcpOnly(cfg.ListenAddrs)
		if len(tcp) == 0 {
			return nil, &OptionError{Option: "Listen", Value: fmt.Sprint(cfg.ListenAddrs),
				Err: errors.New("a private network (PSK) needs a TCP listen address; QUIC cannot carry one")}
		}
		if dropped := len(cfg.ListenAddrs) - len(tcp); dropped > 0 {
			if explicitListen {
				log.Warnw("a private network (PSK) runs on TCP only: not listening on the non-TCP addresses (QUIC cannot carry a PSK)",
					"dropped", nonTCP(cfg.ListenAddrs), "listening", tcp)
			} else {
				log.Infow("a private network (PSK) runs on TCP only; QUIC is off", "listening", tcp)
			}
		}
	}
	apiAddr := h.Config.API.Listen
	if opts.API != "" {
		apiAddr = opts.API
	}
	if _, err := node.New(cfg); err != nil { // checks the config; opens nothing
		return nil, err
	}
	d := &Daemon{opts: opts, ncfg: cfg, apiAddr: apiAddr, h: h, policyPath: policyPath, policySum: polSum}
	d.listen = cfg.ListenAddrs
	if cfg.PSK != nil {
		d.listen = tcpOnly(cfg.ListenAddrs)
	}
	return d, nil
}

// bootstrapSelf is the error for a bootstrap peer that is the node itself.
func bootstrapSelf(h *home.Home, opts Options, id peer.ID) error {
	err := fmt.Errorf("that is this node's own PeerID %s (a node cannot join itself)", id)
	if len(opts.Bootstrap) > 0 {
		for _, s := range opts.Bootstrap {
			if ai, perr := discovery.ParseAddrs([]string{s}); perr == nil && ai[0].ID == id {
				return &OptionError{Option: "Bootstrap", Value: s, Err: err}
			}
		}
	}
	return fmt.Errorf("%s: bootstrap: %w", h.ConfigPath(), err)
}

// execAgent is the handler of a config.yaml agent with exec; relative
// paths in its command are relative to the home.
func execAgent(h *home.Home, ac home.AgentConfig) *execagent.Agent {
	return &execagent.Agent{Name: ac.Name, Command: ac.Exec, Timeout: ac.Timeout, Dir: h.Dir}
}

// checkExec refuses an exec agent whose command cannot run.
func checkExec(h *home.Home, ac home.AgentConfig) error {
	if len(ac.Exec) == 0 {
		return nil
	}
	if err := execAgent(h, ac).Check(); err != nil {
		return fmt.Errorf("%s: line %d: %w", h.ConfigPath(), ac.Line, err)
	}
	return nil
}

func parseAddrs(option string, ss []string) ([]ma.Multiaddr, error) {
	var out []ma.Multiaddr
	for _, s := range ss {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, &OptionError{Option: option, Value: s, Err: fmt.Errorf("not a valid multiaddr: %w", err)}
		}
		out = append(out, a)
	}
	return out, nil
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

// loadPolicy loads a policy file and the hash of its bytes, by which a
// reload tells whether it changed.
func loadPolicy(path string) (*policy.Policy, [sha256.Size]byte, error) {
	p, err := policy.Load(path)
	if err != nil {
		return nil, [sha256.Size]byte{}, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, [sha256.Size]byte{}, err
	}
	return p, sha256.Sum256(data), nil
}

// Start brings the daemon up: it checks that no other daemon runs for the
// home and that the fixed listen ports are free, opens the API's listener,
// writes the keys of new agents, opens the audit log, starts the node, adds
// the exec agents and the external agents registered before, serves the
// API and publishes it in the home (api, api.token). ctx bounds the start
// only. On error everything started is stopped again.
func (d *Daemon) Start(ctx context.Context) (err error) {
	d.mu.Lock()
	if d.state != stateNew {
		d.mu.Unlock()
		return errors.New("daemon: Start called twice")
	}
	d.state = stateStarting
	h := d.h
	d.mu.Unlock()
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		d.state = stateRunning
		if err != nil {
			d.state = stateClosed
		}
	}()
	set := func(f func()) {
		d.mu.Lock()
		defer d.mu.Unlock()
		f()
	}

	if url, ok := runningDaemon(ctx, h.Dir); ok {
		return fmt.Errorf("%w: %s (api %s)", ErrAlreadyRunning, h.Dir, url)
	}
	if err := checkListen(d.listen); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", d.apiAddr)
	if err != nil {
		return fmt.Errorf("API listen on %s: %w", d.apiAddr, err)
	}
	undo = append(undo, func() { _ = ln.Close() })
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		if !d.opts.APIPublic {
			err := errors.New("not a loopback address: allow it explicitly (APIPublic, --api-public); only the API's tokens would protect it")
			if d.opts.API == "" {
				return fmt.Errorf("%s: api.listen %s: %w", h.ConfigPath(), ln.Addr(), err)
			}
			return &OptionError{Option: "API", Value: d.opts.API, Err: err}
		}
		log.Warnw("the API listens beyond loopback; only its tokens protect it", "addr", ln.Addr())
	}

	// Everything that could be refused has been; now the home changes.
	if err := h.SaveKeys(); err != nil {
		return err
	}
	cfg := d.ncfg
	if !d.opts.NoAudit {
		// Every acknowledged action is on disk in the log first.
		alog, err := audit.Open(filepath.Join(h.Dir, home.AuditDir), h.NodeKey, audit.Options{})
		if err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		set(func() { d.alog = alog })
		cfg.AuditLog = alog
		// Undone last of all: it is closed only once the node has stopped,
		// since the node's goroutines append to it.
		undo = append(undo, func() { _ = alog.Close() })
	}
	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	if err := n.Start(ctx); err != nil {
		_ = n.Close()
		return err
	}
	set(func() { d.n = n })
	undo = append(undo, func() { _ = n.Close() })
	if err := checkListening(n, d.listen); err != nil {
		return err
	}
	undo = append(undo, d.closeA2AAgents) // after the node has stopped
	for _, ac := range h.Config.Agents {
		if ac.A2A != "" {
			d.mu.Lock()
			err := d.hostA2A(n, h, ac)
			d.mu.Unlock()
			if err != nil {
				return err
			}
			continue
		}
		if len(ac.Exec) == 0 {
			continue
		}
		if _, err := n.AddAgent(node.AgentCard{Name: ac.Name, Capabilities: ac.Capabilities}, execAgentOn(n, h, ac)); err != nil {
			return fmt.Errorf("agent %s: %w", ac.Name, err)
		}
		log.Infow("exec agent ready", "agent", ac.Name, "capabilities", ac.Capabilities, "command", ac.Exec)
	}

	flows, err := openWorkflows(h, n)
	if err != nil {
		return err
	}
	set(func() { d.flows = flows })
	undo = append(undo, func() { _ = flows.Close() })

	token, err := api.NewToken()
	if err != nil {
		return err
	}
	var auditTail []api.Option // the log on GET /v1/audit and the dashboard
	if !d.opts.NoAudit {
		auditTail = append(auditTail, api.WithAuditTail(filepath.Join(h.Dir, "audit")))
	}
	srv := api.NewServer(n, token, append(auditTail,
		api.WithVersion(d.opts.Version),
		api.WithAudit(n.Audit),
		api.WithRefusals(func(rule, who, rationale string, detail map[string]any) {
			_ = n.Admission().Refuse(admission.EntryAPI, rule, who, rationale, detail)
		}),
		api.WithRegistry(registry{h}),
		api.WithAgentAdmin(agentAdmin{d}),
		api.WithMCP(mcp.Mount(d.opts.Version)), // /mcp: the MCP server's tools, in-process on this API
		api.WithChecks(api.Check{Name: "audit log", Err: d.auditErr}, api.Check{Name: "reload", Err: d.lastReloadErr}),
		api.WithStatus(d.fillStatus),
		api.WithWorkflows(flows))...)
	if err := srv.Restore(); err != nil {
		return err
	}
	url := "http://" + ln.Addr().String()
	done := make(chan struct{})
	set(func() { d.srv, d.token, d.url, d.done = srv, token, url, done })
	go func() {
		// Close, not a context, stops the server: the api files are
		// withdrawn first.
		err := srv.Serve(context.Background(), ln)
		d.apiErr = err
		close(done)
	}()
	undo = append(undo, func() {
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	})
	if err := d.startA2A(n, h, &undo); err != nil {
		return err
	}
	if err := h.WriteAPI(url, token); err != nil {
		return err
	}
	undo = append(undo, func() { _ = h.RemoveAPI(url) })

	set(func() {
		d.baseLevel = parleyLevel()
		if lvl := h.Config.LogLevel; lvl != "" && d.opts.LogLevel == "" {
			_ = setParleyLevel(lvl)
		}
		d.started = time.Now()
	})
	log.Infow("daemon ready", "peer", n.ID(), "api", url, "home", h.Dir)
	return nil
}

// runningDaemon reports whether a daemon answers for the home in dir.
func runningDaemon(ctx context.Context, dir string) (string, bool) {
	url, token, err := home.ReadAPI(dir)
	if err != nil {
		return "", false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = api.NewClient(url, token).Node(ctx)
	var ae *api.Error // the daemon answered, if only to refuse
	return url, err == nil || errors.As(err, &ae)
}

// Node returns the daemon's node, or nil before Start.
func (d *Daemon) Node() *node.Node {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// APIURL returns the URL of the daemon's API, or "" before Start.
func (d *Daemon) APIURL() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.url
}

// Client returns a client of the daemon's API with the operator token, or
// nil before Start.
func (d *Daemon) Client() *api.Client {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.url == "" {
		return nil
	}
	return api.NewClient(d.url, d.token)
}

// Home returns the daemon's home directory.
func (d *Daemon) Home() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.h.Dir
}

// Done is closed when the daemon's API server stops: after Close, or on
// its own when it fails (Err says why).
func (d *Daemon) Done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done == nil {
		return nil
	}
	return d.done
}

// Err returns why the API server stopped on its own, once Done is closed;
// nil if it was stopped by Close or still runs.
func (d *Daemon) Err() error {
	select {
	case <-d.Done():
		if d.apiErr != nil {
			return fmt.Errorf("API server failed: %w", d.apiErr)
		}
	default:
	}
	return nil
}

// Health reports whether the daemon is live and ready, and if not why.
func (d *Daemon) Health() api.Health {
	d.mu.Lock()
	srv := d.srv
	st := d.state
	d.mu.Unlock()
	if srv == nil || st != stateRunning {
		return api.Health{Reasons: []string{"daemon not running"}}
	}
	return srv.Health()
}

// auditErr is the audit log's health: why appends fail, if they do. It is
// the one place that asks; (*audit.Log).Err is picked up once package audit
// has it.
func (d *Daemon) auditErr() error {
	if d.alog == nil {
		return nil
	}
	if l, ok := any(d.alog).(interface{ Err() error }); ok {
		return l.Err()
	}
	return nil
}

func (d *Daemon) lastReloadErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.reloadErr != nil {
		return fmt.Errorf("the last reload was refused and the previous policy and configuration stay in force: %v", d.reloadErr)
	}
	return nil
}

// fillStatus adds what the daemon knows to the API's status.
func (d *Daemon) fillStatus(st *api.Status) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st.Started = d.started
	byName := map[string]home.AgentConfig{}
	for _, ac := range d.h.Config.Agents {
		byName[ac.Name] = ac
	}
	for i, a := range st.Agents {
		ac, ok := byName[a.Name]
		if !ok || a.Kind != api.KindGo {
			continue
		}
		st.Agents[i].Kind = api.KindSigner
		if len(ac.Exec) > 0 {
			st.Agents[i].Kind = api.KindExec
		}
		st.Agents[i].Capabilities = append([]string{}, ac.Capabilities...)
		if ac.A2A != "" {
			st.Agents[i].Kind = api.KindA2A
			if ag := d.a2a.agents[ac.Name]; ag != nil {
				st.Agents[i].Capabilities = ag.Capabilities()
			}
		}
	}
	st.Audit = api.AuditStatus{Enabled: d.alog != nil}
	if d.alog != nil {
		st.Audit.Dir = filepath.Join(d.h.Dir, "audit")
		if err := d.auditErr(); err != nil {
			st.Audit.Error = err.Error()
		}
	}
	st.Policy = api.PolicyStatus{Source: d.policyPath}
	if d.reloadErr != nil {
		st.Policy.ReloadError = d.reloadErr.Error()
	}
}

// Close stops the daemon within ctx: it withdraws the API from the home,
// stops the API server, closes the node and then the audit log. If the node
// does not stop in time the audit log is left open, since the node's
// goroutines may still append to it, and the error says so. A second Close
// does nothing.
func (d *Daemon) Close(ctx context.Context) error {
	d.mu.Lock()
	switch d.state {
	case stateClosed:
		d.mu.Unlock()
		return nil
	case stateNew:
		d.state = stateClosed
		d.mu.Unlock()
		return nil
	case stateStarting:
		d.mu.Unlock()
		return errors.New("daemon: Close during Start")
	}
	d.state = stateClosed
	d.mu.Unlock()

	var errs []error
	if err := d.h.RemoveAPI(d.url); err != nil {
		errs = append(errs, err)
	}
	if err := d.stopA2A(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := d.srv.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	select {
	case <-d.done:
	case <-ctx.Done():
		errs = append(errs, errors.New("the API server did not stop in time"))
	}
	if err := d.flows.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close workflows: %w", err))
	}
	closed := make(chan error, 1)
	d.nodeDone = make(chan struct{})
	go func() {
		defer close(d.nodeDone)
		closed <- d.n.Close()
	}()
	select {
	case err := <-closed:
		if err != nil {
			errs = append(errs, fmt.Errorf("close node: %w", err))
		}
		d.closeA2AAgents()
		if d.alog != nil {
			if err := d.alog.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("the node did not stop in time (%w); the audit log is left open", context.Cause(ctx)))
	}
	return errors.Join(errs...)
}
