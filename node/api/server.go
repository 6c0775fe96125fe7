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
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
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
	checks   []Check
	status   func(*Status)

	routes  map[string]map[string]http.HandlerFunc // path → method → handler
	srv     *http.Server
	closing chan struct{} // closed by Shutdown; ends event streams
	once    sync.Once

	// externals are the agents registered over the API, by name, and
	// tokens their agent tokens' hashes, to the agent's name.
	extMu     sync.Mutex
	externals map[string]*external
	tokens    map[string]string
	keys      map[string]crypto.PrivKey // without a Registry: keys made here
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
	metrics := promhttp.HandlerFor(n.Registry(), promhttp.HandlerOpts{})
	s.routes = map[string]map[string]http.HandlerFunc{
		PathNode:       {http.MethodGet: s.handleNode},
		PathPeers:      {http.MethodGet: s.handlePeers},
		PathStats:      {http.MethodGet: s.handleStats},
		PathIntents:    {http.MethodPost: s.handlePublish},
		PathSubscribe:  {http.MethodGet: s.handleSubscribe},
		PathTasks:      {http.MethodPost: s.handleRequest, http.MethodGet: s.handleTasks},
		PathTask:       {http.MethodGet: s.handleTask, http.MethodDelete: s.handleCancel},
		PathMetrics:    {http.MethodGet: metrics.ServeHTTP},
		PathApprovals:  {http.MethodGet: s.handleApprovals},
		PathApproval:   {http.MethodPost: s.handleDecide},
		PathFindAgents: {http.MethodGet: s.handleFindAgents},

		PathStatus: {http.MethodGet: s.handleStatus},
		PathHealth: {http.MethodGet: s.handleHealth}, // served before authentication

		PathExternalAgents:   {http.MethodPost: s.handleExternalRegister},
		PathExternalAgent:    {http.MethodDelete: s.handleExternalRemove},
		PathExternalEvents:   {http.MethodGet: s.handleExternalEvents},
		PathExternalBid:      {http.MethodPost: s.handleExternalReply("bid")},
		PathExternalProgress: {http.MethodPost: s.handleExternalReply("progress")},
		PathExternalResult:   {http.MethodPost: s.handleExternalReply("result")},
		PathExternalFailure:  {http.MethodPost: s.handleExternalReply("failure")},
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
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
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("api shutdown: %w", err)
	}
	return nil
}

// ServeHTTP authenticates and routes one request. A panic in a handler is
// answered with 500 and logged; it never takes the daemon down.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			log.Errorw("api handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			writeError(w, http.StatusInternalServerError, "internal error")
		}
	}()
	switch {
	case r.URL.Path == PathOpenAPI && r.Method == http.MethodGet:
		handleOpenAPI(w, r) // the API's description is public
		return
	case r.URL.Path == PathHealth && r.Method == http.MethodGet:
		s.handleHealth(w, r) // probes carry no token
		return
	}
	p, why, ok := s.authenticate(r)
	if !ok {
		s.refuse(w, r, http.StatusUnauthorized, fmt.Sprintf("%s: send Authorization: Bearer <the operator token from the home's api.token, or an external agent's token>", why))
		return
	}
	r = withPrincipal(r, p)
	if !p.operator && !agentPath(r.URL.Path) {
		s.refuse(w, r, http.StatusForbidden, fmt.Sprintf("this token is external agent %s's: it is good only for that agent's /v1/external/ calls; %s %s needs the operator token (the home's api.token)",
			p.agent, r.Method, r.URL.Path))
		return
	}
	methods, ok := s.route(r)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint %q", r.URL.Path))
		return
	}
	h, ok := methods[r.Method]
	if !ok {
		allow := make([]string, 0, len(methods))
		for m := range methods {
			allow = append(allow, m)
		}
		slices.Sort(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: method not allowed (use %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	h(w, r)
}

// route finds the handlers of r's path: an exact path, else a pattern
// whose last segment is "{id}", which sets r's path value "id".
func (s *Server) route(r *http.Request) (map[string]http.HandlerFunc, bool) {
	if methods, ok := s.routes[r.URL.Path]; ok {
		return methods, true
	}
	for pattern, methods := range s.routes {
		prefix, ok := strings.CutSuffix(pattern, "{id}")
		if !ok {
			continue
		}
		id, ok := strings.CutPrefix(r.URL.Path, prefix)
		if ok && id != "" && !strings.Contains(id, "/") {
			r.SetPathValue("id", id)
			return methods, true
		}
	}
	return nil, false
}

// started answers 503 and reports false when the node is not running.
func (s *Server) started(w http.ResponseWriter) bool {
	if s.n.Host() == nil {
		writeError(w, http.StatusServiceUnavailable, node.ErrNotStarted.Error())
		return false
	}
	return true
}

func (s *Server) handleNode(w http.ResponseWriter, _ *http.Request) {
	if !s.started(w) {
		return
	}
	info := NodeInfo{Peer: s.n.ID(), Addrs: []string{}, Version: s.version}
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
	if err := decodeBody(w, r, s.maxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(req.Payload) == 0 {
		writeError(w, http.StatusBadRequest, "payload is required (any JSON value)")
		return
	}
	if err := intent.ValidCapability(req.Capability); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Kind != "" && !req.Kind.Valid() {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%v %q: want task, offer or event", intent.ErrBadKind, req.Kind))
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("ttl %q: want a positive Go duration such as \"30s\"", req.TTL))
			return
		}
		// The node would cut it short silently; say so instead.
		if limit := s.n.MaxIntentTTL(); d > limit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("ttl %s is above this node's maximum intent TTL of %s (limits.intent_ttl in config.yaml)", d, limit))
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
		writeError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, in)
}

// handleSubscribe streams the verified intents of one capability as
// Server-Sent Events until the client goes away or the server shuts down.
func (s *Server) handleSubscribe(w http.ResponseWriter, r *http.Request) {
	c := r.URL.Query().Get("capability")
	if err := intent.ValidCapability(c); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	sub, err := s.n.Subscribe(ctx, c)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	defer sub.Close()

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(format string, args ...any) bool {
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
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
		return fmt.Errorf("request body is over the limit of %d bytes", max)
	case errors.Is(err, io.EOF):
		return errors.New("bad request body: empty, want a JSON object")
	}
	return fmt.Errorf("bad request body: %v", err)
}

// statusOf maps an error of the node to an HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, node.ErrUnknownAgent):
		return http.StatusNotFound
	case errors.Is(err, intent.ErrBadCapability), errors.Is(err, intent.ErrBadKind),
		errors.Is(err, intent.ErrBadPayload), errors.Is(err, node.ErrPayloadTooLarge), errors.Is(err, node.ErrBadTTL):
		return http.StatusBadRequest
	case errors.Is(err, negotiation.ErrUnknownTask):
		return http.StatusNotFound
	case errors.Is(err, node.ErrNotStarted), errors.Is(err, node.ErrClosed), errors.Is(err, negotiation.ErrClosed):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		log.Errorw("marshal response", "err", err)
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	if status >= 500 {
		log.Warnw("api error", "status", status, "err", msg)
	}
	writeJSON(w, status, errorBody{Error: msg})
}
