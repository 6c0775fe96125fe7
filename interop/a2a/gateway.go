package a2a

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	a2agrpc "github.com/a2aproject/a2a-go/v2/a2agrpc/v1"
	"github.com/a2aproject/a2a-go/v2/a2asrv"
	"github.com/a2aproject/a2a-go/v2/a2asrv/limiter"
	logging "github.com/ipfs/go-log/v2"
	"google.golang.org/grpc"

	"github.com/parleynet/parley/admission"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
)

var log = logging.Logger("parley/a2a")

// Paths the gateway serves, under its base URL.
const (
	// CardPath is the gateway's Agent Card (A2A's well-known path).
	CardPath = a2asrv.WellKnownAgentCardPath
	// JSONRPCPath is the JSON-RPC binding.
	JSONRPCPath = "/jsonrpc"
	// RESTPath is the HTTP+JSON (REST) binding's prefix.
	RESTPath = "/rest"
	// AgentCardPath is the card of one hosted agent: /agents/{name}/agent-card.json.
	AgentCardPath = "/agents/{name}/agent-card.json"
)

// SecurityScheme is the name of the bearer scheme in the cards.
const SecurityScheme = "bearer"

// Defaults of Config's bounds.
const (
	DefaultMaxBody  = 1 << 20
	DefaultMaxInput = 256 << 10
	DefaultMaxTasks = 1000
	DefaultMaxLive  = 64
)

// Metadata keys a message may carry (message metadata, or the request's).
const (
	// MetaSkill names the skill (a parley capability) to request.
	MetaSkill = "skill"
	// MetaCapability is the same as MetaSkill, by parley's name.
	MetaCapability = "capability"
	// MetaBudget is the most the requester will pay (a number).
	MetaBudget = "budget"
	// MetaSummary is the public part of the call bidders see (any JSON).
	MetaSummary = "summary"
	// MetaTimeout bounds the task (a Go duration such as "30s").
	MetaTimeout = "timeout"
	// MetaBidWindow is how long bids are taken (a Go duration; the
	// node clamps it).
	MetaBidWindow = "bid_window"
	// MetaTask is where status updates and the task carry parley's task ID.
	MetaTask = "parley_task"
)

// HostedAgent is one of the node's agents the gateway describes.
type HostedAgent struct {
	Name         string
	Capabilities []string
}

// Config configures a Gateway. Node and Token are required.
type Config struct {
	// Node is the node whose mesh answers.
	Node *node.Node
	// Token is the bearer token every A2A call must carry.
	Token string
	// BaseURL is the URL clients reach the gateway at (the cards name
	// it); default http://<listen address>.
	BaseURL string
	// GRPCAddr is the host:port clients reach the gRPC binding at. Set
	// it when the gateway will serve gRPC (ServeGRPC), so the cards name
	// it from the start; ServeGRPC sets it to its listener's address if
	// it is empty.
	GRPCAddr string
	// Name and Description go on the gateway's card.
	Name, Description string
	// Version goes on the cards (parley's version).
	Version string
	// Agents lists the hosted agents whose capabilities are skills; it is
	// asked on every card fetch, so reloads show.
	Agents func() []HostedAgent
	// Export are further capabilities offered as skills: ones the mesh
	// can find, served by other nodes.
	Export []string
	// MaxBody bounds a request body in bytes (default 1 MiB); MaxInput a
	// task's input (default 256 KiB).
	MaxBody, MaxInput int
	// MaxTasks bounds the tasks remembered (default 1000); MaxLive those
	// running at once (default 64).
	MaxTasks, MaxLive int
	// Timeout is a task's deadline when the message gives none, and the
	// longest one it may give (default: the node's).
	Timeout time.Duration
	// Agent names the hosted agent that requests for A2A clients ("" is
	// the node's default agent): the policy's request list and budgets
	// for that agent bound what A2A clients may ask the mesh for.
	Agent string
	// RequestOptions apply to every request the gateway makes, before
	// what a message asks (e.g. negotiation.WithEnoughBids for a mesh
	// whose size is known).
	RequestOptions []negotiation.RequestOption
}

// Gateway is a node's A2A server. Build it with New, serve it with
// Serve, stop it with Close.
type Gateway struct {
	cfg     Config
	n       *node.Node
	handler a2asrv.RequestHandler
	mux     *http.ServeMux

	// ctx is canceled by Close: it cancels every running task, whose
	// executions a2a-go detaches from their HTTP requests.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // running executions

	mu     sync.Mutex
	srv    *http.Server
	grpc   *grpc.Server
	closed bool
	live   map[a2a.TaskID]*run // A2A task → its parley request, while it runs (input.go)
	store  *store
}

// New checks cfg and builds a gateway; it opens nothing.
func New(cfg Config) (*Gateway, error) {
	switch {
	case cfg.Node == nil:
		return nil, errors.New("a2a gateway: Config.Node is required")
	case len(cfg.Token) < 16:
		return nil, errors.New("a2a gateway: Config.Token must be at least 16 characters")
	}
	if cfg.Agent != "" {
		if _, err := cfg.Node.Agent(cfg.Agent); err != nil {
			return nil, fmt.Errorf("a2a gateway: agent %q: %w", cfg.Agent, err)
		}
	}
	for _, c := range cfg.Export {
		if err := intent.ValidCapability(c); err != nil {
			return nil, fmt.Errorf("a2a gateway: export %q: %w", c, err)
		}
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.MaxInput <= 0 {
		cfg.MaxInput = DefaultMaxInput
	}
	if cfg.MaxTasks <= 0 {
		cfg.MaxTasks = DefaultMaxTasks
	}
	if cfg.MaxLive <= 0 {
		cfg.MaxLive = DefaultMaxLive
	}
	if cfg.Name == "" {
		cfg.Name = "parley"
	}
	if cfg.Description == "" {
		cfg.Description = "A parley node: each skill is negotiated in a peer-to-peer mesh of agents (contract net) and done by the winner."
	}
	if cfg.Agents == nil {
		cfg.Agents = func() []HostedAgent { return nil }
	}
	g := &Gateway{cfg: cfg, n: cfg.Node, live: map[a2a.TaskID]*run{}, store: newStore(cfg.MaxTasks)}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.handler = a2asrv.NewHandler(&executor{g: g},
		a2asrv.WithTaskStore(g.store),
		a2asrv.WithConcurrencyConfig(limiter.ConcurrencyConfig{MaxExecutions: cfg.MaxLive}),
		a2asrv.WithCallInterceptors(&guard{g: g}),
		a2asrv.WithCapabilityChecks(&a2a.AgentCapabilities{Streaming: true}),
		a2asrv.WithLogger(sdkLogger()),
	)
	ih, ok := g.handler.(*a2asrv.InterceptedHandler)
	if !ok {
		return nil, fmt.Errorf("a2a gateway: a2a-go's handler is a %T, not the intercepted handler this gateway wraps", g.handler)
	}
	ih.Handler = cancelWaiting{RequestHandler: ih.Handler, g: g}
	mux := http.NewServeMux()
	mux.Handle("GET "+CardPath, a2asrv.NewAgentCardHandler(a2asrv.AgentCardProducerFn(func(context.Context) (*a2a.AgentCard, error) {
		return g.Card(), nil
	})))
	mux.HandleFunc("GET "+AgentCardPath, g.serveAgentCard)
	mux.Handle(JSONRPCPath, g.bounded(a2asrv.NewJSONRPCHandler(g.handler, a2asrv.WithTransportKeepAlive(15*time.Second)), true))
	mux.Handle(RESTPath+"/", http.StripPrefix(RESTPath, g.bounded(a2asrv.NewRESTHandler(g.handler, a2asrv.WithTransportKeepAlive(15*time.Second)), false)))
	g.mux = mux
	return g, nil
}

// Handler is the gateway's HTTP handler (the cards and both bindings).
func (g *Gateway) Handler() http.Handler { return g.mux }

// Serve serves the gateway on ln until Close. A BaseURL left empty
// becomes http://<ln's address>.
func (g *Gateway) Serve(ln net.Listener) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		_ = ln.Close()
		return nil
	}
	if g.cfg.BaseURL == "" {
		g.cfg.BaseURL = "http://" + ln.Addr().String()
	}
	g.srv = &http.Server{Handler: g.mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	srv := g.srv
	g.mu.Unlock()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ServeGRPC serves the gRPC binding on ln until Close; the cards then
// name it. The token, the audit record and the bounds are the same as
// over HTTP (a message is at most MaxBody bytes).
func (g *Gateway) ServeGRPC(ln net.Listener) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		_ = ln.Close()
		return nil
	}
	if g.cfg.GRPCAddr == "" {
		g.cfg.GRPCAddr = ln.Addr().String()
	}
	g.grpc = grpc.NewServer(grpc.MaxRecvMsgSize(g.cfg.MaxBody), grpc.MaxConcurrentStreams(uint32(4*g.cfg.MaxLive)))
	a2agrpc.NewHandler(g.handler).RegisterWith(g.grpc)
	srv := g.grpc
	g.mu.Unlock()
	err := srv.Serve(ln)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// URL is the base URL the cards name.
func (g *Gateway) URL() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cfg.BaseURL
}

// Close stops serving: connections and open streams are cut, running
// tasks are canceled (their parley tasks and contractors too), and it
// returns once their executions have ended, or when ctx ends.
func (g *Gateway) Close(ctx context.Context) error {
	g.mu.Lock()
	g.closed = true
	srv, gs := g.srv, g.grpc
	g.mu.Unlock()
	g.cancel()
	var err error
	if srv != nil {
		err = srv.Close()
	}
	if gs != nil {
		gs.Stop()
	}
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("a2a gateway: running tasks did not end in time: %w", context.Cause(ctx)))
	}
	return err
}

// Card is the gateway's Agent Card: a skill per exported capability.
func (g *Gateway) Card() *a2a.AgentCard {
	byCap := map[string][]string{}
	for _, a := range g.cfg.Agents() {
		for _, c := range a.Capabilities {
			byCap[c] = append(byCap[c], a.Name)
		}
	}
	for _, c := range g.cfg.Export {
		if _, ok := byCap[c]; !ok {
			byCap[c] = nil
		}
	}
	card := g.baseCard(g.cfg.Name, g.cfg.Description)
	for _, c := range slices.Sorted(maps.Keys(byCap)) {
		card.Skills = append(card.Skills, skill(c, byCap[c]))
	}
	return card
}

func (g *Gateway) baseCard(name, description string) *a2a.AgentCard {
	base := strings.TrimSuffix(g.URL(), "/")
	ifaces := []*a2a.AgentInterface{
		a2a.NewAgentInterface(base+JSONRPCPath, a2a.TransportProtocolJSONRPC),
		a2a.NewAgentInterface(base+RESTPath, a2a.TransportProtocolHTTPJSON),
	}
	g.mu.Lock()
	if g.cfg.GRPCAddr != "" {
		ifaces = append(ifaces, a2a.NewAgentInterface(g.cfg.GRPCAddr, a2a.TransportProtocolGRPC))
	}
	g.mu.Unlock()
	return &a2a.AgentCard{
		Name:                name,
		Description:         description,
		Version:             g.cfg.Version,
		SupportedInterfaces: ifaces,
		Capabilities:        a2a.AgentCapabilities{Streaming: true},
		DefaultInputModes:   []string{"application/json", "text/plain"},
		DefaultOutputModes:  []string{"application/json"},
		SecuritySchemes: a2a.NamedSecuritySchemes{SecurityScheme: a2a.HTTPAuthSecurityScheme{
			Scheme: "Bearer", Description: "the token in the node's a2a.token (or a2a.token_file)"}},
		SecurityRequirements: a2a.SecurityRequirementsOptions{{SecurityScheme: {}}},
		Skills:               []a2a.AgentSkill{},
	}
}

func skill(capability string, agents []string) a2a.AgentSkill {
	desc := "Negotiated in the mesh: every agent offering " + capability + " may bid; the best bid does it."
	if len(agents) > 0 {
		desc += " Offered here by " + strings.Join(agents, ", ") + "."
	}
	return a2a.AgentSkill{ID: capability, Name: capability, Description: desc, Tags: []string{"parley", capability},
		Examples: []string{`{"parts":[{"data":{…}}],"metadata":{"skill":"` + capability + `"}}`}}
}

// serveAgentCard serves the card of one hosted agent: its capabilities as
// skills. A message sent through it is still negotiated in the mesh, the
// agent bidding like any other.
func (g *Gateway) serveAgentCard(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	agents := g.cfg.Agents()
	i := slices.IndexFunc(agents, func(a HostedAgent) bool { return a.Name == name && len(a.Capabilities) > 0 })
	if i < 0 {
		http.Error(w, fmt.Sprintf("no hosted agent %q offers anything here", name), http.StatusNotFound)
		return
	}
	a := agents[i]
	card := g.baseCard(g.cfg.Name+"/"+a.Name, "The parley agent "+a.Name+", reached through its node's mesh: a message naming one of its skills is negotiated there, and it bids like any other agent.")
	for _, c := range a.Capabilities {
		card.Skills = append(card.Skills, skill(c, []string{a.Name}))
	}
	a2asrv.NewStaticAgentCardHandler(card).ServeHTTP(w, r)
}

// offers reports whether capability is one of the gateway's skills.
func (g *Gateway) offers(capability string) bool {
	if slices.Contains(g.cfg.Export, capability) {
		return true
	}
	for _, a := range g.cfg.Agents() {
		if slices.Contains(a.Capabilities, capability) {
			return true
		}
	}
	return false
}

// skills lists the gateway's skills, for error messages.
func (g *Gateway) skills() []string {
	var out []string
	for _, s := range g.Card().Skills {
		out = append(out, s.ID)
	}
	return out
}

// bounded caps a request's body: a declared length over the bound is
// refused before anything reads it, and a body that grows past it fails
// the decode.
func (g *Gateway) bounded(h http.Handler, jsonrpc bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > int64(g.cfg.MaxBody) {
			msg := fmt.Sprintf("request body of %d bytes is over the gateway's limit of %d bytes", r.ContentLength, g.cfg.MaxBody)
			g.refuse("body_size", r.RemoteAddr, msg, map[string]any{"path": r.URL.Path, "bytes": r.ContentLength})
			w.Header().Set("Content-Type", "application/json")
			if jsonrpc {
				// JSON-RPC's invalid request, as a2a-go writes its errors.
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				fmt.Fprintf(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":%q}}`+"\n", msg)
				return
			}
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			fmt.Fprintf(w, `{"error":{"code":413,"status":"INVALID_ARGUMENT","message":%q}}`+"\n", msg)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, int64(g.cfg.MaxBody))
		h.ServeHTTP(w, r)
	})
}

// refuse hands a refusal to the admission layer, which counts and audits
// it like every other entry's.
func (g *Gateway) refuse(rule, who, rationale string, detail map[string]any) {
	if err := g.n.Admission().Refuse(admission.EntryA2A, rule, who, rationale, detail); err == nil {
		log.Debugw("a2a refusal not recorded", "rule", rule)
	}
}

// guard is the gateway's CallInterceptor: the token first, then an audit
// record of every call that passes.
type guard struct {
	a2asrv.PassthroughCallInterceptor
	g *Gateway
}

func (gd *guard) Before(ctx context.Context, cc *a2asrv.CallContext, req *a2asrv.Request) (context.Context, any, error) {
	g := gd.g
	if !g.authorized(cc) {
		g.refuse("token", "a2a client", "A2A call "+cc.Method()+" without a valid bearer token", map[string]any{"method": cc.Method()})
		return ctx, nil, a2a.NewError(a2a.ErrUnauthenticated, "a bearer token is required (Authorization: Bearer <the node's a2a.token>)")
	}
	cc.User = a2asrv.NewAuthenticatedUser("operator", nil)
	detail := map[string]any{"method": cc.Method()}
	switch p := req.Payload.(type) {
	case *a2a.SendMessageRequest:
		if cc.Method() == "SendMessage" && (p.Config == nil || !p.Config.ReturnImmediately) {
			ctx = context.WithValue(ctx, blocking{}, true)
		}
		if p.Message != nil {
			detail["message"] = p.Message.ID
			if p.Message.TaskID != "" {
				detail["task"] = string(p.Message.TaskID)
			}
			if c := capabilityOf(p); c != "" {
				detail["skill"] = c
			}
		}
	case *a2a.GetTaskRequest:
		detail["task"] = string(p.ID)
	case *a2a.CancelTaskRequest:
		detail["task"] = string(p.ID)
	case *a2a.SubscribeToTaskRequest:
		detail["task"] = string(p.ID)
	}
	if err := g.n.Audit("a2a.call", "A2A "+cc.Method(), detail); err != nil {
		// An entry that cannot be audited is not taken.
		return ctx, nil, a2a.NewError(a2a.ErrInternalError, "the node's audit log cannot record the call: "+err.Error())
	}
	return ctx, nil, nil
}

func (g *Gateway) authorized(cc *a2asrv.CallContext) bool {
	sp := cc.ServiceParams()
	if sp == nil {
		return false
	}
	vals, ok := sp.Get("authorization")
	if !ok {
		vals, _ = sp.Get("Authorization")
	}
	for _, v := range vals {
		tok, ok := strings.CutPrefix(v, "Bearer ")
		if ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(g.cfg.Token)) == 1 {
			return true
		}
	}
	return false
}
