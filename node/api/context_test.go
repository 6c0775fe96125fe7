package api

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node/nodetest"
	"github.com/parleynet/parley/sharedctx"
)

func callBody(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestExternalAgentSharedContext: an external agent holding a task reads
// the keys its step declared and writes one over the API, with its own
// token; undeclared keys are 403, a key not set 404, bad input 400, and
// once the task is over 409. Its write reaches the requester signed by
// the external agent's key.
func TestExternalAgentSharedContext(t *testing.T) {
	m := nodetest.NewMesh(t, 2)
	req := m.Nodes[0]
	ts, _ := newTestServer(t, m.Nodes[1])
	code, body := post(t, ts.URL, PathExternalAgents, `{"name":"ext","capabilities":["stock"]}`)
	if code != http.StatusCreated {
		t.Fatalf("register: %d %s", code, body)
	}
	var reg ExternalRegistration
	_ = json.Unmarshal([]byte(body), &reg)
	ctx := ctxT(t)
	evs, stop := events(t, ctx, ts.URL, "ext")
	defer stop()
	waitTopicPeer(t, req, "stock", m.Nodes[1].ID())

	owner, _ := req.Agent("")
	home, err := req.SharedContext().Open("wf-1", owner)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = home.Put("order", json.RawMessage(`{"sku":"42","qty":3}`))
	_, _ = home.Put("secret", json.RawMessage(`"margin"`))
	done := make(chan *negotiation.Outcome, 1)
	go func() {
		step := sharedctx.WithStep(ctx, sharedctx.Step{Workflow: "wf-1", Reads: []string{"order", "stock.*"}, Writes: []string{"stock.*"}})
		out, _ := req.Request(step, negotiation.Need{Capability: "stock"}, negotiation.WithBidWindow(300*time.Millisecond), negotiation.WithTimeout(15*time.Second))
		done <- out
	}()
	task := next(t, evs, "call").Task
	if code, body := post(t, ts.URL, PathExternalBid, `{"agent":"ext","task":"`+task+`","price":1,"eta":"10ms"}`); code != http.StatusOK {
		t.Fatalf("bid: %d %s", code, body)
	}
	next(t, evs, "award")
	base := ts.URL + "/v1/external/context/" + task
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"GET", "", "", http.StatusOK, `"key":"order","value":{"sku":"42","qty":3}`},
		{"GET", "/order", "", http.StatusOK, `"writer":"` + string(owner.ID) + `"`},
		{"GET", "/secret", "", http.StatusForbidden, "may not read key"},
		{"GET", "/stock.level", "", http.StatusNotFound, "not set"},
		{"PUT", "/stock.level", `{"on_hand":7}`, http.StatusOK, `"applied":true`},
		{"GET", "/stock.level", "", http.StatusOK, `"value":{"on_hand":7}`},
		{"PUT", "/secret", `"0%"`, http.StatusForbidden, "may not write key"},
		{"PUT", "/bad!key", `1`, http.StatusBadRequest, "invalid context key"},
		{"PUT", "/stock.x", `{not json`, http.StatusBadRequest, ""},
		{"PUT", "/stock.x", `"` + strings.Repeat("x", 20<<10) + `"`, http.StatusRequestEntityTooLarge, ""},
	} {
		code, body := callBody(t, tc.method, base+tc.path, reg.Token, tc.body)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s = %d %.300s; want %d with %s", tc.method, tc.path, code, body, tc.code, tc.want)
		}
	}
	if code, body := callBody(t, "GET", ts.URL+"/v1/external/context/other-task", reg.Token, ""); code != http.StatusConflict {
		t.Errorf("GET of a task not held = %d %s", code, body)
	}
	if code, body := post(t, ts.URL, PathExternalResult, `{"agent":"ext","task":"`+task+`","result":"ok"}`); code != http.StatusOK {
		t.Fatalf("result: %d %s", code, body)
	}
	if out := <-done; out == nil || out.State != negotiation.StateCompleted {
		t.Fatalf("outcome %+v", out)
	}
	e, ok := home.Get("stock.level")
	if !ok || e.Writer != reg.ID || string(e.Value) != `{"on_hand":7}` {
		t.Fatalf("requester's stock.level = %+v; want the external agent's write", e)
	}
	if _, err := sharedctx.OpenStored(e.Signed, 0); err != nil {
		t.Fatal(err)
	}
	if code, _ := callBody(t, "GET", base, reg.Token, ""); code != http.StatusConflict {
		t.Errorf("GET after the task = %d, want 409", code)
	}
}
