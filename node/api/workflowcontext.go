package api

import (
	"context"
	"net/http"

	"github.com/parleynet/parley/sharedctx"
)

// WorkflowContext answers GET PathWorkflowContext: a workflow's shared
// context, for the requester's operator (and the MCP workflow tool).
type WorkflowContext struct {
	Workflow string                 `json:"workflow"`
	Entries  []WorkflowContextEntry `json:"entries"`
}

// WorkflowContextEntry is one key's entry, checked again when read, and
// the step whose winner wrote it.
type WorkflowContextEntry struct {
	sharedctx.Entry
	// Step is the step whose task the writer wrote under, and WriterName
	// its winner's name; both empty for the requester's own writes.
	Step       string `json:"step,omitempty"`
	WriterName string `json:"writer_name,omitempty"`
	// Verified says the entry's signature and body check out now; Error
	// says why not (the entry is then only what its payload claims).
	Verified bool   `json:"verified"`
	Error    string `json:"error,omitempty"`
}

func (s *Server) handleWorkflowContext(w http.ResponseWriter, r *http.Request) {
	if !s.flows(w) {
		return
	}
	id := r.PathValue("id")
	run, err := s.workflows.Get(id)
	if err != nil {
		writeError(w, workflowCode(err), err.Error())
		return
	}
	snap, err := s.workflows.Context(id)
	if err != nil {
		writeError(w, workflowCode(err), err.Error())
		return
	}
	out := WorkflowContext{Workflow: id, Entries: []WorkflowContextEntry{}}
	if len(snap) == 0 {
		writeJSON(w, http.StatusOK, out)
		return
	}
	_, entries, err := sharedctx.ReadSnapshot(snap)
	if err != nil {
		writeError(w, CodeInternal, "workflow "+id+": "+err.Error())
		return
	}
	// Which step's winner wrote under which task.
	type by struct{ step, name string }
	tasks := map[string]by{}
	for _, st := range run.Steps {
		for _, a := range st.Attempts {
			if a.Task != "" {
				tasks[a.Task] = by{st.Name, a.WinnerName}
			}
		}
	}
	for _, c := range entries {
		e := WorkflowContextEntry{Entry: c.Entry, Verified: c.Err == nil}
		if c.Err != nil {
			e.Error = c.Err.Error()
		}
		if b, ok := tasks[c.Task]; ok && c.Task != "" {
			e.Step, e.WriterName = b.step, b.name
		}
		out.Entries = append(out.Entries, e)
	}
	writeJSON(w, http.StatusOK, out)
}

// WorkflowContext returns a workflow's shared context, each entry checked
// again by the node.
func (c *Client) WorkflowContext(ctx context.Context, id string) (*WorkflowContext, error) {
	return doAs[WorkflowContext](ctx, c, http.MethodGet, workflowPath(id)+"/context", http.StatusOK)
}
