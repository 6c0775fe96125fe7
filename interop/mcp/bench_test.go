package mcp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parleynet/parley/interop/mcp"
	"github.com/parleynet/parley/node/api"
)

// BenchmarkRequest: one negotiation won by a mesh agent, through the API
// client directly (the baseline: what parley request does) and through
// the MCP request tool, over the API's /mcp (Streamable HTTP, the tool's
// API calls in-process) and as parley mcp runs it (the tool's API calls
// over HTTP; an in-memory pipe where stdio would be). The difference is
// the MCP layer's overhead.
//
//	go test -run '^$' -bench BenchmarkRequest -benchtime 100x -count 3 ./interop/mcp/
func BenchmarkRequest(b *testing.B) {
	ms := newMesh(b, nil)
	ts := httptest.NewServer(ms.srv)
	defer ts.Close()
	ctx := context.Background()
	body := api.RequestBody{Capability: "echo", Input: []byte(`{"n":1}`), BidWindow: "20ms"}
	args := map[string]any{"capability": "echo", "input": map[string]any{"n": 1}, "bid_window": "20ms"}

	b.Run("api", func(b *testing.B) {
		c := api.NewClient(ts.URL, token)
		for b.Loop() {
			if _, err := c.Request(ctx, body); err != nil {
				b.Fatal(err)
			}
		}
	})
	call := func(b *testing.B, cs *sdk.ClientSession) {
		for b.Loop() {
			res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "request", Arguments: args})
			if err != nil || res.IsError {
				b.Fatalf("request: %v %s", err, text(res))
			}
		}
	}
	b.Run("mcp-http", func(b *testing.B) {
		cs, err := sdk.NewClient(&sdk.Implementation{Name: "bench", Version: "1"}, nil).Connect(ctx,
			&sdk.StreamableClientTransport{Endpoint: ts.URL + api.PathMCP, HTTPClient: &http.Client{Transport: bearer{token}}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer cs.Close()
		call(b, cs)
	})
	b.Run("mcp-stdio-like", func(b *testing.B) {
		c := api.NewClient(ts.URL, token)
		s := mcp.NewServer(func(*sdk.CallToolRequest) (*api.Client, error) { return c, nil }, mcp.Config{})
		st, ct := sdk.NewInMemoryTransports()
		ss, err := s.Connect(ctx, st, nil)
		if err != nil {
			b.Fatal(err)
		}
		cs, err := sdk.NewClient(&sdk.Implementation{Name: "bench", Version: "1"}, nil).Connect(ctx, ct, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = cs.Close(); _ = ss.Wait() }()
		call(b, cs)
	})
}
