package a2a_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"

	parleya2a "github.com/parleynet/parley/interop/a2a"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node/nodetest"
	"github.com/parleynet/parley/policy"
)

// The task store holds at most MaxTasks: past it the oldest ended task
// goes, and while every task still runs a new one is refused with an
// error saying so. No client grows the gateway's memory.
func TestGatewayBoundsItsTasks(t *testing.T) {
	gm := newGatewayMesh(t, func(c *parleya2a.Config) { c.MaxTasks = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, actx := restClient(t, ctx, gm.url)
	send := func(skill string) (*a2a.Task, error) {
		res, err := c.SendMessage(actx, &a2a.SendMessageRequest{Message: quoteMessage(skill, map[string]any{"kg": 1}),
			Config: &a2a.SendMessageConfig{ReturnImmediately: skill == "slow"}})
		if err != nil {
			return nil, err
		}
		task, _ := res.(*a2a.Task)
		return task, nil
	}
	slow, err := send("slow")
	if err != nil {
		t.Fatalf("first task: %v", err)
	}
	<-gm.started
	if _, err := send("quote"); err == nil || !strings.Contains(err.Error(), "too many A2A tasks") {
		t.Fatalf("a second task while the first runs: %v, want it refused as too many tasks", err)
	}
	if _, err := c.CancelTask(actx, &a2a.CancelTaskRequest{ID: slow.ID}); err != nil {
		t.Fatal(err)
	}
	done, err := send("quote")
	if err != nil || done.Status.State != a2a.TaskStateCompleted {
		t.Fatalf("a task once the first ended: %+v, %v; want it done", done, err)
	}
	if _, err := c.GetTask(actx, &a2a.GetTaskRequest{ID: slow.ID}); !errors.Is(err, a2a.ErrTaskNotFound) {
		t.Errorf("the ended task after it made room: %v, want task not found", err)
	}
	list, err := c.ListTasks(actx, &a2a.ListTasksRequest{})
	if err != nil || list.TotalSize != 1 {
		t.Errorf("ListTasks: %+v, %v; want the one task kept", list, err)
	}
}

// The node's policy decides before any agent code runs: a skill the
// gateway's requesting agent may not request ends the A2A task rejected,
// with the policy's reason, and no call goes out.
func TestGatewayRequestsPassThePolicy(t *testing.T) {
	pol, err := policy.Parse([]byte("agents:\n  \"*\":\n    request: [slow]\n"), "test policy")
	if err != nil {
		t.Fatal(err)
	}
	gm := newGatewayMesh(t, nil)
	if err := gm.nodes[0].SwapPolicy(pol, "test policy"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, actx := restClient(t, ctx, gm.url)
	res, err := c.SendMessage(actx, &a2a.SendMessageRequest{Message: quoteMessage("quote", map[string]any{"kg": 1})})
	if err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
	task, ok := res.(*a2a.Task)
	if !ok || task.Status.State != a2a.TaskStateRejected || task.Status.Message == nil || !strings.Contains(task.Status.Message.Parts[0].Text(), "refused") {
		t.Fatalf("SendMessage a skill the policy forbids: %#v, want the task rejected with the reason", res)
	}
	if n := len(gm.nodes[1].Tasks()); n != 0 {
		t.Errorf("the contractor's node saw %d tasks, want none", n)
	}

	// A gateway that requests as an agent the policy lets ask for quote.
	a, err := nodetest.NewAgent("a2aclient")
	if err != nil {
		t.Fatal(err)
	}
	if err := gm.nodes[0].HostAgent(a); err != nil {
		t.Fatal(err)
	}
	pol, err = policy.Parse([]byte("agents:\n  \"*\":\n    request: [slow]\n  a2aclient:\n    request: [quote]\n"), "test policy")
	if err != nil {
		t.Fatal(err)
	}
	if err := gm.nodes[0].SwapPolicy(pol, "test policy"); err != nil {
		t.Fatal(err)
	}
	if _, err := parleya2a.New(parleya2a.Config{Node: gm.nodes[0], Token: testToken, Agent: "nobody"}); err == nil {
		t.Error("a gateway requesting as an agent the node does not host was built")
	}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	gw, err := parleya2a.New(parleya2a.Config{Node: gm.nodes[0], Token: testToken, BaseURL: srv.URL, Export: []string{"quote"}, Agent: "a2aclient"})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/", gw.Handler())
	c2, _, actx2 := restClient(t, ctx, srv.URL)
	res, err = c2.SendMessage(actx2, &a2a.SendMessageRequest{Message: quoteMessage("quote", map[string]any{"kg": 1})})
	if task, ok := res.(*a2a.Task); err != nil || !ok || task.Status.State != a2a.TaskStateCompleted {
		t.Fatalf("SendMessage as a2aclient: %#v, %v; want it completed", res, err)
	}
}

// Close cancels the tasks still running (a2a-go runs them detached from
// their requests) and returns once they have ended: their parley tasks
// end canceled, on both nodes.
func TestGatewayCloseCancelsRunningTasks(t *testing.T) {
	gm := newGatewayMesh(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, actx := restClient(t, ctx, gm.url)
	if _, err := c.SendMessage(actx, &a2a.SendMessageRequest{Message: quoteMessage("slow", map[string]any{}),
		Config: &a2a.SendMessageConfig{ReturnImmediately: true}}); err != nil {
		t.Fatal(err)
	}
	<-gm.started
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	if err := gm.gw.Close(cctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, n := range gm.nodes {
		waitFor(t, ctx, "the slow task to end canceled", func() bool {
			for _, ti := range n.Tasks() {
				if ti.Capability == "slow" {
					return ti.State == negotiation.StateCanceled
				}
			}
			return false
		})
	}
}
