package main

import (
	"github.com/spf13/cobra"

	"github.com/parleynet/parley/internal/demo"
)

func (c *cli) demoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Run five nodes on loopback whose agents gossip intents, and print what happens",
		Long: `demo starts five real nodes on loopback TCP in this process, each with its own
temporary home, lets their agents gossip intents, prints what happens live and
a summary, and ends by itself. Interrupt it to stop early.`,
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
