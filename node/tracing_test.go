package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	logging "github.com/ipfs/go-log/v2"

	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
	"github.com/parleynet/parley/tracing"
)

// TestTraceProtocolAdmission: a node answers its spans of a task only to
// a node that took part in it (its requester); another bidder and an
// outsider are refused by the admission layer.
func TestTraceProtocolAdmission(t *testing.T) {
	logs := debugLog(t, "parley/node")
	m := nodetest.NewMesh(t, 4, nodetest.WithConfig(func(_ int, c *node.Config) {
		c.Tracing.Enabled = true
	}))
	for i, price := range map[int]float64{1: 1, 2: 5} {
		if _, err := m.Nodes[i].AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{"job"}}, pricedWorker(price)); err != nil {
			t.Fatal(err)
		}
	}
	for len(m.Nodes[0].TopicPeers("job")) < 2 {
		time.Sleep(20 * time.Millisecond)
	}
	out, err := ask(m.Nodes[0], 10*time.Second)
	if err != nil || len(out.Bids) != 2 {
		t.Fatalf("request: %v, %d bids", err, len(out.Bids))
	}
	res := m.Nodes[0].Tracing().Ring().Lookup(out.Task, 0)
	if len(res.Traces) != 1 {
		t.Fatalf("requester's traces of the task: %v", res.Traces)
	}
	tid := res.Traces[0]
	// Its log lines join up: the award names the task, the trace, the
	// agent and the winner's node.
	award := logs(func(l map[string]any) bool { return l["msg"] == "negotiation award" && l["task"] == out.Task })
	if award == nil || award["trace_id"] != tid || award["agent"] == nil || award["peer"] != m.Nodes[1].ID().String() {
		t.Errorf("log line of the award = %v; want task %s, trace_id %s, agent, peer %s", award, out.Task, tid, m.Nodes[1].ID())
	}
	loser := m.Nodes[2]
	for deadline := time.Now().Add(10 * time.Second); len(loser.Tracing().Ring().Lookup(tid, 0).Tasks) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the losing bidder recorded no span of the task")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, tc := range []struct {
		name    string
		asker   *node.Node
		wantErr string
	}{
		{"requester", m.Nodes[0], ""},
		{"other bidder", m.Nodes[1], "took part in no task"},
		{"outsider", m.Nodes[3], "took part in no task"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			spans, _, err := tc.asker.FetchTrace(ctx, loser.ID(), tid)
			switch {
			case tc.wantErr == "" && (err != nil || len(spans) == 0):
				t.Fatalf("FetchTrace = %d spans, %v; want the loser's spans", len(spans), err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("FetchTrace = %d spans, %v; want refused (%s)", len(spans), err, tc.wantErr)
			}
			for _, s := range spans {
				if s.TraceID != tid || s.Node != loser.ID().String() {
					t.Fatalf("span %+v: want trace %s from %s", s, tid, loser.ID())
				}
			}
		})
	}
	// The requester gathers all three nodes' spans of the task.
	view, err := m.Nodes[0].GatherTrace(context.Background(), out.Task, true)
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]bool{}
	for _, s := range view.Spans {
		nodes[s.Node] = true
	}
	if len(nodes) != 3 {
		t.Fatalf("gathered spans from %d nodes (%+v), want 3", len(nodes), view.Nodes)
	}
}

// TestAskJoinsTrace: a direct ask carries its trace, so the answering
// node's rpc.serve span is a child of the asker's rpc.ask.
func TestAskJoinsTrace(t *testing.T) {
	m := nodetest.NewMesh(t, 2, nodetest.WithConfig(func(_ int, c *node.Config) { c.Tracing.Enabled = true }))
	worker, err := m.Nodes[1].AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{"echo"}}, pricedWorker(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Nodes[0].Ask(context.Background(), m.Nodes[1].ID(), worker.ID, "echo", []byte(`1`), ""); err != nil {
		t.Fatal(err)
	}
	// The server's span ends just after its reply is sent: wait for it.
	find := func(n *node.Node, name string) tracing.Span {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			for _, s := range n.Tracing().Ring().All() {
				if s.Name == name {
					return s
				}
			}
		}
		t.Fatalf("no %s span on %s within 5 s", name, n.ID())
		return tracing.Span{}
	}
	ask, serve := find(m.Nodes[0], "rpc.ask"), find(m.Nodes[1], "rpc.serve")
	if serve.TraceID != ask.TraceID || serve.ParentID != ask.SpanID {
		t.Fatalf("rpc.ask %s/%s, rpc.serve %s parent %s: want serve a child of ask", ask.TraceID, ask.SpanID, serve.TraceID, serve.ParentID)
	}
}

// debugLog turns subsystem's log up to debug for the test and returns a
// lookup of the first JSON line that matches.
func debugLog(t *testing.T, subsystem string) func(match func(map[string]any) bool) map[string]any {
	t.Helper()
	prev, _ := logging.SubsystemLevelName(subsystem)
	if err := logging.SetLogLevel(subsystem, "debug"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logging.SetLogLevel(subsystem, prev) })
	pr := logging.NewPipeReader(logging.PipeFormat(logging.JSONOutput), logging.PipeLevel(logging.LevelDebug))
	var mu sync.Mutex
	var lines []map[string]any
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var l map[string]any
			if json.Unmarshal(sc.Bytes(), &l) == nil && l["logger"] == subsystem {
				mu.Lock()
				lines = append(lines, l)
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { _ = pr.Close(); <-done })
	return func(match func(map[string]any) bool) map[string]any {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range lines {
			if match(l) {
				return l
			}
		}
		return nil
	}
}
