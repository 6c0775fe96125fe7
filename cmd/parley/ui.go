package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/spf13/cobra"
)

func (c *cli) uiCmd() *cobra.Command {
	var open bool
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Print a one-time link that opens the daemon's live dashboard",
		Long: `ui asks the running daemon for a login link to its dashboard and prints
it. The link carries a one-time code, not the API token: it works once,
within a minute, and gives the browser a session cookie for the dashboard,
which can read the node (peers, topics, agents, tasks, negotiations) but not
act on it. Run ui again for another browser or after the link expired.

With --open it also opens the link with xdg-open, when a display is there.`,
		Example: `  parley ui
  parley ui --open`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			link, err := cl.UILoginLink(cmd.Context())
			if err != nil {
				return c.apiErr(err)
			}
			fmt.Fprintf(c.out, "%s\n(good once, until %s)\n", link.URL, clock(link.Expires))
			if !open {
				return nil
			}
			return openURL(cmd.Context(), link.URL)
		},
	}
	cmd.Flags().BoolVar(&open, "open", false, "open the link in a browser (xdg-open) as well as printing it")
	return cmd
}

// openURL opens u with xdg-open, when there is a display to open it on.
func openURL(ctx context.Context, u string) error {
	if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
		return fmt.Errorf("--open: no display (neither DISPLAY nor WAYLAND_DISPLAY is set): open the link above in a browser")
	}
	bin, err := exec.LookPath("xdg-open")
	if err != nil {
		return fmt.Errorf("--open: %w: open the link above in a browser", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, u).CombinedOutput(); err != nil {
		return fmt.Errorf("--open: xdg-open: %w: %s", err, out)
	}
	return nil
}
