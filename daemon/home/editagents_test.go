package home

import (
	"strings"
	"testing"
	"time"
)

func TestEditAgents(t *testing.T) {
	quoter := &AgentConfig{Name: "quoter", Capabilities: []string{"quote"}, Exec: []string{"sh", "quote.sh"}, Timeout: 30 * time.Second}
	for _, tc := range []struct {
		name, in string
		add      *AgentConfig
		remove   string
		want     []string // substrings of the result
		lacks    []string
	}{
		{"add to the template", defaultConfigYAML, quoter, "",
			[]string{"- name: default\n", "- name: quoter\n    capabilities: [quote]\n    exec: [sh, quote.sh]\n    timeout: 30s\n", "# The local HTTP API"}, nil},
		{"add without an agents list", "log_level: warn\n", quoter, "",
			[]string{"log_level: warn\n", "agents:\n  - name: default\n  - name: quoter\n"}, nil},
		{"remove", "agents:\n  - name: default\n  - name: quoter # the shell one\n    exec: [sh, q.sh]\n    capabilities: [quote]\n", nil, "quoter",
			[]string{"agents:\n  - name: default\n"}, []string{"quoter"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := EditAgents([]byte(tc.in), tc.add, tc.remove)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("result lacks %q:\n%s", w, out)
				}
			}
			for _, l := range tc.lacks {
				if strings.Contains(string(out), l) {
					t.Errorf("result still has %q:\n%s", l, out)
				}
			}
		})
	}
	if _, err := EditAgents([]byte("agents: {name: x}\n"), quoter, ""); err == nil || !strings.Contains(err.Error(), "want a list") {
		t.Errorf("agents as a mapping: %v, want an error saying a list is wanted", err)
	}
}
