package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
)

// Code is the machine-readable kind of an API error: the "code" of every
// error body, beside "error", the message for people. Each code comes
// with one HTTP status. A Code is an error too, so that callers of the
// Client can branch with errors.Is(err, api.CodeNotFound).
type Code string

// The API's error codes. openapi.yaml documents each; keep them in step.
const (
	CodeBadRequest       Code = "bad_request"        // 400: the input is wrong; the message names it
	CodeUnauthorized     Code = "unauthorized"       // 401: no token, or one the node does not know
	CodeForbidden        Code = "forbidden"          // 403: a token that may not do this
	CodeNotFound         Code = "not_found"          // 404: no such endpoint, agent, task or approval
	CodeMethodNotAllowed Code = "method_not_allowed" // 405: the Allow header lists the methods
	CodeConflict         Code = "conflict"           // 409: the state does not allow it (task ended, name taken, stream open)
	CodePayloadTooLarge  Code = "payload_too_large"  // 413: a request body over the limit
	CodeInternal         Code = "internal"           // 500: the node failed; the daemon's log says more
	CodeNotImplemented   Code = "not_implemented"    // 501: this server does not offer it
	CodeUnavailable      Code = "unavailable"        // 503: the node is not running, or is shutting down
)

// Codes lists every error code, for documentation and tests.
func Codes() []Code {
	return []Code{
		CodeBadRequest, CodeUnauthorized, CodeForbidden, CodeNotFound, CodeMethodNotAllowed,
		CodeConflict, CodePayloadTooLarge, CodeInternal, CodeNotImplemented, CodeUnavailable,
	}
}

func (c Code) Error() string { return string(c) }

// Status is the HTTP status the API answers with c.
func (c Code) Status() int {
	switch c {
	case CodeBadRequest:
		return http.StatusBadRequest
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeForbidden:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case CodeConflict:
		return http.StatusConflict
	case CodePayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeNotImplemented:
		return http.StatusNotImplemented
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// codeOfStatus is the code of an error answer without one (a proxy's, an
// older daemon's), so that clients can branch on codes alone.
func codeOfStatus(status int) Code {
	for _, c := range Codes() {
		if c.Status() == status {
			return c
		}
	}
	if status >= 400 && status < 500 {
		return CodeBadRequest
	}
	return CodeInternal
}

// errorBody is the JSON of every error response.
type errorBody struct {
	Error string `json:"error"`
	Code  Code   `json:"code"`
}

func writeError(w http.ResponseWriter, code Code, msg string) {
	status := code.Status()
	if status >= 500 {
		log.Warnw("api error", "status", status, "code", code, "err", msg)
	}
	writeJSON(w, status, errorBody{Error: msg, Code: code})
}

// codeOf maps an error of the node to an error code.
func codeOf(err error) Code {
	switch {
	case errors.Is(err, node.ErrUnknownAgent), errors.Is(err, negotiation.ErrUnknownTask), errors.Is(err, node.ErrUnknownApproval):
		return CodeNotFound
	case errors.Is(err, intent.ErrBadCapability), errors.Is(err, intent.ErrBadKind),
		errors.Is(err, intent.ErrBadPayload), errors.Is(err, node.ErrPayloadTooLarge), errors.Is(err, node.ErrBadTTL):
		return CodeBadRequest
	case errors.Is(err, node.ErrNotStarted), errors.Is(err, node.ErrClosed), errors.Is(err, negotiation.ErrClosed):
		return CodeUnavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return CodeUnavailable
	}
	return CodeInternal
}

// bodyTooLarge is decodeBody's error for a body over the limit, which is
// answered 413, not 400. It names the limit in the unit people read and
// in bytes.
type bodyTooLarge struct{ max int64 }

func (e *bodyTooLarge) Error() string {
	human := fmt.Sprintf("%d-byte", e.max)
	switch {
	case e.max >= 1<<20 && e.max%(1<<20) == 0:
		human = fmt.Sprintf("%d MiB", e.max>>20)
	case e.max >= 1<<10 && e.max%(1<<10) == 0:
		human = fmt.Sprintf("%d KiB", e.max>>10)
	}
	return fmt.Sprintf("request body over the %s limit (%d bytes); send a smaller one", human, e.max)
}

// readBody decodes r's JSON body into v (see decodeBody), answering the
// request itself when it cannot: 413 for a body over max, 400 otherwise.
func readBody(w http.ResponseWriter, r *http.Request, max int64, v any) bool {
	err := decodeBody(w, r, max, v)
	switch {
	case err == nil:
		return true
	case errors.As(err, new(*bodyTooLarge)):
		writeError(w, CodePayloadTooLarge, err.Error())
	default:
		writeError(w, CodeBadRequest, err.Error())
	}
	return false
}
