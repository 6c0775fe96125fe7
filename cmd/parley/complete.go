package main

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/parleynet/parley/node/api"
)

// Shell completion of what only the running daemon knows: task IDs,
// approval IDs, agent names and capabilities. Each asks the daemon with a
// short deadline and completes nothing when there is no daemon.

const completeTimeout = time.Second

type completer func(ctx context.Context, cl *api.Client) ([]string, error)

func (c *cli) complete(list completer) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 { // every completed argument stands alone
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		cl, err := c.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completeTimeout)
		defer cancel()
		all, err := list(ctx, cl)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, s := range all {
			if strings.HasPrefix(s, prefix) && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func (c *cli) completeTasks(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	return c.complete(func(ctx context.Context, cl *api.Client) ([]string, error) {
		tasks, err := cl.Tasks(ctx)
		var ids []string
		for _, t := range tasks {
			ids = append(ids, t.Task)
		}
		return ids, err
	})(cmd, args, prefix)
}

func (c *cli) completeApprovals(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	return c.complete(func(ctx context.Context, cl *api.Client) ([]string, error) {
		list, err := cl.Approvals(ctx)
		var ids []string
		for _, a := range list {
			ids = append(ids, a.ID)
		}
		return ids, err
	})(cmd, args, prefix)
}

// agentsWhere lists the hosted agents' names, of the kinds given (all if
// none).
func agentsWhere(kinds ...string) completer {
	return func(ctx context.Context, cl *api.Client) ([]string, error) {
		list, err := cl.Agents(ctx)
		var names []string
		for _, a := range list {
			if len(kinds) == 0 || slices.Contains(kinds, a.Kind) {
				names = append(names, a.Name)
			}
		}
		return names, err
	}
}

// capabilities lists what the hosted agents offer: the capabilities a user
// of this node most likely means.
func capabilities(ctx context.Context, cl *api.Client) ([]string, error) {
	list, err := cl.Agents(ctx)
	var caps []string
	for _, a := range list {
		caps = append(caps, a.Capabilities...)
	}
	slices.Sort(caps)
	return caps, err
}

// flagCompletion is complete for a flag's value, which has no position.
func (c *cli) flagCompletion(list completer) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	f := c.complete(list)
	return func(cmd *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
		return f(cmd, nil, prefix)
	}
}
