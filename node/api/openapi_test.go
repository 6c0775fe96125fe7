package api

import (
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestOpenAPIDescribesEveryRoute keeps the OpenAPI document true: it is
// served without a token, parses, and lists every route and method the
// server answers, and no other.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	nodes := newTestNodes(t, 1)
	ts, _ := newTestServer(t, nodes[0])
	resp, err := http.Get(ts.URL + PathOpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s without a token: %d", PathOpenAPI, resp.StatusCode)
	}
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(body, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi.yaml: %v (version %q)", err, doc.OpenAPI)
	}
	s := NewServer(nodes[0], testToken)
	served := map[string]bool{}
	for _, p := range s.patterns {
		served[p] = true
		m, path, _ := strings.Cut(p, " ")
		if _, ok := doc.Paths[path][strings.ToLower(m)]; !ok {
			t.Errorf("openapi.yaml lacks %s %s", m, path)
		}
	}
	for path, ops := range doc.Paths {
		for op := range ops {
			if op == "parameters" {
				continue
			}
			if !served[strings.ToUpper(op)+" "+path] {
				t.Errorf("openapi.yaml documents %s %s, which the server does not serve", strings.ToUpper(op), path)
			}
		}
	}
}

// TestOpenAPIErrorCodes: the document's ErrorCode lists the codes errors.go
// defines, and every error response an operation documents under a status
// has an example whose code is that status's.
func TestOpenAPIErrorCodes(t *testing.T) {
	k := loadContract(t)
	_, codes, ok := k.lookup("/components/schemas/ErrorCode")
	if !ok {
		t.Fatal("no ErrorCode schema")
	}
	var documented []string
	for _, c := range codes["enum"].([]any) {
		documented = append(documented, c.(string))
	}
	var defined []string
	for _, c := range Codes() {
		defined = append(defined, string(c))
	}
	slices.Sort(documented)
	slices.Sort(defined)
	if !slices.Equal(documented, defined) {
		t.Fatalf("ErrorCode documents %v, errors.go defines %v", documented, defined)
	}
	for path, item := range k.doc["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			if method == "parameters" {
				continue
			}
			for status := range op.(map[string]any)["responses"].(map[string]any) {
				at := "/paths/" + escapePointer(path) + "/" + method + "/responses/" + status
				_, r, _ := k.lookup(at)
				content, _ := r["content"].(map[string]any) // none for a 202 or 204
				media, _ := content["application/json"].(map[string]any)
				ex, _ := media["example"].(map[string]any)
				code, isError := ex["code"].(string)
				if !isError {
					continue
				}
				if got := strconv.Itoa(Code(code).Status()); got != status {
					t.Errorf("%s %s: the %s answer's example has code %s, which is a %s", strings.ToUpper(method), path, status, code, got)
				}
			}
		}
	}
}

// TestContractCatchesDrift: the checker the API tests run on every answer
// fails answers the document does not allow.
func TestContractCatchesDrift(t *testing.T) {
	k := loadContract(t)
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	for _, tc := range []struct {
		name string
		x    exchange
		want string // in the error; "" for none
	}{
		{"good", exchange{method: "GET", pattern: "GET /v1/health", status: 200, header: jsonHeader, body: []byte(`{"live":true,"ready":true,"reasons":[]}`)}, ""},
		{"wrong type", exchange{method: "GET", pattern: "GET /v1/health", status: 200, header: jsonHeader, body: []byte(`{"live":"yes","ready":true,"reasons":[]}`)}, "/live"},
		{"missing field", exchange{method: "GET", pattern: "GET /v1/health", status: 200, header: jsonHeader, body: []byte(`{"live":true,"ready":true}`)}, "reasons"},
		{"undocumented status", exchange{method: "GET", pattern: "GET /v1/health", status: 418, header: jsonHeader, body: []byte(`{}`)}, "418"},
		{"undocumented operation", exchange{method: "PUT", pattern: "PUT /v1/health", status: 200, header: jsonHeader}, "not in the document"},
		{"wrong content type", exchange{method: "GET", pattern: "GET /v1/node", status: 200, header: http.Header{"Content-Type": {"text/plain"}}, body: []byte(`hi`)}, "Content-Type"},
		{"error without code", exchange{method: "GET", pattern: "GET /v1/node", status: 401, header: http.Header{"Content-Type": {"application/json"}, "Www-Authenticate": {"Bearer"}}, body: []byte(`{"error":"no token"}`)}, "code"},
		{"401 without WWW-Authenticate", exchange{method: "GET", pattern: "GET /v1/node", status: 401, header: jsonHeader, body: []byte(`{"error":"no token","code":"unauthorized"}`)}, "WWW-Authenticate"},
		{"unrouted, not an Error", exchange{status: 404, header: jsonHeader, body: []byte(`{"error":"x","code":"gone"}`)}, "/code"},
		{"request body off the schema", exchange{method: "POST", pattern: "POST /v1/intents", reqBody: []byte(`{"capability":"x"}`), status: 201, header: jsonHeader, body: []byte(`{}`)}, "payload"},
		{"an event off its schema", exchange{method: "GET", pattern: "GET /v1/external/events", status: 200, header: http.Header{"Content-Type": {"text/event-stream"}},
			body: []byte(": hi\n\nevent: cancel\ndata: {\"type\":\"cancel\"}\n\n")}, "task"},
		{"an event under another name", exchange{method: "GET", pattern: "GET /v1/external/events", status: 200, header: http.Header{"Content-Type": {"text/event-stream"}},
			body: []byte("event: call\ndata: {\"type\":\"cancel\",\"task\":\"t\"}\n\n")}, `type "cancel"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := k.check(tc.x)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("check: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
