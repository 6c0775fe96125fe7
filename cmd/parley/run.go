package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/pnet"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/spf13/cobra"

	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/daemon/execagent"
	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/discovery"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/api"
	"github.com/parleynet/parley/policy"
)

// shutdownTimeout bounds how long the daemon takes to stop after a signal.
const shutdownTimeout = 5 * time.Second

type runFlags struct {
	listen    []string
	bootstrap []string
	api       string
	announce  []string
	noMDNS    bool
	dhtMode   string
	psk       string
	policy    string
	noAudit   bool
	apiPublic bool
}

func (c *cli) runCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the node's daemon",
		Long: `run starts the node of the home: its libp2p host, intent gossip, bootstrap
dialling, and the local HTTP API that the other commands use. Once it is ready
it prints, on stdout:

  peer: <PeerID>
  listen: <multiaddr>/p2p/<PeerID>     (one per address)
  api: http://127.0.0.1:<port>

Give a listen line to another node's --bootstrap to join it. Without one,
the node finds peers by mDNS on the LAN (--no-mdns turns it off), through the
Kademlia DHT (--dht-mode), and from <home>/peers.json, the peers it met
before, so a restarted node rejoins with no flags. A node behind port
forwarding gives its public address with --announce.

Logs go to stderr. SIGINT or SIGTERM stops the daemon within 5 s.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.run(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.listen, "listen", nil, "multiaddr to listen on, repeatable (overrides config.yaml's listen)")
	fl.StringArrayVar(&f.bootstrap, "bootstrap", nil, "peer to join, a multiaddr ending in /p2p/<PeerID>, repeatable (overrides config.yaml's bootstrap)")
	fl.StringVar(&f.api, "api", "", "host:port of the local API (default config.yaml's api.listen, else 127.0.0.1:0)")
	fl.StringArrayVar(&f.announce, "announce", nil, "multiaddr to tell peers to dial instead of the listen addresses (port forwarding), repeatable")
	fl.BoolVar(&f.noMDNS, "no-mdns", false, "do not look for peers on the LAN with mDNS")
	fl.StringVar(&f.dhtMode, "dht-mode", "", "DHT mode: server (default), client, auto or off")
	fl.StringVar(&f.psk, "psk", "", "private network key file (libp2p format); only nodes with the same key can connect")
	fl.StringVar(&f.policy, "policy", "", "policy file (YAML); reloaded on SIGHUP")
	fl.BoolVar(&f.noAudit, "no-audit", false, "do not keep the audit log in <home>/audit")
	fl.BoolVar(&f.apiPublic, "api-public", false, "allow the local API on a non-loopback address (only its token protects it)")
	return cmd
}

// run is the daemon. Everything that can be refused is checked before
// anything is written to the home.
func (c *cli) run(ctx context.Context, f runFlags) error {
	var listen []ma.Multiaddr
	for _, s := range f.listen {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return fmt.Errorf("--listen %q is not a valid multiaddr: %v", s, err)
		}
		listen = append(listen, a)
	}
	boot, err := discovery.ParseAddrs(f.bootstrap)
	if err != nil {
		var ae *discovery.AddrError
		if errors.As(err, &ae) {
			return fmt.Errorf("--bootstrap %q is not a peer multiaddr ending in /p2p/<PeerID>: %v", ae.Addr, ae.Err)
		}
		return fmt.Errorf("--bootstrap: %w", err)
	}
	var announce []ma.Multiaddr
	for _, s := range f.announce {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return fmt.Errorf("--announce %q is not a valid multiaddr: %v", s, err)
		}
		announce = append(announce, a)
	}
	switch f.dhtMode {
	case "", discovery.DHTServer, discovery.DHTClient, discovery.DHTAuto, discovery.DHTOff:
	default:
		return fmt.Errorf("--dht-mode %q: want server, client, auto or off", f.dhtMode)
	}
	var psk pnet.PSK
	if f.psk != "" {
		if psk, err = node.LoadPSK(f.psk); err != nil {
			return fmt.Errorf("--psk: %w", err)
		}
	}
	var pol *policy.Policy
	if f.policy != "" {
		if pol, err = policy.Load(f.policy); err != nil {
			return fmt.Errorf("--policy: %w", err)
		}
	}
	if f.api != "" {
		if _, _, err := net.SplitHostPort(f.api); err != nil {
			return fmt.Errorf("--api %q: want host:port, such as 127.0.0.1:5001: %v", f.api, err)
		}
	}

	h, err := home.Open(c.home)
	if err != nil {
		return err
	}
	cfg, err := h.NodeConfig()
	if err != nil {
		return err
	}
	if len(listen) > 0 {
		cfg.ListenAddrs = listen
	}
	if len(f.bootstrap) > 0 {
		cfg.Bootstrap = boot
	}
	if f.noMDNS {
		cfg.MDNS = false
	}
	if f.dhtMode != "" {
		cfg.DHTMode = f.dhtMode
	}
	if len(announce) > 0 {
		cfg.Announce = announce
	}
	if psk != nil {
		cfg.PSK = psk
	}
	policyPath := h.PolicyPath()
	if pol != nil {
		cfg.Policy, policyPath = pol, f.policy
	}
	apiAddr := h.Config.API.Listen
	if f.api != "" {
		apiAddr = f.api
	}
	if url, ok := c.runningDaemon(ctx); ok {
		return fmt.Errorf("a daemon is already running for home %s (api %s)", c.home, url)
	}

	if !f.noAudit {
		// Every acknowledged action is on disk in the log first.
		alog, err := audit.Open(filepath.Join(h.Dir, "audit"), h.NodeKey, audit.Options{})
		if err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		defer alog.Close()
		cfg.AuditLog = alog
	}
	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	if err := n.Start(ctx); err != nil {
		_ = n.Close()
		return err
	}
	if policyPath != "" {
		stopHUP := reloadOnHUP(n, policyPath)
		defer stopHUP()
	}
	for _, ac := range h.Config.Agents {
		if len(ac.Exec) == 0 {
			continue
		}
		// Relative paths in the command are relative to the home.
		ea := &execagent.Agent{Name: ac.Name, Command: ac.Exec, Timeout: ac.Timeout, Dir: h.Dir}
		if _, err := n.AddAgent(node.AgentCard{Name: ac.Name, Capabilities: ac.Capabilities}, ea); err != nil {
			_ = n.Close()
			return fmt.Errorf("agent %s: %w", ac.Name, err)
		}
		log.Infow("exec agent ready", "agent", ac.Name, "capabilities", ac.Capabilities, "command", ac.Exec)
	}
	ln, err := net.Listen("tcp", apiAddr)
	if err != nil {
		_ = n.Close()
		return fmt.Errorf("API listen on %s: %w", apiAddr, err)
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		if !f.apiPublic {
			_ = ln.Close()
			_ = n.Close()
			return fmt.Errorf("API address %s is not loopback: pass --api-public to allow it", ln.Addr())
		}
		log.Warnw("the API listens beyond loopback; only its token protects it", "addr", ln.Addr())
	}
	token, err := api.NewToken()
	if err != nil {
		_ = ln.Close()
		_ = n.Close()
		return err
	}
	srv := api.NewServer(n, token, api.WithVersion(version()))
	served := make(chan error, 1)
	// stop, not the signal, shuts the server down, after the api file is
	// withdrawn.
	go func() { served <- srv.Serve(context.WithoutCancel(ctx), ln) }()

	url := "http://" + ln.Addr().String()
	if err := h.WriteAPI(url, token); err != nil {
		return c.stop(h, n, srv, served, url, err)
	}
	if err := printReady(c, n, url); err != nil {
		return c.stop(h, n, srv, served, url, err)
	}
	log.Infow("daemon ready", "peer", n.ID(), "api", url, "home", h.Dir)

	select {
	case <-ctx.Done():
		log.Infow("shutting down", "peer", n.ID())
		return c.stop(h, n, srv, served, url, nil)
	case err := <-served:
		served <- err
		return c.stop(h, n, srv, served, url, fmt.Errorf("API server failed: %w", err))
	}
}

func printReady(c *cli, n *node.Node, url string) error {
	if _, err := fmt.Fprintf(c.out, "peer: %s\n", n.ID()); err != nil {
		return err
	}
	for _, a := range n.Addrs() {
		if _, err := fmt.Fprintf(c.out, "listen: %s\n", a); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(c.out, "api: %s\n", url)
	return err
}

// stop withdraws the API from the home, then stops the API server and the
// node within shutdownTimeout. cause is the reason for stopping (nil for a
// signal); it is returned, joined with any shutdown failure.
func (c *cli) stop(h *home.Home, n *node.Node, srv *api.Server, served <-chan error, url string, cause error) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	errs := []error{cause}
	if err := h.RemoveAPI(url); err != nil {
		errs = append(errs, err)
	}
	if err := srv.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	select {
	case <-served:
	case <-ctx.Done():
	}
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			errs = append(errs, fmt.Errorf("close node: %w", err))
		}
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("node did not stop within %s", shutdownTimeout))
	}
	return errors.Join(errs...)
}

// reloadOnHUP reloads the policy file on SIGHUP. A file with an error is
// refused with its file, line and reason, and the old policy stays.
func reloadOnHUP(n *node.Node, path string) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
				p, err := policy.Load(path)
				if err != nil {
					log.Errorw("policy reload refused; the old policy stays in force", "err", err)
					continue
				}
				n.ReloadPolicy(p, path)
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}
