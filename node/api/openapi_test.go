package api

import (
	"io"
	"net/http"
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
