package negotiation

import "github.com/parleynet/parley/identity"

// Update is news of a requested task as it happens: its state changes and
// the winner's progress. Gateways to other protocols (A2A, MCP) stream it
// to their clients; the outcome still comes from Request.
type Update struct {
	Task  string `json:"task"`
	State State  `json:"state"`
	// Note is the transition's note, or the winner's progress note.
	Note string `json:"note,omitempty"`
	// Progress is set for the winner's progress frames (a keepalive
	// without a note or a fraction is not an update).
	Progress bool    `json:"progress,omitempty"`
	Fraction float64 `json:"fraction,omitempty"`
	// Winner is the committed contractor, from StateWorking on.
	Winner     identity.AgentID `json:"winner,omitempty"`
	WinnerName string           `json:"winner_name,omitempty"`
	// Question is the winner's question when State is input-required.
	Question *Question `json:"question,omitempty"`
}

// WithUpdates has Request call f with every Update of the task, in
// order, from the request's own goroutine (or from Answer's, for the
// answer's; calls never overlap): the first (StateSubmitted) names the
// task's ID before any call goes out. f must not block; it may hand the
// update on to a buffered channel.
func WithUpdates(f func(Update)) RequestOption {
	return func(o *RequestOptions) { o.Updates = f }
}

// hush stops the Updates hook: after Request returns, an Answer that
// raced the task's end must not call it.
func (r *request) hush() {
	r.umu.Lock()
	r.quiet = true
	r.umu.Unlock()
}

// update tells the requester's Updates hook, if any.
func (r *request) update(u Update) {
	if r.opts.Updates == nil {
		return
	}
	u.Task = r.id
	r.umu.Lock()
	defer r.umu.Unlock()
	if r.quiet {
		return // Request has returned: its caller hears no more
	}
	r.opts.Updates(u)
}
