package mcp_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parleynet/parley/interop/mcp"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

// TestAnswerTask: a request whose winner asks tells the client in a
// progress notification; task shows the question; answer_task answers it
// and the request completes with the answer used. answer_task on a task
// that asks nothing is a tool error naming the API's conflict.
func TestAnswerTask(t *testing.T) {
	ms := newMesh(t, nil)
	if _, err := ms.m.Nodes[1].AddAgent(node.AgentCard{Name: "sizer", Capabilities: []string{"size"}}, nodetest.Sizer()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !slices.Contains(ms.m.Nodes[0].TopicPeers("size"), ms.m.Nodes[1].ID()); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("node 0 never saw the sizer's node on size")
		}
	}
	asked := make(chan string, 8)
	cs := ms.connect(t, &sdk.ClientOptions{ProgressNotificationHandler: func(_ context.Context, req *sdk.ProgressNotificationClientRequest) {
		if strings.Contains(req.Params.Message, "input-required") {
			asked <- req.Params.Message
		}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	type answer struct {
		res *sdk.CallToolResult
		err error
	}
	done := make(chan answer, 1)
	go func() {
		params := &sdk.CallToolParams{Name: "request", Arguments: map[string]any{"capability": "size", "bid_window": "100ms"}}
		params.SetProgressToken("q1")
		res, err := cs.CallTool(ctx, params)
		done <- answer{res, err}
	}()
	var msg string
	select {
	case msg = <-asked:
	case a := <-done:
		t.Fatalf("the request ended before its winner asked: %v %s", a.err, text(a.res))
	}
	if !strings.Contains(msg, "which size?") {
		t.Errorf("progress %q, want the question", msg)
	}
	id := strings.Fields(msg)[1] // "task ID input-required: …"
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "task", Arguments: map[string]any{"task": id}})
	if err != nil || res.IsError {
		t.Fatalf("task: %v %s", err, text(res))
	}
	if got := structured[mcp.Task](t, res); got.State != "input-required" || got.Question == nil || got.Question.Note != "which size?" {
		t.Fatalf("task = %+v, want input-required with the question", got)
	}
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "answer_task", Arguments: map[string]any{"task": id, "answer": "M"}})
	if err != nil || res.IsError {
		t.Fatalf("answer_task: %v %s", err, text(res))
	}
	// Read after the answer went: the winner may have finished already.
	if got := structured[mcp.Task](t, res); got.State != "working" && got.State != "completed" {
		t.Errorf("after answer_task: %s, want working (or done)", got.State)
	}
	a := <-done
	if a.err != nil || a.res.IsError {
		t.Fatalf("request: %v %s", a.err, text(a.res))
	}
	if out := structured[mcp.Outcome](t, a.res); fmt.Sprint(out.Result) != "map[size:M]" {
		t.Errorf("result %v, want the answer used", out.Result)
	}
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "answer_task", Arguments: map[string]any{"task": id, "answer": "S"}})
	if err != nil || !res.IsError || !strings.Contains(text(res), "code conflict") {
		t.Errorf("answer_task on a task that asks nothing: %v %s; want a tool error with the conflict", err, text(res))
	}
}
