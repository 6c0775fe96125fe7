package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/node/api"
)

// TestAgentsAddRemove: an agent added over the API is hosted at once,
// written to config.yaml (so it is there after a restart) and listed; a
// refused one changes nothing; removing it undoes all three.
func TestAgentsAddRemove(t *testing.T) {
	quote, err := filepath.Abs("../examples/shell/quote.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := newHome(t, "")
	d := start(t, loopback(dir))
	cl, ctx := d.Client(), ctxT(t)
	configFile := filepath.Join(dir, home.ConfigFile)
	before, _ := os.ReadFile(configFile)

	if _, err := cl.AddAgent(ctx, api.AgentSpec{Name: "broken", Capabilities: []string{"quote"}, Exec: []string{"/nonexistent/quote"}}); !errors.Is(err, api.CodeBadRequest) {
		t.Fatalf("AddAgent with a missing command = %v, want 400", err)
	}
	if after, _ := os.ReadFile(configFile); string(after) != string(before) {
		t.Fatalf("a refused agent changed config.yaml:\n%s", after)
	}

	added, err := cl.AddAgent(ctx, api.AgentSpec{Name: "pricer", Capabilities: []string{"quote"}, Exec: []string{"sh", quote}, Timeout: intent.Duration(20 * time.Second)})
	if err != nil {
		t.Fatalf("AddAgent: %v", err)
	}
	if added.Kind != api.HostedConfig || added.ID == "" {
		t.Errorf("added %+v, want a config agent with an ID", added)
	}
	if _, err := cl.AddAgent(ctx, api.AgentSpec{Name: "pricer", Capabilities: []string{"quote"}, Exec: []string{"sh", quote}}); !errors.Is(err, api.CodeConflict) {
		t.Errorf("adding pricer twice = %v, want 409", err)
	}
	h, err := home.Load(dir)
	if err != nil {
		t.Fatalf("config.yaml after AddAgent: %v", err)
	}
	if i := slices.IndexFunc(h.Config.Agents, func(a home.AgentConfig) bool { return a.Name == "pricer" }); i < 0 || h.Config.Agents[i].Timeout != 20*time.Second {
		t.Errorf("config.yaml agents after AddAgent: %+v, want pricer with its 20s timeout", h.Config.Agents)
	}
	if got := names(t, cl); !slices.Equal(got, []string{"default", "pricer"}) {
		t.Errorf("agents listed = %v, want default and pricer", got)
	}
	if ag, err := d.Node().Agent("pricer"); err != nil || ag.ID != added.ID {
		t.Errorf("node hosts pricer = %v, %v; want the added ID", ag, err)
	}

	if err := cl.RemoveAgent(ctx, "default"); !errors.Is(err, api.CodeBadRequest) {
		t.Errorf("removing the default agent = %v, want 400", err)
	}
	if err := cl.RemoveAgent(ctx, "nobody"); !errors.Is(err, api.CodeNotFound) {
		t.Errorf("removing an unknown agent = %v, want 404", err)
	}
	if err := cl.RemoveAgent(ctx, "pricer"); err != nil {
		t.Fatalf("RemoveAgent: %v", err)
	}
	if got := names(t, cl); !slices.Equal(got, []string{"default"}) {
		t.Errorf("agents listed after the removal = %v, want default", got)
	}
	if after, _ := os.ReadFile(configFile); strings.Contains(string(after), "pricer") {
		t.Errorf("config.yaml still names pricer:\n%s", after)
	}
}

func names(t *testing.T, cl *api.Client) []string {
	t.Helper()
	list, err := cl.Agents(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range list {
		out = append(out, a.Name)
	}
	return out
}
