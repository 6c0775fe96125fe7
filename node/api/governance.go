package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/parleynet/parley/discovery"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/node"
)

// Paths of the approval and agent-finding endpoints.
const (
	PathApprovals  = "/v1/approvals"
	PathApproval   = "/v1/approvals/{id}" // POST {"decision":"approve"|"deny"}
	PathFindAgents = "/v1/agents/find"    // GET ?capability=C[&timeout=10s]
)

// How long GET /v1/agents/find looks for agents: DefaultFindTimeout
// unless the request's timeout parameter says otherwise, at most
// MaxFindTimeout.
const (
	DefaultFindTimeout = 10 * time.Second
	MaxFindTimeout     = 2 * time.Minute
)

// DecisionBody decides a pending approval.
type DecisionBody struct {
	Decision string `json:"decision"` // approve or deny
}

func (s *Server) handleApprovals(w http.ResponseWriter, _ *http.Request) {
	if !s.started(w) {
		return
	}
	approvals := s.n.Approvals()
	if approvals == nil {
		approvals = []node.Approval{}
	}
	writeJSON(w, http.StatusOK, approvals)
}

func (s *Server) handleDecide(w http.ResponseWriter, r *http.Request) {
	if !s.started(w) {
		return
	}
	var body DecisionBody
	if !readBody(w, r, 4<<10, &body) {
		return
	}
	if body.Decision != "approve" && body.Decision != "deny" {
		writeError(w, CodeBadRequest, fmt.Sprintf("decision %q: want approve or deny", body.Decision))
		return
	}
	if err := s.n.Decide(r.PathValue("id"), body.Decision == "approve", "api"); err != nil {
		writeError(w, codeOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id"), "decision": body.Decision})
}

func (s *Server) handleFindAgents(w http.ResponseWriter, r *http.Request) {
	if !s.started(w) {
		return
	}
	capability := r.URL.Query().Get("capability")
	if err := intent.ValidCapability(capability); err != nil {
		writeError(w, CodeBadRequest, err.Error())
		return
	}
	timeout := DefaultFindTimeout
	if t := r.URL.Query().Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 || d > MaxFindTimeout {
			writeError(w, CodeBadRequest, fmt.Sprintf("timeout %q: want a positive duration up to %s, such as 5s", t, MaxFindTimeout))
			return
		}
		timeout = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	cards, err := s.n.FindAgents(ctx, capability)
	if err != nil {
		writeError(w, codeOf(err), err.Error())
		return
	}
	if cards == nil {
		cards = []*discovery.SignedCard{}
	}
	writeJSON(w, http.StatusOK, cards)
}

// Approvals lists the approvals waiting for a decision.
func (c *Client) Approvals(ctx context.Context) ([]node.Approval, error) {
	return list[node.Approval](ctx, c, PathApprovals)
}

// Decide approves or denies a pending approval. An unknown ID is an *Error
// with Status 404.
func (c *Client) Decide(ctx context.Context, id string, approve bool) error {
	d := "deny"
	if approve {
		d = "approve"
	}
	body, _ := json.Marshal(DecisionBody{Decision: d})
	var ack map[string]string
	return c.do(ctx, http.MethodPost, strings.Replace(PathApproval, "{id}", url.PathEscape(id), 1), body, http.StatusOK, &ack)
}

// FindAgents returns the verified cards of agents offering capability
// that the daemon found within timeout (0 means DefaultFindTimeout).
func (c *Client) FindAgents(ctx context.Context, capability string, timeout time.Duration) ([]*discovery.SignedCard, error) {
	q := url.Values{"capability": {capability}}
	if timeout > 0 {
		q.Set("timeout", timeout.String())
	}
	var v []*discovery.SignedCard
	if err := c.do(ctx, http.MethodGet, PathFindAgents+"?"+q.Encode(), nil, http.StatusOK, &v); err != nil {
		return nil, err
	}
	return v, nil
}
