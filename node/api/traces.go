package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/parleynet/parley/node"
)

// PathTrace answers this node's spans of a trace or a task (operator
// token); with ?mesh=true the node also asks the nodes of the task over
// /parley/trace/1.0.0.
const PathTrace = "/v1/traces/{id}"

// gatherTimeout bounds how long a mesh gather waits for the other nodes.
const gatherTimeout = 10 * time.Second

func (s *Server) handleTrace(w http.ResponseWriter, r *http.Request) {
	if !s.started(w) {
		return
	}
	id := r.PathValue("id")
	if id == "" || len(id) > 128 {
		writeError(w, CodeBadRequest, fmt.Sprintf("trace or task id %q: want 1-128 characters", id))
		return
	}
	mesh := false
	switch v := r.URL.Query().Get("mesh"); v {
	case "", "false":
	case "true":
		mesh = true
	default:
		writeError(w, CodeBadRequest, fmt.Sprintf("mesh %q: want true or false", v))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), gatherTimeout)
	defer cancel()
	view, err := s.n.GatherTrace(ctx, id, mesh)
	switch {
	case errors.Is(err, node.ErrTracingOff):
		writeError(w, CodeConflict, err.Error()+" (config.yaml tracing.enabled)")
		return
	case err != nil:
		writeError(w, CodeInternal, err.Error())
		return
	case len(view.Spans) == 0:
		writeError(w, CodeNotFound, fmt.Sprintf("no spans of %q on this node", id))
		return
	}
	writeJSON(w, http.StatusOK, view)
}

// Trace returns the spans of id (a trace or task ID); mesh gathers them
// from the task's other nodes too.
func (c *Client) Trace(ctx context.Context, id string, mesh bool) (node.TraceView, error) {
	var v node.TraceView
	p := strings.Replace(PathTrace, "{id}", url.PathEscape(id), 1)
	if mesh {
		p += "?mesh=true"
	}
	err := c.do(ctx, http.MethodGet, p, nil, http.StatusOK, &v)
	return v, err
}
