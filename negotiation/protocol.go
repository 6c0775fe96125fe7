package negotiation

import (
	"context"
	"encoding/json"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/parleynet/parley/identity"
)

// ProtocolID is the negotiation protocol. A later /parley/negotiate/1.1.0
// can be served beside it and chosen by libp2p's protocol selection.
const ProtocolID = "/parley/negotiate/1.0.0"

// limitedOK lets a negotiation stream use a limited (relayed) connection:
// a node behind NAT is reached through its relay until hole punching makes
// the connection direct, and a negotiation's frames are small enough for a
// relay's limits (128 KiB each way by default; a bigger input fails on a
// relay that keeps the default).
func limitedOK(ctx context.Context) context.Context {
	return network.WithAllowLimitedConn(ctx, "parley negotiation")
}

// wireVersion is the schema version of every message below.
const wireVersion = 1

// Message types, FIPA Contract Net's performatives.
const (
	msgPropose  = "propose"  // contractor → requester: a bid
	msgRefuse   = "refuse"   // contractor → requester: no bid, with a reason
	msgAccept   = "accept"   // requester → contractor: the award, with a rationale
	msgReject   = "reject"   // requester → contractor: not this time, with a reason
	msgCounter  = "counter"  // requester → contractor: a counter-offer to its bid (counter.go)
	msgCommit   = "commit"   // contractor → requester: will do it
	msgDecline  = "decline"  // contractor → requester: will not after all
	msgTask     = "task"     // requester → contractor: the full input
	msgProgress = "progress" // contractor → requester: alive, how far
	msgResult   = "result"   // contractor → requester: the output
	msgFailure  = "failure"  // contractor → requester: could not do it
	msgCancel   = "cancel"   // either side: stop
	msgAck      = "ack"      // requester → contractor: result received
	msgAsk      = "ask"      // contractor → requester: a question while working (ask.go)
	msgAnswer   = "answer"   // requester → contractor: the answer to the open question
)

// wire is the JSON body of every negotiation frame; each message uses the
// fields it needs. The sender's AgentID is the envelope's signer.
type wire struct {
	Task string `json:"task"`
	// Agent names the contractor agent an accept is for (a node may host
	// several bidders for one task).
	Agent identity.AgentID `json:"agent,omitempty"`
	// Name is the sending agent's display name in propose and refuse. It
	// is what the agent calls itself, not authenticated: the requester
	// shows it beside the AgentID and keeps it only if ValidAgentName
	// accepts it.
	Name      string          `json:"name,omitempty"`
	Price     float64         `json:"price,omitempty"`
	ETAMillis int64           `json:"eta_ms,omitempty"`
	Rationale string          `json:"rationale,omitempty"`
	Reason    string          `json:"reason,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	Output    json.RawMessage `json:"output,omitempty"`
	Fraction  float64         `json:"fraction,omitempty"`
	Note      string          `json:"note,omitempty"`
	// Terms and Round are a counter's (Round also on the answer to one).
	Terms string `json:"terms,omitempty"`
	Round int    `json:"round,omitempty"`
	// Trace is the sender's W3C traceparent (propose, accept), so the
	// other side's spans join the task's trace. Untrusted: parsed
	// strictly, and it never makes this node record more.
	Trace string `json:"trace,omitempty"`
	// Schema is an ask's hint of the answer's shape (any JSON).
	Schema json.RawMessage `json:"schema,omitempty"`
}

func (w wire) bid() Bid {
	return Bid{Price: w.Price, ETA: time.Duration(w.ETAMillis) * time.Millisecond, Rationale: w.Rationale}
}

func bidWire(task string, b Bid) wire {
	return wire{Task: task, Price: b.Price, ETAMillis: b.ETA.Milliseconds(), Rationale: b.Rationale}
}

// cfp is the payload of a task intent: the call for proposals.
type cfp struct {
	Task    string          `json:"task"`
	Summary json.RawMessage `json:"summary,omitempty"`
	// ProgressMillis is the requester's progress timeout, so the winner
	// knows how often it must show signs of life.
	ProgressMillis int64 `json:"progress_ms,omitempty"`
	// Name is the requesting agent's display name (not authenticated).
	Name string `json:"name,omitempty"`
	// Asks says the requester's node answers a winner's questions (ask
	// and answer frames); a node that does not set it has none asked.
	Asks bool `json:"asks,omitempty"`
}

// displayName returns a remote agent's self-declared name if it is a
// valid agent name, else "": a peer cannot put arbitrary text in our
// tables and logs.
func displayName(name string) string {
	if identity.ValidAgentName(name) != nil {
		return ""
	}
	return name
}
