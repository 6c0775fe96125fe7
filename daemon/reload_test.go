package daemon

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	logging "github.com/ipfs/go-log/v2"

	"github.com/parleynet/parley/node/api"
)

// agentsOf returns the daemon's agents as its API shows them: name to
// kind and capabilities.
func agentsOf(t *testing.T, d *Daemon) map[string]string {
	t.Helper()
	st, err := d.Client().Status(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, a := range st.Agents {
		out[a.Name] = a.Kind + " " + strings.Join(a.Capabilities, ",")
	}
	return out
}

// TestReload walks a running daemon through a series of edits of its
// config.yaml and policy, as an operator would with SIGHUP: each good one
// is applied and reported, each bad one is refused with the running state
// kept, and the refusal shows in the health until a good reload.
func TestReload(t *testing.T) {
	quote, err := filepath.Abs("../examples/shell/quote.sh")
	if err != nil {
		t.Fatal(err)
	}
	const base = "agents:\n  - name: default\n"
	quoter := base + "  - name: quoter\n    capabilities: [quote]\n    exec: [sh, " + quote + "]\n"
	dir := newHome(t, base)
	policyFile := filepath.Join(dir, "policy.yaml")
	d := start(t, loopback(dir))
	prevLevel, _ := logging.SubsystemLevelName("parley/daemon")
	t.Cleanup(func() { _ = logging.SetLogLevel("*", prevLevel) })

	steps := []struct {
		name    string
		config  string // written to config.yaml before the reload
		policy  string // written to policy.yaml, if set
		want    string // Changes.String(), or in the error
		refused bool
		agents  map[string]string // what the API shows after it
	}{
		{"nothing", base, "", "nothing changed", false, map[string]string{"default": "signer "}},
		{"add an exec agent", quoter, "", "agents added: quoter", false,
			map[string]string{"default": "signer ", "quoter": "exec quote"}},
		{"change its capabilities", strings.Replace(quoter, "[quote]", "[quote, price]", 1), "", "agents changed: quoter", false,
			map[string]string{"default": "signer ", "quoter": "exec quote,price"}},
		{"a syntax error", "agents: [", "", "config.yaml", true,
			map[string]string{"default": "signer ", "quoter": "exec quote,price"}},
		{"a command that is not there", strings.Replace(quoter, "exec: [sh, "+quote+"]", "exec: [/nonexistent/quote]", 1), "",
			"/nonexistent/quote does not exist", true, map[string]string{"default": "signer ", "quoter": "exec quote,price"}},
		{"another default agent", "agents:\n  - name: boss\n", "", "cannot change while the daemon runs", true,
			map[string]string{"default": "signer ", "quoter": "exec quote,price"}},
		{"a signer and a log level", base + "  - name: helper\nlog_level: debug\n", "",
			"agents added: helper; agents removed: quoter; log level debug", false, map[string]string{"default": "signer ", "helper": "signer "}},
		{"a policy", base + "  - name: helper\nlog_level: debug\npolicy: policy.yaml\n", "max_concurrent_tasks: 4\n",
			"policy reloaded from " + policyFile, false, map[string]string{"default": "signer ", "helper": "signer "}},
		{"a broken policy", base + "  - name: helper\nlog_level: debug\npolicy: policy.yaml\n", "max_concurrent_tasks: lots\n",
			"policy.yaml", true, map[string]string{"default": "signer ", "helper": "signer "}},
		{"a restart-only field", base + "  - name: helper\nlog_level: debug\npolicy: policy.yaml\nlisten: [/ip4/127.0.0.1/tcp/4999]\n", "max_concurrent_tasks: 5\n",
			"policy reloaded from " + policyFile + "; changed in config.yaml but applied only at the next start: listen", false,
			map[string]string{"default": "signer ", "helper": "signer "}},
	}
	for _, s := range steps {
		writeConfig(t, dir, s.config)
		if s.policy != "" {
			if err := os.WriteFile(policyFile, []byte(s.policy), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		before := d.Node().Policy()
		ch, err := d.Reload()
		switch {
		case s.refused && err == nil:
			t.Fatalf("%s: Reload accepted it: %s", s.name, ch)
		case s.refused && !strings.Contains(err.Error(), s.want):
			t.Fatalf("%s: Reload: %v, want it to say %q", s.name, err, s.want)
		case s.refused:
			if d.Node().Policy() != before {
				t.Fatalf("%s: the refused reload changed the policy", s.name)
			}
			if h := d.Health(); !slices.ContainsFunc(h.Reasons, func(r string) bool { return strings.HasPrefix(r, "reload: the last reload was refused") }) {
				t.Fatalf("%s: health %+v does not tell of the refused reload", s.name, h)
			}
		case err != nil:
			t.Fatalf("%s: Reload: %v", s.name, err)
		case ch.String() != s.want:
			t.Fatalf("%s: Reload: %q, want %q", s.name, ch, s.want)
		default:
			if h := d.Health(); slices.ContainsFunc(h.Reasons, func(r string) bool { return strings.HasPrefix(r, "reload:") }) {
				t.Fatalf("%s: health %+v still tells of an earlier refused reload", s.name, h)
			}
		}
		if got := agentsOf(t, d); !maps(got, s.agents) {
			t.Fatalf("%s: agents %v, want %v", s.name, got, s.agents)
		}
	}
	if lvl, _ := logging.SubsystemLevelName("parley/daemon"); lvl != "debug" {
		t.Errorf("log level %s after log_level: debug", lvl)
	}
	if p := d.Node().Policy(); p == nil || d.Client() == nil {
		t.Fatal("no policy in force")
	}
}

// TestReloadRefusesAnExternalAgentsName: config.yaml may not take the name
// of an agent registered over the API.
func TestReloadRefusesAnExternalAgentsName(t *testing.T) {
	dir := newHome(t, "")
	d := start(t, loopback(dir))
	if _, err := d.Client().RegisterExternal(ctxT(t), api.ExternalAgentBody{Name: "py", Capabilities: []string{"quote"}}); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, dir, "agents:\n  - name: default\n  - name: py\n")
	if _, err := d.Reload(); err == nil || !strings.Contains(err.Error(), "registered over the API") {
		t.Fatalf("Reload: %v, want it refused", err)
	}
}

// TestExternalAgentSurvivesARestart: an external agent registered with one
// daemon is the same agent, with the same token, under the next daemon of
// the same home; and it cannot take a config.yaml agent's name.
func TestExternalAgentSurvivesARestart(t *testing.T) {
	dir := newHome(t, "")
	d1, err := New(loopback(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := d1.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	reg, err := d1.Client().RegisterExternal(ctxT(t), api.ExternalAgentBody{Name: "py", Capabilities: []string{"quote"}})
	if err != nil {
		t.Fatal(err)
	}
	var ae *api.Error
	if _, err := d1.Client().RegisterExternal(ctxT(t), api.ExternalAgentBody{Name: "default", Capabilities: []string{"quote"}}); !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Fatalf("registering as default: %v, want 409", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if err := d1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "external.json")); err != nil || strings.Contains(string(data), reg.Token) {
		t.Fatalf("external.json: %v; it must exist and hold no token", err)
	}

	d2 := start(t, loopback(dir))
	a, err := d2.Node().Agent("py")
	if err != nil || a.ID != reg.ID {
		t.Fatalf("after the restart: %v, %v; want py with AgentID %s", a, err, reg.ID)
	}
	req, _ := http.NewRequestWithContext(ctxT(t), http.MethodGet, d2.APIURL()+api.PathExternalEvents, nil)
	req.Header.Set("Authorization", "Bearer "+reg.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the agent's token after the restart: %v %v", err, resp)
	}
	first, _ := bufio.NewReader(resp.Body).ReadString('\n')
	resp.Body.Close()
	if !strings.Contains(first, "events for py") {
		t.Fatalf("stream began %q", first)
	}
}
