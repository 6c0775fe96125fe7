package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// The API's trust boundary. Two kinds of bearer token open it:
//
//   - the operator token, which the daemon writes to <home>/api.token, does
//     everything: the CLI uses it, and so does whoever registers external
//     agents and answers approvals;
//   - an agent token, returned once when the operator registers an
//     external agent, is good only for that agent's /v1/external/* calls
//     (its event stream, its bids, progress, results and failures).
//
// So the program behind an external agent never holds the operator token:
// it cannot approve the negotiations it is part of, read other agents'
// streams, or register agents under other names. Refused requests are
// answered 401 (no or unknown token) or 403 (a token that may not do
// this) and recorded in the audit log through the admission layer.

// principal is who a request's token says it comes from.
type principal struct {
	operator bool
	ui       bool   // a dashboard session's cookie (ui.go): the page's reads only
	agent    string // for an agent token: the external agent's name
	hash     string // the token's SHA-256, for an agent token
}

type principalKey struct{}

func principalOf(r *http.Request) principal {
	p, _ := r.Context().Value(principalKey{}).(principal)
	return p
}

// tokenHash is what the server keeps of an agent token: looking a token
// up by its hash leaks nothing about the token through timing.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// authenticate finds the principal of r's bearer token. why says what was
// wrong when it reports false.
func (s *Server) authenticate(r *http.Request) (p principal, why string, ok bool) {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case r.Header.Get("Authorization") == "":
		if c, err := r.Cookie(uiCookie); err == nil {
			if s.ui.session(c.Value) {
				return principal{ui: true}, "", true
			}
			return principal{}, "unknown or expired dashboard session", false
		}
		return principal{}, "no token", false
	case !ok || got == "":
		return principal{}, "no token", false
	case s.token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) == 1:
		return principal{operator: true}, "", true
	}
	h := tokenHash(got)
	s.extMu.Lock()
	name, ok := s.tokens[h]
	s.extMu.Unlock()
	if !ok {
		return principal{}, "unknown token", false
	}
	return principal{agent: name, hash: h}, "", true
}

// may reports whether p may call r's route (pattern), and if not, why.
func (p principal) may(r *http.Request, pattern string) (string, bool) {
	switch {
	case p.operator:
		return "", true
	case p.ui:
		if uiRoute(pattern) || pattern == "" { // no route: 404 or 405, as for the operator
			return "", true
		}
		return fmt.Sprintf("a dashboard session only reads what the dashboard shows; %s %s needs the operator token (the home's api.token)", r.Method, r.URL.Path), false
	case agentPath(r.URL.Path):
		return "", true
	}
	return fmt.Sprintf("this token is external agent %s's: it is good only for that agent's /v1/external/ calls; %s %s needs the operator token (the home's api.token)",
		p.agent, r.Method, r.URL.Path), false
}

// agentPath reports whether an agent token may call path.
func agentPath(path string) bool {
	switch path {
	case PathExternalEvents, PathExternalBid, PathExternalProgress, PathExternalResult, PathExternalFailure, PathExternalAsk:
		return true
	}
	return strings.HasPrefix(path, pathExternalContextPrefix)
}

// actFor reports whether r's principal may act for the external agent
// name, answering 403 when it may not.
func (s *Server) actFor(w http.ResponseWriter, r *http.Request, name string) bool {
	p := principalOf(r)
	if p.operator || p.agent == name {
		return true
	}
	s.refuse(w, r, CodeForbidden, fmt.Sprintf("this token is external agent %s's: it cannot act for agent %q", p.agent, name))
	return false
}

// refuse answers a request the API will not serve and records it through
// the node's admission layer (WithRefusals), which counts and summarises
// refusals: a client hammering the API with bad tokens costs a record a
// minute, not a record a request.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code Code, msg string) {
	status := code.Status()
	if code == CodeUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="parley"`)
	}
	writeError(w, code, msg)
	if s.refused == nil {
		return
	}
	token := "none"
	switch p := principalOf(r); {
	case p.operator:
		token = "operator"
	case p.agent != "":
		token = "agent:" + p.agent
	case p.ui:
		token = "dashboard-session"
	case strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "):
		token = "unknown"
	}
	rule := "api.scope"
	if code == CodeUnauthorized {
		rule = "api.token"
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	// Tokens themselves are never recorded, only their kind.
	s.refused(rule, token+" token from "+host, fmt.Sprintf("API refused %s %s with %d: %s", r.Method, r.URL.Path, status, msg),
		map[string]any{"method": r.Method, "path": r.URL.Path, "status": status, "remote": r.RemoteAddr, "token": token})
}

// withPrincipal returns r carrying p for the handlers.
func withPrincipal(r *http.Request, p principal) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
}
