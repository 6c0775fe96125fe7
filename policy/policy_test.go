package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Fixed IDs, also used in testdata/example.yaml.
const (
	peerA = "12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X"
	peerB = "12D3KooWH3uVF6wv47WnArKHk5p6cvgCJEb74UTmxztmQDc298L3"
	peerC = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
	peerD = "12D3KooWLJtG8fd2hkQzTn96MrLvThmnNQjTUFZwGEsLRz5EmSzc"

	agentA = "did:key:z6MktNWXFy7fn9kNfwfvD9e2rDK3RPetS4MRKtZH8AxQzg9y"
	agentB = "did:key:z6MkmgoN6DceCkjksTeZo42bhE9MdUpKSfdehRSfrWR9AQPV"
	agentC = "did:key:z6MkuBbLDXJVzgPqAFoZUXCkkSXLfDgyBhM6F5Y4Cj1cfJbF"
	agentD = "did:key:z6Mkpwn8ynHkrPdyAPUNQpZRY1EwhexfrSjozfREtGtMnj44"
)

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func TestLoadExample(t *testing.T) {
	p, err := Load(filepath.Join("testdata", "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Name(); got != filepath.Join("testdata", "example.yaml") {
		t.Errorf("Name = %q", got)
	}
	if len(p.agents) != 3 || len(p.peerAllow) != 2 || len(p.peerDeny) != 1 ||
		len(p.agentAllow) != 2 || len(p.agentDeny) != 1 || len(p.approvals) != 2 {
		t.Errorf("sections not all parsed: %+v", p)
	}
	if r := p.intentRate; r == nil || r.perSecond != 10 || r.burst != 20 {
		t.Errorf("intentRate = %+v", r)
	}
	if p.maxPrice != (optFloat{true, 100}) || p.maxSpendHour != (optFloat{true, 1000}) || p.maxTasks != 8 {
		t.Errorf("budgets %+v %+v tasks %d", p.maxPrice, p.maxSpendHour, p.maxTasks)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, src := range []string{"", "# nothing\n", "---\n", "~\n", "agents:\npeers:\nbudgets:\napprovals:\nrate_limits:\n  intents_per_origin:\n"} {
		p := mustParse(t, src)
		e := NewEngine(p)
		if d := e.Offer("default", "anything"); !d.Allow {
			t.Errorf("%q: Offer denied: %v", src, d)
		}
		if d := e.Award("default", "x", 1e9, now0); !d.Allow {
			t.Errorf("%q: Award denied: %v", src, d)
		}
		if _, ok := e.NeedsApproval(StageAward, "x", 1e9); ok {
			t.Errorf("%q: needs approval", src)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
		want      string
	}{
		{"syntax", "agents: [\n", 1, "did not find expected"},
		{"unknown top key", "peers: {}\nbogus: 1\n", 2, `unknown key "bogus"`},
		{"unknown nested key", "budgets:\n  max_price: 5\n", 2, `unknown key "max_price" in budgets`},
		{"unknown agent key", "agents:\n  default:\n    bid: [x]\n", 3, `unknown key "bid" in agents.default`},
		{"duplicate key", "budgets:\n  max_price_per_task: 1\n  max_price_per_task: 2\n", 3, "given twice"},
		{"root not a mapping", "- a\n", 1, "want a mapping"},
		{"two documents", "peers: {}\n---\npeers: {}\n", 2, "only one YAML document"},
		{"bad agent name", "agents:\n  Bad!: {offer: []}\n", 2, "invalid agent name"},
		{"bad capability", "agents:\n  default:\n    offer:\n      - weather\n      - Bad Cap\n", 5, "invalid capability"},
		{"null list", "agents:\n  default:\n    offer:\n", 3, "no value (write [] for an empty list)"},
		{"list of maps", "agents:\n  default:\n    offer: [{a: b}]\n", 3, "want a list of strings"},
		{"bad peer", "peers:\n  deny:\n    - " + peerA + "\n    - notapeer\n", 4, `bad peer ID "notapeer"`},
		{"peer allowed and denied", "peers:\n  allow: [" + peerA + "]\n  deny:\n    - " + peerA + "\n", 4, "also in peers.allow at line 2"},
		{"bad agent id", "remote_agents:\n  allow: [did:key:zBAD]\n", 2, "invalid agent id"},
		{"agent allowed and denied", "remote_agents:\n  deny: [" + agentA + "]\n  allow: [" + agentA + "]\n", 2, "also in remote_agents.allow at line 3"},
		{"negative price", "budgets:\n  max_price_per_task: -1\n", 2, "max_price_per_task: -1 is negative"},
		{"negative spend", "budgets:\n  max_spend_per_hour: -0.5\n", 2, "is negative"},
		{"nan", "budgets:\n  max_spend_per_hour: .nan\n", 2, "not a finite number"},
		{"string number", "budgets:\n  max_price_per_task: \"10\"\n", 2, "want a number"},
		{"negative tasks", "max_concurrent_tasks: -3\n", 1, "max_concurrent_tasks: -3 is negative"},
		{"fractional tasks", "max_concurrent_tasks: 1.5\n", 1, "want a whole number"},
		{"negative rate", "rate_limits:\n  intents_per_origin: {per_second: -1}\n", 2, "per_second: -1 is negative"},
		{"zero rate", "rate_limits:\n  intents_per_origin: {per_second: 0}\n", 2, "must be above 0"},
		{"negative burst", "rate_limits:\n  intents_per_origin:\n    per_second: 1\n    burst: -2\n", 4, "burst: -2 is negative"},
		{"no per_second", "rate_limits:\n  intents_per_origin:\n    burst: 2\n", 2, "per_second is required"},
		{"unknown stage", "approvals:\n  - name: a\n    stage: deliver\n", 3, `unknown stage "deliver"`},
		{"missing stage", "approvals:\n  - name: a\n", 2, "stage is required"},
		{"missing name", "approvals:\n  - stage: award\n", 2, "name is required"},
		{"duplicate rule name", "approvals:\n  - {name: a, stage: award}\n  - name: b\n    stage: award\n  - name: a\n    stage: commit\n", 5, `rule name "a" is already used at line 2`},
		{"negative min_price", "approvals:\n  - {name: a, stage: award, min_price: -5}\n", 2, "min_price: -5 is negative"},
		{"approval bad capability", "approvals:\n  - {name: a, stage: award, capability: \"-x\"}\n", 2, "invalid capability"},
		{"approvals not a list", "approvals: {name: a}\n", 1, "want a list of rules"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src), "bad.yaml")
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.File != "bad.yaml" || pe.Line != tt.line {
				t.Errorf("error %q: want file bad.yaml line %d", err, tt.line)
			}
			prefix := "bad.yaml:" + strconv.Itoa(tt.line) + ": "
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q: want prefix %q containing %q", err, prefix, tt.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte("budgets:\n  max_price_per_task: -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
		t.Errorf("Load error %v: want %s:2: prefix", err, path)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("#"+strings.Repeat("x", MaxFileSize)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load of a big file: %v", err)
	}
}

func TestAliasesResolve(t *testing.T) {
	p := mustParse(t, "agents:\n  a:\n    offer: &caps [x, y]\n    request: *caps\n")
	e := NewEngine(p)
	if d := e.Request("a", "y"); !d.Allow {
		t.Errorf("Request through alias: %v", d)
	}
	if d := e.Request("a", "z"); d.Allow {
		t.Errorf("Request z allowed: %v", d)
	}
}
