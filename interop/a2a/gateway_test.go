package a2a_test

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient"
	"github.com/a2aproject/a2a-go/v2/a2aclient/agentcard"

	"github.com/parleynet/parley/negotiation"
)

// restClient is a2a-go's client on the card's REST interface only, with
// the token.
func restClient(t *testing.T, ctx context.Context, base string) (*a2aclient.Client, *a2a.AgentCard, context.Context) {
	t.Helper()
	card, err := agentcard.DefaultResolver.Resolve(ctx, base)
	if err != nil {
		t.Fatalf("resolve card: %v", err)
	}
	var rest []*a2a.AgentInterface
	for _, i := range card.SupportedInterfaces {
		if i.ProtocolBinding == a2a.TransportProtocolHTTPJSON {
			rest = append(rest, i)
		}
	}
	if len(rest) != 1 {
		t.Fatalf("card interfaces %+v: want one REST interface", card.SupportedInterfaces)
	}
	c, err := a2aclient.NewFromEndpoints(ctx, rest)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Destroy() })
	return c, card, a2aclient.AttachServiceParams(ctx, a2aclient.ServiceParams{"Authorization": {"Bearer " + testToken}})
}

func quoteMessage(skill string, data any) *a2a.Message {
	m := a2a.NewMessage(a2a.MessageRoleUser, a2a.NewDataPart(data))
	m.Metadata = map[string]any{"skill": skill, "bid_window": "200ms"} // one bidder: no need to wait a second
	return m
}

// a2a-go's client over REST: the card, a streamed task a mesh agent wins
// and completes, the task read back and listed, a second task canceled.
func TestGatewayWithA2AGoClientOverREST(t *testing.T) {
	gm := newGatewayMesh(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, card, actx := restClient(t, ctx, gm.url)
	var skills []string
	for _, s := range card.Skills {
		skills = append(skills, s.ID)
	}
	if strings.Join(skills, ",") != "quote,slow" {
		t.Errorf("card skills %v, want quote and slow", skills)
	}
	if _, ok := card.SecuritySchemes["bearer"]; !ok || len(card.SecurityRequirements) != 1 {
		t.Errorf("card security %+v / %+v: want the bearer scheme, required", card.SecuritySchemes, card.SecurityRequirements)
	}

	var states []a2a.TaskState
	var notes []string
	var task a2a.TaskID
	var result map[string]any
	for ev, err := range c.SendStreamingMessage(actx, &a2a.SendMessageRequest{Message: quoteMessage("quote", map[string]any{"kg": 2})}) {
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		switch e := ev.(type) {
		case *a2a.Task:
			task = e.ID
			states = append(states, e.Status.State)
		case *a2a.TaskStatusUpdateEvent:
			states = append(states, e.Status.State)
			if e.Status.Message != nil && len(e.Status.Message.Parts) > 0 {
				notes = append(notes, e.Status.Message.Parts[0].Text())
			}
		case *a2a.TaskArtifactUpdateEvent:
			result, _ = e.Artifact.Parts[0].Data().(map[string]any)
		}
	}
	if len(states) == 0 || states[0] != a2a.TaskStateSubmitted || states[len(states)-1] != a2a.TaskStateCompleted {
		t.Fatalf("states %v: want submitted … completed", states)
	}
	if got := strings.Join(notes, "|"); !strings.Contains(got, "quoter won") || !strings.Contains(got, "weighing") || !strings.Contains(got, "pricing") {
		t.Errorf("status notes %q: want the winner and its two progress notes", got)
	}
	if result["price"] != 5.0 || result["currency"] != "EUR" {
		t.Errorf("artifact %v, want the quoter's price for 2 kg", result)
	}

	got, err := c.GetTask(actx, &a2a.GetTaskRequest{ID: task})
	if err != nil {
		t.Fatalf("GetTask: %v", err)
	}
	if got.Status.State != a2a.TaskStateCompleted || len(got.Artifacts) != 1 || got.Metadata == nil && got.Artifacts[0].Metadata["winner_name"] != "quoter" {
		t.Errorf("GetTask: state %s, %d artifacts; want completed with the result", got.Status.State, len(got.Artifacts))
	}
	if wn := got.Artifacts[0].Metadata["winner_name"]; wn != "quoter" {
		t.Errorf("artifact's winner_name %v, want quoter", wn)
	}
	list, err := c.ListTasks(actx, &a2a.ListTasksRequest{})
	if err != nil || len(list.Tasks) != 1 || list.Tasks[0].ID != task {
		t.Errorf("ListTasks: %+v, %v; want the one task", list, err)
	}

	// A client's W3C trace context makes the negotiation part of its trace.
	const caller = "4bf92f3577b34da6a3ce929d0e0e4736"
	tctx := a2aclient.AttachServiceParams(ctx, a2aclient.ServiceParams{"Authorization": {"Bearer " + testToken},
		"traceparent": {"00-" + caller + "-00f067aa0ba902b7-01"}})
	traced, err := c.SendMessage(tctx, &a2a.SendMessageRequest{Message: quoteMessage("quote", map[string]any{"kg": 1})})
	if err != nil {
		t.Fatalf("SendMessage with a traceparent: %v", err)
	}
	if tt, ok := traced.(*a2a.Task); !ok || tt.Status.State != a2a.TaskStateCompleted {
		t.Fatalf("SendMessage with a traceparent = %+v, want a completed task", traced)
	} else if pt, _ := tt.Artifacts[0].Metadata["parley_task"].(string); pt == "" {
		t.Errorf("artifact metadata %v: want the parley task", tt.Artifacts[0].Metadata)
	} else if got := gm.nodes[0].Tracing().Ring().Lookup(pt, 0).Traces; len(got) != 1 || got[0] != caller {
		t.Errorf("parley task %s of a call traced %s is in traces %v", pt, caller, got)
	}

	// A second task, on an agent that works until canceled.
	res, err := c.SendMessage(actx, &a2a.SendMessageRequest{Message: quoteMessage("slow", map[string]any{}),
		Config: &a2a.SendMessageConfig{ReturnImmediately: true}})
	if err != nil {
		t.Fatalf("SendMessage slow: %v", err)
	}
	slow, ok := res.(*a2a.Task)
	if !ok {
		t.Fatalf("SendMessage returned %T, want a task", res)
	}
	select {
	case <-gm.started:
	case <-ctx.Done():
		t.Fatal("the slow task never started")
	}
	// Resubscribe to it: the subscription sees the task, then its end.
	subscribed := make(chan []a2a.TaskState, 1)
	go func() {
		var seen []a2a.TaskState
		for ev, err := range c.SubscribeToTask(actx, &a2a.SubscribeToTaskRequest{ID: slow.ID}) {
			if err != nil {
				break
			}
			switch e := ev.(type) {
			case *a2a.Task:
				seen = append(seen, e.Status.State)
			case *a2a.TaskStatusUpdateEvent:
				seen = append(seen, e.Status.State)
			}
			if len(seen) == 1 {
				subscribed <- nil // the subscription is in place
			}
		}
		subscribed <- seen
	}()
	select {
	case <-subscribed:
	case <-ctx.Done():
		t.Fatal("SubscribeToTask gave nothing")
	}
	canceled, err := c.CancelTask(actx, &a2a.CancelTaskRequest{ID: slow.ID})
	if err != nil {
		t.Fatalf("CancelTask: %v", err)
	}
	if canceled.Status.State != a2a.TaskStateCanceled {
		t.Errorf("after CancelTask: %s, want canceled", canceled.Status.State)
	}
	select {
	case seen := <-subscribed:
		if len(seen) < 2 || seen[len(seen)-1] != a2a.TaskStateCanceled {
			t.Errorf("the resubscription saw %v, want the task and then canceled", seen)
		}
	case <-ctx.Done():
		t.Fatal("the resubscription never ended")
	}
	// The mesh's task ends canceled too, on both sides: the contractor
	// was told.
	for _, n := range gm.nodes {
		waitFor(t, ctx, "the parley task to end canceled", func() bool {
			for _, ti := range n.Tasks() {
				if ti.Capability == "slow" {
					return ti.State == negotiation.StateCanceled
				}
			}
			return false
		})
	}
}

func waitFor(t *testing.T, ctx context.Context, what string, ok func() bool) {
	t.Helper()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// A blocking SendMessage gets its end as one task (gateway's compact
// path): the same task, as GetTask shows it, as a streamed call's, but
// for the negotiating note a blocking client never sees.
func TestBlockingSendMessageTask(t *testing.T) {
	gm := newGatewayMesh(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, actx := restClient(t, ctx, gm.url)
	var streamed a2a.TaskID
	for ev, err := range c.SendStreamingMessage(actx, &a2a.SendMessageRequest{Message: quoteMessage("quote", map[string]any{"kg": 2})}) {
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		if tk, ok := ev.(*a2a.Task); ok {
			streamed = tk.ID
		}
	}
	res, err := c.SendMessage(actx, &a2a.SendMessageRequest{Message: quoteMessage("quote", map[string]any{"kg": 2})})
	if err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
	answered, ok := res.(*a2a.Task)
	if !ok {
		t.Fatalf("SendMessage = %T, want a task", res)
	}
	// shape is what a client reads of a task, without its IDs and times.
	shape := func(tk *a2a.Task) map[string]any {
		var history []string
		for _, m := range tk.History {
			if txt := m.Parts[0].Text(); !strings.HasPrefix(txt, "negotiating") {
				history = append(history, string(m.Role)+": "+txt+fmt.Sprint(m.Parts[0].Data()))
			}
		}
		var arts []string
		for _, a := range tk.Artifacts {
			arts = append(arts, fmt.Sprint(a.Name, a.Parts[0].Data(), a.Metadata["winner_name"], a.Metadata["price"]))
		}
		keys := slices.Sorted(maps.Keys(tk.Metadata))
		return map[string]any{"state": tk.Status.State, "status": tk.Status.Message.Parts[0].Text(), "history": history,
			"artifacts": arts, "metadata": keys, "winner": tk.Metadata["winner_name"]}
	}
	for _, id := range []a2a.TaskID{streamed, answered.ID} {
		got, err := c.GetTask(actx, &a2a.GetTaskRequest{ID: id})
		if err != nil {
			t.Fatalf("GetTask %s: %v", id, err)
		}
		if id == answered.ID && !reflect.DeepEqual(shape(got), shape(answered)) {
			t.Errorf("GetTask of the answered task:\n%v\nthe answer:\n%v", shape(got), shape(answered))
		}
		if s := shape(got); s["state"] != a2a.TaskStateCompleted || len(s["artifacts"].([]string)) != 1 || s["winner"] != "quoter" {
			t.Errorf("task %s: %v; want completed by the quoter with one artifact", id, s)
		}
	}
	st, _ := c.GetTask(actx, &a2a.GetTaskRequest{ID: streamed})
	if a, b := shape(st), shape(answered); !reflect.DeepEqual(a, b) {
		t.Errorf("the streamed task:\n%v\nthe blocking call's:\n%v\nwant the same", a, b)
	}
}
