package main

import (
	"github.com/spf13/cobra"

	"github.com/parleynet/parley/daemon/demo"
)

func (c *cli) demoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Run a supply chain on six loopback nodes: a shop's agent negotiates each order with competing contractors, live",
		Long: `demo starts six real nodes on loopback TCP in this process, each with its own
temporary home. A shop agent places orders that each need inventory, pricing
and shipping; competing contractor agents (different prices and speeds, some
flaky) bid, and the shop awards, re-awards after failures, and prints every
negotiation live and a summary. It ends by itself; interrupt it to stop early.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("log-level") {
				// The demo prints its own story; node logs would bury it.
				c.logLevel = "warn"
				if err := c.setupLogging(false); err != nil {
					return err
				}
			}
			return demo.Run(cmd.Context(), c.out)
		},
	}
}
