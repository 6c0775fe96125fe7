// Package rpc is parley's direct request–reply protocol, for a simple ask
// of one known agent with no negotiation: one stream, one signed request
// frame, one signed reply. It is written the way go-libp2p's ping is: the
// protocol ID, the service that handles it, and the client call.
package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/internal/frame"
)

var log = logging.Logger("parley/rpc")

// ID is the protocol.
const ID = "/parley/rpc/1.0.0"

// Message types.
const (
	msgRequest  = "rpc.request"
	msgResponse = "rpc.response"
	msgError    = "rpc.error"
)

// Sentinel errors callers branch on.
var (
	// ErrUnknownAgent: the node does not host the agent asked.
	ErrUnknownAgent = errors.New("no such agent on that node")
	// ErrRemote wraps the error message the remote handler returned.
	ErrRemote = errors.New("remote agent failed")
)

// Request is an ask as its handler sees it.
type Request struct {
	From       identity.AgentID `json:"from"`
	To         identity.AgentID `json:"to"`
	Capability string           `json:"capability"`
	Input      json.RawMessage  `json:"input,omitempty"`
}

// Handler answers asks addressed to one agent.
type Handler func(ctx context.Context, req Request) (json.RawMessage, error)

// Config sets up a Service.
type Config struct {
	// Replay refuses replayed frames; the node shares its window.
	Replay *identity.ReplayWindow
	// MaxFrameSize caps a frame (default frame.DefaultMaxSize).
	MaxFrameSize int
	// Timeout bounds one ask on both sides (default 30 s).
	Timeout time.Duration
}

type wire struct {
	To         identity.AgentID `json:"to,omitempty"`
	Capability string           `json:"capability,omitempty"`
	Input      json.RawMessage  `json:"input,omitempty"`
	Output     json.RawMessage  `json:"output,omitempty"`
	Error      string           `json:"error,omitempty"`
}

type handled struct {
	agent *identity.Agent
	fn    Handler
}

// Service serves asks for the agents registered with Handle.
type Service struct {
	h   host.Host
	cfg Config

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	handlers map[identity.AgentID]handled
}

// New registers the protocol on h.
func New(h host.Host, cfg Config) *Service {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{h: h, cfg: cfg, ctx: ctx, cancel: cancel, handlers: map[identity.AgentID]handled{}}
	h.SetStreamHandler(ID, s.handle)
	return s
}

// Handle serves asks addressed to agent with fn; its replies are signed
// by the agent.
func (s *Service) Handle(agent *identity.Agent, fn Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[agent.ID] = handled{agent, fn}
}

// Remove stops serving an agent.
func (s *Service) Remove(id identity.AgentID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.handlers, id)
}

// Close removes the protocol, cancels the handlers in flight and waits
// for them.
func (s *Service) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.h.RemoveStreamHandler(ID)
	s.cancel()
	s.wg.Wait()
	return nil
}

func (s *Service) opts() frame.Options {
	return frame.Options{MaxSize: s.cfg.MaxFrameSize, Replay: s.cfg.Replay}
}

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
			log.Errorw("rpc handler panicked", "panic", r)
			_ = st.Reset()
		}
	}()
	conn := frame.New(st, nil, s.opts())
	conn.SetReadTimeout(s.cfg.Timeout)
	var w wire
	m, err := conn.Recv(&w)
	if err != nil || m.Type != msgRequest {
		log.Debugw("rpc request refused; stream reset", "peer", st.Conn().RemotePeer(), "reason", frame.Reason(err), "err", err)
		_ = st.Reset()
		return
	}
	s.mu.Lock()
	hd, ok := s.handlers[w.To]
	s.mu.Unlock()
	if !ok {
		// Anyone may learn that an agent is not here; reply unsigned by
		// any agent would be unverifiable, so just end the stream.
		_ = st.Reset()
		return
	}
	conn.SetSelf(hd.agent)
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	// A requester that goes away cancels the work.
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	out, herr := hd.fn(ctx, Request{From: m.From, To: w.To, Capability: w.Capability, Input: w.Input})
	if herr != nil {
		_ = conn.Send(msgError, 1, wire{Error: herr.Error()})
	} else {
		_ = conn.Send(msgResponse, 1, wire{Output: out})
	}
	_ = conn.Close()
}

// Ask sends input to agent to on peer p, as from, and returns its answer.
// The reply must be signed by to.
func (s *Service) Ask(ctx context.Context, from *identity.Agent, p peer.ID, to identity.AgentID, capability string, input json.RawMessage) (json.RawMessage, error) {
	if capability != "" {
		if err := intent.ValidCapability(capability); err != nil {
			return nil, err
		}
	}
	if len(input) > 0 && !json.Valid(input) {
		return nil, fmt.Errorf("%w: ask input is not valid JSON", intent.ErrBadPayload)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	st, err := s.h.NewStream(ctx, p, ID)
	if err != nil {
		return nil, fmt.Errorf("ask %s on %s: %w", to, p, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	conn := frame.New(st, from, s.opts())
	conn.ExpectPeer(to)
	conn.SetReadTimeout(s.cfg.Timeout)
	defer conn.Close()
	if err := conn.Send(msgRequest, 1, wire{To: to, Capability: capability, Input: input}); err != nil {
		return nil, fmt.Errorf("ask %s: %w", to, err)
	}
	var w wire
	m, err := conn.Recv(&w)
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("ask %s: %w", to, ctx.Err())
	case err != nil && frame.Reason(err) == "":
		// The node ended the stream without a word: it does not host to.
		return nil, fmt.Errorf("ask %s on %s: %w (%v)", to, p, ErrUnknownAgent, err)
	case err != nil:
		return nil, fmt.Errorf("ask %s: refused the reply: %w", to, err)
	case m.Type == msgError:
		return nil, fmt.Errorf("%w: %s", ErrRemote, w.Error)
	case m.Type != msgResponse:
		return nil, fmt.Errorf("ask %s: unexpected %q", to, m.Type)
	}
	return w.Output, nil
}
