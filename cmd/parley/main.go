// Command parley is parley's one binary: it creates a node's home (init),
// runs the daemon (run), talks to a running daemon through its local API
// (id, peers, publish, subscribe, request, tasks, status, approvals,
// agents, audit) and runs the demo and simulations.
//
// The commands only parse flags, handle signals and print; the behaviour
// lives in library packages: daemon (the daemon's wiring and lifecycle),
// daemon/home, node and node/api.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	logging "github.com/ipfs/go-log/v2"
	"github.com/spf13/cobra"

	"github.com/parleynet/parley/daemon/home"
)

var log = logging.Logger("parley/cli")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd(os.Stdout).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "parley: %s\n", oneLine(err))
		os.Exit(1)
	}
}

// cli holds the persistent flags every command shares.
type cli struct {
	home     string
	logLevel string
	out      io.Writer
}

func newRootCmd(out io.Writer) *cobra.Command {
	c := &cli{out: out}
	root := &cobra.Command{
		Use:   "parley",
		Short: "A peer-to-peer network of autonomous agents",
		Long: `parley runs a node of a peer-to-peer network whose agents gossip signed
intents over GossipSub. 'parley init' creates a node's home, 'parley run'
starts its daemon, and the other commands talk to that daemon.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return c.setupLogging(cmd.Flags().Changed("log-level"))
		},
	}
	root.SetOut(out)
	pf := root.PersistentFlags()
	pf.StringVar(&c.home, "home", home.DefaultDir(), "the node's home directory (default $"+home.EnvHome+", else ~/.parley)")
	pf.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(
		c.initCmd(),
		c.runCmd(),
		c.idCmd(),
		c.peersCmd(),
		c.publishCmd(),
		c.subscribeCmd(),
		c.requestCmd(),
		c.tasksCmd(),
		c.statusCmd(),
		c.versionCmd(),
		c.demoCmd(),
		c.simCmd(),
		c.auditCmd(),
		c.approvalsCmd(),
		c.agentsCmd(),
	)
	return root
}

// setupLogging sends logs to stderr at the --log-level. Without the flag,
// GOLOG_LOG_LEVEL wins if it is set.
func (c *cli) setupLogging(flagSet bool) error {
	lvl, err := logging.Parse(c.logLevel)
	if err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.logLevel)
	}
	cfg := logging.GetConfig()
	if flagSet || os.Getenv("GOLOG_LOG_LEVEL") == "" {
		cfg.Level = lvl
		cfg.SubsystemLevels = nil
	}
	cfg.Stderr, cfg.Stdout = true, false
	if os.Getenv("GOLOG_LOG_FMT") == "" && !isTerminal(os.Stderr) {
		cfg.Format = logging.PlaintextOutput
	}
	logging.SetupLogging(cfg)
	return nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// oneLine keeps an error to one line of output. Cobra's suggestions for a
// mistyped command ("\n\nDid you mean this?\n\trequest\n") become
// "(did you mean request?)".
func oneLine(err error) string {
	msg, suggestions, found := strings.Cut(strings.TrimSpace(err.Error()), "Did you mean this?")
	var lines []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	out := strings.Join(lines, "; ")
	if found {
		if s := strings.Fields(suggestions); len(s) > 0 {
			out += " (did you mean " + strings.Join(s, " or ") + "?)"
		}
		out += "; 'parley --help' lists the commands"
	}
	return out
}

// version is the module version the binary was built from, or "devel".
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" || bi.Main.Version == "(devel)" {
		return "devel"
	}
	return bi.Main.Version
}

func (c *cli) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print parley's version",
		Example: `  parley version`,
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			gov := "unknown"
			if bi, ok := debug.ReadBuildInfo(); ok {
				gov = bi.GoVersion
			}
			_, err := fmt.Fprintf(c.out, "parley %s (%s)\n", version(), gov)
			return err
		},
	}
}

// groupRun is the RunE of a command that only groups others: with no
// arguments it prints its help, with any it says the subcommand is
// unknown and exits 1, where cobra would print the help and exit 0.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	return fmt.Errorf("unknown command %q for %q; '%s --help' lists its commands", args[0], cmd.CommandPath(), cmd.CommandPath())
}
