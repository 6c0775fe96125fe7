package workflow

import (
	"encoding/json"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
)

// State is a workflow's state.
type State string

// Workflow states.
const (
	StateRunning      State = "running"
	StateCompensating State = "compensating" // a step failed for good (or a cancel): undoing the steps before it
	StateCompleted    State = "completed"
	StateFailed       State = "failed"
	StateCanceled     State = "canceled"
)

// Ended reports whether the workflow is over.
func (s State) Ended() bool { return s == StateCompleted || s == StateFailed || s == StateCanceled }

// StepState is a step's state.
type StepState string

// Step states.
const (
	StepPending   StepState = "pending"   // waiting for its needs
	StepRunning   StepState = "running"   // negotiating or worked on, or waiting to retry
	StepCompleted StepState = "completed" // a result came back
	StepSkipped   StepState = "skipped"   // its if: was false
	StepFailed    StepState = "failed"    // every attempt failed, or its input could not be built
	StepCanceled  StepState = "canceled"  // the workflow ended before it did (or before it began)
	// A completed step's compensation states.
	StepCompensated        StepState = "compensated"
	StepCompensationFailed StepState = "compensation_failed"
)

// Run is a workflow as the node keeps it, durably: what the API answers.
type Run struct {
	ID      string          `json:"id"`
	Name    string          `json:"name,omitempty"`
	File    string          `json:"file"`
	State   State           `json:"state"`
	Error   string          `json:"error,omitempty"`
	Input   json.RawMessage `json:"input"`
	Output  json.RawMessage `json:"output,omitempty"`
	Created time.Time       `json:"created"`
	Updated time.Time       `json:"updated"`
	// Deadline, if set, is when the workflow fails if it has not ended.
	Deadline *time.Time `json:"deadline,omitempty"`
	// Resumed counts the starts of the node that took the run up again.
	Resumed int       `json:"resumed"`
	Steps   []StepRun `json:"steps"`
	// Source is the workflow file, as submitted.
	Source string `json:"source"`
}

// StepRun is one step's state and history.
type StepRun struct {
	Name       string          `json:"name"`
	Capability string          `json:"capability"`
	Needs      []string        `json:"needs"`
	State      StepState       `json:"state"`
	Approved   bool            `json:"approved,omitempty"`
	Attempts   []Attempt       `json:"attempts"`
	Output     json.RawMessage `json:"output,omitempty"`
	Error      string          `json:"error,omitempty"`
	Started    *time.Time      `json:"started,omitempty"`
	Ended      *time.Time      `json:"ended,omitempty"`
	// Compensation is the run of the step's compensate:, once one began.
	Compensation *StepRun `json:"compensation,omitempty"`
}

// Attempt is one negotiation of a step.
type Attempt struct {
	N          int              `json:"n"`
	Task       string           `json:"task,omitempty"`
	State      string           `json:"state"` // a task state, or "interrupted" (the node stopped)
	Winner     identity.AgentID `json:"winner,omitempty"`
	WinnerName string           `json:"winner_name,omitempty"`
	WinnerPeer peer.ID          `json:"winner_peer,omitempty"`
	Price      float64          `json:"price,omitempty"`
	Bids       int              `json:"bids"`
	// FailedAgents are the agents that won this attempt and let it down;
	// later attempts rank them last.
	FailedAgents []identity.AgentID `json:"failed_agents,omitempty"`
	Started      time.Time          `json:"started"`
	Ended        *time.Time         `json:"ended,omitempty"`
	Error        string             `json:"error,omitempty"`
}

// Summary is a workflow as `parley flow ls` lists it.
type Summary struct {
	ID      string    `json:"id"`
	Name    string    `json:"name,omitempty"`
	State   State     `json:"state"`
	Steps   int       `json:"steps"`
	Done    int       `json:"done"` // steps completed or skipped
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	Error   string    `json:"error,omitempty"`
}

func (r *Run) summary() Summary {
	s := Summary{ID: r.ID, Name: r.Name, State: r.State, Steps: len(r.Steps), Created: r.Created, Updated: r.Updated, Error: r.Error}
	for _, st := range r.Steps {
		if st.State == StepCompleted || st.State == StepSkipped || st.State == StepCompensated {
			s.Done++
		}
	}
	return s
}

func (r *Run) step(name string) *StepRun {
	for i := range r.Steps {
		if r.Steps[i].Name == name {
			return &r.Steps[i]
		}
	}
	return nil
}

func clone(r *Run) *Run {
	b, _ := json.Marshal(r)
	out := new(Run)
	_ = json.Unmarshal(b, out)
	return out
}
