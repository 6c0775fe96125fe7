package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/parleynet/parley/negotiation"
)

// PathExternalAsk is where an external agent asks the requester of a task
// it holds a question (negotiation's Task.Ask); the call returns with the
// answer.
const PathExternalAsk = "/v1/external/ask" // POST ExternalAsk → 200 ExternalAnswer

// ExternalAsk is an external agent's question to a task's requester.
type ExternalAsk struct {
	Agent string `json:"agent"`
	Task  string `json:"task"`
	// Note is the question; Schema an optional hint of the answer's shape.
	Note   string          `json:"note"`
	Schema json.RawMessage `json:"schema,omitempty"`
}

// ExternalAnswer is the requester's answer to an ExternalAsk.
type ExternalAnswer struct {
	Task   string          `json:"task"`
	Answer json.RawMessage `json:"answer"`
}

// handleExternalAsk puts an external agent's question to the requester
// and answers with the requester's answer. The wait is the task's: its
// deadline, the requester's cancel, or the agent's client going away end
// it. 409 for a task the agent does not hold, one whose requester takes no
// questions, or past the node's bound on questions.
func (s *Server) handleExternalAsk(w http.ResponseWriter, r *http.Request) {
	var body ExternalAsk
	if !readBody(w, r, s.maxBody, &body) {
		return
	}
	var e *external
	if e, body.Agent = s.actingExternal(w, r, body.Agent); e == nil {
		return
	}
	if body.Note == "" {
		writeError(w, CodeBadRequest, "note: the question is required")
		return
	}
	e.mu.Lock()
	t, ok := e.working[body.Task]
	e.mu.Unlock()
	switch {
	case !ok:
		writeError(w, CodeConflict, fmt.Sprintf("%s holds no task %q", body.Agent, body.Task))
		return
	case t.task.Ask == nil:
		writeError(w, CodeConflict, fmt.Sprintf("task %q: the requester's node takes no questions", body.Task))
		return
	}
	answer, err := t.task.Ask(r.Context(), body.Note, body.Schema)
	if err != nil {
		code := CodeConflict // past the bound on questions, or the task ended before an answer
		switch {
		case r.Context().Err() != nil:
			return // the agent's client went away
		case errors.Is(err, negotiation.ErrTooLarge):
			code = CodePayloadTooLarge
		case errors.Is(err, negotiation.ErrBadQuestion):
			code = CodeBadRequest
		}
		writeError(w, code, fmt.Sprintf("task %q: %v", body.Task, err))
		return
	}
	writeJSON(w, http.StatusOK, ExternalAnswer{Task: body.Task, Answer: answer})
}
