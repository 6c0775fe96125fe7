package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/parleynet/parley/daemon"
	"github.com/parleynet/parley/internal/sdnotify"
)

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
	a2aListen string
	// NAT traversal
	relayService bool
	relays       []string
	reachability string
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
  a2a: http://127.0.0.1:<port>         (with --a2a-listen or a2a.listen)

Give a listen line to another node's --bootstrap to join it. Without one,
the node finds peers by mDNS on the LAN (--no-mdns turns it off), through the
Kademlia DHT (--dht-mode), and from <home>/peers.json, the peers it met
before, so a restarted node rejoins with no flags. A node behind port
forwarding gives its public address with --announce.

SIGHUP reloads what can change while the daemon runs: the policy file, and
from config.yaml the agents (added, removed, changed) and log_level. A bad
file is refused, with its name and line, and everything stays as it was;
one log line says what changed or why nothing did.

Logs go to stderr. SIGINT or SIGTERM stops the daemon within 5 s.

Under a service manager that sets NOTIFY_SOCKET (systemd's Type=notify) the
daemon reports READY=1 once its API is up, RELOADING=1 and READY=1 around a
SIGHUP reload, and STOPPING=1 when it stops.`,
		Example: `  parley run
  parley run --listen /ip4/0.0.0.0/tcp/4001 --announce /ip4/203.0.113.7/tcp/4001
  parley run --bootstrap /ip4/192.0.2.10/tcp/4001/p2p/12D3KooW...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// A level fixed by the flag or the environment wins over
			// config.yaml's log_level.
			var fixed string
			if cmd.Flags().Changed("log-level") {
				fixed = c.logLevel
			} else if v := os.Getenv("GOLOG_LOG_LEVEL"); v != "" {
				fixed = v
			}
			return c.run(cmd.Context(), f, fixed)
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
	fl.StringVar(&f.a2aListen, "a2a-listen", "", "host:port of the A2A gateway (default config.yaml's a2a.listen, else off); loopback unless a2a.public")
	fl.BoolVar(&f.relayService, "relay-service", false, "serve circuit relay v2 for nodes behind NAT (a public node; limits under nat.relay_limits in config.yaml)")
	fl.StringArrayVar(&f.relays, "relay", nil, "static relay to reserve a slot on when behind NAT, a multiaddr ending in /p2p/<PeerID>, repeatable (overrides config.yaml's nat.relays)")
	fl.StringVar(&f.reachability, "reachability", "", "what this node assumes of itself: auto (AutoNAT decides), public or private (behind NAT: reserve a relay slot at once)")
	_ = cmd.RegisterFlagCompletionFunc("reachability", cobra.FixedCompletions([]string{"auto", "public", "private"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// optionFlag names the flag behind a daemon option, for errors.
func optionFlag(option string) (string, bool) {
	switch option {
	case "Home", "Listen", "Bootstrap", "Announce", "API", "PSK":
		return "--" + strings.ToLower(option), true
	case "DHTMode":
		return "--dht-mode", true
	case "PolicyFile":
		return "--policy", true
	case "Relays":
		return "--relay", true
	case "Reachability":
		return "--reachability", true
	case "A2AListen":
		return "--a2a-listen", true
	}
	return "", false
}

// flagErr rewrites a daemon option error in the terms of the flags.
func flagErr(err error) error {
	var oe *daemon.OptionError
	if !errors.As(err, &oe) {
		return err
	}
	flag, ok := optionFlag(oe.Option)
	if !ok {
		return err
	}
	if oe.Value == "" {
		return fmt.Errorf("%s: %v", flag, oe.Err)
	}
	return fmt.Errorf("%s %q: %v", flag, oe.Value, oe.Err)
}

// run is the daemon: it parses nothing itself (package daemon checks the
// options, before anything is written to the home), prints the ready
// lines, reloads on SIGHUP and stops on SIGINT or SIGTERM (ctx).
func (c *cli) run(ctx context.Context, f runFlags, logLevel string) error {
	// SIGHUP reloads; it must never kill the daemon, so it is caught
	// before anything else happens, and one that comes during the start
	// is served once the daemon is up.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// Taken from the environment before any agent starts, so that none
	// inherits it.
	sd, err := sdnotify.FromEnv()
	if err != nil {
		return err
	}

	d, err := daemon.New(daemon.Options{
		Home:       c.home,
		Listen:     f.listen,
		Bootstrap:  f.bootstrap,
		Announce:   f.announce,
		API:        f.api,
		APIPublic:  f.apiPublic,
		NoMDNS:     f.noMDNS,
		DHTMode:    f.dhtMode,
		PSK:        f.psk,
		PolicyFile: f.policy,
		NoAudit:    f.noAudit,
		LogLevel:   logLevel,
		Version:    version(),

		RelayService: f.relayService,
		Relays:       f.relays,
		Reachability: f.reachability,
		A2AListen:    f.a2aListen,
	})
	if err != nil {
		return flagErr(err)
	}
	if err := d.Start(ctx); err != nil {
		return flagErr(err)
	}
	stop := func(cause error) error {
		sctx, cancel := context.WithTimeout(context.Background(), daemon.ShutdownTimeout)
		defer cancel()
		return errors.Join(cause, d.Close(sctx))
	}
	if err := printReady(c, d); err != nil {
		return stop(err)
	}
	ready := sdnotify.Status(fmt.Sprintf("peer %s, api %s", d.Node().ID(), d.APIURL()))
	notify(sd, sdnotify.Ready, ready)
	for {
		select {
		case <-ctx.Done():
			log.Infow("shutting down", "peer", d.Node().ID())
			notify(sd, sdnotify.Stopping)
			return stop(nil)
		case <-d.Done():
			notify(sd, sdnotify.Stopping)
			return stop(d.Err())
		case <-hup:
			notify(sd, sdnotify.Reloading)
			_, _ = d.Reload() // it logs what changed, or why nothing did
			notify(sd, sdnotify.Ready, ready)
		}
	}
}

// notify tells the service manager the daemon's state; a manager that
// cannot be told is logged, not fatal (systemd then times the start out).
func notify(sd *sdnotify.Notifier, states ...string) {
	if err := sd.Notify(states...); err != nil {
		log.Warnw("could not notify the service manager", "err", err)
	}
}

func printReady(c *cli, d *daemon.Daemon) error {
	n := d.Node()
	var b strings.Builder
	fmt.Fprintf(&b, "peer: %s\n", n.ID())
	for _, a := range n.Addrs() {
		fmt.Fprintf(&b, "listen: %s\n", a)
	}
	fmt.Fprintf(&b, "api: %s\n", d.APIURL())
	if u := d.A2AURL(); u != "" {
		fmt.Fprintf(&b, "a2a: %s\n", u)
	}
	_, err := io.WriteString(c.out, b.String())
	return err
}
