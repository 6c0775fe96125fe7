package mcp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parleynet/parley/interop/mcp"
	"github.com/parleynet/parley/node/api"
)

// BenchmarkRequest: one negotiation won by a mesh agent, through the MCP
// request tool and, alternately in the same loop, through the API client
// directly (the baseline: what parley request does). Alternating pairs
// cancel the drift of a shared machine; each sub-benchmark reports the
// medians of both and of the per-pair difference, the MCP layer's
// overhead. The paths: over the API's /mcp (Streamable HTTP, the tool's
// API calls in-process), the same with a progress token (the task
// streamed, a notification per update), and as parley mcp runs it (the
// tool's API calls over HTTP; an in-memory pipe where stdio would be).
//
//	go test -run '^$' -bench BenchmarkRequest -benchtime 100x ./interop/mcp/
func BenchmarkRequest(b *testing.B) {
	ms := newMesh(b, nil)
	ts := httptest.NewServer(ms.srv)
	defer ts.Close()
	ctx := context.Background()
	direct := api.NewClient(ts.URL, token)
	body := api.RequestBody{Capability: "echo", Input: []byte(`{"n":1}`), BidWindow: "20ms"}
	args := map[string]any{"capability": "echo", "input": map[string]any{"n": 1}, "bid_window": "20ms"}

	var notes atomic.Int64
	opts := &sdk.ClientOptions{ProgressNotificationHandler: func(context.Context, *sdk.ProgressNotificationClientRequest) { notes.Add(1) }}
	httpSession := func(b *testing.B) *sdk.ClientSession {
		cs, err := sdk.NewClient(&sdk.Implementation{Name: "bench", Version: "1"}, opts).Connect(ctx,
			&sdk.StreamableClientTransport{Endpoint: ts.URL + api.PathMCP, HTTPClient: &http.Client{Transport: bearer{token}}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cs.Close() })
		return cs
	}
	stdioLike := func(b *testing.B) *sdk.ClientSession {
		s := mcp.NewServer(func(*sdk.CallToolRequest) (*api.Client, error) { return direct, nil }, mcp.Config{})
		st, ct := sdk.NewInMemoryTransports()
		ss, err := s.Connect(ctx, st, nil)
		if err != nil {
			b.Fatal(err)
		}
		cs, err := sdk.NewClient(&sdk.Implementation{Name: "bench", Version: "1"}, opts).Connect(ctx, ct, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cs.Close(); _ = ss.Wait() })
		return cs
	}
	for _, bc := range []struct {
		name     string
		session  func(*testing.B) *sdk.ClientSession
		progress bool
	}{
		{"http", httpSession, false},
		{"http-progress", httpSession, true},
		{"stdio-like", stdioLike, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cs := bc.session(b)
			notes.Store(0)
			var viaAPI, viaMCP, diff []float64
			for i := 0; b.Loop(); i++ {
				t0 := time.Now()
				if _, err := direct.Request(ctx, body); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				params := &sdk.CallToolParams{Name: "request", Arguments: args}
				if bc.progress {
					params.SetProgressToken(i)
				}
				res, err := cs.CallTool(ctx, params)
				if err != nil || res.IsError {
					b.Fatalf("request: %v %s", err, text(res))
				}
				t2 := time.Now()
				a, m := t1.Sub(t0).Seconds()*1e3, t2.Sub(t1).Seconds()*1e3
				viaAPI, viaMCP, diff = append(viaAPI, a), append(viaMCP, m), append(diff, m-a)
			}
			if bc.progress && notes.Load() == 0 {
				b.Fatal("no progress notifications")
			}
			b.ReportMetric(median(viaAPI), "api-ms")
			b.ReportMetric(median(viaMCP), "mcp-ms")
			b.ReportMetric(median(diff), "overhead-ms")
		})
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}
