package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/node/api"
)

func (c *cli) approvalsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "approvals",
		Short: "List, approve or deny negotiations held for a human",
		Args:  cobra.NoArgs,
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
			for _, a := range list {
				if _, err := fmt.Fprintf(c.out, "%s  %-6s %-12s task %s  price %g  rule %s  deny at %s\n",
					a.ID, a.Stage, a.Capability, a.Task, a.Price, a.Rule, a.Deadline.Format(time.TimeOnly)); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	decide := func(use, short string, approve bool) *cobra.Command {
		return &cobra.Command{
			Use:   use + " ID",
			Short: short,
			Args:  cobra.ExactArgs(1),
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
	list := &cobra.Command{Use: "list", Short: "List pending approvals", Args: cobra.NoArgs, RunE: cmd.RunE}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(list, decide("approve", "Let a held negotiation go on", true), decide("deny", "Refuse a held negotiation", false))
	return cmd
}

func (c *cli) agentsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "agents", Short: "Find agents in the mesh"}
	var (
		capability string
		asJSON     bool
		timeout    time.Duration
	)
	find := &cobra.Command{
		Use:   "find",
		Short: "Find the agents that offer a capability (DHT rendezvous; cards verified)",
		Args:  cobra.NoArgs,
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
	cmd.AddCommand(find)
	return cmd
}
