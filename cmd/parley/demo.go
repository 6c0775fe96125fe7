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
		Short: "Tell an order's story on six loopback nodes: a workflow of negotiations, live",
		Long: `demo starts six real nodes on loopback TCP in this process, each with its own
temporary home: a shop and five businesses whose agents forecast demand, hold
stock, price orders and ship them. Each order is a workflow the shop's node
runs (daemon/demo/order.yaml): forecast and stock at once, then the price,
then parcel or freight; every step a negotiation in the mesh. On the way the
agents share what they learn in the workflow's shared context, the shop
counters the parcel carriers' bids, a carrier fails and the next bid takes
the job, a freight booking waits for a human's approval (the demo approves it
itself, and says so), and an order nobody can ship is undone. It ends by
itself; interrupt it to stop early. The same seed gives the same orders,
prices and forecasts.`,
		Example: `  parley demo
  parley demo --quiet
  parley demo --seed 7 --orders 6`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("log-level") {
				// The demo prints its own story; node logs would bury it
				// (a step held for approval is a warning in a daemon's log).
				c.logLevel = "error"
				if err := c.setupLogging(false); err != nil {
					return err
				}
			}
			if cfg.Seed == 0 && cmd.Flags().Changed("seed") {
				return errors.New("--seed 0: want a seed of at least 1")
			}
			if cfg.Orders < 1 || cfg.Orders > demo.MaxOrders {
				return fmt.Errorf("--orders %d: want 1 to %d", cfg.Orders, demo.MaxOrders)
			}
			return demo.RunConfig(cmd.Context(), c.out, cfg)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&cfg.Quiet, "quiet", "q", false, "print only the opening, one line per order and the summary")
	fl.Uint64Var(&cfg.Seed, "seed", 1, "seed of the orders, prices and forecasts")
	fl.IntVar(&cfg.Orders, "orders", 3, "how many orders the shop places; they take turns at the story's three kinds (parcel, freight, undone)")
	return cmd
}
