package a2a_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"

	parleya2a "github.com/parleynet/parley/interop/a2a"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
)

// sizer asks which size before it quotes, and tells asked how its
// question ended.
func sizer(asked chan<- error) negotiation.Handler {
	return negotiation.HandlerFuncs{
		BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
			return negotiation.Bid{Price: 2, ETA: 100 * time.Millisecond, Rationale: "sizes things"}, nil
		},
		WorkFunc: func(ctx context.Context, t negotiation.Task) (json.RawMessage, error) {
			if t.Ask == nil {
				return nil, errors.New("cannot ask the requester")
			}
			size, err := t.Ask(ctx, "which size?", json.RawMessage(`{"type":"string","enum":["S","M","L"]}`))
			select {
			case asked <- err:
			default:
			}
			if err != nil {
				return nil, err
			}
			return json.RawMessage(fmt.Sprintf(`{"input":%s,"size":%s}`, t.Input, size)), nil
		},
	}
}

// addSizer hosts sizer on node 1 of a gateway mesh exporting "size".
func addSizer(t *testing.T, gm *gatewayMesh) chan error {
	t.Helper()
	asked := make(chan error, 4)
	if _, err := gm.nodes[1].AddAgent(node.AgentCard{Name: "sizer", Capabilities: []string{"size"}}, sizer(asked)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gm.nodes[0].WaitReady(ctx, "size"); err != nil {
		t.Fatal(err)
	}
	return asked
}

func statusText(s a2a.TaskStatus) string {
	if s.Message == nil || len(s.Message.Parts) == 0 {
		return ""
	}
	return s.Message.Parts[0].Text()
}

// A parley task whose winner asks is an A2A task in input-required with
// the question as its status message (streamed to the client); the
// client's next message on the task answers it (a text part is a JSON
// string, a data part its data) and the task completes with the answer
// used. A file part is no answer: the task stays input-required and says
// why. Cancel still ends a task that waits, on the mesh too.
func TestGatewayInputRequired(t *testing.T) {
	gm := newGatewayMesh(t, func(c *parleya2a.Config) { c.Export = append(c.Export, "size") })
	asked := addSizer(t, gm)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, actx := restClient(t, ctx, gm.url)

	// The stream ends at the question.
	var task *a2a.Task
	var last *a2a.TaskStatusUpdateEvent
	for ev, err := range c.SendStreamingMessage(actx, &a2a.SendMessageRequest{Message: quoteMessage("size", map[string]any{"item": "shirt"})}) {
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		switch e := ev.(type) {
		case *a2a.Task:
			task = e
		case *a2a.TaskStatusUpdateEvent:
			last = e
		}
	}
	if task == nil || last == nil || last.Status.State != a2a.TaskStateInputRequired || statusText(last.Status) != "which size?" {
		t.Fatalf("the stream ended with %+v, want input-required asking which size?", last)
	}
	if schema, _ := last.Metadata[parleya2a.MetaQuestionSchema].(map[string]any); schema["type"] != "string" {
		t.Errorf("status metadata %v: want the question's schema", last.Metadata)
	}
	got, err := c.GetTask(actx, &a2a.GetTaskRequest{ID: task.ID})
	if err != nil || got.Status.State != a2a.TaskStateInputRequired {
		t.Fatalf("GetTask: %+v, %v; want input-required", got, err)
	}
	pt, _ := last.Metadata[parleya2a.MetaTask].(string)
	if ti, err := gm.nodes[0].Task(pt); err != nil || ti.State != negotiation.StateInputRequired || ti.Question == nil {
		t.Fatalf("the parley task %s: %+v, %v; want input-required with the question", pt, ti, err)
	}

	// The answer, streamed: working again, then the result.
	answer := a2a.NewMessageForTask(a2a.MessageRoleUser, task, a2a.NewTextPart("M"))
	var states []a2a.TaskState
	var result map[string]any
	for ev, err := range c.SendStreamingMessage(actx, &a2a.SendMessageRequest{Message: answer}) {
		if err != nil {
			t.Fatalf("answer stream: %v", err)
		}
		switch e := ev.(type) {
		case *a2a.Task:
			states = append(states, e.Status.State)
		case *a2a.TaskStatusUpdateEvent:
			states = append(states, e.Status.State)
		case *a2a.TaskArtifactUpdateEvent:
			result, _ = e.Artifact.Parts[0].Data().(map[string]any)
		}
	}
	if len(states) == 0 || states[len(states)-1] != a2a.TaskStateCompleted || !containsState(states, a2a.TaskStateWorking) {
		t.Fatalf("answer stream states %v: want working … completed", states)
	}
	if result["size"] != "M" || fmt.Sprint(result["input"]) != "map[item:shirt]" {
		t.Errorf("result %v: want the input and the answer", result)
	}
	if err := <-asked; err != nil {
		t.Errorf("the winner's Ask: %v", err)
	}

	// A second task: a file is no answer.
	res, err := c.SendMessage(actx, &a2a.SendMessageRequest{Message: quoteMessage("size", map[string]any{"item": "hat"})})
	if err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
	second, ok := res.(*a2a.Task)
	if !ok || second.Status.State != a2a.TaskStateInputRequired {
		t.Fatalf("SendMessage = %+v, want a task in input-required", res)
	}
	file := a2a.NewMessageForTask(a2a.MessageRoleUser, second, a2a.NewFileURLPart("https://example.com/size.txt", "text/plain"))
	res, err = c.SendMessage(actx, &a2a.SendMessageRequest{Message: file})
	if err != nil {
		t.Fatalf("SendMessage with a file: %v", err)
	}
	if st, ok := res.(*a2a.Task); !ok || st.Status.State != a2a.TaskStateInputRequired || !strings.Contains(statusText(st.Status), "not taken") ||
		!strings.Contains(statusText(st.Status), "which size?") {
		t.Fatalf("after a file as the answer: %+v, want input-required saying the answer was not taken and asking again", res)
	}
	// A data part's data is the answer as it is.
	res, err = c.SendMessage(actx, &a2a.SendMessageRequest{Message: a2a.NewMessageForTask(a2a.MessageRoleUser, second, a2a.NewDataPart(map[string]any{"size": "L", "fit": "slim"}))})
	if err != nil {
		t.Fatalf("SendMessage with a data part: %v", err)
	}
	if done, ok := res.(*a2a.Task); !ok || done.Status.State != a2a.TaskStateCompleted || len(done.Artifacts) != 1 ||
		fmt.Sprint(done.Artifacts[0].Parts[0].Data()) != "map[input:map[item:hat] size:map[fit:slim size:L]]" {
		t.Fatalf("after a data part as the answer: %+v, want completed with the data as the answer", res)
	}
	if err := <-asked; err != nil {
		t.Errorf("the second winner's Ask: %v", err)
	}

	// A third task: cancel ends the wait.
	res, err = c.SendMessage(actx, &a2a.SendMessageRequest{Message: quoteMessage("size", map[string]any{"item": "scarf"})})
	if err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
	third, ok := res.(*a2a.Task)
	if !ok || third.Status.State != a2a.TaskStateInputRequired {
		t.Fatalf("SendMessage = %+v, want a task in input-required", res)
	}
	canceled, err := c.CancelTask(actx, &a2a.CancelTaskRequest{ID: third.ID})
	if err != nil || canceled.Status.State != a2a.TaskStateCanceled {
		t.Fatalf("CancelTask: %+v, %v; want canceled", canceled, err)
	}
	select {
	case err := <-asked:
		if err == nil {
			t.Error("the canceled task's Ask returned an answer")
		}
	case <-ctx.Done():
		t.Fatal("the canceled task's Ask never returned")
	}
	waitFor(t, ctx, "the parley task to end canceled", func() bool {
		ti, err := gm.nodes[0].Task(third.Metadata[parleya2a.MetaTask].(string))
		return err == nil && ti.State == negotiation.StateCanceled
	})
}

func containsState(l []a2a.TaskState, s a2a.TaskState) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
