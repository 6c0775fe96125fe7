package home

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The template's a2a block, uncommented, parses and reaches the config.
func TestTemplateA2ABlock(t *testing.T) {
	i := strings.Index(defaultConfigYAML, "\n# a2a:\n")
	if i < 0 {
		t.Fatal("the template has no a2a block")
	}
	var block []string
	for _, l := range strings.Split(defaultConfigYAML[i+1:], "\n") {
		if !strings.HasPrefix(l, "# ") {
			break
		}
		block = append(block, strings.TrimPrefix(l, "# "))
	}
	c, err := parseConfig("/h/config.yaml", []byte(strings.Join(block, "\n")+"\n"))
	if err != nil {
		t.Fatalf("the template's a2a block does not parse: %v\n%s", err, strings.Join(block, "\n"))
	}
	if c.A2A.Listen != "127.0.0.1:7070" || c.A2A.MaxTasks != 1000 || len(c.A2A.Export) != 1 {
		t.Errorf("a2a block read as %+v", c.A2A)
	}
	c, err = parseConfig("/h/config.yaml", []byte("agents:\n  - name: default\n  - name: translator\n    a2a: https://translator.example/\n    price: 2\n    eta: 5s\n"))
	if err != nil {
		t.Fatalf("the template's a2a agent does not parse: %v", err)
	}
	if a := c.Agents[1]; a.A2A != "https://translator.example/" || a.Price != 2 || a.ETA != 5*time.Second || !a.Contractor() {
		t.Errorf("a2a agent read as %+v", a)
	}
}

// Bad a2a settings are refused naming the file, the line and the field.
func TestA2AConfigRefused(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"a2a:\n  listen: nowhere\n", "a2a: listen"},
		{"a2a:\n  url: ftp://x\n", "a2a: url"},
		{"a2a:\n  grpc_listen: 7071\n", "a2a: grpc_listen"},
		{"a2a:\n  export: [\"Not Valid\"]\n", "a2a: export"},
		{"a2a:\n  max_tasks: -1\n", "must not be negative"},
		{"a2a:\n  tokens: x\n", "field tokens not found"},
		{"a2a:\n  agent: nobody\n", `a2a: agent "nobody" is not one of the agents`},
		{"agents:\n  - name: r\n    a2a: mailto:x\n", "line 2: agents: r: a2a \"mailto:x\""},
		{"agents:\n  - name: r\n    a2a: http://x/\n    exec: [sh]\n", "both exec and a2a"},
		{"agents:\n  - name: r\n    a2a: http://x/\n    price: -1\n", "price -1"},
		{"agents:\n  - name: r\n    a2a: http://x/\n    eta: -1s\n", "eta -1s"},
		{"agents:\n  - name: r\n    price: 3\n", "price, eta and a2a_token_file are for an agent backed by a remote A2A agent"},
	} {
		_, err := parseConfig("/h/config.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "/h/config.yaml") {
			t.Errorf("%q: %v, want an error naming the file and saying %q", tc.yaml, err, tc.want)
		}
	}
}

// The A2A token is generated once and then kept across restarts.
func TestA2ATokenPersists(t *testing.T) {
	h := &Home{Dir: t.TempDir()}
	tok, err := h.A2AToken()
	if err != nil || len(tok) < 32 {
		t.Fatalf("A2AToken: %q, %v", tok, err)
	}
	st, err := os.Stat(filepath.Join(h.Dir, A2ATokenFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("a2a.token: %v, mode %v; want 0600", err, st.Mode())
	}
	again, err := h.A2AToken()
	if err != nil || again != tok {
		t.Fatalf("second A2AToken: %q, %v; want the same token", again, err)
	}
	h.Config.A2A.TokenFile = "missing.token"
	if _, err := h.A2AToken(); err == nil || !strings.Contains(err.Error(), "a2a.token_file") {
		t.Errorf("a configured token file that is missing: %v, want an error naming a2a.token_file", err)
	}
}
