package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node/nodetest"
)

// TestAnswerTask: a winner's question makes the task input-required with
// the question in a streamed request's update and in GET /v1/tasks/{id}; POST /v1/tasks/{id}/input answers
// it (the winner's result uses the answer), and the wrong asks get 400,
// 404, 409 and 413. The contract checks every answer.
func TestAnswerTask(t *testing.T) {
	m, _ := echoMesh(t, nodetest.AskSize)
	ts, c := newTestServer(t, m.Nodes[0])
	ctx := ctxT(t)
	type result struct {
		out *negotiation.Outcome
		err error
	}
	res := make(chan result, 1)
	asked := make(chan negotiation.Update, 1)
	go func() { // streamed: the contract checks the update that carries the question
		out, err := c.RequestStream(ctx, echoBody(), func(u negotiation.Update) error {
			if u.State == negotiation.StateInputRequired {
				asked <- u
			}
			return nil
		})
		res <- result{out, err}
	}()
	select {
	case u := <-asked:
		if u.Question == nil || u.Question.Note != "which size?" || u.Question.Ask != 1 {
			t.Fatalf("the streamed input-required update %+v, want the question", u)
		}
	case r := <-res:
		t.Fatalf("the task ended before its winner asked: %v %+v", r.err, r.out)
	}
	ti := waitState(t, c, negotiation.RoleRequester, negotiation.StateInputRequired)
	got, err := c.Task(ctx, ti.Task)
	if err != nil || got.Question == nil || got.Question.Note != "which size?" || string(got.Question.Schema) != `{"enum":["S","M"]}` {
		t.Fatalf("GET the task: %+v, %v; want its question", got, err)
	}
	status := func(err error) int {
		var ae *Error
		if errors.As(err, &ae) {
			return ae.Status
		}
		return 0
	}
	if _, err := c.AnswerTask(ctx, "nosuchtask", json.RawMessage(`"M"`)); status(err) != http.StatusNotFound {
		t.Errorf("answer an unknown task: %v, want 404", err)
	}
	if _, err := c.AnswerTask(ctx, ti.Task, json.RawMessage(`"`+strings.Repeat("x", negotiation.DefaultMaxAnswer)+`"`)); status(err) != http.StatusRequestEntityTooLarge {
		t.Errorf("answer over the bound: %v, want 413", err)
	}
	for _, body := range []string{`{}`, `{"input":null}`, `{"input":"M","more":1}`} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/tasks/"+ti.Task+"/input", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST input %s: %d, want 400", body, resp.StatusCode)
		}
	}
	after, err := c.AnswerTask(ctx, ti.Task, json.RawMessage(`"M"`))
	// Read after the answer went: the winner may have finished already.
	if err != nil || after.State != negotiation.StateWorking && after.State != negotiation.StateCompleted {
		t.Fatalf("AnswerTask: %+v, %v; want the task working (or done)", after, err)
	}
	if _, err := c.AnswerTask(ctx, ti.Task, json.RawMessage(`"S"`)); status(err) != http.StatusConflict {
		t.Errorf("a second answer: %v, want 409", err)
	}
	r := <-res
	if r.err != nil || string(r.out.Result) != `{"size":"M"}` {
		t.Fatalf("Request: %v, result %s; want the answer used", r.err, r.out.Result)
	}
}
