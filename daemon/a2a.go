package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/identity"
	interopa2a "github.com/parleynet/parley/interop/a2a"
	"github.com/parleynet/parley/node"
)

// a2aCardWait bounds fetching a remote A2A agent's card at start and on
// reload.
const a2aCardWait = 10 * time.Second

// a2aState is the daemon's A2A side: the gateway, and the clients of the
// remote A2A agents it hosts. Guarded by Daemon.mu.
type a2aState struct {
	gw     *interopa2a.Gateway
	url    string
	served chan error // one value per server (HTTP, and gRPC if on)
	n      int        // servers running
	agents map[string]*interopa2a.Agent
}

// a2aListen is where the gateway listens, or "" when it is off.
func (d *Daemon) a2aListen(h *home.Home) string {
	if d.opts.A2AListen != "" {
		return d.opts.A2AListen
	}
	return h.Config.A2A.Listen
}

// startA2A opens and serves the gateway, if it is on. The listener is
// loopback unless a2a.public (or Options.A2APublic) allows otherwise.
func (d *Daemon) startA2A(n *node.Node, h *home.Home, undo *[]func()) error {
	addr := d.a2aListen(h)
	if addr == "" {
		return nil
	}
	c := h.Config.A2A
	token, err := h.A2AToken()
	if err != nil {
		return err
	}
	listen := func(addr, field string, flag bool) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("A2A gateway listen on %s: %w", addr, err)
		}
		if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() && !c.Public && !d.opts.A2APublic {
			_ = ln.Close()
			err := fmt.Errorf("A2A gateway on %s: not a loopback address: allow it explicitly (a2a.public in %s); only its token would protect it", ln.Addr(), h.ConfigPath())
			if flag {
				return nil, &OptionError{Option: "A2AListen", Value: addr, Err: err}
			}
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		return ln, nil
	}
	ln, err := listen(addr, "a2a.listen", d.opts.A2AListen != "")
	if err != nil {
		return err
	}
	var gln net.Listener
	if c.GRPCListen != "" {
		if gln, err = listen(c.GRPCListen, "a2a.grpc_listen", false); err != nil {
			_ = ln.Close()
			return err
		}
	}
	grpcAddr := ""
	if gln != nil {
		grpcAddr = gln.Addr().String()
	}
	gw, err := interopa2a.New(interopa2a.Config{Node: n, Token: token, BaseURL: c.URL, GRPCAddr: grpcAddr, Version: d.opts.Version,
		Agents: d.a2aSkills, Export: c.Export, Agent: c.Agent, MaxTasks: c.MaxTasks, MaxLive: c.MaxLive, MaxBody: c.MaxBody})
	if err != nil {
		_ = ln.Close()
		if gln != nil {
			_ = gln.Close()
		}
		return err
	}
	served := make(chan error, 2)
	go func() { served <- gw.Serve(ln) }()
	servers := 1
	if gln != nil {
		go func() { served <- gw.ServeGRPC(gln) }()
		servers++
	}
	url := c.URL
	if url == "" {
		url = "http://" + ln.Addr().String()
	}
	d.mu.Lock()
	d.a2a.gw, d.a2a.url, d.a2a.served, d.a2a.n = gw, url, served, servers
	d.mu.Unlock()
	*undo = append(*undo, func() { _ = d.stopA2A(context.Background()) })
	if gln != nil {
		log.Infow("A2A gateway ready", "url", url, "card", url+interopa2a.CardPath, "grpc", gln.Addr().String())
	} else {
		log.Infow("A2A gateway ready", "url", url, "card", url+interopa2a.CardPath)
	}
	return nil
}

// stopA2A stops the gateway, cutting its streams (their tasks are
// canceled), within ctx.
func (d *Daemon) stopA2A(ctx context.Context) error {
	d.mu.Lock()
	gw, served, servers := d.a2a.gw, d.a2a.served, d.a2a.n
	d.a2a.gw = nil
	d.mu.Unlock()
	if gw == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, ShutdownTimeout)
	defer cancel()
	err := gw.Close(ctx)
	for range servers {
		if serr := <-served; serr != nil {
			err = errors.Join(err, fmt.Errorf("A2A gateway: %w", serr))
		}
	}
	return err
}

// A2AURL is the A2A gateway's base URL, or "" when it is off.
func (d *Daemon) A2AURL() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.a2a.gw == nil {
		return ""
	}
	return d.a2a.url
}

// a2aSkills lists config.yaml's contractor agents and the external
// agents registered over the API for the gateway's card. It is called
// from the gateway's requests, never with d.mu held.
func (d *Daemon) a2aSkills() []interopa2a.HostedAgent {
	var out []interopa2a.HostedAgent
	if d.srv != nil {
		for name, caps := range d.srv.ExternalCapabilities() {
			if len(caps) > 0 {
				out = append(out, interopa2a.HostedAgent{Name: name, Capabilities: caps})
			}
		}
		slices.SortFunc(out, func(a, b interopa2a.HostedAgent) int { return strings.Compare(a.Name, b.Name) })
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ac := range d.h.Config.Agents {
		caps := ac.Capabilities
		if ag := d.a2a.agents[ac.Name]; ag != nil && len(caps) == 0 {
			caps = ag.Capabilities()
		}
		if ac.Contractor() && len(caps) > 0 {
			out = append(out, interopa2a.HostedAgent{Name: ac.Name, Capabilities: slices.Clone(caps)})
		}
	}
	return out
}

// hostA2A makes the config.yaml agent ac, backed by a remote A2A agent, a
// contractor of n: its card is fetched and checked first. A client it
// replaces is closed.
func (d *Daemon) hostA2A(n *node.Node, h *home.Home, ac home.AgentConfig) error {
	token, err := h.A2AAgentToken(ac)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), a2aCardWait)
	defer cancel()
	ag, err := interopa2a.NewAgent(ctx, interopa2a.AgentConfig{Name: ac.Name, URL: ac.A2A, Capabilities: ac.Capabilities,
		Price: ac.Price, ETA: ac.ETA, Token: token, Timeout: ac.Timeout, Context: n.TaskContext})
	if err != nil {
		return fmt.Errorf("%s: line %d: agents: %w", h.ConfigPath(), ac.Line, err)
	}
	card := node.AgentCard{Name: ac.Name, Capabilities: ag.Capabilities()}
	if i := slices.IndexFunc(h.Agents, func(a *identity.Agent) bool { return a.Name == ac.Name }); i >= 0 {
		card.Key = h.Agents[i].Key
	}
	if _, err := n.AddAgent(card, ag); err != nil {
		ag.Close()
		return err
	}
	if d.a2a.agents == nil {
		d.a2a.agents = map[string]*interopa2a.Agent{}
	}
	if old := d.a2a.agents[ac.Name]; old != nil {
		old.Close()
	}
	d.a2a.agents[ac.Name] = ag
	log.Infow("A2A agent ready", "agent", ac.Name, "a2a", ac.A2A, "card", ag.Card().Name, "capabilities", ag.Capabilities(), "price", ac.Price, "eta", ac.ETA)
	return nil
}

// a2aAgent is the hosted A2A agent named name, or nil.
func (d *Daemon) a2aAgent(name string) *interopa2a.Agent {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.a2a.agents[name]
}

// dropA2A closes the client of a removed A2A agent.
func (d *Daemon) dropA2A(name string) {
	if ag := d.a2a.agents[name]; ag != nil {
		ag.Close()
		delete(d.a2a.agents, name)
	}
}

// closeA2AAgents closes every remote agent's client, once the node has
// stopped.
func (d *Daemon) closeA2AAgents() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name := range d.a2a.agents {
		d.dropA2A(name)
	}
}
