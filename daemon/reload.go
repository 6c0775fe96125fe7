package daemon

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	logging "github.com/ipfs/go-log/v2"

	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/policy"
)

// Changes is what a Reload changed.
type Changes struct {
	// Policy is the policy file now in force when it changed ("" when it
	// did not); PolicyRemoved is set when no policy is in force any more.
	Policy        string   `json:"policy,omitempty"`
	PolicyRemoved bool     `json:"policy_removed,omitempty"`
	Added         []string `json:"added,omitempty"`   // agents
	Removed       []string `json:"removed,omitempty"` // agents
	Changed       []string `json:"changed,omitempty"` // agents: capabilities, command or timeout
	LogLevel      string   `json:"log_level,omitempty"`
	// Restart names the config.yaml fields that changed but take effect
	// only when the daemon is restarted (listen, limits, …).
	Restart []string `json:"restart,omitempty"`
}

// None reports whether nothing was applied.
func (c Changes) None() bool {
	return c.Policy == "" && !c.PolicyRemoved && len(c.Added) == 0 && len(c.Removed) == 0 && len(c.Changed) == 0 && c.LogLevel == ""
}

// String says what changed in one line.
func (c Changes) String() string {
	var parts []string
	switch {
	case c.PolicyRemoved:
		parts = append(parts, "policy removed (everything is allowed)")
	case c.Policy != "":
		parts = append(parts, "policy reloaded from "+c.Policy)
	}
	for _, l := range []struct {
		what  string
		names []string
	}{{"agents added", c.Added}, {"agents removed", c.Removed}, {"agents changed", c.Changed}} {
		if len(l.names) > 0 {
			parts = append(parts, l.what+": "+strings.Join(l.names, ", "))
		}
	}
	if c.LogLevel != "" {
		parts = append(parts, "log level "+c.LogLevel)
	}
	if len(parts) == 0 {
		parts = append(parts, "nothing changed")
	}
	if len(c.Restart) > 0 {
		parts = append(parts, "changed in config.yaml but applied only at the next start: "+strings.Join(c.Restart, ", "))
	}
	return strings.Join(parts, "; ")
}

// Reload applies, while the daemon runs, what can change live: the policy
// file, and from config.yaml the agents (added, removed, changed) and the
// log level. Everything is read and checked first; on any error nothing
// changes, the old policy and configuration stay in force, and the error
// names the file. The outcome is logged in one line and recorded in the
// audit log. Other changed fields of config.yaml are named in
// Changes.Restart.
func (d *Daemon) Reload() (Changes, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch d.state {
	case stateNew, stateStarting:
		return Changes{}, ErrNotStarted
	case stateClosed:
		return Changes{}, ErrClosed
	}
	c, err := d.reloadLocked()
	d.reloadErr = err
	if err != nil {
		log.Errorw("reload refused, nothing changed: "+oneLine(err), "home", d.h.Dir)
		return Changes{}, err
	}
	log.Infow("reloaded: "+c.String(), "home", d.h.Dir)
	if err := d.n.Audit("daemon.reloaded", c.String(), c); err != nil {
		log.Warnw("could not record the reload in the audit log", "err", err)
	}
	return c, nil
}

// plan is a checked reload, ready to apply.
type plan struct {
	h          *home.Home
	policy     *policy.Policy
	policyPath string
	policySum  [32]byte
	changes    Changes
	added      []home.AgentConfig
	removed    []home.AgentConfig
	changed    [][2]home.AgentConfig // old, new
}

func (d *Daemon) reloadLocked() (Changes, error) {
	p, err := d.plan()
	if err != nil {
		return Changes{}, err
	}
	if err := d.apply(p); err != nil {
		return Changes{}, err
	}
	d.h, d.policyPath, d.policySum = p.h, p.policyPath, p.policySum
	return p.changes, nil
}

// plan reads and checks the new policy and config.yaml against what is in
// force. It changes nothing.
func (d *Daemon) plan() (*plan, error) {
	h2, err := home.Load(d.h.Dir)
	if err != nil {
		return nil, err
	}
	p := &plan{h: h2, policyPath: d.opts.PolicyFile}
	if p.policyPath == "" {
		p.policyPath = h2.PolicyPath()
	}
	if p.policyPath != "" {
		if p.policy, p.policySum, err = loadPolicy(p.policyPath); err != nil {
			if d.opts.PolicyFile == "" {
				return nil, fmt.Errorf("%s: policy: %w", h2.ConfigPath(), err)
			}
			return nil, fmt.Errorf("policy: %w", err)
		}
	}
	switch {
	case p.policyPath == "" && d.policyPath != "":
		p.changes.PolicyRemoved = true
	case p.policyPath != d.policyPath || p.policySum != d.policySum:
		p.changes.Policy = p.policyPath
	}

	old, neu := d.h.Config.Agents, h2.Config.Agents
	if old[0].Name != neu[0].Name {
		return nil, fmt.Errorf("%s: agents: the first agent is the node's default agent (%s) and cannot change while the daemon runs; restart it to make %s the default",
			h2.ConfigPath(), old[0].Name, neu[0].Name)
	}
	byName := func(list []home.AgentConfig, name string) (home.AgentConfig, bool) {
		i := slices.IndexFunc(list, func(a home.AgentConfig) bool { return a.Name == name })
		if i < 0 {
			return home.AgentConfig{}, false
		}
		return list[i], true
	}
	externals := d.srv.Externals()
	for _, ac := range neu {
		prev, had := byName(old, ac.Name)
		switch {
		case !had:
			if slices.Contains(externals, ac.Name) {
				return nil, fmt.Errorf("%s: line %d: agents: %s is registered over the API as an external agent; deregister it first (parley agents deregister %s)",
					h2.ConfigPath(), ac.Line, ac.Name, ac.Name)
			}
			p.added = append(p.added, ac)
			p.changes.Added = append(p.changes.Added, ac.Name)
		case !prev.Equal(ac):
			p.changed = append(p.changed, [2]home.AgentConfig{prev, ac})
			p.changes.Changed = append(p.changes.Changed, ac.Name)
		default:
			continue
		}
		if err := checkExec(h2, ac); err != nil {
			return nil, err
		}
	}
	for _, ac := range old {
		if _, ok := byName(neu, ac.Name); !ok {
			p.removed = append(p.removed, ac)
			p.changes.Removed = append(p.changes.Removed, ac.Name)
		}
	}
	if d.opts.LogLevel == "" && h2.Config.LogLevel != d.h.Config.LogLevel {
		p.changes.LogLevel = h2.Config.LogLevel
		if p.changes.LogLevel == "" {
			p.changes.LogLevel = d.baseLevel
		}
	}
	p.changes.Restart = restartOnly(d.h.Config, h2.Config, d.opts.PolicyFile != "")
	return p, nil
}

// restartOnly names the config.yaml fields that differ between a and b
// and that a running daemon cannot change.
func restartOnly(a, b home.Config, policyFixed bool) []string {
	var out []string
	for _, f := range []struct {
		name string
		a, b any
	}{
		{"listen", a.Listen, b.Listen},
		{"bootstrap", a.Bootstrap, b.Bootstrap},
		{"api", a.API, b.API},
		{"limits", a.Limits, b.Limits},
		{"connmgr", a.ConnMgr, b.ConnMgr},
		{"mdns", a.MDNS, b.MDNS},
		{"dht", a.DHT, b.DHT},
		{"announce", a.Announce, b.Announce},
		{"nat", a.NAT, b.NAT},
		{"psk", a.PSK, b.PSK},
	} {
		if !reflect.DeepEqual(f.a, f.b) {
			out = append(out, f.name)
		}
	}
	if policyFixed && a.Policy != b.Policy {
		out = append(out, "policy (the --policy file is in force)")
	}
	return out
}

// apply makes a checked plan the running state. Should one step fail, the
// steps before it are undone.
func (d *Daemon) apply(p *plan) (err error) {
	n := d.n
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	if err := p.h.SaveKeys(); err != nil {
		return err
	}
	if p.changes.Policy != "" || p.changes.PolicyRemoved {
		prev, prevPath := n.Policy(), d.policyPath
		if err := n.SwapPolicy(p.policy, p.policyPath); err != nil {
			_ = n.SwapPolicy(prev, prevPath) // the swap happened; only its record failed
			return fmt.Errorf("policy: %w", err)
		}
		undo = append(undo, func() { _ = n.SwapPolicy(prev, prevPath) })
	}
	for _, ac := range p.removed {
		if err := n.RemoveAgent(ac.Name); err != nil {
			return fmt.Errorf("remove agent %s: %w", ac.Name, err)
		}
		d.dropA2A(ac.Name)
		undo = append(undo, func() { _ = d.host(n, d.h, ac) })
	}
	for _, ch := range p.changed {
		prev, next := ch[0], ch[1]
		if !next.Contractor() || !prev.Contractor() || next.A2A != prev.A2A {
			// A signer and a contractor are hosted differently.
			if err := n.RemoveAgent(next.Name); err != nil {
				return fmt.Errorf("change agent %s: %w", next.Name, err)
			}
		}
		if prev.A2A != "" && next.A2A == "" {
			d.dropA2A(next.Name)
		}
		if err := d.host(n, p.h, next); err != nil {
			_ = d.host(n, d.h, prev)
			return fmt.Errorf("change agent %s: %w", next.Name, err)
		}
		undo = append(undo, func() {
			if !next.Contractor() || !prev.Contractor() || next.A2A != prev.A2A {
				_ = n.RemoveAgent(next.Name)
			}
			_ = d.host(n, d.h, prev)
		})
	}
	for _, ac := range p.added {
		if err := d.host(n, p.h, ac); err != nil {
			_ = n.RemoveAgent(ac.Name)
			return fmt.Errorf("add agent %s: %w", ac.Name, err)
		}
		undo = append(undo, func() { _ = n.RemoveAgent(ac.Name) })
	}
	if lvl := p.changes.LogLevel; lvl != "" {
		if err := setParleyLevel(lvl); err != nil {
			return fmt.Errorf("log_level: %w", err)
		}
	}
	return nil
}

// host hosts the config.yaml agent ac of home h on n: a contractor if it
// has exec, else a signer.
func (d *Daemon) host(n *node.Node, h *home.Home, ac home.AgentConfig) error {
	i := slices.IndexFunc(h.Agents, func(a *identity.Agent) bool { return a.Name == ac.Name })
	if i < 0 {
		return errors.New("no key loaded")
	}
	a := h.Agents[i]
	if ac.A2A != "" {
		return d.hostA2A(n, h, ac)
	}
	if len(ac.Exec) == 0 {
		if _, err := n.Agent(ac.Name); err == nil {
			return nil // still hosted, as a signer
		}
		return n.HostAgent(a)
	}
	_, err := n.AddAgent(node.AgentCard{Name: ac.Name, Capabilities: ac.Capabilities, Key: a.Key}, execAgentOn(n, h, ac))
	return err
}

// oneLine keeps an error to one line of a log.
func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}

// setParleyLevel sets the level of parley's own loggers: log_level is
// about parley, and the libraries under it stay as quiet as the command
// made them (errors only, unless it asked for debug).
func setParleyLevel(lvl string) error {
	return logging.SetLogLevelRegex("^parley/", lvl)
}

// parleyLevel is the level parley's loggers have now.
func parleyLevel() string {
	l, err := logging.SubsystemLevelName("parley/daemon")
	if err != nil {
		return logging.DefaultLevel().String()
	}
	return l
}
