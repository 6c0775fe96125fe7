package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/parleynet/parley/daemon/home"
)

func (c *cli) initCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a node's home: node key, default agent key, config.yaml",
		Long: `init creates the home directory of a node: its node key, the key of its
default agent and a commented config.yaml. It prints the node's PeerID and the
default agent's AgentID. An existing home is only replaced with --force, which
creates new keys and so new identities; the replaced home's audit log is kept
as audit.replaced-<unix time>, with node.pub naming the node that signed it.
The home may be a mount point (a Docker volume, a Kubernetes PV): init works
inside it, and a failure leaves the old home, or nothing.`,
		Example: `  parley init
  parley --home /srv/parley/node-a init
  parley init --force   # new keys; the old audit log is kept beside`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if force {
				if url, ok := c.runningDaemon(cmd.Context()); ok {
					return fmt.Errorf("a daemon is running for home %s (api %s); stop it before replacing its home", c.home, url)
				}
			}
			h, err := home.Init(c.home, force)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.out, "peer: %s\nagent: %s\n", h.PeerID(), h.Agents[0].ID)
			return err
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing home and its keys")
	return cmd
}
