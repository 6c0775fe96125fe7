package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/node/api"
)

// agentAdmin is the daemon's api.AgentAdmin: it lists config.yaml's
// agents and the node's, and adds or removes an exec agent by editing
// config.yaml and reloading, so that what runs and what the file says
// stay the same thing.
type agentAdmin struct{ d *Daemon }

var _ api.AgentAdmin = agentAdmin{}

func (a agentAdmin) Agents(context.Context) ([]api.HostedAgent, error) {
	d := a.d
	d.mu.Lock()
	h := d.h
	d.mu.Unlock()
	var out []api.HostedAgent
	for i, ac := range h.Config.Agents {
		ag, err := d.n.Agent(ac.Name)
		if err != nil {
			continue // not hosted: a reload in flight
		}
		kind := api.HostedConfig
		if i == 0 && len(ac.Exec) == 0 {
			kind = api.HostedBuiltin // the default agent, which signs the node's own requests
		}
		caps := slices.Clone(ac.Capabilities)
		if a2 := d.a2aAgent(ac.Name); a2 != nil {
			caps = a2.Capabilities() // its card's skills, or the ones listed
		}
		out = append(out, api.HostedAgent{Name: ac.Name, ID: ag.ID, Kind: kind,
			Capabilities: caps, Exec: slices.Clone(ac.Exec), Timeout: intent.Duration(ac.Timeout)})
	}
	return out, nil // the API adds the external agents
}

func (a agentAdmin) AddAgent(_ context.Context, spec api.AgentSpec) (api.HostedAgent, error) {
	ac := home.AgentConfig{Name: spec.Name, Capabilities: spec.Capabilities, Exec: spec.Exec, Timeout: time.Duration(spec.Timeout)}
	err := a.d.editAgents(func(h *home.Home) error {
		if slices.ContainsFunc(h.Config.Agents, func(c home.AgentConfig) bool { return c.Name == spec.Name }) {
			return fmt.Errorf("%w: %s is in %s", api.ErrAgentExists, spec.Name, h.ConfigPath())
		}
		if err := checkExec(h, ac); err != nil {
			return fmt.Errorf("%w: %v", api.ErrInvalidAgent, err)
		}
		return nil
	}, &ac, "")
	if err != nil {
		return api.HostedAgent{}, err
	}
	ag, err := a.d.n.Agent(spec.Name)
	if err != nil {
		return api.HostedAgent{}, fmt.Errorf("agent %s was added but is not hosted: %w", spec.Name, err)
	}
	return api.HostedAgent{Name: ac.Name, ID: ag.ID, Kind: api.HostedConfig, Capabilities: ac.Capabilities, Exec: ac.Exec, Timeout: spec.Timeout}, nil
}

func (a agentAdmin) RemoveAgent(_ context.Context, name string) error {
	return a.d.editAgents(func(h *home.Home) error {
		i := slices.IndexFunc(h.Config.Agents, func(c home.AgentConfig) bool { return c.Name == name })
		switch {
		case i < 0:
			return fmt.Errorf("%w: %s is not in %s", api.ErrNoSuchAgent, name, h.ConfigPath())
		case i == 0:
			return fmt.Errorf("%w: %s is the node's default agent (the first in %s); it cannot be removed while the daemon runs", api.ErrInvalidAgent, name, h.ConfigPath())
		}
		return nil
	}, nil, name)
}

// editAgents checks the change against the home in force, rewrites
// config.yaml with it and reloads. If the reload refuses the new file, the
// old one is put back: nothing changes, and the error says why.
func (d *Daemon) editAgents(check func(*home.Home) error, add *home.AgentConfig, remove string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch d.state {
	case stateNew, stateStarting:
		return ErrNotStarted
	case stateClosed:
		return ErrClosed
	}
	if err := check(d.h); err != nil {
		return err
	}
	path := d.h.ConfigPath()
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	edited, err := home.EditAgents(old, add, remove)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := d.h.WriteConfig(edited); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	c, err := d.reloadLocked()
	d.reloadErr = err
	if err != nil {
		if rerr := d.h.WriteConfig(old); rerr != nil {
			return errors.Join(err, fmt.Errorf("put back %s: %w", path, rerr))
		}
		return fmt.Errorf("%w: %v", api.ErrInvalidAgent, err)
	}
	log.Infow("config.yaml edited over the API and reloaded: "+c.String(), "home", d.h.Dir)
	if err := d.n.Audit("daemon.reloaded", c.String(), c); err != nil {
		log.Warnw("could not record the reload in the audit log", "err", err)
	}
	return nil
}
