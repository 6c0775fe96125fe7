package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/negotiation"
)

// TestRequestStream: a streamed request reports the task's updates as
// they happen — the same ID each time: submitted, negotiating, working
// with the winner, the winner's progress note — and then the outcome
// Request would have answered.
func TestRequestStream(t *testing.T) {
	release := make(chan struct{})
	m, worker := echoMesh(t, func(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
		task.Progress(0.5, "half way")
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return task.Input, nil
	})
	_, c := newTestServer(t, m.Nodes[0])
	var seen []negotiation.Update
	out, err := c.RequestStream(ctxT(t), RequestBody{Capability: "echo", Input: json.RawMessage(`{"n":1}`), BidWindow: "100ms"},
		func(u negotiation.Update) error {
			seen = append(seen, u)
			if u.Progress {
				close(release)
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Result) != `{"n":1}` || out.State != negotiation.StateCompleted {
		t.Fatalf("outcome = %+v", out)
	}
	var states []negotiation.State
	for _, u := range seen {
		if u.Task != out.Task {
			t.Fatalf("update for %s, outcome for %s", u.Task, out.Task)
		}
		states = append(states, u.State)
	}
	if len(seen) != 4 || states[0] != negotiation.StateSubmitted || states[1] != negotiation.StateNegotiating || states[2] != negotiation.StateWorking ||
		seen[2].Winner != worker.ID || !seen[3].Progress || seen[3].Fraction != 0.5 || seen[3].Note != "half way" {
		t.Fatalf("updates = %+v; want submitted, negotiating, working by the worker, its progress", seen)
	}
}

// TestRequestStreamCanceled: a callback's error cancels the task, as a
// client going away does, and the error is what the caller gets.
func TestRequestStreamCanceled(t *testing.T) {
	m, _ := echoMesh(t, func(ctx context.Context, _ negotiation.Task) (json.RawMessage, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	_, c := newTestServer(t, m.Nodes[0])
	stop := errors.New("enough")
	var id string
	_, err := c.RequestStream(ctxT(t), RequestBody{Capability: "echo", BidWindow: "100ms"}, func(u negotiation.Update) error {
		id = u.Task
		if u.State == negotiation.StateWorking {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("err = %v, want the callback's", err)
	}
	ti := waitTaskState(t, c, id, negotiation.StateCanceled)
	if ti.State != negotiation.StateCanceled {
		t.Fatalf("task %s: %s", id, ti.State)
	}
}

// TestRequestStreamRefused: what the node refuses before the task starts
// is answered as without a stream: an error with its code.
func TestRequestStreamRefused(t *testing.T) {
	m, _ := echoMesh(t, nil)
	_, c := newTestServer(t, m.Nodes[0])
	_, err := c.RequestStream(ctxT(t), RequestBody{Capability: "echo", Agent: "nobody"}, func(negotiation.Update) error { return nil })
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Fatalf("err = %v, want a 404", err)
	}
}

// TestInProcessClient: the in-process client passes the server's token
// checks like any other: the operator token works, a wrong one is 401,
// and nothing is served without ServeHTTP.
func TestInProcessClient(t *testing.T) {
	nodes := newTestNodes(t, 1)
	s := NewServer(nodes[0], testToken)
	ctx := ctxT(t)
	info, err := s.InProcessClient(testToken).Node(ctx)
	if err != nil || info.Peer != nodes[0].ID() {
		t.Fatalf("node = %+v, %v", info, err)
	}
	_, err = s.InProcessClient("wrong").Node(ctx)
	if !errors.Is(err, CodeUnauthorized) {
		t.Fatalf("wrong token: %v, want unauthorized", err)
	}
	// A canceled context ends a call that waits on the node.
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = s.InProcessClient(testToken).Request(cctx, RequestBody{Capability: "nobody-offers-this", Timeout: "10s"})
	if err == nil {
		t.Fatal("a request nobody can win completed")
	}
}

// waitTaskState polls a task until it reaches st.
func waitTaskState(t *testing.T, c *Client, id string, st negotiation.State) negotiation.TaskInfo {
	t.Helper()
	ctx := ctxT(t)
	for {
		ti, err := c.Task(ctx, id)
		if err == nil && ti.State == st {
			return *ti
		}
		select {
		case <-ctx.Done():
			t.Fatalf("task %s never reached %s (last %+v, %v)", id, st, ti, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestMCPUnmounted: without WithMCP, /mcp is a 501 (the contract checks
// the answer), behind the token like every route.
func TestMCPUnmounted(t *testing.T) {
	nodes := newTestNodes(t, 1)
	ts, _ := newTestServer(t, nodes[0])
	for _, tc := range []struct {
		token string
		want  int
	}{{testToken, http.StatusNotImplemented}, {"", http.StatusUnauthorized}} {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+PathMCP, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("token %q: %d, want %d", tc.token, resp.StatusCode, tc.want)
		}
	}
}
