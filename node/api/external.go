package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/sharedctx"
)

// Paths of the external-agent endpoints: a program in any language
// registers an agent, holds the event stream open, and answers on the
// other endpoints. An agent whose stream is closed does not bid, and the
// tasks it holds fail (the requester then fails over).
const (
	PathExternalAgents   = "/v1/external/agents"        // POST {"name","capabilities"} → ExternalRegistration (operator token)
	PathExternalAgent    = "/v1/external/agents/{name}" // DELETE: deregister (operator token)
	PathExternalEvents   = "/v1/external/events"        // GET ?agent=NAME: SSE of call, counter, award, cancel
	PathExternalBid      = "/v1/external/bid"           // POST {"agent","task","price","eta","rationale"} or {"agent","task","refuse"}: a call's or a counter's answer
	PathExternalProgress = "/v1/external/progress"      // POST {"agent","task","fraction","note"}
	PathExternalResult   = "/v1/external/result"        // POST {"agent","task","result"}
	PathExternalFailure  = "/v1/external/failure"       // POST {"agent","task","error"}
)

// ExternalAgentBody registers an external agent.
type ExternalAgentBody struct {
	Name         string   `json:"name"`
	Capabilities []string `json:"capabilities"`
}

// ExternalEvent is one event on an external agent's stream.
type ExternalEvent struct {
	Type    string               `json:"type"` // call, counter, award, cancel
	Task    string               `json:"task"`
	Call    *negotiation.Call    `json:"call,omitempty"`
	Counter *negotiation.Counter `json:"counter,omitempty"`
	Bid     *negotiation.Bid     `json:"bid,omitempty"`
	Input   json.RawMessage      `json:"input,omitempty"`
}

// ExternalReply is what an external agent posts back.
type ExternalReply struct {
	Agent string `json:"agent"`
	Task  string `json:"task"`
	// Price is a bid's price; a bid must give it (0 is a free bid) or
	// Refuse, so that an empty post is not taken for a free bid.
	Price     *float64        `json:"price,omitempty"`
	ETA       intent.Duration `json:"eta,omitempty"`
	Rationale string          `json:"rationale,omitempty"`
	Refuse    string          `json:"refuse,omitempty"`
	Fraction  float64         `json:"fraction,omitempty"`
	Note      string          `json:"note,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     string          `json:"error,omitempty"`
}

// external bridges one registered external agent to the negotiation
// service: it is the agent's negotiation.Handler.
type external struct {
	name string
	reg  Registration // guarded by the server's extMu

	mu      sync.Mutex
	revoked chan struct{}      // closed when the agent's token is revoked
	events  chan ExternalEvent // nil while no stream is connected
	gone    chan struct{}      // closed when the current stream ends
	bids    map[string]chan ExternalReply
	working map[string]*extTask
}

type extTask struct {
	progress func(float64, string)
	done     chan ExternalReply
	task     negotiation.Task
	ctx      *sharedctx.Client // the task's shared context, made on first use (context.go)
}

var errNoStream = errors.New("external agent is not connected")

// revoke ends the stream opened with the agent's current token.
func (e *external) revoke() {
	e.mu.Lock()
	defer e.mu.Unlock()
	close(e.revoked)
	e.revoked = make(chan struct{})
}

// connected reports whether the agent's event stream is open.
func (e *external) connected() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.events != nil
}

func (e *external) push(ev ExternalEvent) error {
	if e.events == nil {
		return errNoStream
	}
	select {
	case e.events <- ev:
		return nil
	default:
		return errors.New("external agent's event stream is full")
	}
}

// Bid implements negotiation.Handler: the call goes to the agent's stream
// and the bid comes back on PathExternalBid within the bid window.
func (e *external) Bid(ctx context.Context, call negotiation.Call) (negotiation.Bid, error) {
	return e.ask(ctx, ExternalEvent{Type: "call", Task: call.Task, Call: &call}, negotiation.ErrNoBid)
}

// Counter implements negotiation.Counterer: the counter-offer goes to the
// agent's stream and the answer comes back on PathExternalBid within the
// bid window: a bid accepts or revises, a refusal (or silence) leaves the
// last bid standing.
func (e *external) Counter(ctx context.Context, call negotiation.Call, c negotiation.Counter) (negotiation.Bid, error) {
	return e.ask(ctx, ExternalEvent{Type: "counter", Task: call.Task, Call: &call, Counter: &c}, negotiation.ErrRefuseCounter)
}

// ask pushes ev and waits for the bid posted for its task. No stream and
// no answer in time are refused itself (a silent no-bid); the agent's
// refusal wraps it with its reason.
func (e *external) ask(ctx context.Context, ev ExternalEvent, refused error) (negotiation.Bid, error) {
	ch := make(chan ExternalReply, 1)
	e.mu.Lock()
	if err := e.push(ev); err != nil {
		e.mu.Unlock()
		return negotiation.Bid{}, refused
	}
	e.bids[ev.Task] = ch
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		if e.bids[ev.Task] == ch {
			delete(e.bids, ev.Task)
		}
		e.mu.Unlock()
	}()
	select {
	case r := <-ch:
		if r.Refuse != "" {
			return negotiation.Bid{}, fmt.Errorf("%w: %s", refused, r.Refuse)
		}
		return negotiation.Bid{Price: *r.Price, ETA: time.Duration(r.ETA), Rationale: r.Rationale}, nil
	case <-ctx.Done():
		return negotiation.Bid{}, refused
	}
}

// Work implements negotiation.Handler: the award (with the input) goes to
// the stream, and the result or failure comes back on the endpoints. A
// stream that closes fails the task.
func (e *external) Work(ctx context.Context, t negotiation.Task) (json.RawMessage, error) {
	task := &extTask{progress: t.Progress, done: make(chan ExternalReply, 1), task: t}
	e.mu.Lock()
	bid := t.Bid
	if err := e.push(ExternalEvent{Type: "award", Task: t.Call.Task, Call: &t.Call, Bid: &bid, Input: t.Input}); err != nil {
		e.mu.Unlock()
		return nil, err
	}
	gone := e.gone
	e.working[t.Call.Task] = task
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.working, t.Call.Task)
		e.mu.Unlock()
	}()
	select {
	case r := <-task.done:
		if r.Error != "" {
			return nil, errors.New(r.Error)
		}
		return r.Result, nil
	case <-gone:
		return nil, fmt.Errorf("external agent %s disconnected", e.name)
	case <-ctx.Done():
		e.mu.Lock()
		_ = e.push(ExternalEvent{Type: "cancel", Task: t.Call.Task})
		e.mu.Unlock()
		return nil, ctx.Err()
	}
}

// Registry keeps external agents across daemon restarts: each agent's key
// (so its AgentID stays the same) and the registrations, with a hash of
// each agent's token (so a restarted daemon accepts the token it issued).
// The daemon backs it with the node's home.
type Registry interface {
	// Key returns the named agent's key, creating and storing one if it
	// has none.
	Key(name string) (crypto.PrivKey, error)
	// Load returns the stored registrations.
	Load() ([]Registration, error)
	// Save replaces the stored registrations.
	Save([]Registration) error
}

// Registration is an external agent as a Registry keeps it.
type Registration struct {
	Name         string
	Capabilities []string
	TokenSHA256  string
	Registered   time.Time
}

// ExternalRegistration answers POST /v1/external/agents: the agent and the
// token its program uses for its /v1/external/* calls. The token is shown
// only here.
type ExternalRegistration struct {
	Name         string           `json:"name"`
	ID           identity.AgentID `json:"id"`
	Capabilities []string         `json:"capabilities"`
	Token        string           `json:"token"`
}

// Sentinel errors of external agent registration.
var (
	// ErrNameTaken: the name is one of the node's own agents (config.yaml's,
	// or "default").
	ErrNameTaken = errors.New("agent name taken by one of the node's own agents")
)

// ReservedAgent is the name no external agent may take: the node's
// default agent, which acts when no agent is named.
const ReservedAgent = "default"

// register adds or re-registers an external agent and returns its new
// token. Re-registering replaces the capabilities, revokes the old token
// and ends the stream opened with it.
func (s *Server) register(name string, caps []string, restore *Registration) (*ExternalRegistration, error) {
	if err := validRegistration(name, caps); err != nil {
		return nil, err
	}
	s.extMu.Lock()
	defer s.extMu.Unlock()
	e, known := s.externals[name]
	if !known {
		if name == ReservedAgent {
			return nil, fmt.Errorf("%w: %q is the node's default agent", ErrNameTaken, name)
		}
		if _, err := s.n.Agent(name); err == nil {
			return nil, fmt.Errorf("%w: the node hosts an agent called %q (from config.yaml)", ErrNameTaken, name)
		}
	}
	key, err := s.agentKeyLocked(name)
	if err != nil {
		return nil, err
	}
	if e == nil {
		e = &external{name: name, bids: map[string]chan ExternalReply{}, working: map[string]*extTask{}, revoked: make(chan struct{})}
	}
	a, err := s.n.AddAgent(node.AgentCard{Name: name, Capabilities: caps, Key: key}, e)
	if err != nil {
		if !known {
			_ = s.n.RemoveAgent(name)
		}
		return nil, err
	}
	reg := Registration{Name: name, Capabilities: slices.Clone(caps), Registered: time.Now().UTC()}
	var token string
	if restore != nil {
		reg = *restore
	} else {
		if token, err = NewToken(); err != nil {
			return nil, err
		}
		reg.TokenSHA256 = tokenHash(token)
	}
	old := e.reg
	e.reg = reg
	s.externals[name] = e
	if restore == nil { // restored registrations are already saved
		if err := s.saveLocked(); err != nil {
			e.reg = old
			if !known {
				delete(s.externals, name)
				_ = s.n.RemoveAgent(name)
			}
			return nil, err
		}
	}
	if old.TokenSHA256 != "" && old.TokenSHA256 != reg.TokenSHA256 {
		delete(s.tokens, old.TokenSHA256)
		e.revoke()
	}
	s.tokens[reg.TokenSHA256] = name
	return &ExternalRegistration{Name: name, ID: a.ID, Capabilities: reg.Capabilities, Token: token}, nil
}

// validRegistration checks an external agent's name and capabilities.
func validRegistration(name string, caps []string) error {
	if err := identity.ValidAgentName(name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if len(caps) == 0 {
		return errors.New("capabilities: an external agent offers at least one")
	}
	for _, c := range caps {
		if err := intent.ValidCapability(c); err != nil {
			return fmt.Errorf("capabilities: %w", err)
		}
	}
	return nil
}

// agentKeyLocked returns the key of the named external agent: from the
// registry, else one made once by this server.
func (s *Server) agentKeyLocked(name string) (crypto.PrivKey, error) {
	if s.registry != nil {
		return s.registry.Key(name)
	}
	if k, ok := s.keys[name]; ok {
		return k, nil
	}
	k, err := identity.GenerateKey()
	if err != nil {
		return nil, err
	}
	s.keys[name] = k
	return k, nil
}

// saveLocked writes the registrations to the registry, if there is one.
func (s *Server) saveLocked() error {
	if s.registry == nil {
		return nil
	}
	regs := make([]Registration, 0, len(s.externals))
	for _, e := range s.externals {
		regs = append(regs, e.reg)
	}
	slices.SortFunc(regs, func(a, b Registration) int { return strings.Compare(a.Name, b.Name) })
	if err := s.registry.Save(regs); err != nil {
		return fmt.Errorf("save external agents: %w", err)
	}
	return nil
}

// deregister removes an external agent: it stops bidding, its token stops
// working and its stream ends (the tasks it holds fail over).
func (s *Server) deregister(name string) error {
	s.extMu.Lock()
	defer s.extMu.Unlock()
	e, ok := s.externals[name]
	if !ok {
		return fmt.Errorf("%w %q", node.ErrUnknownAgent, name)
	}
	delete(s.externals, name)
	if err := s.saveLocked(); err != nil {
		s.externals[name] = e
		return err
	}
	delete(s.tokens, e.reg.TokenSHA256)
	e.revoke()
	if err := s.n.RemoveAgent(name); err != nil && !errors.Is(err, node.ErrUnknownAgent) {
		return err
	}
	return nil
}

// Restore registers again, with their old tokens, the external agents the
// registry holds: after a restart their programs reconnect as they were.
// A registration whose name is now one of the node's own agents is dropped
// with a warning. The node must be running.
func (s *Server) Restore() error {
	if s.registry == nil {
		return nil
	}
	regs, err := s.registry.Load()
	if err != nil {
		return fmt.Errorf("load external agents: %w", err)
	}
	var errs []error
	dropped := false
	for _, reg := range regs {
		if _, err := s.register(reg.Name, reg.Capabilities, &reg); err != nil {
			if errors.Is(err, ErrNameTaken) {
				log.Warnw("dropping an external agent registration: its name is now one of the node's own agents", "agent", reg.Name, "err", err)
				dropped = true
				continue
			}
			errs = append(errs, fmt.Errorf("external agent %s: %w", reg.Name, err))
		}
	}
	if dropped {
		s.extMu.Lock()
		errs = append(errs, s.saveLocked())
		s.extMu.Unlock()
	}
	return errors.Join(errs...)
}

// Externals returns the names of the external agents registered now.
func (s *Server) Externals() []string {
	s.extMu.Lock()
	defer s.extMu.Unlock()
	names := make([]string, 0, len(s.externals))
	for n := range s.externals {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ExternalCapabilities maps each registered external agent to the
// capabilities it offers (for the A2A gateway's card).
func (s *Server) ExternalCapabilities() map[string][]string {
	s.extMu.Lock()
	defer s.extMu.Unlock()
	out := make(map[string][]string, len(s.externals))
	for n, e := range s.externals {
		out[n] = slices.Clone(e.reg.Capabilities)
	}
	return out
}

func (s *Server) handleExternalRegister(w http.ResponseWriter, r *http.Request) {
	if !s.started(w) {
		return
	}
	var body ExternalAgentBody
	if !readBody(w, r, 64<<10, &body) {
		return
	}
	if err := validRegistration(body.Name, body.Capabilities); err != nil {
		writeError(w, CodeBadRequest, err.Error())
		return
	}
	reg, err := s.register(body.Name, body.Capabilities, nil)
	switch {
	case errors.Is(err, ErrNameTaken):
		writeError(w, CodeConflict, err.Error()+"; pick another name")
		return
	case err != nil:
		writeError(w, codeOf(err), err.Error())
		return
	}
	if s.audit != nil {
		_ = s.audit("external.registered", fmt.Sprintf("external agent %s registered, offering %s", reg.Name, strings.Join(reg.Capabilities, ", ")),
			map[string]any{"name": reg.Name, "id": reg.ID, "capabilities": reg.Capabilities})
	}
	log.Infow("external agent registered", "agent", reg.Name, "id", reg.ID, "capabilities", reg.Capabilities)
	writeJSON(w, http.StatusCreated, reg)
}

func (s *Server) handleExternalRemove(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.deregister(name); err != nil {
		writeError(w, codeOf(err), err.Error())
		return
	}
	if s.audit != nil {
		_ = s.audit("external.removed", "external agent "+name+" removed", map[string]string{"name": name})
	}
	log.Infow("external agent removed", "agent", name)
	writeJSON(w, http.StatusOK, map[string]string{"name": name})
}

func (s *Server) external(w http.ResponseWriter, name string) *external {
	s.extMu.Lock()
	e := s.externals[name]
	s.extMu.Unlock()
	if e == nil {
		writeError(w, CodeNotFound, fmt.Sprintf("no external agent %q (register it with POST %s)", name, PathExternalAgents))
	}
	return e
}

func (s *Server) handleExternalEvents(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("agent")
	e, name := s.actingExternal(w, r, name)
	if e == nil {
		return
	}
	events := make(chan ExternalEvent, 64)
	gone := make(chan struct{})
	s.extMu.Lock()
	p := principalOf(r)
	current := s.externals[name] == e && (p.operator || e.reg.TokenSHA256 == p.hash)
	s.extMu.Unlock()
	e.mu.Lock()
	switch {
	case !current: // re-registered or removed since the request came in
		e.mu.Unlock()
		s.refuse(w, r, CodeUnauthorized, "this agent token was revoked")
		return
	case e.events != nil:
		e.mu.Unlock()
		writeError(w, CodeConflict, "this agent's event stream is already open")
		return
	}
	e.events, e.gone = events, gone
	revoked := e.revoked
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.events = nil
		close(gone)
		e.mu.Unlock()
	}()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprintf(w, ": events for %s\n\n", e.name); err != nil || rc.Flush() != nil {
		return
	}
	ping := time.NewTicker(s.ping)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		case <-revoked:
			return
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case ev := <-events:
			b, _ := json.Marshal(ev)
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Type, b); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// actingExternal is the registered external agent a request acts as, and
// its name: name, else the agent token's own. It answers the error and
// returns nil when the caller may not act for it or it is not registered.
func (s *Server) actingExternal(w http.ResponseWriter, r *http.Request, name string) (*external, string) {
	if p := principalOf(r); name == "" && p.agent != "" {
		name = p.agent
	}
	if !s.actFor(w, r, name) {
		return nil, name
	}
	return s.external(w, name), name
}

// handleExternalReply serves the bid, progress, result and failure posts.
func (s *Server) handleExternalReply(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body ExternalReply
		if !readBody(w, r, s.maxBody, &body) {
			return
		}
		var e *external
		if e, body.Agent = s.actingExternal(w, r, body.Agent); e == nil {
			return
		}
		if kind == "result" && (len(body.Result) == 0 || !json.Valid(body.Result)) {
			writeError(w, CodeBadRequest, "result: want a JSON value")
			return
		}
		if kind == "bid" && body.Refuse == "" {
			if p := body.Price; p == nil || *p < 0 || math.IsNaN(*p) || math.IsInf(*p, 0) {
				writeError(w, CodeBadRequest, `bid: want "price" (a number ≥ 0; 0 is a free bid) or "refuse" (why not)`)
				return
			}
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if kind == "bid" {
			ch, ok := e.bids[body.Task]
			if !ok {
				writeError(w, CodeConflict, fmt.Sprintf("task %q is not open for bids from %s", body.Task, body.Agent))
				return
			}
			delete(e.bids, body.Task)
			ch <- body
			writeJSON(w, http.StatusOK, map[string]string{"task": body.Task})
			return
		}
		t, ok := e.working[body.Task]
		if !ok {
			writeError(w, CodeConflict, fmt.Sprintf("%s holds no task %q", body.Agent, body.Task))
			return
		}
		switch kind {
		case "progress":
			t.progress(body.Fraction, body.Note)
		case "failure":
			if body.Error == "" {
				body.Error = "failed"
			}
			fallthrough
		default:
			select {
			case t.done <- body:
			default:
				writeError(w, CodeConflict, fmt.Sprintf("task %q already has its answer", body.Task))
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"task": body.Task})
	}
}
