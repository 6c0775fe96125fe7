package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
	"github.com/parleynet/parley/tracing"
	"go.opentelemetry.io/otel/trace"
)

func TestTraces(t *testing.T) {
	m := nodetest.NewMesh(t, 2, nodetest.WithConfig(func(_ int, c *node.Config) { c.Tracing.Enabled = true }))
	worker := negotiation.HandlerFuncs{
		BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
			return negotiation.Bid{Price: 2, ETA: time.Millisecond, Rationale: "in stock"}, nil
		},
		WorkFunc: func(_ context.Context, t negotiation.Task) (json.RawMessage, error) { return t.Input, nil },
	}
	if _, err := m.Nodes[1].AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{"job"}}, worker); err != nil {
		t.Fatal(err)
	}
	for len(m.Nodes[0].TopicPeers("job")) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	out, err := m.Nodes[0].Request(ctxT(t), negotiation.Need{Capability: "job", Input: json.RawMessage(`1`)},
		negotiation.WithEnoughBids(1), negotiation.WithBidWindow(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ts, c := newTestServer(t, m.Nodes[0])
	off := newTestNodes(t, 1)[0]
	tsOff, _ := newTestServer(t, off)

	view, err := c.Trace(ctxT(t), out.Task, true)
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]bool{}
	for _, s := range view.Spans {
		nodes[s.Node] = true
	}
	if len(view.Traces) != 1 || !nodes[m.Nodes[0].ID().String()] || !nodes[m.Nodes[1].ID().String()] {
		t.Fatalf("trace of %s: traces %v, spans from %v (nodes %+v)", out.Task, view.Traces, nodes, view.Nodes)
	}
	local, err := c.Trace(ctxT(t), view.Traces[0], false)
	if err != nil || len(local.Nodes) != 1 || len(local.Spans) == 0 || len(local.Spans) >= len(view.Spans) {
		t.Fatalf("local trace: %d of %d spans, nodes %+v, %v", len(local.Spans), len(view.Spans), local.Nodes, err)
	}

	// A caller's trace context (the traceparent header the client sends
	// from its ctx) makes the task part of the caller's trace.
	callerTrace := "4bf92f3577b34da6a3ce929d0e0e4736"
	sc, err := tracing.ParseTraceparent("00-" + callerTrace + "-00f067aa0ba902b7-01")
	if err != nil {
		t.Fatal(err)
	}
	joined, err := c.Request(trace.ContextWithRemoteSpanContext(ctxT(t), sc), RequestBody{Capability: "job", Input: json.RawMessage(`2`), BidWindow: "300ms"})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Nodes[0].Tracing().Ring().Lookup(joined.Task, 0).Traces; len(got) != 1 || got[0] != callerTrace {
		t.Fatalf("task %s sent with traceparent of trace %s is in traces %v", joined.Task, callerTrace, got)
	}

	for _, tc := range []struct {
		name, url string
		status    int
		want      string
	}{
		{"unknown id", ts.URL + "/v1/traces/nosuchtask", http.StatusNotFound, "no spans"},
		{"bad mesh", ts.URL + "/v1/traces/" + out.Task + "?mesh=maybe", http.StatusBadRequest, "mesh"},
		{"tracing off", tsOff.URL + "/v1/traces/" + out.Task, http.StatusConflict, "tracing is off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(ctxT(t), http.MethodGet, tc.url, nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct{ Error string }
			_ = json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode != tc.status || !strings.Contains(e.Error, tc.want) {
				t.Fatalf("GET %s = %d %q, want %d with %q", tc.url, resp.StatusCode, e.Error, tc.status, tc.want)
			}
		})
	}
}
