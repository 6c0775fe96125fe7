package home

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTemplateKeysParse: every setting config.yaml's template shows,
// commented out, is one the file may set. Each commented block (a "# key:"
// line and the indented lines under it) is uncommented and parsed alone.
func TestTemplateKeysParse(t *testing.T) {
	start := regexp.MustCompile(`^# ([a-z_]+):`)
	lines := strings.Split(defaultConfigYAML, "\n")
	blocks := 0
	for i := 0; i < len(lines); i++ {
		m := start.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		block := []string{strings.TrimPrefix(lines[i], "# ")}
		for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "#  ") {
			i++
			block = append(block, strings.TrimPrefix(lines[i], "# "))
		}
		blocks++
		if _, err := parseConfig("/h/config.yaml", []byte(strings.Join(block, "\n")+"\n")); err != nil {
			t.Errorf("the template's %s block does not parse: %v\n%s", m[1], err, strings.Join(block, "\n"))
		}
	}
	if blocks < 10 {
		t.Fatalf("found %d commented blocks in the template; the test no longer reads it right", blocks)
	}
}

// TestTopLevelSettingsReachTheConfig: the settings outside any section are
// read, not only accepted.
func TestTopLevelSettingsReachTheConfig(t *testing.T) {
	c, err := parseConfig("/h/config.yaml", []byte("dial_private_addrs: true\nrelay_filter: true\naudit_failure: continue\nadmission: {asks: 3}\nnegotiation: {max_bid_window: 3s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.DialPrivateAddrs || !c.RelayFilter || c.AuditFailure != "continue" || c.Admission.Asks != 3 || c.Negotiation.MaxBidWindow != 3*time.Second {
		t.Fatalf("config %+v: want every top-level setting set", c)
	}
}
