package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/tracing"
)

// Defaults of the server's options.
const (
	DefaultMaxBodySize     = 1 << 20
	DefaultPingInterval    = 15 * time.Second
	DefaultShutdownTimeout = 5 * time.Second
)

// Server serves a node's API. Build it with NewServer, run it with Serve,
// stop it with Shutdown or by cancelling Serve's context. It is also an
// http.Handler, with authentication, so tests can mount it as they like.
type Server struct {
	n       *node.Node
	token   string // the operator token
	version string
	maxBody int64
	ping    time.Duration
	since   time.Time // when the server was made, the uptime's start unless WithStatus says otherwise

	audit    func(kind, rationale string, detail any) error
	refused  func(rule, who, rationale string, detail map[string]any)
	registry Registry
	admin    AgentAdmin
	checks   []Check
	status   func(*Status)
	// workflows runs the node's workflows (workflows.go); nil answers 501.
	workflows Workflows

	mux      *http.ServeMux
	patterns []string // the mux's, "METHOD /path", as registered
	srv      *http.Server
	drain    drain
	closing  chan struct{} // closed by Shutdown; ends event streams
	once     sync.Once

	// externals are the agents registered over the API, by name, and
	// tokens their agent tokens' hashes, to the agent's name.
	extMu     sync.Mutex
	externals map[string]*external
	tokens    map[string]string
	keys      map[string]crypto.PrivKey // without a Registry: keys made here

	ui       uiAuth // the dashboard's login codes and sessions (ui.go)
	auditDir string // the audit log GET /v1/audit reads (uiaudit.go)

	mcpMount func(func(token string) *Client) http.Handler // WithMCP (inprocess.go)
	mcp      http.Handler
}

// Option configures a Server.
type Option func(*Server)

// WithVersion sets the version reported by GET /v1/node.
func WithVersion(v string) Option { return func(s *Server) { s.version = v } }

// WithMaxBodySize caps request bodies (default 1 MiB).
func WithMaxBodySize(n int64) Option { return func(s *Server) { s.maxBody = n } }

// WithPingInterval sets how often an idle event stream gets a ": ping"
// comment (default 15 s).
func WithPingInterval(d time.Duration) Option { return func(s *Server) { s.ping = d } }

// WithRefusals hands every refused request (401 and 403) to refused: the
// daemon gives the node's admission layer, which audits refusals
// summarised per rule and requester.
func WithRefusals(refused func(rule, who, rationale string, detail map[string]any)) Option {
	return func(s *Server) { s.refused = refused }
}

// WithAudit records, through record, the external agents the API
// registers and removes. The daemon passes the node's Audit, so these land in the same
// hash-chained log as everything else.
func WithAudit(record func(kind, rationale string, detail any) error) Option {
	return func(s *Server) { s.audit = record }
}

// WithRegistry keeps external agents' keys and registrations in r, so
// that they survive restarts (see Server.Restore).
func WithRegistry(r Registry) Option { return func(s *Server) { s.registry = r } }

// NewServer returns the API server of n. Requests must carry the operator
// token, or an agent token the server issued, as a bearer token; an empty
// operator token refuses every request but those of agent tokens.
func NewServer(n *node.Node, token string, opts ...Option) *Server {
	s := &Server{
		n:         n,
		token:     token,
		version:   "devel",
		maxBody:   DefaultMaxBodySize,
		ping:      DefaultPingInterval,
		since:     time.Now(),
		closing:   make(chan struct{}),
		externals: map[string]*external{},
		tokens:    map[string]string{},
		keys:      map[string]crypto.PrivKey{},
	}
	for _, o := range opts {
		o(s)
	}
	// The runtime's collectors are the process's, not the node's: a
	// process may run many nodes (the demo, simulations), and each would
	// carry a copy.
	proc := prometheus.NewRegistry()
	proc.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := promhttp.HandlerFor(prometheus.Gatherers{n.Registry(), proc}, promhttp.HandlerOpts{})
	s.mux = http.NewServeMux()
	for _, rt := range []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"GET " + PathOpenAPI, handleOpenAPI}, // public, see ServeHTTP
		{"GET " + PathHealth, s.handleHealth}, // public, see ServeHTTP
		{"GET " + PathStatus, s.handleStatus},
		{"GET " + PathNode, s.handleNode},
		{"GET " + PathPeers, s.handlePeers},
		{"GET " + PathStats, s.handleStats},
		{"GET " + PathUI, handleUIAsset("index.html", "text/html; charset=utf-8")}, // the dashboard, ui.go
		{"GET " + PathUIScript, handleUIAsset("app.js", "text/javascript; charset=utf-8")},
		{"GET " + PathUIStyle, handleUIAsset("app.css", "text/css; charset=utf-8")},
		{"GET " + PathUILogin, s.handleUILogin}, // public, see ServeHTTP
		{"POST " + PathUILoginLinks, s.handleUILoginLink},
		{"GET " + PathUIEvents, s.handleUIEvents},
		{"GET " + PathAudit, s.handleAudit},
		{"POST " + PathIntents, s.handlePublish},
		{"GET " + PathSubscribe, s.handleSubscribe},
		{"POST " + PathTasks, s.handleRequest},
		{"GET " + PathTasks, s.handleTasks},
		{"GET " + PathTask, s.handleTask},
		{"DELETE " + PathTask, s.handleCancel},
		{"POST " + PathTaskInput, s.handleAnswer}, // answer.go
		{"GET " + PathTrace, s.handleTrace},
		{"GET " + PathApprovals, s.handleApprovals},
		{"POST " + PathApproval, s.handleDecide},
		{"GET " + PathFindAgents, s.handleFindAgents},
		{"GET " + PathAgents, s.handleAgents},
		{"POST " + PathAgents, s.handleAddAgent},
		{"DELETE " + PathAgent, s.handleRemoveAgent},
		{"POST " + PathExternalAgents, s.handleExternalRegister},
		{"DELETE " + PathExternalAgent, s.handleExternalRemove},
		{"GET " + PathExternalEvents, s.handleExternalEvents},
		{"POST " + PathExternalBid, s.handleExternalReply("bid")},
		{"POST " + PathExternalProgress, s.handleExternalReply("progress")},
		{"POST " + PathExternalResult, s.handleExternalReply("result")},
		{"POST " + PathExternalFailure, s.handleExternalReply("failure")},
		{"POST " + PathExternalAsk, s.handleExternalAsk}, // externalask.go
		{"POST " + PathWorkflows, s.handleStartWorkflow},
		{"GET " + PathWorkflows, s.handleWorkflows},
		{"GET " + PathWorkflow, s.handleWorkflow},
		{"DELETE " + PathWorkflow, s.handleCancelWorkflow},
		{"GET " + PathWorkflowEvents, s.handleWorkflowEvents},
		{"GET " + PathWorkflowContext, s.handleWorkflowContext},
		{"GET " + PathExternalContext, s.handleExternalContext},
		{"GET " + PathExternalContextKey, s.handleExternalContext},
		{"PUT " + PathExternalContextKey, s.handleExternalContextPut},
		{"GET " + PathMetrics, metrics.ServeHTTP},
		{"POST " + PathMCP, s.handleMCP}, // inprocess.go
	} {
		s.mux.HandleFunc(rt.pattern, rt.h)
		s.patterns = append(s.patterns, rt.pattern)
	}
	if s.mcpMount != nil {
		s.mcp = s.mcpMount(s.InProcessClient)
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ConnState:         s.drain.connState,
	}
	return s
}

// Serve accepts connections on ln until ctx ends or Shutdown is called.
// When ctx ends it shuts down gracefully, waiting up to
// DefaultShutdownTimeout for requests in flight. It returns nil after a
// shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultShutdownTimeout)
		defer cancel()
		err := s.Shutdown(sctx)
		<-errc
		return err
	}
}

// Shutdown ends event streams, stops accepting requests and waits, within
// ctx, for the others to finish; when ctx ends first the remaining
// connections are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.once.Do(func() { close(s.closing) })
	err := s.drain.shutdown(ctx, s.srv)
	if err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("api shutdown: %w", err)
	}
	return nil
}

// public reports whether a route is served without a token: the API's
// description, the health that probes ask for, and the dashboard's login,
// which checks its one-time code itself.
func public(pattern string) bool {
	return pattern == "GET "+PathOpenAPI || pattern == "GET "+PathHealth || pattern == "GET "+PathUILogin
}

// ServeHTTP authenticates and routes one request. A panic in a handler is
// answered with 500 and logged; it never takes the daemon down.
//
// Authentication comes before routing, so that a request without a good
// token learns nothing of the routes: it is 401 whatever its path. Only
// then are unknown paths 404 and wrong methods 405 (with Allow), answered
// in JSON like every other error.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			log.Errorw("api handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			writeError(w, CodeInternal, "internal error")
		}
	}()
	_, pattern := s.mux.Handler(r)
	if public(pattern) {
		s.mux.ServeHTTP(w, r)
		return
	}
	p, why, ok := s.authenticate(r)
	if !ok {
		s.refuse(w, r, CodeUnauthorized, fmt.Sprintf("%s: send Authorization: Bearer <the operator token from the home's api.token, or an external agent's token>, or open the dashboard with the link `parley ui` prints", why))
		return
	}
	r = withPrincipal(r, p)
	// A caller's W3C trace context (an MCP or A2A client's, a script's)
	// makes what the request does part of the caller's trace.
	if tp := r.Header.Get("traceparent"); tp != "" {
		r = r.WithContext(tracing.Extract(r.Context(), s.n.Tracing().Tracer("parley/api"), tp))
	}
	if why, ok := p.may(r, pattern); !ok {
		s.refuse(w, r, CodeForbidden, why)
		return
	}
	if pattern == "" {
		s.unrouted(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// unrouted answers a request that matches no route. The mux knows whether
// that is a 404 or a 405 (and which methods to Allow) or a redirect to a
// cleaned path; it writes plain text, so its answer is caught here and
// told again in JSON.
func (s *Server) unrouted(w http.ResponseWriter, r *http.Request) {
	h, _ := s.mux.Handler(r)
	rec := &headerRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	switch rec.status {
	case http.StatusNotFound:
		writeError(w, CodeNotFound, fmt.Sprintf("no such endpoint %s %q", r.Method, r.URL.Path))
	case http.StatusMethodNotAllowed:
		allow := rec.header.Get("Allow")
		w.Header().Set("Allow", allow)
		writeError(w, CodeMethodNotAllowed, fmt.Sprintf("%s %s: method not allowed (use %s)", r.Method, r.URL.Path, allow))
	default: // a redirect to the cleaned path: pass it on
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
	}
}

// headerRecorder keeps the status and headers a handler writes, and drops
// its body.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return len(b), nil
}
func (h *headerRecorder) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}

// started answers 503 and reports false when the node is not running.
func (s *Server) started(w http.ResponseWriter) bool {
	if s.n.Host() == nil {
		writeError(w, CodeUnavailable, node.ErrNotStarted.Error())
		return false
	}
	return true
}

func (s *Server) handleNode(w http.ResponseWriter, _ *http.Request) {
	if !s.started(w) {
		return
	}
	info := NodeInfo{Peer: s.n.ID(), Addrs: []string{}, Agents: []AgentInfo{}, Version: s.version}
	for _, a := range s.n.Addrs() {
		info.Addrs = append(info.Addrs, a.String())
	}
	for _, a := range s.n.Agents() {
		info.Agents = append(info.Agents, AgentInfo{Name: a.Name, ID: a.ID})
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) handlePeers(w http.ResponseWriter, _ *http.Request) {
	if !s.started(w) {
		return
	}
	peers := s.n.Peers()
	if peers == nil {
		peers = []node.PeerInfo{}
	}
	writeJSON(w, http.StatusOK, peers)
}

func (s *Server) handleStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.n.Stats())
}

func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) {
	var req PublishRequest
	if !readBody(w, r, s.maxBody, &req) {
		return
	}
	if len(req.Payload) == 0 {
		writeError(w, CodeBadRequest, "payload is required (any JSON value)")
		return
	}
	if err := intent.ValidCapability(req.Capability); err != nil {
		writeError(w, CodeBadRequest, err.Error())
		return
	}
	if req.Kind != "" && !req.Kind.Valid() {
		writeError(w, CodeBadRequest, fmt.Sprintf("%v %q: want task, offer or event", intent.ErrBadKind, req.Kind))
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			writeError(w, CodeBadRequest, fmt.Sprintf("ttl %q: want a positive Go duration such as \"30s\"", req.TTL))
			return
		}
		// The node would cut it short silently; say so instead.
		if limit := s.n.MaxIntentTTL(); d > limit {
			writeError(w, CodeBadRequest, fmt.Sprintf("ttl %s is above this node's maximum intent TTL of %s (limits.intent_ttl in config.yaml)", d, limit))
			return
		}
		ttl = d
	}
	in, err := s.n.Publish(r.Context(), node.PublishRequest{
		Agent:      req.Agent,
		Kind:       req.Kind,
		Capability: req.Capability,
		Payload:    req.Payload,
		TTL:        ttl,
	})
	if err != nil {
		writeError(w, codeOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, in)
}

// handleSubscribe streams the verified intents of one capability as
// Server-Sent Events until the client goes away or the server shuts down.
func (s *Server) handleSubscribe(w http.ResponseWriter, r *http.Request) {
	c := r.URL.Query().Get("capability")
	if err := intent.ValidCapability(c); err != nil {
		writeError(w, CodeBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	sub, err := s.n.Subscribe(ctx, c)
	if err != nil {
		writeError(w, codeOf(err), err.Error())
		return
	}
	defer sub.Close()

	send := startEvents(w)
	if !send(": subscribed to %s\n\n", c) {
		return
	}

	// One goroutine waits on the subscription; this one owns the writer.
	ins := make(chan *intent.Intent)
	go func() {
		for {
			in, err := sub.Next(ctx)
			if err != nil {
				if ctx.Err() == nil {
					log.Debugw("subscription ended", "capability", c, "err", err)
					cancel()
				}
				return
			}
			select {
			case ins <- in:
			case <-ctx.Done():
				return
			}
		}
	}()
	ping := time.NewTicker(s.ping)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		case <-ping.C:
			if !send(": ping\n\n") {
				return
			}
		case in := <-ins:
			b, err := json.Marshal(in)
			if err != nil {
				log.Warnw("marshal intent", "id", in.ID, "err", err)
				continue
			}
			if !send("data: %s\n\n", b) {
				return
			}
		}
	}
}

// decodeBody decodes one JSON object from r's body into v: at most max
// bytes, no unknown fields, nothing after it.
func decodeBody(w http.ResponseWriter, r *http.Request, max int64, v any) error {
	body := http.MaxBytesReader(w, r.Body, max)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if err = dec.Decode(&struct{}{}); err == io.EOF {
			return nil
		} else if err == nil {
			return errors.New("bad request body: more than one JSON value")
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return &bodyTooLarge{max: max}
	case errors.Is(err, io.EOF):
		return errors.New("bad request body: empty, want a JSON object")
	}
	return fmt.Errorf("bad request body: %v", err)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		log.Errorw("marshal response", "err", err)
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error","code":"internal"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// startEvents answers 200 with an event stream's headers and returns how
// to send on it: each call writes and flushes, and reports false once the
// client is gone.
func startEvents(w http.ResponseWriter) func(format string, args ...any) bool {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // a proxy in front must not buffer it
	w.WriteHeader(http.StatusOK)
	return func(format string, args ...any) bool {
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
}
