// Package rpc is parley's direct request–reply protocol, /parley/rpc/1.0.0,
// for a simple ask of one known agent with no negotiation: one stream, one
// signed request frame, one reply signed by the agent asked. It is written
// the way go-libp2p's ping is: the protocol ID, the service that registers
// and runs the stream handler, and the client call, in this one file.
//
// The package owns the wire exchange, the handler's lifetime (bounded by
// the ask's timeout, the asker's stream and the service's Close) and the
// count of refused frames. It does not own agents or their keys (the node
// does), nor finding which peer hosts an agent (discovery does).
package rpc

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/internal/promcount"
	"github.com/parleynet/parley/negotiation/frame"
	"github.com/parleynet/parley/tracing"
)

var log = logging.Logger("parley/rpc")

// ID is the protocol.
const ID = "/parley/rpc/1.0.0"

// DefaultTimeout bounds one ask when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Message types, each at version 1. The asker sends one rpc.request
// {"to","capability","input"} and keeps its side of the stream open until
// the reply: closing or resetting it earlier withdraws the ask. The node
// answers with one rpc.response {"output"} or rpc.error {"error"}, signed
// by the agent asked, except for unknownAgent (below).
//
// Version 2 binds each reply to its request: the reply carries the
// SHA-256 of the request frame it answers ("request", hex), so an answer
// signed for one asker cannot be replayed to another. Other versions are
// refused.
const (
	msgRequest  = "rpc.request"
	msgResponse = "rpc.response"
	msgError    = "rpc.error"
	version     = 2
)

// unknownAgent is the rpc.error a node sends when it does not host the
// agent asked. It cannot be signed by that agent, so the node signs it with
// a key of its own; it is the one reply an asker accepts from a signer
// other than the agent it asked, and it carries no output.
const unknownAgent = "unknown agent"

// Sentinel errors callers branch on.
var (
	// ErrUnknownAgent: the node does not host the agent asked.
	ErrUnknownAgent = errors.New("no such agent on that node")
	// ErrRemote wraps the error message the remote handler returned.
	ErrRemote = errors.New("remote agent failed")
	// ErrClosed: the service was closed.
	ErrClosed = errors.New("rpc service closed")
	// ErrDenied: the node asked refused the ask (its policy or limits).
	ErrDenied = errors.New("ask refused by the node asked")
	// ErrNotBound: a reply does not name the request it answers.
	ErrNotBound = errors.New("reply is not bound to this request")
)

// Request is an ask as its handler sees it.
type Request struct {
	// From is the asking agent; its signature on the request was verified.
	From identity.AgentID `json:"from"`
	// Peer is the asking agent's node: the peer at the other end of the
	// stream, proven by the connection.
	Peer peer.ID `json:"peer"`
	// To is the agent asked, one this service handles.
	To identity.AgentID `json:"to"`
	// Capability names what is asked; it may be empty.
	Capability string `json:"capability"`
	// Input is the asker's JSON input; nil if it sent none.
	Input json.RawMessage `json:"input,omitempty"`
}

// Handler answers asks addressed to one agent. ctx ends when the ask's
// timeout passes, the asker goes away, or the service closes. The error's
// message is sent to the asker.
type Handler func(ctx context.Context, req Request) (json.RawMessage, error)

// Gate is the admission layer as the service sees it: asked before a
// handler runs. On success release is called when the handler returns.
// A refusal's text goes to the asker.
type Gate interface {
	// AskStream is asked when a peer opens a stream, before anything on
	// it is read: reading and verifying an ask, and signing its reply,
	// cost the node whatever the ask is for.
	AskStream(p peer.ID) error
	Ask(ctx context.Context, agent *identity.Agent, req Request) (release func(), err error)
}

// Config sets up a Service. The zero Config works.
type Config struct {
	// Gate admits asks; nil admits all.
	Gate Gate
	// Replay refuses frames seen before; the node shares its window with
	// its other protocols. Nil means a window of the service's own.
	Replay *identity.ReplayWindow
	// MaxFrameSize caps a frame in bytes; zero means frame.DefaultMaxSize.
	MaxFrameSize int
	// Timeout bounds one ask on both sides: the asker's wait for the reply
	// and the handler's context. Zero means DefaultTimeout.
	Timeout time.Duration
	// Forged, if set, hears of each request a peer sent that no honest
	// peer sends (identity.Forged), after its stream is reset.
	Forged func(p peer.ID, reason string)
	// Registerer, if set, receives parley_rpc_dropped_total.
	Registerer prometheus.Registerer
	// Tracer records an rpc.ask span for each ask and an rpc.serve span
	// for each answered; nil records none and costs nothing.
	Tracer trace.Tracer
}

type request struct {
	To         identity.AgentID `json:"to"`
	Capability string           `json:"capability,omitempty"`
	Input      json.RawMessage  `json:"input,omitempty"`
	// Trace is the asker's W3C traceparent: untrusted, parsed strictly,
	// and it never decides what this node records.
	Trace string `json:"trace,omitempty"`
}

type reply struct {
	// Request is the hex SHA-256 of the request frame answered.
	Request string          `json:"request"`
	Output  json.RawMessage `json:"output,omitempty"`
	Error   string          `json:"error,omitempty"`
	// Denied marks an error that is the node's refusal, not the agent's.
	Denied bool `json:"denied,omitempty"`
}

type handled struct {
	agent *identity.Agent
	fn    Handler
}

// Service serves asks for the agents registered with Handle and sends
// asks with Ask.
type Service struct {
	h   host.Host
	cfg Config
	// node signs the unknown-agent reply; nil if no key could be made, in
	// which case such asks are answered with a reset.
	node *identity.Agent

	// ctx ends at Close; handlers and asks in flight derive from it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // handlers in flight

	mu       sync.Mutex
	closed   bool
	handlers map[identity.AgentID]handled
	// dropped counts refused requests by reason (parley_rpc_dropped_total).
	dropped *prometheus.CounterVec
}

// New registers the protocol on h.
func New(h host.Host, cfg Config) *Service {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxFrameSize <= 0 {
		cfg.MaxFrameSize = frame.DefaultMaxSize
	}
	if cfg.Replay == nil {
		cfg.Replay = identity.NewReplayWindow(identity.ReplayConfig{})
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		h:        h,
		cfg:      cfg,
		ctx:      ctx,
		cancel:   cancel,
		handlers: map[identity.AgentID]handled{},
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_rpc_dropped_total",
			Help: "Direct asks refused before their handler, by reason.",
		}, []string{"reason"}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(s.dropped)
	}
	if k, err := identity.GenerateKey(); err == nil {
		s.node, _ = identity.NewAgent("node", k)
	}
	h.SetStreamHandler(ID, s.handle)
	return s
}

// Handle serves asks addressed to agent.ID with fn, replacing any handler
// it had; the replies are signed by agent.
func (s *Service) Handle(agent *identity.Agent, fn Handler) {
	if agent == nil || fn == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[agent.ID] = handled{agent, fn}
}

// Remove stops serving asks addressed to id; asks in flight run on.
func (s *Service) Remove(id identity.AgentID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.handlers, id)
}

// Dropped returns how many requests were refused with a stream reset, by
// reason (frame.Reason's names, "stream" for a stream that failed before a
// frame arrived, "unexpected_type" for a frame that is not a request).
func (s *Service) Dropped() map[string]uint64 { return promcount.ByLabel(s.dropped) }

// Close removes the stream handler, cancels the context of the handlers
// and asks in flight, and waits for the handlers to return.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.h.RemoveStreamHandler(ID)
	s.cancel()
	s.wg.Wait()
	return nil
}

func (s *Service) frameOpts() frame.Options {
	return frame.Options{MaxSize: s.cfg.MaxFrameSize, Replay: s.cfg.Replay}
}

// handle is the stream handler: it serves one ask. Nothing a peer sends
// may crash the node, so it recovers and resets the stream.
func (s *Service) handle(st network.Stream) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = st.Reset()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			log.Errorw("rpc: serving an ask panicked; stream reset", "peer", st.Conn().RemotePeer(), "panic", r)
			_ = st.Reset()
		}
	}()
	s.serve(st)
}

func (s *Service) serve(st network.Stream) {
	if g := s.cfg.Gate; g != nil {
		if err := g.AskStream(st.Conn().RemotePeer()); err != nil {
			s.refuse(st, "rate", err)
			return
		}
	}
	conn := frame.New(st, nil, s.frameOpts())
	conn.SetReadTimeout(s.cfg.Timeout)
	// Close must not wait out a peer that opened a stream and says nothing.
	stopRead := context.AfterFunc(s.ctx, func() { _ = st.Reset() })
	var req request
	m, err := conn.Recv(&req)
	stopRead()
	switch {
	case err != nil:
		// The hook first: once the drop is counted, it has been heard.
		if s.cfg.Forged != nil && identity.Forged(err) {
			s.cfg.Forged(st.Conn().RemotePeer(), frame.Reason(err))
		}
		s.refuse(st, frame.Reason(err), err)
		return
	case m.Type != msgRequest:
		s.refuse(st, "unexpected_type", fmt.Errorf("%s from %s, want %s", m.Type, m.From, msgRequest))
		return
	case m.V != version:
		s.refuse(st, "version", fmt.Errorf("%s version %d from %s, this node speaks %d: %w", m.Type, m.V, m.From, version, identity.ErrUnsupportedVersion))
		return
	}
	sum := conn.LastSum()
	bound := hex.EncodeToString(sum[:])
	s.mu.Lock()
	hd, ok := s.handlers[req.To]
	s.mu.Unlock()
	if !ok {
		if s.node == nil {
			_ = st.Reset()
			return
		}
		conn.SetSelf(s.node)
		s.reply(conn, st, msgError, reply{Request: bound, Error: unknownAgent}, req.To)
		return
	}
	conn.SetSelf(hd.agent)

	ctx, span := tracing.Start(tracing.Extract(s.ctx, s.cfg.Tracer, req.Trace), s.cfg.Tracer, "rpc.serve", trace.SpanKindServer)
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(tracing.AttrAgent.String(string(req.To)), tracing.AttrName.String(hd.agent.Name), tracing.AttrPeer.String(st.Conn().RemotePeer().String()),
			attribute.String("parley.asker", string(m.From)), attribute.String("parley.capability", req.Capability))
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	// The asker keeps its side open until it has the reply, so any return
	// from this read before then (a reset, a close, more bytes) withdraws
	// the ask. Closing or resetting our side ends the read.
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		var b [1]byte
		_, _ = st.Read(b[:])
		cancel()
	}()
	defer func() {
		_ = st.CloseRead() // a no-op unless something panicked
		<-watched
	}()
	stopReset := context.AfterFunc(ctx, func() { _ = st.Reset() })

	r := Request{From: m.From, Peer: st.Conn().RemotePeer(), To: req.To, Capability: req.Capability, Input: req.Input}
	rep, typ := reply{Request: bound}, msgResponse
	if g := s.cfg.Gate; g != nil {
		release, err := g.Ask(ctx, hd.agent, r)
		if err != nil {
			if span.IsRecording() {
				span.SetStatus(codes.Error, "denied: "+err.Error())
			}
			rep, typ = reply{Request: bound, Error: err.Error(), Denied: true}, msgError
			if !stopReset() {
				return
			}
			s.reply(conn, st, typ, rep, req.To)
			return
		}
		defer release()
	}
	out, herr := s.call(ctx, hd.fn, r)
	if !stopReset() {
		// The ask ended before the handler did; the stream is reset.
		log.Debugw("rpc: ask ended before its handler", "peer", st.Conn().RemotePeer(), "from", m.From, "to", req.To, "err", context.Cause(ctx))
		return
	}
	if herr != nil && span.IsRecording() {
		span.SetStatus(codes.Error, herr.Error())
	}
	switch {
	case herr != nil:
		rep, typ = reply{Request: bound, Error: herr.Error()}, msgError
	case len(out) > 0 && !json.Valid(out):
		log.Warnw("rpc: handler returned invalid JSON", "agent", hd.agent.Name)
		rep, typ = reply{Request: bound, Error: "handler returned invalid JSON output"}, msgError
	default:
		rep.Output = out
	}
	s.reply(conn, st, typ, rep, req.To)
}

// reply writes the reply and closes the stream. A peer that never reads
// could block the write for ever, so the stream is reset if the write
// outlasts the ask's timeout or the service closes.
func (s *Service) reply(conn *frame.Conn, st network.Stream, typ string, rep reply, to identity.AgentID) {
	t := time.AfterFunc(s.cfg.Timeout, func() { _ = st.Reset() })
	defer t.Stop()
	defer context.AfterFunc(s.ctx, func() { _ = st.Reset() })()
	if err := conn.Send(typ, version, rep); err != nil {
		log.Debugw("rpc: reply not sent; stream reset", "peer", st.Conn().RemotePeer(), "to", to, "err", err)
		_ = st.Reset()
		return
	}
	_ = conn.Close()
}

// call runs a handler, turning a panic into an error for the asker.
func (s *Service) call(ctx context.Context, fn Handler, req Request) (out json.RawMessage, err error) {
	defer func() {
		if r := recover(); r != nil {
			log.Errorw("rpc: handler panicked", "to", req.To, "from", req.From, "capability", req.Capability, "panic", r)
			out, err = nil, errors.New("handler failed")
		}
	}()
	return fn(ctx, req)
}

// refuse resets a stream whose request was refused and counts why.
func (s *Service) refuse(st network.Stream, reason string, err error) {
	if reason == "" {
		reason = "stream"
	}
	s.dropped.WithLabelValues(reason).Inc()
	log.Debugw("rpc: request refused; stream reset", "peer", st.Conn().RemotePeer(), "reason", reason, "err", err)
	_ = st.Reset()
}

// Ask sends input to agent to on peer p, signed by from, and returns the
// agent's output. The reply must be signed by to. It waits at most the
// service's Timeout; errors wrap ErrUnknownAgent, ErrRemote (with the
// remote handler's message), ErrClosed, the context's error, or the
// frame or identity error a refused reply failed with.
func (s *Service) Ask(ctx context.Context, from *identity.Agent, p peer.ID, to identity.AgentID, capability string, input json.RawMessage) (json.RawMessage, error) {
	switch {
	case from == nil:
		return nil, errors.New("rpc: ask with no agent to sign it")
	case to == "":
		return nil, fmt.Errorf("rpc: ask on %s: no agent to ask", p)
	}
	if capability != "" {
		if err := intent.ValidCapability(capability); err != nil {
			return nil, fmt.Errorf("rpc: ask %s: %w", to, err)
		}
	}
	if len(input) > 0 && !json.Valid(input) {
		return nil, fmt.Errorf("rpc: ask %s: %w: input is not valid JSON", to, intent.ErrBadPayload)
	}
	if s.ctx.Err() != nil {
		return nil, ErrClosed
	}
	ctx, span := tracing.Start(ctx, s.cfg.Tracer, "rpc.ask", trace.SpanKindClient)
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(tracing.AttrAgent.String(string(from.ID)), tracing.AttrPeer.String(p.String()),
			attribute.String("parley.to", string(to)), attribute.String("parley.capability", capability))
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()

	out, err := s.ask(ctx, from, p, to, capability, input)
	if err != nil && span.IsRecording() {
		span.SetStatus(codes.Error, err.Error())
	}
	switch {
	case err == nil:
		return out, nil
	case s.ctx.Err() != nil:
		return nil, fmt.Errorf("rpc: ask %s on %s: %w", to, p, ErrClosed)
	case ctx.Err() != nil:
		return nil, fmt.Errorf("rpc: ask %s on %s: %w (%v)", to, p, ctx.Err(), err)
	case pastDeadline(ctx):
		// The answering node's timeout is ours: its reset at that
		// deadline can arrive before our own timer has fired.
		return nil, fmt.Errorf("rpc: ask %s on %s: %w (%v)", to, p, context.DeadlineExceeded, err)
	}
	return nil, fmt.Errorf("rpc: ask %s on %s: %w", to, p, err)
}

func pastDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

func (s *Service) ask(ctx context.Context, from *identity.Agent, p peer.ID, to identity.AgentID, capability string, input json.RawMessage) (json.RawMessage, error) {
	st, err := s.h.NewStream(network.WithAllowLimitedConn(ctx, "parley rpc"), p, ID) // a relayed peer too
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	defer context.AfterFunc(ctx, func() { _ = st.Reset() })()
	conn := frame.New(st, from, s.frameOpts())
	if err := conn.Send(msgRequest, version, request{To: to, Capability: capability, Input: input, Trace: tracing.Inject(ctx)}); err != nil {
		_ = st.Reset()
		return nil, err
	}
	sent := conn.LastSentSum()
	// The reply is pinned to to, checked after decoding rather than with
	// conn.ExpectPeer so that the node's unknown-agent error can be read.
	var rep reply
	m, err := conn.Recv(&rep)
	if err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("reply: %w", err)
	}
	_ = st.Close()
	if m.V != version {
		return nil, fmt.Errorf("%s version %d, this node speaks %d: %w", m.Type, m.V, version, identity.ErrUnsupportedVersion)
	}
	if rep.Request != hex.EncodeToString(sent[:]) {
		return nil, fmt.Errorf("%s from %s answers request %.16q: %w", m.Type, m.From, rep.Request, ErrNotBound)
	}
	if m.From != to {
		if m.Type == msgError && rep.Error == unknownAgent {
			return nil, ErrUnknownAgent
		}
		return nil, fmt.Errorf("%s signed by %s: %w", m.Type, m.From, frame.ErrUnexpectedSender)
	}
	switch m.Type {
	case msgResponse:
		return rep.Output, nil
	case msgError:
		if rep.Denied {
			return nil, fmt.Errorf("%w: %s", ErrDenied, rep.Error)
		}
		return nil, fmt.Errorf("%w: %s", ErrRemote, rep.Error)
	}
	return nil, fmt.Errorf("unexpected reply %q", m.Type)
}
