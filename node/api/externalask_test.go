package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node/nodetest"
)

// TestExternalAgentAsks: an external agent that holds a task asks its
// requester through POST /v1/external/ask; the requester's node shows the
// question and its answer (POST /v1/tasks/{id}/input on that node) is what
// the ask returns; the agent's result uses it. Bad asks get 400 and 409.
func TestExternalAgentAsks(t *testing.T) {
	m := nodetest.NewMesh(t, 2)
	ts1, _ := newTestServer(t, m.Nodes[1])
	_, c0 := newTestServer(t, m.Nodes[0])
	if code, body := post(t, ts1.URL, PathExternalAgents, `{"name":"ext","capabilities":["job"]}`); code != http.StatusCreated {
		t.Fatalf("register: %d %s", code, body)
	}
	ctx := ctxT(t)
	evs, stop := events(t, ctx, ts1.URL, "ext")
	defer stop()
	waitTopicPeer(t, m.Nodes[0], "job", m.Nodes[1].ID())
	done := make(chan *negotiation.Outcome, 1)
	go func() {
		out, _ := m.Nodes[0].Request(ctx, negotiation.Need{Capability: "job", Input: json.RawMessage(`{"item":"shirt"}`)},
			negotiation.WithBidWindow(300*time.Millisecond), negotiation.WithTimeout(15*time.Second))
		done <- out
	}()
	call := next(t, evs, "call")
	if code, body := post(t, ts1.URL, PathExternalBid, `{"agent":"ext","task":"`+call.Task+`","price":1}`); code != http.StatusOK {
		t.Fatalf("bid: %d %s", code, body)
	}
	next(t, evs, "award")
	for _, tc := range []struct {
		body string
		code int
	}{
		{`{"agent":"ext","task":"` + call.Task + `","note":""}`, http.StatusBadRequest},
		{`{"agent":"ext","task":"` + call.Task + `","note":"x","schema":{bad}}`, http.StatusBadRequest},
		{`{"agent":"ext","task":"not-held","note":"which size?"}`, http.StatusConflict},
		{`{"agent":"ext","task":"` + call.Task + `","note":"` + strings.Repeat("?", negotiation.DefaultMaxQuestion+1) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		if code, body := post(t, ts1.URL, PathExternalAsk, tc.body); code != tc.code {
			t.Errorf("ask %.60s… = %d %s, want %d", tc.body, code, body, tc.code)
		}
	}
	type reply struct {
		code int
		body string
	}
	asked := make(chan reply, 1)
	go func() {
		code, body := post(t, ts1.URL, PathExternalAsk, `{"agent":"ext","task":"`+call.Task+`","note":"which size?","schema":{"enum":["S","M"]}}`)
		asked <- reply{code, body}
	}()
	ti := waitState(t, c0, negotiation.RoleRequester, negotiation.StateInputRequired)
	if ti.Question == nil || ti.Question.Note != "which size?" {
		t.Fatalf("the requester's task: %+v, want the question", ti)
	}
	if _, err := c0.AnswerTask(ctx, ti.Task, json.RawMessage(`"M"`)); err != nil {
		t.Fatalf("answer: %v", err)
	}
	var r reply
	select {
	case r = <-asked:
	case <-ctx.Done():
		t.Fatal("the ask never returned")
	}
	var ans ExternalAnswer
	if r.code != http.StatusOK || json.Unmarshal([]byte(r.body), &ans) != nil || string(ans.Answer) != `"M"` || ans.Task != call.Task {
		t.Fatalf("ask = %d %s, want 200 with the answer", r.code, r.body)
	}
	if code, body := post(t, ts1.URL, PathExternalResult, `{"agent":"ext","task":"`+call.Task+`","result":{"size":"M"}}`); code != http.StatusOK {
		t.Fatalf("result: %d %s", code, body)
	}
	select {
	case out := <-done:
		if out == nil || out.State != negotiation.StateCompleted || string(out.Result) != `{"size":"M"}` {
			t.Fatalf("outcome %+v, want completed with the answer", out)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the task never ended")
	}
}
