package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/node/api"
)

func (c *cli) approvalsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "approvals",
		Short: "List, approve or deny negotiations held for a human",
		Long: `A policy rule with 'approve: human' holds a negotiation at its award (as
requester) or commit (as contractor) until someone decides. approvals lists
what is held, oldest first; each is denied by itself at DENIED AT if nobody
answers. 'parley request' prints the ID of a request of its own that is held.`,
		Example: `  parley approvals
  parley approvals approve 7f3a9c
  parley approvals deny 7f3a9c
  parley approvals --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			list, err := cl.Approvals(cmd.Context())
			if err != nil {
				return c.apiErr(err)
			}
			if asJSON {
				return c.printJSON(list)
			}
			if len(list) == 0 {
				_, err := fmt.Fprintln(c.out, "no approvals pending")
				return err
			}
			tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTAGE\tCAPABILITY\tTASK\tPRICE\tOTHER SIDE\tRULE\tDENIED AT")
			for _, a := range list {
				other := "-"
				if a.Other != "" {
					other = shortID(a.Other)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%g\t%s\t%s\t%s\n",
					a.ID, a.Stage, a.Capability, a.Task, a.Price, other, a.Rule, a.Deadline.Local().Format(time.TimeOnly))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	decide := func(use, short string, approve bool) *cobra.Command {
		return &cobra.Command{
			Use:               use + " ID",
			Short:             short,
			Example:           "  parley approvals " + use + " 7f3a9c",
			Args:              cobra.ExactArgs(1),
			ValidArgsFunction: c.completeApprovals,
			RunE: func(cmd *cobra.Command, args []string) error {
				cl, err := c.client()
				if err != nil {
					return err
				}
				if err := cl.Decide(cmd.Context(), args[0], approve); err != nil {
					return c.apiErr(err)
				}
				_, err = fmt.Fprintf(c.out, "%s: %sd\n", args[0], use)
				return err
			},
		}
	}
	list := &cobra.Command{Use: "list", Short: "List pending approvals", Example: "  parley approvals list --json", Args: cobra.NoArgs, RunE: cmd.RunE}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(list, decide("approve", "Let a held negotiation go on", true), decide("deny", "Refuse a held negotiation", false))
	return cmd
}

func (c *cli) agentsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agents",
		Short: "List, add and remove this node's agents; find agents in the mesh; register external agents",
		Long: `agents manages the agents the running daemon hosts: 'list' shows them all,
'add' and 'remove' change config.yaml's exec agents live (the file is
rewritten and reloaded, comments kept), 'register' and 'deregister' manage
external agents (programs that speak the API), and 'find' looks for agents
that offer a capability anywhere in the mesh.`,
		Example: `  parley agents list
  parley agents add --name quoter --capability quote --exec sh,/opt/quote.sh
  parley agents find --capability quote`,
		RunE: groupRun,
	}
	var (
		capability string
		asJSON     bool
		timeout    time.Duration
	)
	find := &cobra.Command{
		Use:   "find --capability C",
		Short: "Find the agents that offer a capability (DHT rendezvous; cards verified)",
		Long: `find asks the mesh which agents offer a capability: their nodes provide it
in the Kademlia DHT, and each agent's signed card is fetched from its node and
checked before it is shown. It answers with what it found within --timeout.`,
		Example: `  parley agents find --capability quote
  parley agents find --capability quote --timeout 3s --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := intent.ValidCapability(capability); err != nil {
				return fmt.Errorf("--capability: %w", err)
			}
			if timeout <= 0 || timeout > api.MaxFindTimeout {
				return fmt.Errorf("--timeout %s: want a positive duration up to %s", timeout, api.MaxFindTimeout)
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			cards, err := cl.FindAgents(cmd.Context(), capability, timeout)
			if err != nil {
				return c.apiErr(err)
			}
			if asJSON {
				return c.printJSON(cards)
			}
			if len(cards) == 0 {
				_, err := fmt.Fprintf(c.out, "no agent offers %s\n", capability)
				return err
			}
			// Names and capabilities come from remote cards: printable
			// keeps each to one line of plain text.
			tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "AGENT\tNAME\tPEER\tCAPABILITIES\tEXPIRES")
			for _, card := range cards {
				caps := make([]string, 0, len(card.Capabilities))
				for _, k := range card.Capabilities {
					caps = append(caps, printable(k.Name))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", card.Agent, printable(card.Name), card.Peer,
					strings.Join(caps, ","), clock(card.Expires))
			}
			return tw.Flush()
		},
	}
	find.Flags().StringVar(&capability, "capability", "", "the capability to look for")
	find.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	find.Flags().DurationVar(&timeout, "timeout", api.DefaultFindTimeout, "how long the daemon looks before it answers with what it found")
	_ = find.RegisterFlagCompletionFunc("capability", c.flagCompletion(capabilities))
	cmd.AddCommand(find, c.agentsListCmd(), c.agentsAddCmd(), c.agentsRemoveCmd(), c.agentsRegisterCmd(), c.agentsDeregisterCmd())
	return cmd
}

func (c *cli) agentsListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the agents this node hosts, of every kind",
		Long: `list shows every agent the running daemon hosts: its name, AgentID, what it
offers and its kind — config (an exec agent of config.yaml), external
(registered over the API) or builtin (the node's default agent, the demo's).`,
		Example: `  parley agents list
  parley agents list --json | jq -r '.[].name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			list, err := cl.Agents(cmd.Context())
			if err != nil {
				return c.apiErr(err)
			}
			if asJSON {
				return c.printJSON(list)
			}
			tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tCAPABILITIES\tAGENT\tEXEC")
			for _, a := range list {
				caps, exec := "-", "-"
				if len(a.Capabilities) > 0 {
					caps = strings.Join(a.Capabilities, ",")
				}
				if len(a.Exec) > 0 {
					exec = strings.Join(a.Exec, " ")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Name, a.Kind, caps, a.ID, exec)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (c *cli) agentsAddCmd() *cobra.Command {
	var (
		spec    api.AgentSpec
		timeout time.Duration
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "add --name NAME --capability C --exec CMD[,ARG...]",
		Short: "Host a new exec agent now and write it to config.yaml",
		Long: `add has the running daemon host an exec agent: a command it runs for each
call and each task it wins, speaking JSON on stdin and stdout (see
examples/shell/quote.sh). The agent is appended to config.yaml's agents and
the daemon reloads, so it is hosted now and after a restart; a command the
daemon cannot run, or a name in use, changes nothing.`,
		Example: `  parley agents add --name quoter --capability quote --exec sh,/opt/agents/quote.sh
  parley agents add --name packer --capability pack --capability label --exec /usr/local/bin/packer --timeout 1m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkAgentFlags("an exec agent", spec.Name, spec.Capabilities); err != nil {
				return err
			}
			if len(spec.Exec) == 0 || spec.Exec[0] == "" {
				return errors.New("--exec: want the command and its arguments, comma-separated, e.g. sh,/opt/quote.sh")
			}
			if timeout < 0 {
				return fmt.Errorf("--timeout %s: want a positive duration", timeout)
			}
			spec.Timeout = intent.Duration(timeout)
			cl, err := c.client()
			if err != nil {
				return err
			}
			a, err := cl.AddAgent(cmd.Context(), spec)
			if err != nil {
				return c.apiErr(err)
			}
			if asJSON {
				return c.printJSON(a)
			}
			_, err = fmt.Fprintf(c.out, "agent %s %s added, offering %s; written to config.yaml\n", a.Name, a.ID, strings.Join(a.Capabilities, ", "))
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&spec.Name, "name", "", "the agent's name (required)")
	fl.StringArrayVar(&spec.Capabilities, "capability", nil, "a capability the agent offers, repeatable (at least one)")
	fl.StringSliceVar(&spec.Exec, "exec", nil, "the command and its arguments, comma-separated (required)")
	fl.DurationVar(&timeout, "timeout", 0, "how long one run of the command may take (default: the daemon's)")
	fl.BoolVar(&asJSON, "json", false, "print JSON")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("exec")
	return cmd
}

func (c *cli) agentsRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Stop hosting a config.yaml agent and remove it from the file",
		Long: `remove stops hosting one of config.yaml's agents (the tasks it holds fail
over to the next bid) and removes it from the file. The default agent (the
first) stays while the daemon runs; external agents are removed with
'parley agents deregister'.`,
		Example:           `  parley agents remove quoter`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.complete(agentsWhere(api.HostedConfig)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			if err := cl.RemoveAgent(cmd.Context(), args[0]); err != nil {
				return c.apiErr(err)
			}
			_, err = fmt.Fprintf(c.out, "agent %s removed; config.yaml updated\n", args[0])
			return err
		},
	}
}

func (c *cli) agentsRegisterCmd() *cobra.Command {
	var (
		name, tokenFile string
		caps            []string
		asJSON          bool
	)
	cmd := &cobra.Command{
		Use:   "register --name NAME --capability C",
		Short: "Register an external agent: a program that bids and works through the API",
		Long: `register makes NAME an agent of the running daemon that offers the
capabilities, run by a program in any language over the API (see
examples/python/agent.py). It prints the agent's token — or writes it, mode
0600, to --token-file — which is all the program needs: that token is good
only for the agent's own /v1/external/* calls, not for approvals or other
agents, so the program never holds the operator token in api.token.

The registration, the agent's key (keys/agents/NAME.key, so its AgentID) and
its token survive daemon restarts. Registering a name again replaces its
capabilities and its token (the old one stops working). NAME cannot be one
of config.yaml's agents.`,
		Example: `  parley agents register --name pyquoter --capability quote --token-file pyquoter.token`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkAgentFlags("an external agent", name, caps); err != nil {
				return err
			}
			if tokenFile != "" {
				if st, err := os.Stat(filepath.Dir(tokenFile)); err != nil || !st.IsDir() {
					return fmt.Errorf("--token-file %s: its directory does not exist", tokenFile)
				}
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			reg, err := cl.RegisterExternal(cmd.Context(), api.ExternalAgentBody{Name: name, Capabilities: caps})
			if err != nil {
				return c.apiErr(err)
			}
			if tokenFile != "" {
				if err := writeSecret(tokenFile, reg.Token); err != nil {
					return fmt.Errorf("--token-file: %w (the agent is registered; register it again for a new token)", err)
				}
				reg.Token = ""
			}
			if asJSON {
				return c.printJSON(reg)
			}
			var b strings.Builder
			fmt.Fprintf(&b, "agent: %s %s\ncapabilities: %s\n", reg.Name, reg.ID, strings.Join(reg.Capabilities, ","))
			if tokenFile != "" {
				fmt.Fprintf(&b, "token: written to %s\n", tokenFile)
			} else {
				fmt.Fprintf(&b, "token: %s\n", reg.Token)
			}
			_, err = io.WriteString(c.out, b.String())
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "the agent's name (required)")
	fl.StringArrayVar(&caps, "capability", nil, "a capability the agent offers, repeatable (at least one)")
	fl.StringVar(&tokenFile, "token-file", "", "write the agent's token to this file (mode 0600) instead of printing it")
	fl.BoolVar(&asJSON, "json", false, "print JSON")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func (c *cli) agentsDeregisterCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "deregister NAME",
		Short:             "Remove an external agent: its token stops working, the tasks it holds fail over",
		Example:           `  parley agents deregister pyquoter`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.complete(agentsWhere(api.HostedExternal)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			if err := cl.RemoveExternal(cmd.Context(), args[0]); err != nil {
				return c.apiErr(err)
			}
			_, err = fmt.Fprintf(c.out, "%s: deregistered\n", args[0])
			return err
		},
	}
}

// checkAgentFlags checks --name and --capability of a command that makes
// an agent (what names which kind), before anything is sent.
func checkAgentFlags(what, name string, caps []string) error {
	if err := identity.ValidAgentName(name); err != nil {
		return fmt.Errorf("--name: %w", err)
	}
	if len(caps) == 0 {
		return fmt.Errorf("--capability: %s offers at least one", what)
	}
	for _, k := range caps {
		if err := intent.ValidCapability(k); err != nil {
			return fmt.Errorf("--capability: %w", err)
		}
	}
	return nil
}

// writeSecret writes a secret to path, mode 0600, replacing the file.
func writeSecret(path, secret string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(secret + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
