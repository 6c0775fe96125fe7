package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/parleynet/parley/negotiation"
)

// PathTaskInput answers the question of an input-required task.
const PathTaskInput = "/v1/tasks/{id}/input" // POST AnswerBody → 200 negotiation.TaskInfo

// AnswerBody is the answer to a task's open question.
type AnswerBody struct {
	// Input is the answer, any JSON; it goes only to the task's winner.
	Input json.RawMessage `json:"input"`
}

// handleAnswer sends the answer to the winner that asked: 404 for an
// unknown task, 409 for one that asks nothing now, 413 for an answer over
// the node's bound.
func (s *Server) handleAnswer(w http.ResponseWriter, r *http.Request) {
	var body AnswerBody
	if !readBody(w, r, s.maxBody, &body) {
		return
	}
	if len(body.Input) == 0 || string(body.Input) == "null" {
		writeError(w, CodeBadRequest, "input: the answer is required (any JSON but null)")
		return
	}
	if !s.started(w) {
		return
	}
	id := r.PathValue("id")
	if err := s.n.AnswerTask(r.Context(), id, body.Input); err != nil {
		code := codeOf(err)
		switch {
		case errors.Is(err, negotiation.ErrNoQuestion):
			code = CodeConflict
		case errors.Is(err, negotiation.ErrTooLarge):
			code = CodePayloadTooLarge
		case errors.Is(err, negotiation.ErrBadAnswer):
			code = CodeBadRequest
		}
		writeError(w, code, err.Error())
		return
	}
	t, err := s.n.Task(id)
	if err != nil { // ended and evicted in between
		t = negotiation.TaskInfo{Task: id}
	}
	writeJSON(w, http.StatusOK, t)
}

// AnswerTask answers the open question of an input-required task with
// input (any JSON) and returns the task right after. An unknown ID is an
// *Error with Status 404, a task that asks nothing now one with Status 409.
func (c *Client) AnswerTask(ctx context.Context, id string, input json.RawMessage) (*negotiation.TaskInfo, error) {
	var v negotiation.TaskInfo
	path := strings.Replace(PathTaskInput, "{id}", url.PathEscape(id), 1)
	if err := c.doJSON(ctx, http.MethodPost, path, AnswerBody{Input: input}, http.StatusOK, &v); err != nil {
		return nil, err
	}
	return &v, nil
}
