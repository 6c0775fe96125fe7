package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/parleynet/parley/negotiation"
)

// POST /v1/tasks with "Accept: text/event-stream" runs the same
// negotiation as without, and streams it: an "update" event for each of
// the task's updates as it happens (submitted, with the task's ID first;
// each call for proposals; working, with the winner; the winner's
// progress notes), then one "outcome" event. So a client follows a task
// it is waiting for, and the task is still canceled when the client goes
// away.

// maxPendingUpdates bounds the updates waiting for a slow client; past it
// progress is dropped (the outcome's history keeps every state).
const maxPendingUpdates = 64

// TaskEvent is one event of a streamed request; Type says which field it
// carries, and the event is named after it.
type TaskEvent struct {
	Type    string               `json:"type"` // update, outcome
	Update  *negotiation.Update  `json:"update,omitempty"`
	Outcome *negotiation.Outcome `json:"outcome,omitempty"`
}

// wantsEvents reports whether r's Accept header asks for an event stream
// rather than JSON.
func wantsEvents(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "text/event-stream" {
				return true
			}
		}
	}
	return false
}

type requestResult struct {
	out *negotiation.Outcome
	err error
}

// streamRequest runs the negotiation in a goroutine this handler owns and
// waits for: the handler returns only once the task has ended. Until the
// task's first update, nothing is written, so a request the node refuses
// at once (policy, an unknown agent) is answered with its error like any
// other.
func (s *Server) streamRequest(ctx context.Context, w http.ResponseWriter, need negotiation.Need, opts []negotiation.RequestOption) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	updates := make(chan negotiation.Update, maxPendingUpdates)
	done := make(chan requestResult, 1)
	opts = append(opts, negotiation.WithUpdates(func(u negotiation.Update) {
		select { // Updates must not block the negotiation
		case updates <- u:
		default:
		}
	}))
	go func() {
		out, err := s.n.Request(ctx, need, opts...)
		done <- requestResult{out, err}
	}()
	var first negotiation.Update
	select {
	case first = <-updates:
	case res := <-done:
		if res.out == nil {
			if res.err == nil {
				res.err = errors.New("the node returned no outcome")
			}
			writeError(w, codeOf(res.err), res.err.Error())
			return
		}
		s.sendOutcome(startEvents(w), updates, res.out)
		return
	}
	send := startEvents(w)
	alive := send(": task %s\n\n", first.Task) && sendEvent(send, TaskEvent{Type: "update", Update: &first})
	closing := s.closing
	for {
		if !alive {
			cancel() // the client is gone: so is its task
		}
		select {
		case u := <-updates:
			if alive {
				alive = sendEvent(send, TaskEvent{Type: "update", Update: &u})
			}
		case res := <-done:
			if alive && res.out != nil {
				s.sendOutcome(send, updates, res.out)
			}
			return
		case <-closing: // the server shutting down cancels the task too
			cancel()
			closing = nil
		}
	}
}

// sendOutcome sends the updates still pending, then the outcome.
func (s *Server) sendOutcome(send func(string, ...any) bool, updates <-chan negotiation.Update, out *negotiation.Outcome) {
drain:
	for {
		select {
		case u := <-updates:
			if !sendEvent(send, TaskEvent{Type: "update", Update: &u}) {
				return
			}
		default:
			break drain
		}
	}
	if out.Bids == nil { // a copy: the node may share the outcome
		o := *out
		o.Bids = []negotiation.BidInfo{}
		out = &o
	}
	sendEvent(send, TaskEvent{Type: "outcome", Outcome: out})
}

func sendEvent(send func(string, ...any) bool, ev TaskEvent) bool {
	b, err := json.Marshal(ev)
	if err != nil {
		log.Warnw("marshal task event", "type", ev.Type, "err", err)
		return true
	}
	return send("event: %s\ndata: %s\n\n", ev.Type, b)
}

// RequestStream is Request, with fn called with each of the task's
// updates as it happens: the first names the task; then each call, the
// winner's commit and its progress notes. Its outcome and error are
// Request's; an error fn returns cancels the task and is returned.
func (c *Client) RequestStream(ctx context.Context, req RequestBody, fn func(negotiation.Update) error) (*negotiation.Outcome, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", req.Capability, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := c.sendAccept(ctx, http.MethodPost, PathTasks, body, "text/event-stream")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, readError(resp)
	}
	var out *negotiation.Outcome
	err = readEvents(resp.Body, func(data []byte) error {
		var ev TaskEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			return fmt.Errorf("request %s: bad event from daemon: %w", req.Capability, err)
		}
		switch {
		case ev.Type == "update" && ev.Update != nil:
			return fn(*ev.Update)
		case ev.Type == "outcome" && ev.Outcome != nil:
			out = ev.Outcome
			return io.EOF
		}
		return nil // a type of a later daemon
	})
	switch {
	case out != nil:
	case err != nil && !errors.Is(err, io.EOF):
		return nil, err
	case ctx.Err() != nil:
		return nil, ctx.Err()
	default:
		return nil, fmt.Errorf("request %s: %w before the outcome", req.Capability, ErrStreamClosed)
	}
	switch out.State {
	case negotiation.StateCompleted:
		return out, nil
	case negotiation.StateCanceled:
		return out, fmt.Errorf("task %s: %w: %s", out.Task, negotiation.ErrCanceled, out.Reason)
	}
	return out, fmt.Errorf("task %s: %w: %s", out.Task, negotiation.ErrTaskFailed, out.Reason)
}

// readEvents calls fn with each event's data from a Server-Sent Events
// body until the body ends (nil) or fn returns an error (that error).
func readEvents(body io.Reader, fn func(data []byte) error) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventSize)
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0: // end of an event
			if len(data) == 0 {
				continue
			}
			if err := fn(data); err != nil {
				return err
			}
			data = data[:0]
		case line[0] == ':': // comment
		default:
			field, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			if string(field) == "data" {
				if len(data) > 0 {
					data = append(data, '\n')
				}
				data = append(data, value...)
			}
		}
	}
	return sc.Err()
}
