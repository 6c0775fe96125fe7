package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
)

// Paths of the external-agent endpoints: a program in any language
// registers an agent, holds the event stream open, and answers on the
// other endpoints. An agent whose stream is closed does not bid, and the
// tasks it holds fail (the requester then fails over).
const (
	PathExternalAgents   = "/v1/external/agents"   // POST {"name","capabilities"}
	PathExternalEvents   = "/v1/external/events"   // GET ?agent=NAME: SSE of call, award, cancel
	PathExternalBid      = "/v1/external/bid"      // POST {"agent","task","price","eta","rationale"} or {"agent","task","refuse"}
	PathExternalProgress = "/v1/external/progress" // POST {"agent","task","fraction","note"}
	PathExternalResult   = "/v1/external/result"   // POST {"agent","task","result"}
	PathExternalFailure  = "/v1/external/failure"  // POST {"agent","task","error"}
)

// ExternalAgentBody registers an external agent.
type ExternalAgentBody struct {
	Name         string   `json:"name"`
	Capabilities []string `json:"capabilities"`
}

// ExternalEvent is one event on an external agent's stream.
type ExternalEvent struct {
	Type  string            `json:"type"` // call, award, cancel
	Task  string            `json:"task"`
	Call  *negotiation.Call `json:"call,omitempty"`
	Bid   *negotiation.Bid  `json:"bid,omitempty"`
	Input json.RawMessage   `json:"input,omitempty"`
}

// ExternalReply is what an external agent posts back.
type ExternalReply struct {
	Agent     string          `json:"agent"`
	Task      string          `json:"task"`
	Price     float64         `json:"price,omitempty"`
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

	mu      sync.Mutex
	events  chan ExternalEvent // nil while no stream is connected
	gone    chan struct{}      // closed when the current stream ends
	bids    map[string]chan ExternalReply
	working map[string]*extTask
}

type extTask struct {
	progress func(float64, string)
	done     chan ExternalReply
}

var errNoStream = errors.New("external agent is not connected")

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
	ch := make(chan ExternalReply, 1)
	e.mu.Lock()
	if err := e.push(ExternalEvent{Type: "call", Task: call.Task, Call: &call}); err != nil {
		e.mu.Unlock()
		return negotiation.Bid{}, negotiation.ErrNoBid
	}
	e.bids[call.Task] = ch
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.bids, call.Task)
		e.mu.Unlock()
	}()
	select {
	case r := <-ch:
		if r.Refuse != "" {
			return negotiation.Bid{}, fmt.Errorf("%w: %s", negotiation.ErrNoBid, r.Refuse)
		}
		return negotiation.Bid{Price: r.Price, ETA: time.Duration(r.ETA), Rationale: r.Rationale}, nil
	case <-ctx.Done():
		return negotiation.Bid{}, negotiation.ErrNoBid
	}
}

// Work implements negotiation.Handler: the award (with the input) goes to
// the stream, and the result or failure comes back on the endpoints. A
// stream that closes fails the task.
func (e *external) Work(ctx context.Context, t negotiation.Task) (json.RawMessage, error) {
	task := &extTask{progress: t.Progress, done: make(chan ExternalReply, 1)}
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

func (s *Server) handleExternalRegister(w http.ResponseWriter, r *http.Request) {
	if !s.started(w) {
		return
	}
	var body ExternalAgentBody
	if err := decodeBody(w, r, 64<<10, &body); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(body.Capabilities) == 0 {
		writeError(w, http.StatusBadRequest, "capabilities: an external agent offers at least one")
		return
	}
	s.extMu.Lock()
	e, ok := s.externals[body.Name]
	if !ok {
		e = &external{name: body.Name, bids: map[string]chan ExternalReply{}, working: map[string]*extTask{}}
	}
	s.extMu.Unlock()
	a, err := s.n.AddAgent(node.AgentCard{Name: body.Name, Capabilities: body.Capabilities}, e)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	s.extMu.Lock()
	s.externals[body.Name] = e
	s.extMu.Unlock()
	writeJSON(w, http.StatusCreated, AgentInfo{Name: a.Name, ID: a.ID})
}

func (s *Server) external(w http.ResponseWriter, name string) *external {
	s.extMu.Lock()
	e := s.externals[name]
	s.extMu.Unlock()
	if e == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no external agent %q (register it with POST %s)", name, PathExternalAgents))
	}
	return e
}

func (s *Server) handleExternalEvents(w http.ResponseWriter, r *http.Request) {
	e := s.external(w, r.URL.Query().Get("agent"))
	if e == nil {
		return
	}
	events := make(chan ExternalEvent, 64)
	gone := make(chan struct{})
	e.mu.Lock()
	if e.events != nil {
		e.mu.Unlock()
		writeError(w, http.StatusConflict, "this agent's event stream is already open")
		return
	}
	e.events, e.gone = events, gone
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

// handleExternalReply serves the bid, progress, result and failure posts.
func (s *Server) handleExternalReply(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body ExternalReply
		if err := decodeBody(w, r, s.maxBody, &body); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		e := s.external(w, body.Agent)
		if e == nil {
			return
		}
		if kind == "result" && (len(body.Result) == 0 || !json.Valid(body.Result)) {
			writeError(w, http.StatusBadRequest, "result: want a JSON value")
			return
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if kind == "bid" {
			ch, ok := e.bids[body.Task]
			if !ok {
				writeError(w, http.StatusConflict, fmt.Sprintf("task %q is not open for bids from %s", body.Task, body.Agent))
				return
			}
			delete(e.bids, body.Task)
			ch <- body
			writeJSON(w, http.StatusOK, map[string]string{"task": body.Task})
			return
		}
		t, ok := e.working[body.Task]
		if !ok {
			writeError(w, http.StatusConflict, fmt.Sprintf("%s holds no task %q", body.Agent, body.Task))
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
				writeError(w, http.StatusConflict, fmt.Sprintf("task %q already has its answer", body.Task))
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"task": body.Task})
	}
}
