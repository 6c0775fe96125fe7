package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
)

// Paths of the endpoints that manage the agents the daemon hosts.
const (
	PathAgents = "/v1/agents"        // GET: the hosted agents; POST AgentSpec: host a new exec agent (and write it to config.yaml)
	PathAgent  = "/v1/agents/{name}" // DELETE: stop hosting it (and remove it from config.yaml)
)

// Kinds of agent in HostedAgent.
const (
	HostedConfig   = "config"   // an exec agent of config.yaml
	HostedExternal = "external" // registered over the API
	HostedBuiltin  = "builtin"  // the node's own: the default agent, the demo's, or added by Go code
)

// HostedAgent is one agent this node hosts, as GET /v1/agents lists it.
type HostedAgent struct {
	Name         string           `json:"name"`
	ID           identity.AgentID `json:"id"`
	Capabilities []string         `json:"capabilities"`
	Kind         string           `json:"kind"` // HostedConfig, HostedExternal or HostedBuiltin
	Exec         []string         `json:"exec,omitempty"`
	Timeout      intent.Duration  `json:"timeout,omitempty"`
}

// AgentSpec is the body of POST /v1/agents: an exec agent, as config.yaml
// names one.
type AgentSpec struct {
	Name         string          `json:"name"`
	Capabilities []string        `json:"capabilities"`
	Exec         []string        `json:"exec"`
	Timeout      intent.Duration `json:"timeout,omitempty"`
}

// AgentAdmin lets the API change the agents the daemon hosts from its
// config.yaml. The daemon implements it (WithAgentAdmin); without one, the
// agents are the program's and POST and DELETE /v1/agents answer 501.
type AgentAdmin interface {
	// Agents lists the hosted agents of every kind.
	Agents(ctx context.Context) ([]HostedAgent, error)
	// AddAgent hosts a new exec agent and writes it to config.yaml. Its
	// error wraps ErrAgentExists for a name in use, ErrInvalidAgent for a
	// spec it refuses.
	AddAgent(ctx context.Context, spec AgentSpec) (HostedAgent, error)
	// RemoveAgent stops hosting a config.yaml agent and removes it from
	// the file. Its error wraps ErrNoSuchAgent for a name it does not
	// host, ErrInvalidAgent for one it may not remove.
	RemoveAgent(ctx context.Context, name string) error
}

// Errors of an AgentAdmin, which the API answers with 409, 404 and 400.
var (
	ErrAgentExists  = errors.New("agent exists")
	ErrNoSuchAgent  = errors.New("no such agent")
	ErrInvalidAgent = errors.New("invalid agent")
)

// WithAgentAdmin lets POST and DELETE /v1/agents change the agents the
// daemon hosts, and GET list them as the daemon knows them.
func WithAgentAdmin(a AgentAdmin) Option { return func(s *Server) { s.admin = a } }

// maxAgentSpec bounds the body of POST /v1/agents: a name, a few
// capabilities and a command line.
const maxAgentSpec = 64 << 10

func (s *Server) handleAgents(w http.ResponseWriter, r *http.Request) {
	if !s.started(w) {
		return
	}
	var agents []HostedAgent
	if s.admin != nil {
		var err error
		if agents, err = s.admin.Agents(r.Context()); err != nil {
			writeError(w, codeOf(err), fmt.Sprintf("list agents: %v", err))
			return
		}
	}
	agents = s.withNodeAgents(agents)
	for i := range agents {
		if agents[i].Capabilities == nil {
			agents[i].Capabilities = []string{}
		}
	}
	writeJSON(w, http.StatusOK, agents)
}

// withNodeAgents adds to listed the agents the node hosts that it lacks:
// the external agents this server registered, and, without an
// AgentAdmin, every other agent as builtin.
func (s *Server) withNodeAgents(listed []HostedAgent) []HostedAgent {
	out := slices.Clone(listed)
	if out == nil {
		out = []HostedAgent{}
	}
	s.extMu.Lock()
	defer s.extMu.Unlock()
	for _, a := range s.n.Agents() {
		if slices.ContainsFunc(listed, func(h HostedAgent) bool { return h.Name == a.Name }) {
			continue
		}
		h := HostedAgent{Name: a.Name, ID: a.ID, Kind: HostedBuiltin, Capabilities: []string{}}
		if e, ok := s.externals[a.Name]; ok {
			h.Kind, h.Capabilities = HostedExternal, slices.Clone(e.reg.Capabilities)
		} else if s.admin != nil {
			continue // the admin knows the daemon's agents; it left this one out
		}
		out = append(out, h)
	}
	return out
}

func (s *Server) handleAddAgent(w http.ResponseWriter, r *http.Request) {
	if s.admin == nil {
		writeError(w, CodeNotImplemented, "this server cannot add agents: its agents come from the program that runs it (a daemon adds them to config.yaml)")
		return
	}
	if !s.started(w) {
		return
	}
	var spec AgentSpec
	if !readBody(w, r, maxAgentSpec, &spec) {
		return
	}
	if err := validSpec(spec); err != nil {
		writeError(w, CodeBadRequest, err.Error())
		return
	}
	s.extMu.Lock()
	_, external := s.externals[spec.Name]
	s.extMu.Unlock()
	if external {
		writeError(w, CodeConflict, fmt.Sprintf("agent %q is an external agent registered over the API; pick another name", spec.Name))
		return
	}
	a, err := s.admin.AddAgent(r.Context(), spec)
	switch {
	case errors.Is(err, ErrAgentExists):
		writeError(w, CodeConflict, fmt.Sprintf("add agent %q: %v; pick another name", spec.Name, err))
		return
	case errors.Is(err, ErrInvalidAgent):
		writeError(w, CodeBadRequest, fmt.Sprintf("add agent %q: %v", spec.Name, err))
		return
	case err != nil:
		writeError(w, CodeInternal, fmt.Sprintf("add agent %q: %v", spec.Name, err))
		return
	}
	if a.Capabilities == nil {
		a.Capabilities = []string{}
	}
	if s.audit != nil {
		_ = s.audit("agent.added", fmt.Sprintf("agent %s added over the API, offering %s", a.Name, strings.Join(a.Capabilities, ", ")),
			map[string]any{"name": a.Name, "id": a.ID, "capabilities": a.Capabilities, "exec": a.Exec})
	}
	log.Infow("agent added", "agent", a.Name, "id", a.ID, "capabilities", a.Capabilities)
	writeJSON(w, http.StatusCreated, a)
}

// validSpec checks what the API can of an AgentSpec; the admin checks the
// rest (a command it can run, a name free in config.yaml).
func validSpec(spec AgentSpec) error {
	if err := identity.ValidAgentName(spec.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if spec.Name == ReservedAgent {
		return fmt.Errorf("name %q is the node's default agent", spec.Name)
	}
	if len(spec.Capabilities) == 0 {
		return errors.New("capabilities: an exec agent offers at least one")
	}
	for _, c := range spec.Capabilities {
		if err := intent.ValidCapability(c); err != nil {
			return fmt.Errorf("capabilities: %w", err)
		}
	}
	if len(spec.Exec) == 0 || spec.Exec[0] == "" {
		return errors.New(`exec: want the command and its arguments, e.g. ["sh", "/path/to/quote.sh"]`)
	}
	if spec.Timeout < 0 {
		return fmt.Errorf("timeout %s: want a positive duration, or none for the default", time.Duration(spec.Timeout))
	}
	return nil
}

func (s *Server) handleRemoveAgent(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if s.admin == nil {
		writeError(w, CodeNotImplemented, "this server cannot remove agents: its agents come from the program that runs it (a daemon removes them from config.yaml)")
		return
	}
	s.extMu.Lock()
	_, external := s.externals[name]
	s.extMu.Unlock()
	if external {
		writeError(w, CodeConflict, fmt.Sprintf("agent %q is an external agent: remove it with DELETE %s", name, externalAgentPath(name)))
		return
	}
	err := s.admin.RemoveAgent(r.Context(), name)
	switch {
	case errors.Is(err, ErrNoSuchAgent):
		writeError(w, CodeNotFound, fmt.Sprintf("remove agent %q: %v", name, err))
		return
	case errors.Is(err, ErrInvalidAgent): // the default agent, or a file the reload refuses
		writeError(w, CodeBadRequest, fmt.Sprintf("remove agent %q: %v", name, err))
		return
	case err != nil:
		writeError(w, CodeInternal, fmt.Sprintf("remove agent %q: %v", name, err))
		return
	}
	if s.audit != nil {
		_ = s.audit("agent.removed", "agent "+name+" removed over the API", map[string]string{"name": name})
	}
	log.Infow("agent removed", "agent", name)
	writeJSON(w, http.StatusOK, map[string]string{"name": name})
}

// Agents lists the agents the node hosts, of every kind.
func (c *Client) Agents(ctx context.Context) ([]HostedAgent, error) {
	return list[HostedAgent](ctx, c, PathAgents)
}

// AddAgent has the daemon host a new exec agent and write it to its
// config.yaml. A name in use is an *Error with Code CodeConflict; a
// server that cannot add agents answers CodeNotImplemented.
func (c *Client) AddAgent(ctx context.Context, spec AgentSpec) (HostedAgent, error) {
	var v HostedAgent
	if err := c.doJSON(ctx, http.MethodPost, PathAgents, spec, http.StatusCreated, &v); err != nil {
		return HostedAgent{}, err
	}
	return v, nil
}

// RemoveAgent has the daemon stop hosting a config.yaml agent and remove
// it from the file. An unknown name is an *Error with Code CodeNotFound.
func (c *Client) RemoveAgent(ctx context.Context, name string) error {
	var ack map[string]string
	return c.do(ctx, http.MethodDelete, strings.Replace(PathAgent, "{name}", url.PathEscape(name), 1), nil, http.StatusOK, &ack)
}
