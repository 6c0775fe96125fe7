package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/parleynet/parley/workflow"
)

// The workflow routes: start, list, get with per-step history, cancel.
const (
	PathWorkflows      = "/v1/workflows"
	PathWorkflow       = "/v1/workflows/{id}"
	PathWorkflowEvents = "/v1/workflows/{id}/events"
	// PathWorkflowContext is a workflow's shared context (GET), every
	// entry checked again (workflowcontext.go).
	PathWorkflowContext = "/v1/workflows/{id}/context"
)

// Workflows is the node's workflow engine, as the API uses it
// (*workflow.Engine).
type Workflows interface {
	Submit(ctx context.Context, file string, src []byte, input json.RawMessage) (*workflow.Run, error)
	List() ([]workflow.Summary, error)
	Get(id string) (*workflow.Run, error)
	Cancel(id string) error
	// Changes returns a channel closed at the next change of any workflow.
	Changes() <-chan struct{}
	// Context returns a snapshot of a workflow's shared context (nil: it
	// has none).
	Context(id string) ([]byte, error)
}

// WithWorkflows serves w on /v1/workflows; without it those routes answer
// 501.
func WithWorkflows(w Workflows) Option { return func(s *Server) { s.workflows = w } }

// WorkflowBody is the body of POST /v1/workflows.
type WorkflowBody struct {
	// File names the workflow file in errors (file:line); default
	// "workflow.yaml".
	File string `json:"file,omitempty"`
	// Source is the workflow file's content (YAML).
	Source string `json:"source"`
	// Input is the workflow input; default {}.
	Input json.RawMessage `json:"input,omitempty"`
}

func (s *Server) flows(w http.ResponseWriter) bool {
	if s.workflows == nil {
		writeError(w, CodeNotImplemented, "this server runs no workflows")
		return false
	}
	return true
}

func workflowCode(err error) Code {
	switch {
	case errors.Is(err, workflow.ErrInvalid), errors.Is(err, workflow.ErrBadInput):
		return CodeBadRequest
	case errors.Is(err, workflow.ErrUnknown):
		return CodeNotFound
	case errors.Is(err, workflow.ErrBusy), errors.Is(err, workflow.ErrEnded):
		return CodeConflict
	case errors.Is(err, workflow.ErrClosed):
		return CodeUnavailable
	}
	return codeOf(err)
}

func (s *Server) handleStartWorkflow(w http.ResponseWriter, r *http.Request) {
	if !s.flows(w) {
		return
	}
	var body WorkflowBody
	if err := decodeBody(w, r, s.maxBody, &body); err != nil {
		writeError(w, codeOf(err), err.Error())
		return
	}
	if body.Source == "" {
		writeError(w, CodeBadRequest, "source: the workflow file's content is required")
		return
	}
	file := body.File
	if file == "" {
		file = "workflow.yaml"
	}
	run, err := s.workflows.Submit(r.Context(), file, []byte(body.Source), body.Input)
	if err != nil {
		writeError(w, workflowCode(err), err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, run)
}

func (s *Server) handleWorkflows(w http.ResponseWriter, _ *http.Request) {
	if !s.flows(w) {
		return
	}
	list, err := s.workflows.List()
	if err != nil {
		writeError(w, CodeInternal, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) handleWorkflow(w http.ResponseWriter, r *http.Request) {
	if !s.flows(w) {
		return
	}
	run, err := s.workflows.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, workflowCode(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, run)
}

// handleCancelWorkflow cancels a workflow; the answer is the workflow as
// it is right after, which may still be compensating.
func (s *Server) handleCancelWorkflow(w http.ResponseWriter, r *http.Request) {
	if !s.flows(w) {
		return
	}
	id := r.PathValue("id")
	if err := s.workflows.Cancel(id); err != nil {
		writeError(w, workflowCode(err), err.Error())
		return
	}
	run, err := s.workflows.Get(id)
	if err != nil {
		writeError(w, workflowCode(err), err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, run)
}

// handleWorkflowEvents streams a workflow: the workflow now, then again
// at each of its changes, until it has ended (its last event is the
// ended workflow) or the client goes.
func (s *Server) handleWorkflowEvents(w http.ResponseWriter, r *http.Request) {
	if !s.flows(w) {
		return
	}
	id := r.PathValue("id")
	changed := s.workflows.Changes()
	run, err := s.workflows.Get(id)
	if err != nil {
		writeError(w, workflowCode(err), err.Error())
		return
	}
	send := startEvents(w)
	if !send(": workflow %s\n\n", id) {
		return
	}
	ping := time.NewTicker(s.ping)
	defer ping.Stop()
	var last time.Time
	for {
		if !run.Updated.Equal(last) {
			last = run.Updated
			b, err := json.Marshal(run)
			if err != nil {
				log.Warnw("marshal workflow", "workflow", id, "err", err)
				return
			}
			if !send("data: %s\n\n", b) {
				return
			}
		}
		if run.State.Ended() {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		case <-ping.C:
			if !send(": ping\n\n") {
				return
			}
			continue
		case <-changed:
		}
		changed = s.workflows.Changes()
		if run, err = s.workflows.Get(id); err != nil {
			return // pruned meanwhile
		}
	}
}

func workflowPath(id string) string { return PathWorkflows + "/" + url.PathEscape(id) }

// StartWorkflow starts a workflow; a bad file is an *Error with Status
// 400 whose message lists file:line: reason for each problem.
func (c *Client) StartWorkflow(ctx context.Context, body WorkflowBody) (*workflow.Run, error) {
	var v workflow.Run
	if err := c.doJSON(ctx, http.MethodPost, PathWorkflows, body, http.StatusCreated, &v); err != nil {
		return nil, fmt.Errorf("start workflow %s: %w", body.File, err)
	}
	return &v, nil
}

// Workflows lists the node's workflows, newest first.
func (c *Client) Workflows(ctx context.Context) ([]workflow.Summary, error) {
	return list[workflow.Summary](ctx, c, PathWorkflows)
}

// Workflow returns one workflow with each step's history.
func (c *Client) Workflow(ctx context.Context, id string) (*workflow.Run, error) {
	return doAs[workflow.Run](ctx, c, http.MethodGet, workflowPath(id), http.StatusOK)
}

// CancelWorkflow cancels a running workflow.
func (c *Client) CancelWorkflow(ctx context.Context, id string) (*workflow.Run, error) {
	return doAs[workflow.Run](ctx, c, http.MethodDelete, workflowPath(id), http.StatusAccepted)
}

// FollowWorkflow calls fn with the workflow now and at each of its
// changes, until it has ended (fn's last call), ctx ends or fn errs.
func (c *Client) FollowWorkflow(ctx context.Context, id string, fn func(*workflow.Run) error) error {
	resp, err := c.send(ctx, http.MethodGet, workflowPath(id)+"/events", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return readError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventSize)
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if len(data) == 0 {
				continue
			}
			var r workflow.Run
			if err := json.Unmarshal(data, &r); err != nil {
				return fmt.Errorf("follow workflow %s: bad event from daemon: %w", id, err)
			}
			data = data[:0]
			if err := fn(&r); err != nil {
				return err
			}
			if r.State.Ended() {
				return nil
			}
		case line[0] == ':':
		default:
			if v, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
				data = append(data, v...)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("follow workflow %s: %w", id, err)
	}
	return fmt.Errorf("follow workflow %s: the daemon closed the stream before it ended", id)
}
