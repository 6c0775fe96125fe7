// Package mcp owns parley's Model Context Protocol server: the tools an
// MCP client (an LLM host, the inspector) uses to find agents in the mesh,
// hire them, publish intents, follow tasks and run workflows (with their
// shared context), served over stdio
// (`parley mcp`) or Streamable HTTP (the daemon API's /mcp).
//
// It is built on the official SDK (github.com/modelcontextprotocol/go-sdk),
// which owns the protocol: sessions, JSON-RPC, schemas, progress. Every
// tool calls the node through the local API's Go client, so each MCP call
// passes the same routes, token checks, admission and audit as any other
// API call; over HTTP the client serves in-process with the caller's own
// token. Domain failures (a capability nobody offers, a bad input, a
// refusal) are tool results with isError carrying the API's message and
// code, never protocol errors.
//
// It does not own the node, negotiation or the API (packages node,
// negotiation, node/api).
package mcp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parleynet/parley/node/api"
)

// Name is the server's name in the MCP handshake.
const Name = "parley"

// Config configures a server. The zero Config works.
type Config struct {
	// Version is reported in the handshake; "devel" if empty.
	Version string
}

// ClientFunc returns the API client one tool call uses, or why there is
// none (no daemon running).
type ClientFunc func(*sdk.CallToolRequest) (*api.Client, error)

// NewServer returns the MCP server whose tools call the node through the
// client that client returns for each call. Run it on a transport, e.g.
// server.Run(ctx, &sdk.StdioTransport{}).
func NewServer(client ClientFunc, cfg Config) *sdk.Server {
	if cfg.Version == "" {
		cfg.Version = "devel"
	}
	s := sdk.NewServer(&sdk.Implementation{Name: Name, Title: "parley mesh", Version: cfg.Version}, &sdk.ServerOptions{
		Instructions: "Tools of a parley node: find agents in its peer-to-peer mesh by capability (find_agents), " +
			"hire one through a negotiation among the agents that bid (request: bids, winner, result, with progress), " +
			"publish signed intents (publish), follow or cancel the node's tasks (tasks, task, cancel_task), " +
			"answer a winner's question when a task is input-required (answer_task), " +
			"and run multi-step workflows and read their shared context (run_workflow, workflows, workflow, cancel_workflow).",
		Capabilities: &sdk.ServerCapabilities{Tools: &sdk.ToolCapabilities{}},
	})
	t := &tools{client: client}
	t.add(s)
	return s
}

// Handler returns the Streamable HTTP handler of the API's /mcp endpoint.
// The API authenticates every request before it gets here; each tool call
// then uses clientFor with the bearer token of the HTTP request that
// carried it, so it acts with its caller's own token, never more.
//
// It is stateless: each POST is served on its own, with nothing kept
// between them (no session table to bound or to close). That is how the
// current protocol version (2026-07-28) works, and the SDK serves the
// older versions' clients the same way, each request in a temporary
// session; a tool's progress notifications go on the answer's stream.
// Nothing here sends a client requests of its own, which would need a
// session.
func Handler(clientFor func(token string) *api.Client, cfg Config) http.Handler {
	s := NewServer(func(req *sdk.CallToolRequest) (*api.Client, error) {
		var h http.Header
		if req.Extra != nil {
			h = req.Extra.Header
		}
		token, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			return nil, errors.New("no bearer token on the MCP request")
		}
		return clientFor(token), nil
	}, cfg)
	return sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, &sdk.StreamableHTTPOptions{
		Stateless:           true,
		MaxRequestBodyBytes: api.DefaultMaxBodySize,
	})
}

// Mount is Handler with the default Config, in the form api.WithMCP takes.
func Mount(version string) func(clientFor func(token string) *api.Client) http.Handler {
	return func(clientFor func(token string) *api.Client) http.Handler {
		return Handler(clientFor, Config{Version: version})
	}
}

// toolError is the tool error of a failed API call: the API's message,
// its code and status, so that a model can tell a bad input from a
// refusal from a node that is down.
func toolError(what string, err error) error {
	var ae *api.Error
	switch {
	case errors.As(err, &ae):
		return fmt.Errorf("%s: %s (code %s, HTTP %d)", what, ae.Message, ae.Code, ae.Status)
	case errors.Is(err, api.ErrNoDaemon):
		return fmt.Errorf("%s: %w: start one with parley run", what, err)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: canceled", what)
	}
	return fmt.Errorf("%s: %w", what, err)
}
