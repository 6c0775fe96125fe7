package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/parleynet/parley/sharedctx"
)

// Paths of an external agent's shared context: the workflow context of a
// task it holds, within the keys the step declared, read and written on
// the requester's node as the agent (its entries are signed with its
// key).
const (
	PathExternalContext       = "/v1/external/context/{task}"       // GET: every key the step may read
	PathExternalContextKey    = "/v1/external/context/{task}/{key}" // GET one key; PUT a JSON value
	pathExternalContextPrefix = "/v1/external/context/"
)

// ContextEntries answers GET PathExternalContext.
type ContextEntries struct {
	Task    string            `json:"task"`
	Entries []sharedctx.Entry `json:"entries"`
	// Reads and Writes are the keys the step may read and write (a
	// trailing * grants a prefix).
	Reads  []string `json:"reads"`
	Writes []string `json:"writes"`
}

// ContextWrite answers PUT PathExternalContextKey: the entry written and
// whether it holds its key (a write with a later clock may).
type ContextWrite struct {
	Entry   sharedctx.Entry `json:"entry"`
	Applied bool            `json:"applied"`
}

// contextClient returns the shared context client of a task the external
// agent named by the request holds, or answers the error.
func (s *Server) contextClient(w http.ResponseWriter, r *http.Request) (*sharedctx.Client, bool) {
	name := r.URL.Query().Get("agent")
	e, name := s.actingExternal(w, r, name)
	if e == nil {
		return nil, false
	}
	task := r.PathValue("task")
	e.mu.Lock()
	t, ok := e.working[task]
	var cl *sharedctx.Client
	if ok {
		cl = t.ctx
	}
	e.mu.Unlock()
	switch {
	case !ok:
		writeError(w, CodeConflict, fmt.Sprintf("%s holds no task %q", name, task))
		return nil, false
	case cl != nil:
		return cl, true
	}
	// Made outside the agent's lock: it asks the negotiation.
	cl, err := s.n.TaskContext(t.task)
	if err != nil {
		writeError(w, codeOf(err), err.Error())
		return nil, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if t.ctx == nil {
		t.ctx = cl
	}
	return t.ctx, true
}

// writeContextError answers an error of the context client.
func writeContextError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, sharedctx.ErrBadKey), errors.Is(err, sharedctx.ErrBadEntry):
		writeError(w, CodeBadRequest, err.Error())
	case errors.Is(err, sharedctx.ErrDenied):
		writeError(w, CodeForbidden, err.Error())
	case errors.Is(err, sharedctx.ErrNoContext):
		writeError(w, CodeNotFound, err.Error())
	case errors.Is(err, sharedctx.ErrTooLarge):
		writeError(w, CodePayloadTooLarge, err.Error())
	default:
		writeError(w, CodeUnavailable, "the requester's node did not answer: "+err.Error())
	}
}

func (s *Server) handleExternalContext(w http.ResponseWriter, r *http.Request) {
	cl, ok := s.contextClient(w, r)
	if !ok {
		return
	}
	key := r.PathValue("key")
	var keys []string
	if key != "" {
		if err := sharedctx.ValidKey(key); err != nil {
			writeError(w, CodeBadRequest, err.Error())
			return
		}
		keys = []string{key}
	}
	got, err := cl.Get(r.Context(), keys...)
	if err != nil {
		writeContextError(w, err)
		return
	}
	if key != "" {
		e, ok := got[key]
		if !ok {
			writeError(w, CodeNotFound, fmt.Sprintf("key %q is not set in task %s's context", key, cl.Task()))
			return
		}
		writeJSON(w, http.StatusOK, e)
		return
	}
	reads, writes := cl.Granted()
	ans := ContextEntries{Task: cl.Task(), Entries: make([]sharedctx.Entry, 0, len(got)), Reads: reads, Writes: writes}
	for _, e := range cl.Replica().All() {
		if _, ok := got[e.Key]; ok {
			ans.Entries = append(ans.Entries, e)
		}
	}
	writeJSON(w, http.StatusOK, ans)
}

func (s *Server) handleExternalContextPut(w http.ResponseWriter, r *http.Request) {
	cl, ok := s.contextClient(w, r)
	if !ok {
		return
	}
	key := r.PathValue("key")
	if err := sharedctx.ValidKey(key); err != nil {
		writeError(w, CodeBadRequest, err.Error())
		return
	}
	var value json.RawMessage
	if !readBody(w, r, int64(s.n.SharedContext().Limits().MaxValueSize)+1, &value) {
		return
	}
	es, won, err := cl.PutAll(r.Context(), map[string]json.RawMessage{key: value})
	if err != nil {
		writeContextError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ContextWrite{Entry: es[0], Applied: won[0]})
}
