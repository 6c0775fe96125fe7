package a2a_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/a2aproject/a2a-go/v2/a2a"

	parleya2a "github.com/parleynet/parley/interop/a2a"
)

// sendBody is a JSON-RPC SendMessage whose params are params.
func sendBody(params string) string {
	return `{"jsonrpc":"2.0","id":7,"method":"SendMessage","params":` + params + `}`
}

func msgParams(parts, meta string) string {
	return `{"message":{"messageId":"m1","role":"ROLE_USER","parts":` + parts + `,"metadata":` + meta + `}}`
}

// Bad input gets the protocol's error, over both bindings, and changes
// nothing: no task is kept and the mesh sees no request.
func TestGatewayRefusesBadInput(t *testing.T) {
	gm := newGatewayMesh(t, func(c *parleya2a.Config) { c.MaxBody = 4096; c.MaxInput = 512 })
	bearer := "Bearer " + testToken
	big := `"` + strings.Repeat("x", 600) + `"`
	for _, tc := range []struct {
		name       string
		path, auth string
		body       string
		status     int    // the HTTP status
		code       int    // the JSON-RPC error code (JSON-RPC cases)
		want       string // in the error's message
	}{
		{"no token", "/jsonrpc", "", sendBody(msgParams(`[{"data":{"kg":1}}]`, `{"skill":"quote"}`)), 200, -31401, "bearer token"},
		{"wrong token", "/jsonrpc", "Bearer nope-nope-nope-nope", sendBody(msgParams(`[{"data":{}}]`, `{"skill":"quote"}`)), 200, -31401, "bearer token"},
		{"token without Bearer", "/jsonrpc", testToken, sendBody(msgParams(`[{"data":{}}]`, `{"skill":"quote"}`)), 200, -31401, "bearer token"},
		{"malformed JSON", "/jsonrpc", bearer, `{"jsonrpc":"2.0","id":1,"method":`, 200, -32700, ""},
		{"not JSON-RPC 2.0", "/jsonrpc", bearer, `{"jsonrpc":"1.0","id":1,"method":"GetTask","params":{"id":"x"}}`, 200, -32600, ""},
		{"unknown method", "/jsonrpc", bearer, `{"jsonrpc":"2.0","id":1,"method":"tasks/explode","params":{}}`, 200, -32601, ""},
		{"skill nobody offers", "/jsonrpc", bearer, sendBody(msgParams(`[{"data":{}}]`, `{"skill":"teleport"}`)), 200, -32602, "nobody offers it here; this node offers quote, slow"},
		{"no skill named", "/jsonrpc", bearer, sendBody(msgParams(`[{"data":{}}]`, `{}`)), 200, -32602, "name a skill"},
		{"skill not a string", "/jsonrpc", bearer, sendBody(msgParams(`[{"data":{}}]`, `{"skill":3}`)), 200, -32602, "want a skill ID"},
		{"input over the limit", "/jsonrpc", bearer, sendBody(msgParams(`[{"data":{"x":`+big+`}}]`, `{"skill":"quote"}`)), 200, -32602, "over the gateway's limit of 512 bytes"},
		{"file part", "/jsonrpc", bearer, sendBody(msgParams(`[{"url":"http://x/f.pdf"}]`, `{"skill":"quote"}`)), 200, -32602, "is a file"},
		{"no parts", "/jsonrpc", bearer, sendBody(msgParams(`[]`, `{"skill":"quote"}`)), 200, -32602, ""},
		{"negative budget", "/jsonrpc", bearer, sendBody(msgParams(`[{"data":{}}]`, `{"skill":"quote","budget":-1}`)), 200, -32602, "budget"},
		{"bad bid window", "/jsonrpc", bearer, sendBody(msgParams(`[{"data":{}}]`, `{"skill":"quote","bid_window":"-1s"}`)), 200, -32602, "bid_window"},
		{"bad timeout", "/jsonrpc", bearer, sendBody(msgParams(`[{"data":{}}]`, `{"skill":"quote","timeout":"soon"}`)), 200, -32602, "timeout"},
		{"body over the limit", "/jsonrpc", bearer, sendBody(msgParams(`[{"text":"`+strings.Repeat("y", 5000)+`"}]`, `{"skill":"quote"}`)), 413, -32600, "over the gateway's limit of 4096 bytes"},
		{"unknown task", "/jsonrpc", bearer, `{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"nope"}}`, 200, -32001, ""},
		{"REST: no token", "/rest/message:send", "", msgParams(`[{"data":{}}]`, `{"skill":"quote"}`), 401, 0, "bearer token"},
		{"REST: skill nobody offers", "/rest/message:send", bearer, msgParams(`[{"data":{}}]`, `{"skill":"teleport"}`), 400, 0, "nobody offers it"},
		{"REST: malformed JSON", "/rest/message:send", bearer, `{"message":`, 400, 0, ""},
		{"REST: body over the limit", "/rest/message:send", bearer, msgParams(`[{"text":"`+strings.Repeat("y", 5000)+`"}]`, `{"skill":"quote"}`), 413, 0, "over the gateway's limit"},
		{"REST: unknown task", "/rest/tasks/nope", bearer, "", 404, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := http.MethodPost
			if tc.body == "" {
				method = http.MethodGet
			}
			req, err := http.NewRequest(method, gm.url+tc.path, bytes.NewBufferString(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("HTTP %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if !strings.Contains(string(body), tc.want) {
				t.Errorf("answer %s: want it to say %q", body, tc.want)
			}
			if tc.code == 0 {
				return
			}
			var rpc struct {
				Error *struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(body, &rpc); err != nil || rpc.Error == nil || rpc.Error.Code != tc.code {
				t.Errorf("answer %s: want JSON-RPC error %d", body, tc.code)
			}
		})
	}
	// Nothing was kept, nothing reached the mesh.
	req, _ := http.NewRequest(http.MethodPost, gm.url+"/jsonrpc", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ListTasks","params":{}}`))
	req.Header.Set("Authorization", bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var lr struct {
		Result a2a.ListTasksResponse `json:"result"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&lr)
	resp.Body.Close()
	if lr.Result.TotalSize != 0 {
		t.Errorf("the gateway kept %d tasks from bad input", lr.Result.TotalSize)
	}
	if n := len(gm.nodes[0].Tasks()); n != 0 {
		t.Errorf("bad input made %d parley tasks", n)
	}
	// The refusals are the admission layer's, counted by entry and rule.
	if got := denied(t, gm, "token"); got != 4 {
		t.Errorf("parley_admission_denied_total{entry=a2a,rule=token} = %v, want 4 (three JSON-RPC, one REST)", got)
	}
	if got := denied(t, gm, "body_size"); got != 2 {
		t.Errorf("parley_admission_denied_total{entry=a2a,rule=body_size} = %v, want 2", got)
	}
}

func denied(t *testing.T, gm *gatewayMesh, rule string) float64 {
	t.Helper()
	mfs, err := gm.nodes[0].Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "parley_admission_denied_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["entry"] == "a2a" && labels["rule"] == rule {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
