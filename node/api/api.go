// Package api owns a parley node's local HTTP API: the server a daemon runs
// on 127.0.0.1 so that agents in any language, and the parley CLI, can use
// the node, and the Go client for it.
//
// Every request but GET /v1/health and /openapi.yaml carries
// "Authorization: Bearer <token>", with one of two kinds of token (see
// auth.go): the operator token, which the daemon writes to <home>/api.token
// and which may do everything, or an agent token, issued when the operator
// registers an external agent and good only for that agent's own
// /v1/external/* calls. Refusals are 401 (no or unknown token) or 403 (a
// token that may not do this), and are recorded through WithRefusals. Bodies
// and responses are JSON; errors are {"error": "<message>", "code": "<Code>"}
// with the code's status (errors.go); a body over the limit (1 MiB by
// default, WithMaxBodySize) is 413. Routes are http.ServeMux patterns, so
// a wrong method is 405 with Allow. openapi.yaml is the contract, and the
// tests check every answer against it.
//
//	GET  /v1/health[?probe=live]          Health, no token: 200 ready, 503 not (with the reasons)
//	GET  /v1/status                       Status: the daemon on one screen
//	GET  /v1/node                         NodeInfo
//	GET  /v1/peers                        []node.PeerInfo
//	GET  /v1/stats                        node.Stats
//	POST /v1/intents                      PublishRequest → 201 intent.Intent; a ttl above the
//	                                      node's limit is a 400 naming it
//	GET  /v1/intents/subscribe?capability=C
//	                                      text/event-stream, one "data: <intent JSON>" event per verified intent
//	POST   /v1/tasks                      RequestBody → 200 negotiation.Outcome
//	                                      runs one negotiation and answers when it ends,
//	                                      completed or not (see the outcome's state); the
//	                                      task is canceled if the client goes away
//	                                      with Accept: text/event-stream, a stream of TaskEvent:
//	                                      "task" each time the task changes, then "outcome"
//	GET    /v1/tasks                      []negotiation.TaskInfo, newest first, both roles
//	GET    /v1/tasks/{id}                 negotiation.TaskInfo; 404 if unknown
//	DELETE /v1/tasks/{id}                 cancels the task → 202 negotiation.TaskInfo;
//	                                      404 if unknown, 409 if it has already ended
//	POST   /v1/tasks/{id}/input           AnswerBody → 200 negotiation.TaskInfo: answers an
//	                                      input-required task's question; 404 if unknown,
//	                                      409 if it asks nothing now, 413 over the node's bound
//	GET  /v1/approvals                    []node.Approval held for a human
//	POST /v1/approvals/{id}               {"decision":"approve"|"deny"}; 404 if not pending
//	GET  /v1/agents/find?capability=C     []discovery.SignedCard (verified, via the DHT)
//	GET    /v1/agents                     []HostedAgent: every agent the node hosts
//	POST   /v1/agents                     AgentSpec → 201 HostedAgent: host an exec agent and write
//	                                      it to config.yaml (WithAgentAdmin; else 501); 409 if the name is taken
//	DELETE /v1/agents/{name}              stop hosting it and remove it from config.yaml; 404 if unknown
//	POST   /v1/external/agents            {"name","capabilities"} → 201 ExternalRegistration, with
//	                                      the agent's token; 409 for a name of the node's own agents
//	DELETE /v1/external/agents/{name}     deregisters it: its token stops working
//	GET  /v1/external/events[?agent=NAME] text/event-stream of call, award and cancel events;
//	                                      409 if already open; while closed the agent does not
//	                                      bid, and the tasks it holds fail over
//	POST /v1/external/bid                 {"agent","task","price","eta","rationale"} or {…,"refuse"};
//	                                      409 if the task is not open for its bid
//	POST /v1/external/progress|result|failure
//	                                      {"agent","task",…}; 409 if the agent holds no such task
//	POST /v1/external/ask                 {"agent","task","note","schema"} → {"task","answer"}: asks the
//	                                      task's requester and waits for its answer (the task's
//	                                      deadline bounds it); 409 if the agent holds no such task,
//	                                      its requester takes no questions, or past the node's bound
//	POST /v1/ui/login-links               → 201 UILoginLink: a one-time link to the dashboard (ui.go)
//	GET  /ui/login?code=C                 no token: the code for a session cookie, 303 to /ui
//	GET  /ui, /ui/app.js, /ui/app.css     the dashboard (a session or the operator token)
//	GET  /v1/ui/events                    text/event-stream of UIEvent: what changed on the node
//	GET  /v1/audit[?tail=N]               []audit.Record, the audit log's last N (WithAuditTail; else 501)
//	GET  /metrics                         Prometheus text
//	POST /mcp                             the MCP server's Streamable HTTP, stateless (WithMCP; else 501); its
//	                                      tools call this API in-process with the caller's token
//
// With an agent token, "agent" may be left out of the external calls.
// Registrations survive restarts through a Registry (WithRegistry,
// Server.Restore).
//
// It does not own the node (package node), negotiation (package
// negotiation), the intent format (package intent), or where the daemon
// publishes its URL and token and keeps external agents (daemon, daemon/home).
package api

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
)

var log = logging.Logger("parley/api")

// Paths of the API's endpoints.
const (
	PathNode      = "/v1/node"
	PathPeers     = "/v1/peers"
	PathStats     = "/v1/stats"
	PathIntents   = "/v1/intents"
	PathSubscribe = "/v1/intents/subscribe"
	PathTasks     = "/v1/tasks"
	PathTask      = "/v1/tasks/{id}" // a pattern: {id} is one path segment
	PathMetrics   = "/metrics"
)

// NodeInfo is the answer to GET /v1/node.
type NodeInfo struct {
	Peer    peer.ID     `json:"peer"`
	Addrs   []string    `json:"addrs"` // each ends in /p2p/<peer>
	Agents  []AgentInfo `json:"agents"`
	Version string      `json:"version"`
}

// AgentInfo names one hosted agent.
type AgentInfo struct {
	Name string           `json:"name"`
	ID   identity.AgentID `json:"id"`
}

// PublishRequest is the body of POST /v1/intents.
type PublishRequest struct {
	Capability string          `json:"capability"`
	Kind       intent.Kind     `json:"kind,omitempty"`  // default "event"
	Payload    json.RawMessage `json:"payload"`         // any JSON value; required
	Agent      string          `json:"agent,omitempty"` // hosted agent; default agent if empty
	TTL        string          `json:"ttl,omitempty"`   // Go duration, e.g. "30s"; node default if empty
}

// RequestBody is the body of POST /v1/tasks: what a hosted agent needs
// done and how to negotiate it. Empty fields take the node's defaults.
type RequestBody struct {
	Capability string `json:"capability"` // required
	// Summary is the public part of the call, seen by every bidder.
	Summary json.RawMessage `json:"summary,omitempty"`
	// Input is the full task input, sent only to the contractor that
	// commits.
	Input json.RawMessage `json:"input,omitempty"`
	// Budget is the most the requester will pay; 0 means no limit.
	Budget    float64 `json:"budget,omitempty"`
	Agent     string  `json:"agent,omitempty"`      // requesting hosted agent; default agent if empty
	BidWindow string  `json:"bid_window,omitempty"` // Go duration, e.g. "2s"
	Timeout   string  `json:"timeout,omitempty"`    // the whole task's deadline, e.g. "30s"
	Calls     int     `json:"calls,omitempty"`      // the most calls for proposals (retry budget)
	Strategy  string  `json:"strategy,omitempty"`   // "cheapest" (default), "fastest", "weighted:PRICE,SECONDS"
}

// NewToken returns a fresh random API token: 32 bytes, hex encoded.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("api token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
