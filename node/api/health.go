package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
)

// Paths of the health and status endpoints.
const (
	// PathHealth answers without a token, for probes: 200 when the node is
	// ready, 503 with the reasons when it is not. With ?probe=live it
	// answers 200 whenever the node runs (liveness). The reasons carry
	// their detail only for the operator token.
	PathHealth = "/v1/health"
	// PathStatus is the operator's one-screen view of the daemon.
	PathStatus = "/v1/status"
)

// Health is the answer to GET /v1/health.
type Health struct {
	// Live: the node runs (between its start and its close).
	Live bool `json:"live"`
	// Ready: live, connected to at least one peer, and every check of the
	// daemon's passes.
	Ready bool `json:"ready"`
	// Reasons say why the node is not ready, one each; empty when ready.
	Reasons []string `json:"reasons"`
}

// Check is one readiness check of the daemon's, beyond the node's own:
// the audit log, the last policy reload. Err returns why the daemon is not
// ready, or nil; its message is shown to whoever asks for the health, so it
// must hold nothing secret.
type Check struct {
	Name string
	Err  func() error
}

// WithChecks adds readiness checks to GET /v1/health and /v1/status.
func WithChecks(checks ...Check) Option {
	return func(s *Server) { s.checks = append(s.checks, checks...) }
}

// WithStatus lets the daemon fill in what only it knows (the audit log,
// the policy, its start time, what its agents are) after the server has
// filled in the node's part of GET /v1/status.
func WithStatus(fill func(*Status)) Option { return func(s *Server) { s.status = fill } }

// Health checks the node now.
func (s *Server) Health() Health {
	h := Health{Reasons: []string{}}
	if err := s.n.Running(); err != nil {
		h.Reasons = append(h.Reasons, "node not running: "+err.Error())
		return h
	}
	h.Live = true
	if len(s.n.Peers()) == 0 {
		h.Reasons = append(h.Reasons, "no peers connected")
	}
	for _, c := range s.checks {
		if err := c.Err(); err != nil {
			h.Reasons = append(h.Reasons, c.Name+": "+err.Error())
		}
	}
	h.Ready = len(h.Reasons) == 0
	return h
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	h := s.Health()
	if p, _, authed := s.authenticate(r); !authed || !p.operator {
		// Without the operator token a probe learns what is wrong, not
		// the detail (paths, file contents in a refused reload's error).
		for i, reason := range h.Reasons {
			h.Reasons[i], _, _ = strings.Cut(reason, ":")
		}
	}
	ok := h.Ready
	if r.URL.Query().Get("probe") == "live" {
		ok = h.Live
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, h)
}

// Status is the answer to GET /v1/status: what 'parley status' shows.
type Status struct {
	Peer          peer.ID   `json:"peer"`
	Version       string    `json:"version"`
	Started       time.Time `json:"started"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Addrs         []string  `json:"addrs"`
	// Reachability is what AutoNAT (or config.yaml's nat.reachability)
	// says of this node: public, private (behind NAT) or unknown.
	Reachability string `json:"reachability"`
	// RelayAddrs are the addresses it is reachable at through relays.
	RelayAddrs    []string      `json:"relay_addrs"`
	Peers         int           `json:"peers"`
	Agents        []AgentStatus `json:"agents"`
	TasksInFlight int           `json:"tasks_in_flight"`
	Audit         AuditStatus   `json:"audit"`
	Policy        PolicyStatus  `json:"policy"`
	Health        Health        `json:"health"`
}

// Kinds of agent in AgentStatus.
const (
	KindSigner   = "signer"   // config.yaml's, without exec: signs, offers nothing
	KindExec     = "exec"     // config.yaml's, a command
	KindA2A      = "a2a"      // config.yaml's, a remote A2A agent
	KindExternal = "external" // registered over the API
	KindGo       = "go"       // added by Go code in the process
)

// AgentStatus is one hosted agent in Status.
type AgentStatus struct {
	Name         string           `json:"name"`
	ID           identity.AgentID `json:"id"`
	Kind         string           `json:"kind"`
	Capabilities []string         `json:"capabilities"`
	// Connected, for an external agent: whether its event stream is open
	// (if not, it does not bid).
	Connected *bool `json:"connected,omitempty"`
}

// AuditStatus is the audit log's state in Status.
type AuditStatus struct {
	Enabled bool   `json:"enabled"`
	Dir     string `json:"dir,omitempty"`
	Error   string `json:"error,omitempty"` // why appends fail, if they do
}

// PolicyStatus is the policy's state in Status.
type PolicyStatus struct {
	Source string `json:"source,omitempty"` // the file in force; "" allows everything
	// ReloadError is why the last reload was refused (the previous policy
	// and configuration stay in force), or "".
	ReloadError string `json:"reload_error,omitempty"`
}

func (s *Server) handleStatus(w http.ResponseWriter, _ *http.Request) {
	if !s.started(w) {
		return
	}
	writeJSON(w, http.StatusOK, s.Status())
}

// Status describes the daemon now.
func (s *Server) Status() Status {
	st := Status{Peer: s.n.ID(), Version: s.version, Started: s.since, Addrs: []string{}, RelayAddrs: []string{}, Agents: []AgentStatus{},
		Reachability: s.n.Reachability()}
	for _, a := range s.n.Addrs() {
		st.Addrs = append(st.Addrs, a.String())
	}
	for _, a := range s.n.RelayAddrs() {
		st.RelayAddrs = append(st.RelayAddrs, a.String())
	}
	st.Peers = len(s.n.Peers())
	s.extMu.Lock()
	for _, a := range s.n.Agents() {
		as := AgentStatus{Name: a.Name, ID: a.ID, Kind: KindGo, Capabilities: []string{}}
		if e, ok := s.externals[a.Name]; ok {
			c := e.connected()
			as.Kind, as.Capabilities, as.Connected = KindExternal, slices.Clone(e.reg.Capabilities), &c
		}
		st.Agents = append(st.Agents, as)
	}
	s.extMu.Unlock()
	for _, t := range s.n.Tasks() {
		if !t.State.Terminal() {
			st.TasksInFlight++
		}
	}
	if s.status != nil {
		s.status(&st)
	}
	st.UptimeSeconds = time.Since(st.Started).Seconds()
	st.Health = s.Health()
	return st
}

// Health asks the daemon whether it is ready. Unlike the other calls it
// needs no token (with the operator token the reasons carry their detail);
// a daemon that is not ready answers 503 with the reasons, which this
// returns as a Health, not as an error.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	resp, err := c.send(ctx, http.MethodGet, PathHealth, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return nil, readError(resp)
	}
	var h Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return nil, fmt.Errorf("GET %s: bad response: %w", PathHealth, err)
	}
	return &h, nil
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var v Status
	if err := c.do(ctx, http.MethodGet, PathStatus, nil, http.StatusOK, &v); err != nil {
		return nil, err
	}
	return &v, nil
}
