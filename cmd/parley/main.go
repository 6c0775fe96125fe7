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
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	logging "github.com/ipfs/go-log/v2"
	"github.com/spf13/cobra"
	"golang.org/x/mod/module"

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
		c.flowCmd(),
		c.traceCmd(),
		c.statusCmd(),
		c.versionCmd(),
		c.demoCmd(),
		c.simCmd(),
		c.auditCmd(),
		c.approvalsCmd(),
		c.agentsCmd(),
		c.uiCmd(),
		c.mcpCmd(),
	)
	return root
}

// setupLogging sends logs to stderr at the --log-level. Without the flag,
// GOLOG_LOG_LEVEL wins if it is set.
//
// The level is parley's own; the libraries under it (go-libp2p, the DHT,
// GossipSub) log only errors unless the level is debug, and the DHT's
// routine complaints (a lone node has an empty routing table; peers send
// records it ignores) not even those: they said nothing an operator can
// act on and were most of a quiet node's log.
func (c *cli) setupLogging(flagSet bool) error {
	lvl, err := logging.Parse(c.logLevel)
	if err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.logLevel)
	}
	cfg := logging.GetConfig()
	if flagSet || os.Getenv("GOLOG_LOG_LEVEL") == "" {
		cfg.Level, cfg.SubsystemLevels = levels(lvl, logging.GetSubsystems())
	}
	cfg.Stderr, cfg.Stdout = true, false
	if os.Getenv("GOLOG_LOG_FMT") == "" && !isTerminal(os.Stderr) {
		cfg.Format = logging.PlaintextOutput
	}
	logging.SetupLogging(cfg)
	return nil
}

// levels are the default level and the per-subsystem ones for parley's
// level lvl: parley's subsystems at lvl, the rest at error at least (all
// of them at debug), the DHT's chatty ones at fatal.
func levels(lvl logging.LogLevel, subsystems []string) (logging.LogLevel, map[string]logging.LogLevel) {
	if lvl == logging.LevelDebug {
		return lvl, nil
	}
	per := map[string]logging.LogLevel{"dht": logging.LevelFatal, "dht/RtRefreshManager": logging.LevelFatal}
	for _, s := range subsystems {
		if strings.HasPrefix(s, "parley/") {
			per[s] = lvl
		}
	}
	return max(lvl, logging.LevelError), per
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

// stampedRevision is the VCS revision of a build whose build info has
// none, such as a Docker build (its context has no .git): set it with
// -ldflags "-X main.stampedRevision=<commit>".
var stampedRevision string

// buildInfo is what the binary knows of how it was built; 'parley version
// --json' prints it.
type buildInfo struct {
	// Version is the module version ("v1.2.3" from go install …@v1.2.3,
	// or from go build at a tagged commit), or "devel".
	Version string `json:"version"`
	// Revision is the commit the binary was built from, "" if unknown.
	Revision string `json:"revision"`
	// Time is the commit's time (RFC 3339), "" if unknown.
	Time string `json:"time"`
	// Modified is set when the checkout had uncommitted changes.
	Modified bool   `json:"modified"`
	Go       string `json:"go"`
}

func readBuildInfo() buildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return newBuildInfo(bi, stampedRevision)
}

// newBuildInfo reads bi (nil when the binary has none), with stamped as
// the revision where bi names none.
func newBuildInfo(bi *debug.BuildInfo, stamped string) buildInfo {
	b := buildInfo{Version: "devel", Go: runtime.Version()}
	if bi != nil {
		b.Go = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.time":
				b.Time = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
		b.Version = moduleVersion(bi.Main.Version, b.Revision != "")
	}
	if b.Revision == "" {
		b.Revision = stamped
	}
	return b
}

// moduleVersion is the version to show for the main module's version v as
// the go command recorded it; fromVCS says the build info has a revision,
// so the binary was built in a checkout.
func moduleVersion(v string, fromVCS bool) string {
	if v == "" || v == "(devel)" {
		return "devel"
	}
	if fromVCS {
		// go build in a checkout derives v from its tags: a tag at the
		// commit gives that version (+dirty with changes, which Modified
		// says), any other commit a pseudo-version that only restates the
		// revision. go install …@<commit> gives a pseudo-version too, but
		// no revision, so it is kept.
		v = strings.TrimSuffix(v, "+dirty")
		if module.IsPseudoVersion(v) {
			return "devel"
		}
	}
	return v
}

// short is the version in one word or two: "v1.2.3", "devel
// 4066074a5b2c", "devel 4066074a5b2c+dirty".
func (b buildInfo) short() string {
	s := b.Version
	if b.Revision != "" {
		rev := b.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += " " + rev
		if b.Modified {
			s += "+dirty"
		}
	}
	return s
}

// version is the version the daemon reports in its status.
func version() string { return readBuildInfo().short() }

func (c *cli) versionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print parley's version and the commit it was built from",
		Long: `version prints the module version the binary was built from ("devel" for a
build from a checkout that is not at a tag), the commit (with +dirty if the
checkout had uncommitted changes), the commit's time and the Go version.
A binary from 'go install github.com/parleynet/parley/cmd/parley@v1.2.3'
prints v1.2.3 and no commit. --json prints {"version", "revision", "time",
"modified", "go"}, with "" for what the binary does not know.`,
		Example: `  parley version
  parley version --json`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			b := readBuildInfo()
			if asJSON {
				return c.printJSON(b)
			}
			detail := b.Go
			if b.Time != "" {
				detail = b.Time + ", " + detail
			}
			_, err := fmt.Fprintf(c.out, "parley %s (%s)\n", b.short(), detail)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
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
