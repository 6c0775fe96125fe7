package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"

	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/tracing"
)

// Sentinel errors callers branch on.
var (
	// ErrNoDaemon means nothing listens at the API's address: the daemon
	// is not running (its api file may be stale).
	ErrNoDaemon = errors.New("no daemon running")
	// ErrStreamClosed means the daemon ended an event stream, usually
	// because it is shutting down.
	ErrStreamClosed = errors.New("daemon closed the event stream")
)

// maxEventSize bounds one server-sent event the client accepts.
const maxEventSize = 8 << 20

// Error is an error response of the API. Branch on its Code, or with
// errors.Is(err, api.CodeNotFound) and the like.
type Error struct {
	Status  int    // HTTP status
	Code    Code   // the "code" field; from Status when the answer has none
	Message string // the "error" field
}

func (e *Error) Error() string { return e.Message }

// Is reports whether target is e's Code, so that errors.Is(err,
// api.CodeConflict) tells a 409 from the API.
func (e *Error) Is(target error) bool {
	c, ok := target.(Code)
	return ok && c == e.Code
}

// Client talks to a node's API. Its methods are safe for concurrent use.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// NewClient returns a client of the API at baseURL (e.g.
// "http://127.0.0.1:5001") that authenticates with token.
func NewClient(baseURL, token string) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the API is local; never send it or its token through a proxy
	return &Client{
		base:  strings.TrimRight(baseURL, "/"),
		token: token,
		hc:    &http.Client{Transport: tr},
	}
}

// Node returns the node's identity, addresses and agents.
func (c *Client) Node(ctx context.Context) (*NodeInfo, error) {
	return doAs[NodeInfo](ctx, c, http.MethodGet, PathNode, http.StatusOK)
}

// Peers returns the peers the node is connected to.
func (c *Client) Peers(ctx context.Context) ([]node.PeerInfo, error) {
	return list[node.PeerInfo](ctx, c, PathPeers)
}

// Stats returns the node's intent counters.
func (c *Client) Stats(ctx context.Context) (*node.Stats, error) {
	return doAs[node.Stats](ctx, c, http.MethodGet, PathStats, http.StatusOK)
}

// Publish has the node sign and gossip an intent and returns it.
func (c *Client) Publish(ctx context.Context, req PublishRequest) (*intent.Intent, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	var v intent.Intent
	if err := c.do(ctx, http.MethodPost, PathIntents, body, http.StatusCreated, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Subscribe calls fn with every verified intent the node receives on
// capability, until ctx ends (it returns ctx's error), fn returns an error
// (it returns that error) or the daemon ends the stream (ErrStreamClosed).
func (c *Client) Subscribe(ctx context.Context, capability string, fn func(*intent.Intent) error) error {
	resp, err := c.send(ctx, http.MethodGet, PathSubscribe+"?capability="+url.QueryEscape(capability), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return readError(resp)
	}
	var stop error // the event's or fn's, as they are
	err = readEvents(resp.Body, func(data []byte) error {
		var in intent.Intent
		if err := json.Unmarshal(data, &in); err != nil {
			stop = fmt.Errorf("subscribe %s: bad event from daemon: %w", capability, err)
		} else {
			stop = fn(&in)
		}
		return stop
	})
	switch {
	case stop != nil:
		return stop
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return fmt.Errorf("subscribe %s: %w", capability, err)
	}
	return fmt.Errorf("subscribe %s: %w", capability, ErrStreamClosed)
}

// Request has the node negotiate need as one of its agents and returns the
// outcome. It blocks until the task ends: there is no client-side timeout,
// the task's own timeout (RequestBody.Timeout) bounds it; cancelling ctx
// cancels the task. Like node.Request, the outcome is returned whether or
// not the task completed, and the error then wraps
// negotiation.ErrTaskFailed or negotiation.ErrCanceled.
func (c *Client) Request(ctx context.Context, req RequestBody) (*negotiation.Outcome, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", req.Capability, err)
	}
	var out negotiation.Outcome
	if err := c.do(ctx, http.MethodPost, PathTasks, body, http.StatusOK, &out); err != nil {
		return nil, err
	}
	switch out.State {
	case negotiation.StateCompleted:
		return &out, nil
	case negotiation.StateCanceled:
		return &out, fmt.Errorf("task %s: %w: %s", out.Task, negotiation.ErrCanceled, out.Reason)
	}
	return &out, fmt.Errorf("task %s: %w: %s", out.Task, negotiation.ErrTaskFailed, out.Reason)
}

// Tasks lists the node's tasks, as requester and as contractor, newest
// first.
func (c *Client) Tasks(ctx context.Context) ([]negotiation.TaskInfo, error) {
	return list[negotiation.TaskInfo](ctx, c, PathTasks)
}

// Task returns one task with its state history. An unknown ID is an *Error
// with Status 404.
func (c *Client) Task(ctx context.Context, id string) (*negotiation.TaskInfo, error) {
	return doAs[negotiation.TaskInfo](ctx, c, http.MethodGet, taskPath(id), http.StatusOK)
}

// CancelTask cancels a task and returns it as it was right after the
// cancel, which may not have taken effect yet. An unknown ID is an *Error
// with Status 404, a task that already ended one with Status 409.
func (c *Client) CancelTask(ctx context.Context, id string) (*negotiation.TaskInfo, error) {
	return doAs[negotiation.TaskInfo](ctx, c, http.MethodDelete, taskPath(id), http.StatusAccepted)
}

// RegisterExternal registers an external agent (or registers it again,
// which replaces its capabilities and its token) and returns its token,
// which its program uses for its /v1/external/* calls. It needs the
// operator token. A name taken by one of the node's own agents is an
// *Error with Status 409.
func (c *Client) RegisterExternal(ctx context.Context, body ExternalAgentBody) (*ExternalRegistration, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	var v ExternalRegistration
	if err := c.do(ctx, http.MethodPost, PathExternalAgents, b, http.StatusCreated, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// RemoveExternal deregisters an external agent: its token stops working
// and the tasks it holds fail over. An unknown name is an *Error with
// Status 404.
func (c *Client) RemoveExternal(ctx context.Context, name string) error {
	var ack map[string]string
	return c.do(ctx, http.MethodDelete, externalAgentPath(name), nil, http.StatusOK, &ack)
}

func externalAgentPath(name string) string {
	return strings.Replace(PathExternalAgent, "{name}", url.PathEscape(name), 1)
}

func taskPath(id string) string {
	return strings.Replace(PathTask, "{id}", url.PathEscape(id), 1)
}

// doJSON sends body as JSON and decodes a JSON response with status want
// into v.
func (c *Client) doJSON(ctx context.Context, method, path string, body any, want int, v any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return c.do(ctx, method, path, b, want, v)
}

// do sends a request and decodes a JSON response with status want into v.
// doAs is do for a body-less request whose answer is one T.
// list GETs a list of T from path.
func list[T any](ctx context.Context, c *Client, path string) ([]T, error) {
	var v []T
	if err := c.do(ctx, http.MethodGet, path, nil, http.StatusOK, &v); err != nil {
		return nil, err
	}
	return v, nil
}

func doAs[T any](ctx context.Context, c *Client, method, path string, want int) (*T, error) {
	var v T
	if err := c.do(ctx, method, path, nil, want, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, want int, v any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		return readError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s %s: bad response: %w", method, path, err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	return c.sendAccept(ctx, method, path, body, "")
}

// sendAccept is send with an Accept header, unless accept is "".
func (c *Client) sendAccept(ctx context.Context, method, path string, body []byte, accept string) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if tp := tracing.Inject(ctx); tp != "" {
		req.Header.Set("traceparent", tp)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w at %s", ErrNoDaemon, c.base)
		}
		return nil, err
	}
	return resp, nil
}

// readError turns an error response into an *Error.
func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb errorBody
	if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
		eb.Error = strings.TrimSpace(string(b))
		if eb.Error == "" {
			eb.Error = resp.Status
		}
	}
	if eb.Code == "" {
		eb.Code = codeOfStatus(resp.StatusCode)
	}
	return &Error{Status: resp.StatusCode, Code: eb.Code, Message: eb.Error}
}
