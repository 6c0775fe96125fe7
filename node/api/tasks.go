package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
)

// handleRequest runs one negotiation for the duration of the HTTP request.
// The task is canceled when the client goes away or the server shuts down;
// either way the outcome is what is answered.
func (s *Server) handleRequest(w http.ResponseWriter, r *http.Request) {
	var req RequestBody
	if !readBody(w, r, s.maxBody, &req) {
		return
	}
	need, opts, err := req.parse()
	if err != nil {
		writeError(w, CodeBadRequest, err.Error())
		return
	}
	if !s.started(w) {
		return
	}
	if wantsEvents(r) {
		s.streamRequest(r.Context(), w, need, opts)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() { // the server shutting down cancels the task too
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	out, err := s.n.Request(ctx, need, opts...)
	if out == nil {
		if err == nil {
			err = errors.New("the node returned no outcome")
		}
		writeError(w, codeOf(err), err.Error())
		return
	}
	if out.Bids == nil { // a copy: the node may share the outcome
		o := *out
		o.Bids = []negotiation.BidInfo{}
		out = &o
	}
	writeJSON(w, http.StatusOK, out)
}

// parse checks a RequestBody and turns it into a Need and options. Its
// errors name the field.
func (req *RequestBody) parse() (negotiation.Need, []negotiation.RequestOption, error) {
	var none negotiation.Need
	if err := intent.ValidCapability(req.Capability); err != nil {
		return none, nil, err
	}
	need := negotiation.Need{Capability: req.Capability, Budget: req.Budget}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *json.RawMessage
	}{{"summary", req.Summary, &need.Summary}, {"input", req.Input, &need.Input}} {
		switch {
		case len(f.raw) == 0 || string(f.raw) == "null":
		case !json.Valid(f.raw):
			return none, nil, fmt.Errorf("%s is not valid JSON", f.name)
		default:
			*f.dst = f.raw
		}
	}
	if req.Budget < 0 || math.IsInf(req.Budget, 0) || math.IsNaN(req.Budget) {
		return none, nil, fmt.Errorf("budget %g: want a price ≥ 0 (0 means no limit)", req.Budget)
	}
	if req.Calls < 0 {
		return none, nil, fmt.Errorf("calls %d: want ≥ 1 (or 0 for the node's default)", req.Calls)
	}
	var opts []negotiation.RequestOption
	var window, timeout time.Duration
	for _, f := range []struct {
		name, value string
		dst         *time.Duration
		opt         func(time.Duration) negotiation.RequestOption
	}{{"bid_window", req.BidWindow, &window, negotiation.WithBidWindow}, {"timeout", req.Timeout, &timeout, negotiation.WithTimeout}} {
		if f.value == "" {
			continue
		}
		d, err := time.ParseDuration(f.value)
		if err != nil || d <= 0 {
			return none, nil, fmt.Errorf("%s %q: want a positive Go duration such as \"2s\"", f.name, f.value)
		}
		*f.dst = d
		opts = append(opts, f.opt(d))
	}
	if window > 0 && timeout > 0 && window >= timeout {
		// The task would end before any bid could be taken.
		return none, nil, fmt.Errorf("bid_window %s: must be shorter than timeout %s", window, timeout)
	}
	st, err := negotiation.ParseStrategy(req.Strategy)
	if err != nil {
		return none, nil, err
	}
	if st != nil {
		opts = append(opts, negotiation.WithStrategy(st))
	}
	if req.Calls > 0 {
		opts = append(opts, negotiation.WithCalls(req.Calls))
	}
	if req.Agent != "" {
		opts = append(opts, negotiation.WithAgent(req.Agent))
	}
	return need, opts, nil
}

func (s *Server) handleTasks(w http.ResponseWriter, _ *http.Request) {
	if !s.started(w) {
		return
	}
	tasks := s.n.Tasks()
	if tasks == nil {
		tasks = []negotiation.TaskInfo{}
	}
	writeJSON(w, http.StatusOK, tasks)
}

func (s *Server) handleTask(w http.ResponseWriter, r *http.Request) {
	if !s.started(w) {
		return
	}
	id := r.PathValue("id")
	t, err := s.n.Task(id)
	if err != nil {
		writeError(w, codeOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// handleCancel cancels a task. Cancellation takes effect asynchronously:
// the answer is the task as it is right after the cancel was sent, which
// may not be terminal yet.
func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) {
	if !s.started(w) {
		return
	}
	id := r.PathValue("id")
	if err := s.n.CancelTask(id); err != nil {
		code := codeOf(err)
		if code == CodeInternal {
			code = CodeConflict // already ended, or otherwise not cancelable
		}
		writeError(w, code, err.Error())
		return
	}
	t, err := s.n.Task(id)
	if err != nil { // ended and evicted in between
		t = negotiation.TaskInfo{Task: id}
	}
	writeJSON(w, http.StatusAccepted, t)
}
