package negotiation

import (
	"encoding/json"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
)

// The types below keep time.Duration fields for Go callers and write them
// in JSON as duration strings ("200ms"), the form flags and agents use.
// Each type that embeds one of them needs its own methods too: an embedded
// type's MarshalJSON would otherwise be promoted and marshal only itself.
// The *JSON mirrors list plain fields and embed no type with methods.

type bidJSON struct {
	Price     float64         `json:"price"`
	ETA       intent.Duration `json:"eta"`
	Rationale string          `json:"rationale,omitempty"`
}

func (b Bid) toJSON() bidJSON { return bidJSON{b.Price, intent.Duration(b.ETA), b.Rationale} }
func (j bidJSON) bid() Bid    { return Bid{j.Price, time.Duration(j.ETA), j.Rationale} }

// MarshalJSON implements json.Marshaler.
func (b Bid) MarshalJSON() ([]byte, error) { return json.Marshal(b.toJSON()) }

// UnmarshalJSON implements json.Unmarshaler.
func (b *Bid) UnmarshalJSON(data []byte) error {
	var j bidJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*b = j.bid()
	return nil
}

type bidInfoJSON struct {
	Agent identity.AgentID `json:"agent"`
	Name  string           `json:"name,omitempty"`
	Peer  peer.ID          `json:"peer"`
	bidJSON
	Call   int     `json:"call"`
	Rank   int     `json:"rank"`
	Status string  `json:"status"`
	Note   string  `json:"note,omitempty"`
	Rounds []Round `json:"rounds,omitempty"`
}

// MarshalJSON implements json.Marshaler.
func (b BidInfo) MarshalJSON() ([]byte, error) {
	return json.Marshal(bidInfoJSON{b.Agent, b.Name, b.Peer, b.Bid.toJSON(), b.Call, b.Rank, b.Status, b.Note, b.Rounds})
}

// UnmarshalJSON implements json.Unmarshaler.
func (b *BidInfo) UnmarshalJSON(data []byte) error {
	var j bidInfoJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*b = BidInfo{Agent: j.Agent, Name: j.Name, Peer: j.Peer, Bid: j.bid(), Call: j.Call, Rank: j.Rank, Status: j.Status, Note: j.Note, Rounds: j.Rounds}
	return nil
}

type callJSON struct {
	Task          string           `json:"task"`
	Capability    string           `json:"capability"`
	Requester     identity.AgentID `json:"requester"`
	RequesterPeer peer.ID          `json:"requester_peer"`
	RequesterName string           `json:"requester_name,omitempty"`
	Summary       json.RawMessage  `json:"summary,omitempty"`
	Budget        float64          `json:"budget,omitempty"`
	BidWindow     intent.Duration  `json:"bid_window"`
	Deadline      time.Time        `json:"deadline"`
}

func (c Call) toJSON() callJSON {
	return callJSON{c.Task, c.Capability, c.Requester, c.RequesterPeer, c.RequesterName, c.Summary, c.Budget, intent.Duration(c.BidWindow), c.Deadline}
}

func (j callJSON) call() Call {
	return Call{j.Task, j.Capability, j.Requester, j.RequesterPeer, j.RequesterName, j.Summary, j.Budget, time.Duration(j.BidWindow), j.Deadline}
}

// MarshalJSON implements json.Marshaler.
func (c Call) MarshalJSON() ([]byte, error) { return json.Marshal(c.toJSON()) }

// UnmarshalJSON implements json.Unmarshaler.
func (c *Call) UnmarshalJSON(data []byte) error {
	var j callJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*c = j.call()
	return nil
}

type taskJSON struct {
	callJSON
	Bid   Bid             `json:"bid"`
	Input json.RawMessage `json:"input,omitempty"`
}

// MarshalJSON implements json.Marshaler.
func (t Task) MarshalJSON() ([]byte, error) {
	return json.Marshal(taskJSON{t.Call.toJSON(), t.Bid, t.Input})
}

// UnmarshalJSON implements json.Unmarshaler. Progress stays nil.
func (t *Task) UnmarshalJSON(data []byte) error {
	var j taskJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*t = Task{Call: j.call(), Bid: j.Bid, Input: j.Input}
	return nil
}

type timingsJSON struct {
	Negotiation intent.Duration `json:"negotiation"`
	Work        intent.Duration `json:"work"`
	Total       intent.Duration `json:"total"`
}

// MarshalJSON implements json.Marshaler.
func (t Timings) MarshalJSON() ([]byte, error) {
	return json.Marshal(timingsJSON{intent.Duration(t.Negotiation), intent.Duration(t.Work), intent.Duration(t.Total)})
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *Timings) UnmarshalJSON(data []byte) error {
	var j timingsJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*t = Timings{time.Duration(j.Negotiation), time.Duration(j.Work), time.Duration(j.Total)}
	return nil
}
