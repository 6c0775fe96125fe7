package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
)

// fakeAdmin is an AgentAdmin over a map, as the daemon would be over
// config.yaml.
type fakeAdmin struct {
	mu     sync.Mutex
	agents map[string]HostedAgent
	fail   error // returned by AddAgent and RemoveAgent when set
}

func (f *fakeAdmin) Agents(context.Context) ([]HostedAgent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []HostedAgent
	for _, a := range f.agents {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b HostedAgent) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (f *fakeAdmin) AddAgent(_ context.Context, spec AgentSpec) (HostedAgent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return HostedAgent{}, f.fail
	}
	if _, ok := f.agents[spec.Name]; ok {
		return HostedAgent{}, fmt.Errorf("config.yaml: %w: %q", ErrAgentExists, spec.Name)
	}
	k, err := identity.GenerateKey()
	if err != nil {
		return HostedAgent{}, err
	}
	a, err := identity.NewAgent(spec.Name, k)
	if err != nil {
		return HostedAgent{}, err
	}
	h := HostedAgent{Name: spec.Name, ID: a.ID, Capabilities: spec.Capabilities, Kind: HostedConfig, Exec: spec.Exec, Timeout: spec.Timeout}
	f.agents[spec.Name] = h
	return h, nil
}

func (f *fakeAdmin) RemoveAgent(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	if _, ok := f.agents[name]; !ok {
		return fmt.Errorf("config.yaml: %w %q", ErrNoSuchAgent, name)
	}
	delete(f.agents, name)
	return nil
}

func (f *fakeAdmin) failWith(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

// TestAgentsWithoutAdmin: a library user's server lists what the node
// hosts and refuses to change it, saying why.
func TestAgentsWithoutAdmin(t *testing.T) {
	nd := newTestNodes(t, 1)[0]
	_, c := newTestServer(t, nd)
	ctx := ctxT(t)
	if _, err := c.RegisterExternal(ctx, ExternalAgentBody{Name: "py", Capabilities: []string{"quote"}}); err != nil {
		t.Fatal(err)
	}
	agents, err := c.Agents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []HostedAgent{
		{Name: "default", ID: nd.Agents()[0].ID, Kind: HostedBuiltin, Capabilities: []string{}},
		{Name: "second", ID: nd.Agents()[1].ID, Kind: HostedBuiltin, Capabilities: []string{}},
		{Name: "py", ID: nd.Agents()[2].ID, Kind: HostedExternal, Capabilities: []string{"quote"}},
	}
	if !slices.EqualFunc(agents, want, equalHosted) {
		t.Fatalf("agents %+v, want %+v", agents, want)
	}
	_, err = c.AddAgent(ctx, AgentSpec{Name: "quoter", Capabilities: []string{"quote"}, Exec: []string{"true"}})
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusNotImplemented || !errors.Is(err, CodeNotImplemented) || !strings.Contains(ae.Message, "program") {
		t.Fatalf("AddAgent: %v, want 501 not_implemented saying the agents come from the program", err)
	}
	if err := c.RemoveAgent(ctx, "second"); !errors.Is(err, CodeNotImplemented) {
		t.Fatalf("RemoveAgent: %v, want not_implemented", err)
	}
	if _, err := nd.Agent("second"); err != nil {
		t.Fatalf("second is gone after a refused remove: %v", err)
	}
}

func equalHosted(a, b HostedAgent) bool {
	return a.Name == b.Name && a.ID == b.ID && a.Kind == b.Kind && slices.Equal(a.Capabilities, b.Capabilities) &&
		slices.Equal(a.Exec, b.Exec) && a.Timeout == b.Timeout
}

// TestAgentsWithAdmin: adds and removes go through the AgentAdmin, its
// errors come back with their codes, and external agents stay the
// external endpoints' business.
func TestAgentsWithAdmin(t *testing.T) {
	nd := newTestNodes(t, 1)[0]
	admin := &fakeAdmin{agents: map[string]HostedAgent{
		"default": {Name: "default", ID: nd.Agents()[0].ID, Kind: HostedBuiltin, Capabilities: []string{}},
		"second":  {Name: "second", ID: nd.Agents()[1].ID, Kind: HostedConfig, Capabilities: []string{"echo"}, Exec: []string{"cat"}},
	}}
	spy := &auditSpy{}
	ts, c := newTestServer(t, nd, WithAgentAdmin(admin), WithAudit(spy.record))
	ctx := ctxT(t)
	if _, err := c.RegisterExternal(ctx, ExternalAgentBody{Name: "py", Capabilities: []string{"quote"}}); err != nil {
		t.Fatal(err)
	}

	spec := AgentSpec{Name: "quoter", Capabilities: []string{"quote"}, Exec: []string{"sh", "quote.sh"}, Timeout: intent.Duration(30 * time.Second)}
	added, err := c.AddAgent(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if added.Name != "quoter" || added.Kind != HostedConfig || !strings.HasPrefix(string(added.ID), "did:key:") ||
		!slices.Equal(added.Exec, spec.Exec) || added.Timeout != spec.Timeout {
		t.Fatalf("added %+v", added)
	}
	if recs := spy.kinds("agent.added"); len(recs) != 1 || !strings.Contains(recs[0].rationale, "quoter") {
		t.Fatalf("audit %+v, want one agent.added naming quoter", recs)
	}
	agents, err := c.Agents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range agents {
		names = append(names, a.Name+":"+a.Kind)
	}
	if want := []string{"default:builtin", "quoter:config", "second:config", "py:external"}; !slices.Equal(names, want) {
		t.Fatalf("agents %v, want %v", names, want)
	}

	for _, tc := range []struct {
		name string
		spec AgentSpec
		fail error // the admin's
		code Code
		want string
	}{
		{"taken", spec, nil, CodeConflict, `"quoter"`},
		{"an external agent's name", AgentSpec{Name: "py", Capabilities: []string{"quote"}, Exec: []string{"true"}}, nil, CodeConflict, "external agent"},
		{"the default agent", AgentSpec{Name: "default", Capabilities: []string{"quote"}, Exec: []string{"true"}}, nil, CodeBadRequest, "default agent"},
		{"bad name", AgentSpec{Name: "Bad Name", Capabilities: []string{"q"}, Exec: []string{"true"}}, nil, CodeBadRequest, "Bad Name"},
		{"no capabilities", AgentSpec{Name: "ok", Exec: []string{"true"}}, nil, CodeBadRequest, "capabilities"},
		{"bad capability", AgentSpec{Name: "ok", Capabilities: []string{"A B"}, Exec: []string{"true"}}, nil, CodeBadRequest, `"A B"`},
		{"no exec", AgentSpec{Name: "ok", Capabilities: []string{"q"}}, nil, CodeBadRequest, "exec"},
		{"negative timeout", AgentSpec{Name: "ok", Capabilities: []string{"q"}, Exec: []string{"true"}, Timeout: -1}, nil, CodeBadRequest, "timeout"},
		{"the admin refuses it", AgentSpec{Name: "ok", Capabilities: []string{"q"}, Exec: []string{"nope"}},
			fmt.Errorf("%w: exec: no such file nope", ErrInvalidAgent), CodeBadRequest, "no such file nope"},
		{"the admin fails", AgentSpec{Name: "ok", Capabilities: []string{"q"}, Exec: []string{"true"}},
			errors.New("write config.yaml: disk full"), CodeInternal, "disk full"},
	} {
		admin.failWith(tc.fail)
		_, err := c.AddAgent(ctx, tc.spec)
		var ae *Error
		if !errors.As(err, &ae) || ae.Code != tc.code || ae.Status != tc.code.Status() || !strings.Contains(ae.Message, tc.want) {
			t.Errorf("add %s: %v, want %s naming %q", tc.name, err, tc.code, tc.want)
		}
	}
	admin.failWith(nil)
	if status, msg := call(t, "POST", ts.URL+PathAgents, testToken, `{"name":"x","capabilities":["q"],"exec":["true"],"timeout":"soon"}`); status != 400 || !strings.Contains(msg, `"soon"`) {
		t.Errorf("a timeout that is no duration: %d %q", status, msg)
	}

	for _, tc := range []struct {
		name string
		code Code
		want string
	}{
		{"py", CodeConflict, "DELETE /v1/external/agents/py"},
		{"ghost", CodeNotFound, `"ghost"`},
		{"find", CodeNotFound, `"find"`}, // a name like any other beside GET /v1/agents/find
	} {
		if err := c.RemoveAgent(ctx, tc.name); !errors.Is(err, tc.code) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("remove %s: %v, want %s naming %q", tc.name, err, tc.code, tc.want)
		}
	}
	if err := c.RemoveAgent(ctx, "quoter"); err != nil {
		t.Fatal(err)
	}
	if _, ok := admin.agents["quoter"]; ok {
		t.Fatal("quoter is still in the admin's agents")
	}
	if recs := spy.kinds("agent.removed"); len(recs) != 1 {
		t.Fatalf("audit %+v, want one agent.removed", recs)
	}
	// GET /v1/agents/find is still itself.
	if _, err := c.FindAgents(ctx, "Bad Cap", time.Second); !errors.Is(err, CodeBadRequest) || !strings.Contains(err.Error(), `"Bad Cap"`) {
		t.Fatalf("find beside /v1/agents/{name}: %v", err)
	}
}
