// Package api owns a parley node's local HTTP API: the server a daemon runs
// on 127.0.0.1 so that agents in any language, and the parley CLI, can use
// the node, and the Go client for it.
//
// Every request carries "Authorization: Bearer <token>". Bodies and
// responses are JSON; errors are {"error": "..."} with a fitting status.
//
//	GET  /v1/node                         NodeInfo
//	GET  /v1/peers                        []node.PeerInfo
//	GET  /v1/stats                        node.Stats
//	POST /v1/intents                      PublishRequest → 201 intent.Intent
//	GET  /v1/intents/subscribe?capability=C
//	                                      text/event-stream, one "data: <intent JSON>" event per verified intent
//	GET  /metrics                         Prometheus text
//
// It does not own the node (package node), the intent format (package
// intent) or where the daemon publishes its URL and token (internal/home).
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

// errorBody is the JSON of every error response.
type errorBody struct {
	Error string `json:"error"`
}

// NewToken returns a fresh random API token: 32 bytes, hex encoded.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("api token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
