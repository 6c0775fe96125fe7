package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/parleynet/parley/node/api"
)

func (c *cli) statusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the running daemon's state on one screen",
		Long: `status shows the running daemon at a glance: its PeerID and version, how
long it has run, its peers, its agents and what they offer, the tasks in
flight, the audit log and the policy, and whether it is ready (and if not,
why). Probes that need an exit status use GET /v1/health, which answers 503
when the daemon is not ready.`,
		Example: `  parley status
  parley status --json | jq .peers`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			st, err := cl.Status(cmd.Context())
			if err != nil {
				return c.apiErr(err)
			}
			if asJSON {
				return c.printJSON(st)
			}
			return printStatus(c.out, st)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStatus(w io.Writer, st *api.Status) error {
	var b strings.Builder
	health := "ready"
	if !st.Health.Ready {
		health = "NOT READY: " + strings.Join(st.Health.Reasons, "; ")
	}
	fmt.Fprintf(&b, "peer:     %s\n", st.Peer)
	fmt.Fprintf(&b, "version:  %s\n", st.Version)
	fmt.Fprintf(&b, "uptime:   %s (since %s)\n", (time.Duration(st.UptimeSeconds) * time.Second).String(), clock(st.Started))
	fmt.Fprintf(&b, "health:   %s\n", health)
	reach := st.Reachability
	switch reach {
	case "private":
		reach = "private (behind NAT): reachable through its relays"
		if len(st.RelayAddrs) == 0 {
			reach = "private (behind NAT), NO RELAY SLOT YET: peers cannot dial it (nat.relays, or a peer with --relay-service)"
		}
	case "unknown":
		reach = "unknown (AutoNAT has not decided yet)"
	}
	fmt.Fprintf(&b, "reach:    %s\n", reach)
	fmt.Fprintf(&b, "peers:    %d\n", st.Peers)
	fmt.Fprintf(&b, "tasks:    %d in flight\n", st.TasksInFlight)
	switch a := st.Audit; {
	case !a.Enabled:
		b.WriteString("audit:    off (--no-audit)\n")
	case a.Error != "":
		fmt.Fprintf(&b, "audit:    BROKEN: %s (%s)\n", a.Error, a.Dir)
	default:
		fmt.Fprintf(&b, "audit:    ok (%s)\n", a.Dir)
	}
	pol := st.Policy.Source
	if pol == "" {
		pol = "none (everything is allowed)"
	}
	if st.Policy.ReloadError != "" {
		pol += "; the last reload was refused: " + st.Policy.ReloadError
	}
	fmt.Fprintf(&b, "policy:   %s\n", pol)
	for _, a := range st.Addrs {
		if !strings.Contains(a, "/p2p-circuit") {
			fmt.Fprintf(&b, "listen:   %s\n", a)
		}
	}
	for _, a := range st.RelayAddrs {
		fmt.Fprintf(&b, "relayed:  %s\n", a)
	}
	b.WriteString("agents:\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tKIND\tCAPABILITIES\tAGENT ID")
	for _, a := range st.Agents {
		caps := strings.Join(a.Capabilities, ",")
		if caps == "" {
			caps = "-"
		}
		kind := a.Kind
		if a.Connected != nil && !*a.Connected {
			kind += " (not connected)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", a.Name, kind, caps, a.ID)
	}
	return tw.Flush()
}
