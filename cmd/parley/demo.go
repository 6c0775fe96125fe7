package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/parleynet/parley/daemon/demo"
)

func (c *cli) demoCmd() *cobra.Command {
	var cfg demo.Config
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a supply chain on six loopback nodes: a shop's agent negotiates each order with competing contractors, live",
		Long: `demo starts six real nodes on loopback TCP in this process, each with its own
temporary home. A shop agent places orders that each need inventory, pricing
and shipping; competing contractor agents (different prices and speeds, some
flaky) bid, and the shop awards, re-awards after failures, and prints every
negotiation live and a summary. It ends by itself; interrupt it to stop early.
Orders are told one at a time, each part of an order as one block. The same
seed gives the same orders, prices and failures.`,
		Example: `  parley demo
  parley demo --quiet
  parley demo --seed 7 --orders 3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("log-level") {
				// The demo prints its own story; node logs would bury it.
				c.logLevel = "warn"
				if err := c.setupLogging(false); err != nil {
					return err
				}
			}
			if cfg.Seed == 0 && cmd.Flags().Changed("seed") {
				return errors.New("--seed 0: want a seed of at least 1")
			}
			if cfg.Orders < 1 || cfg.Orders > 100 {
				return fmt.Errorf("--orders %d: want 1 to 100", cfg.Orders)
			}
			return demo.RunConfig(cmd.Context(), c.out, cfg)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&cfg.Quiet, "quiet", "q", false, "print only the opening, one line per order and the summary")
	fl.Uint64Var(&cfg.Seed, "seed", 1, "seed of the orders, prices, speeds and failures")
	fl.IntVar(&cfg.Orders, "orders", 6, "how many orders the shop places")
	return cmd
}
