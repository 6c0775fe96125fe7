package main

import (
	"errors"
	"fmt"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/interop/mcp"
	"github.com/parleynet/parley/node/api"
)

func (c *cli) mcpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "mcp",
		Short: "Serve the running daemon's MCP tools on stdin and stdout",
		Long: `mcp is a Model Context Protocol server on stdio, for an MCP client (an LLM
host, an IDE, the MCP inspector) that starts it as a command. Its tools call
the daemon running for the home through its local API, like the other
commands: find_agents, request (a negotiation in the mesh, with progress
notifications), publish, tasks, task, cancel_task, answer_task (a winner's
question), and for workflows
run_workflow, workflows, workflow (with its shared context) and
cancel_workflow. Logs go to stderr.

The daemon serves the same tools over Streamable HTTP at /mcp on its API,
behind its token.`,
		Example: `  # an MCP client's config:
  {"mcpServers": {"parley": {"command": "parley", "args": ["mcp"]}}}
  # try it with the inspector:
  npx @modelcontextprotocol/inspector --cli parley mcp --method tools/list`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The daemon is looked up for each call, so that the server
			// outlives a daemon restart, and a missing daemon is a tool
			// error the client can show rather than a server that is gone.
			client := func(*sdk.CallToolRequest) (*api.Client, error) {
				url, token, err := home.ReadAPI(c.home)
				if errors.Is(err, home.ErrNoAPIFile) {
					return nil, c.errNoDaemon()
				}
				if err != nil {
					return nil, fmt.Errorf("daemon of %s: %w", c.home, err)
				}
				return api.NewClient(url, token), nil
			}
			err := mcp.NewServer(client, mcp.Config{Version: version()}).Run(cmd.Context(), &sdk.StdioTransport{})
			if err != nil && cmd.Context().Err() != nil {
				return nil // stopped by a signal
			}
			return err
		},
	}
}
