package negotiation

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
)

// State is a task's state. The names are A2A's where they overlap.
type State string

// Task states.
const (
	StateSubmitted   State = "submitted"   // created, call not yet out
	StateNegotiating State = "negotiating" // call out, taking bids or awarding
	StateWorking     State = "working"     // a contractor committed and works
	// StateInputRequired: the winner asked its requester a question
	// (Task.Ask) and waits for the answer (Service.Answer).
	StateInputRequired State = "input-required"
	StateCompleted     State = "completed" // a result arrived and was acked
	StateFailed        State = "failed"    // no contractor could do it within the budget
	StateCanceled      State = "canceled"  // either side canceled
	StateRejected      State = "rejected"  // this node's agent refused or lost the task (contractor view)
)

// Terminal reports whether no transition leaves s.
func (s State) Terminal() bool {
	switch s {
	case StateCompleted, StateFailed, StateCanceled, StateRejected:
		return true
	}
	return false
}

// Role says which side of a task this node is on.
type Role string

// Roles.
const (
	RoleRequester  Role = "requester"
	RoleContractor Role = "contractor"
)

// Sentinel errors callers branch on.
var (
	// ErrNoBid is what a Handler returns from Bid to refuse a call.
	ErrNoBid = errors.New("no bid")
	// ErrDecline is what a Committer returns to decline an award.
	ErrDecline = errors.New("award declined")
	// ErrTaskFailed is wrapped by Request when the task ends failed.
	ErrTaskFailed = errors.New("task failed")
	// ErrCanceled is wrapped by Request when the task was canceled.
	ErrCanceled = errors.New("task canceled")
	// ErrUnknownTask is returned for a task ID this node does not know.
	ErrUnknownTask = errors.New("unknown task")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("negotiation service closed")
	// ErrNoQuestion is returned by Answer for a task whose winner asks
	// nothing now.
	ErrNoQuestion = errors.New("task asks no question")
	// ErrTooManyAsks is returned by Task.Ask past MaxAsks in one task.
	ErrTooManyAsks = errors.New("too many questions for one task")
	// ErrTooLarge is returned for a question or an answer over its bound.
	ErrTooLarge = errors.New("too large")
)

// Need is what a requester wants done.
type Need struct {
	// Capability names the topic the call goes out on.
	Capability string `json:"capability"`
	// Summary is the public part of the call: only what bidders need to
	// decide. Every node on the topic sees it.
	Summary json.RawMessage `json:"summary,omitempty"`
	// Input is the full task input. Only the contractor that commits ever
	// receives it (data minimization).
	Input json.RawMessage `json:"input,omitempty"`
	// Budget is the most the requester will pay; bids above it are
	// refused. Zero means no limit.
	Budget float64 `json:"budget,omitempty"`
}

// Call is a call for proposals as a contractor's handler sees it.
type Call struct {
	Task       string           `json:"task"`
	Capability string           `json:"capability"`
	Requester  identity.AgentID `json:"requester"`
	// RequesterPeer is the node that hosts the requester.
	RequesterPeer peer.ID `json:"requester_peer"`
	// RequesterName is the requesting agent's display name, as it calls
	// itself (not authenticated; "" if it gave none or an invalid one).
	RequesterName string          `json:"requester_name,omitempty"`
	Summary       json.RawMessage `json:"summary,omitempty"`
	Budget        float64         `json:"budget,omitempty"`
	BidWindow     time.Duration   `json:"bid_window"`
	Deadline      time.Time       `json:"deadline"`
}

// Bid is a contractor's proposal.
type Bid struct {
	Price     float64       `json:"price"`
	ETA       time.Duration `json:"eta"`
	Rationale string        `json:"rationale,omitempty"`
}

// Task is an awarded task as the winning contractor's handler sees it.
type Task struct {
	Call
	Bid   Bid             `json:"bid"`
	Input json.RawMessage `json:"input,omitempty"`
	// Progress reports progress to the requester (0..1, a short note). It
	// never blocks the work for long; the service also sends keepalives.
	Progress func(fraction float64, note string) `json:"-"`
	// Ask puts a question (note, and an optional JSON schema hint for the
	// answer) to the requester and waits for its answer, at most until
	// the task's deadline (ask.go). It is nil when the requester's side
	// cannot answer (an older node): a handler checks before it asks.
	Ask func(ctx context.Context, note string, schema json.RawMessage) (json.RawMessage, error) `json:"-"`
}

// Question is what a winner asked its requester, while it waits.
type Question struct {
	Note string `json:"note"`
	// Schema is the asker's hint of the answer's shape (a JSON schema, or
	// any JSON); parley does not check the answer against it.
	Schema json.RawMessage `json:"schema,omitempty"`
	// Ask counts the task's questions: 1 for the first.
	Ask int       `json:"ask"`
	At  time.Time `json:"at"`
}

// Handler is a contractor agent's behaviour: whether and what to bid, and
// the work itself. Work's context is canceled when the task is.
type Handler interface {
	Bid(ctx context.Context, call Call) (Bid, error)
	Work(ctx context.Context, task Task) (json.RawMessage, error)
}

// Committer is an optional Handler method: the last word after an award.
// Returning an error (ErrDecline) declines it and the requester moves on.
type Committer interface {
	Commit(ctx context.Context, call Call, bid Bid) error
}

// HandlerFuncs adapts two functions to a Handler.
type HandlerFuncs struct {
	BidFunc  func(ctx context.Context, call Call) (Bid, error)
	WorkFunc func(ctx context.Context, task Task) (json.RawMessage, error)
}

// Bid implements Handler.
func (h HandlerFuncs) Bid(ctx context.Context, c Call) (Bid, error) { return h.BidFunc(ctx, c) }

// Work implements Handler.
func (h HandlerFuncs) Work(ctx context.Context, t Task) (json.RawMessage, error) {
	return h.WorkFunc(ctx, t)
}

// BidInfo is one bid as the requester saw it.
type BidInfo struct {
	Agent identity.AgentID `json:"agent"`
	// Name is the bidder's display name, as it calls itself (not
	// authenticated: Agent is who it is).
	Name string  `json:"name,omitempty"`
	Peer peer.ID `json:"peer"`
	Bid
	Call int `json:"call"` // which call (1 = the first) it answered
	// Rank is its place by the strategy (1 = best) in its call.
	Rank int `json:"rank"`
	// Status is what became of it: "refused" (by the bidder), "late",
	// "over_budget", "rejected", "awarded", "declined", "failed",
	// "silent", "completed", "standby".
	Status string `json:"status"`
	Note   string `json:"note,omitempty"`
	// Rounds are the counter-offers made to this bid and their answers,
	// in order; Bid holds the terms after the last.
	Rounds []Round `json:"rounds,omitempty"`
}

// Transition is one step of a task's state history.
type Transition struct {
	State State     `json:"state"`
	At    time.Time `json:"at"`
	Note  string    `json:"note,omitempty"`
}

// Timings of a finished task.
type Timings struct {
	Negotiation time.Duration `json:"negotiation"` // call out to a commit
	Work        time.Duration `json:"work"`        // commit to result
	Total       time.Duration `json:"total"`
}

// Outcome is everything a requester learns from one task.
type Outcome struct {
	Task       string           `json:"task"`
	Capability string           `json:"capability"`
	State      State            `json:"state"`
	Winner     identity.AgentID `json:"winner,omitempty"`
	WinnerName string           `json:"winner_name,omitempty"` // as the winner calls itself
	WinnerPeer peer.ID          `json:"winner_peer,omitempty"`
	// Rationale says why the winner was chosen.
	Rationale string          `json:"rationale,omitempty"`
	Bids      []BidInfo       `json:"bids"`
	Result    json.RawMessage `json:"result,omitempty"`
	// Reason says why a task failed or was canceled.
	Reason  string       `json:"reason,omitempty"`
	Calls   int          `json:"calls"`
	Timings Timings      `json:"timings"`
	History []Transition `json:"history"`
}

// TaskInfo is a task as `parley tasks` lists it, on either side.
type TaskInfo struct {
	Task       string           `json:"task"`
	Role       Role             `json:"role"`
	Capability string           `json:"capability"`
	Agent      identity.AgentID `json:"agent"` // this node's agent in the task
	AgentName  string           `json:"agent_name,omitempty"`
	Peer       identity.AgentID `json:"peer,omitempty"` // the other side: the winner or the requester
	PeerName   string           `json:"peer_name,omitempty"`
	State      State            `json:"state"`
	Updated    time.Time        `json:"updated"`
	History    []Transition     `json:"history"`
	// Bids are a requester task's bids so far while it runs, so a
	// dashboard can draw a negotiation as it happens; once it ends the
	// Outcome has them.
	Bids []BidInfo `json:"bids,omitempty"`
	// Outcome is set for requester tasks once they end.
	Outcome *Outcome `json:"outcome,omitempty"`
	// Question is the winner's open question while the task is
	// input-required (on both sides).
	Question *Question `json:"question,omitempty"`
}
