package mcp_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/parleynet/parley/interop/mcp"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/api"
	"github.com/parleynet/parley/node/nodetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const token = "operator-token"

// mesh is two nodes: node 1 hosts "worker" on "echo" (it echoes its input
// after waiting for release, if set), node 0 serves the API the MCP
// tools call.
type mesh struct {
	m   *nodetest.Mesh
	srv *api.Server
}

func newMesh(t testing.TB, release <-chan struct{}, opts ...nodetest.Option) *mesh {
	t.Helper()
	m := nodetest.NewMesh(t, 2, opts...)
	_, err := m.Nodes[1].AddAgent(node.AgentCard{Name: "worker", Capabilities: []string{"echo"}}, negotiation.HandlerFuncs{
		BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
			return negotiation.Bid{Price: 2, ETA: 10 * time.Millisecond, Rationale: "idle"}, nil
		},
		WorkFunc: func(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
			task.Progress(0.5, "half way")
			if release != nil {
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return task.Input, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !slices.Contains(m.Nodes[0].TopicPeers("echo"), m.Nodes[1].ID()) {
		select {
		case <-ctx.Done():
			t.Fatal("node 0 never saw the worker's node on echo")
		case <-time.After(10 * time.Millisecond):
		}
	}
	return &mesh{m: m, srv: api.NewServer(m.Nodes[0], token, api.WithMCP(mcp.Mount("test")))}
}

// connect returns a Go SDK client session on the in-memory transport to
// an MCP server whose tools use the API in-process with the operator
// token.
func (ms *mesh) connect(t testing.TB, opts *sdk.ClientOptions) *sdk.ClientSession {
	t.Helper()
	ctx := context.Background()
	s := mcp.NewServer(func(*sdk.CallToolRequest) (*api.Client, error) { return ms.srv.InProcessClient(token), nil }, mcp.Config{Version: "test"})
	st, ct := sdk.NewInMemoryTransports()
	ss, err := s.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "1"}, opts).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.Close()
		_ = ss.Wait()
	})
	return cs
}

func structured[T any](t testing.TB, res *sdk.CallToolResult) T {
	t.Helper()
	var v T
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("structured content %s: %v", b, err)
	}
	return v
}

func text(res *sdk.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// progressLog keeps the progress notifications a session receives. The
// client SDK runs notification handlers on a goroutine of their own while
// it hands a call its response directly, so a call can return before its
// last notifications were handled even though they came first on the
// wire: until waits for them.
type progressLog struct {
	mu    sync.Mutex
	notes []*sdk.ProgressNotificationParams
	added chan struct{} // closed and replaced on each note
	on    func(*sdk.ProgressNotificationParams)
}

func newProgressLog(on func(*sdk.ProgressNotificationParams)) *progressLog {
	return &progressLog{added: make(chan struct{}), on: on}
}

func (p *progressLog) handle(_ context.Context, req *sdk.ProgressNotificationClientRequest) {
	p.mu.Lock()
	p.notes = append(p.notes, req.Params)
	close(p.added)
	p.added = make(chan struct{})
	p.mu.Unlock()
	if p.on != nil {
		p.on(req.Params)
	}
}

// until returns the notes once the last one's message contains last, or
// fails the test after 10 s.
func (p *progressLog) until(t testing.TB, last string) []*sdk.ProgressNotificationParams {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		p.mu.Lock()
		notes, added := slices.Clone(p.notes), p.added
		p.mu.Unlock()
		if n := len(notes); n > 0 && strings.Contains(notes[n-1].Message, last) {
			return notes
		}
		select {
		case <-added:
		case <-timeout:
			var msgs []string
			for _, n := range notes {
				msgs = append(msgs, n.Message)
			}
			t.Fatalf("progress:\n%s\nno last notification with %q", strings.Join(msgs, "\n"), last)
		}
	}
}

// TestTools: every tool is listed with an input and an output schema.
func TestTools(t *testing.T) {
	cs := newMesh(t, nil).connect(t, nil)
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
		if tool.InputSchema == nil || tool.OutputSchema == nil || tool.Description == "" {
			t.Errorf("tool %s: input schema %v, output schema %v, description %q", tool.Name, tool.InputSchema != nil, tool.OutputSchema != nil, tool.Description)
		}
	}
	slices.Sort(names)
	if want := []string{"answer_task", "cancel_task", "cancel_workflow", "find_agents", "publish", "request", "run_workflow", "task", "tasks", "workflow", "workflows"}; !slices.Equal(names, want) {
		t.Fatalf("tools = %v, want %v", names, want)
	}
}

// TestRequestProgress: request negotiates in the mesh, sends a progress
// notification for each step of the task with increasing progress, and
// returns the outcome; task then shows the same task, completed.
func TestRequestProgress(t *testing.T) {
	release := make(chan struct{})
	ms := newMesh(t, release)
	progress := newProgressLog(func(p *sdk.ProgressNotificationParams) {
		if strings.Contains(p.Message, "half way") {
			select {
			case <-release:
			default:
				close(release)
			}
		}
	})
	cs := ms.connect(t, &sdk.ClientOptions{ProgressNotificationHandler: progress.handle})
	ctx := context.Background()
	params := &sdk.CallToolParams{Name: "request", Arguments: map[string]any{"capability": "echo", "input": map[string]any{"n": 7}, "bid_window": "100ms"}}
	params.SetProgressToken("p1")
	res, err := cs.CallTool(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if res.IsError {
		t.Fatalf("request: tool error %s", text(res))
	}
	out := structured[mcp.Outcome](t, res)
	if out.State != "completed" || out.WinnerName != "worker" || len(out.Bids) != 1 || out.Bids[0].Price != 2 {
		t.Fatalf("outcome = %+v", out)
	}
	if r, _ := json.Marshal(out.Result); string(r) != `{"n":7}` {
		t.Fatalf("result = %s", r)
	}
	got := progress.until(t, "completed")
	var msgs []string
	for _, p := range got {
		msgs = append(msgs, strings.TrimPrefix(p.Message, "task "+out.Task+" "))
	}
	if len(msgs) != 5 || !strings.HasPrefix(msgs[0], "submitted") || !strings.HasPrefix(msgs[1], "negotiating") || msgs[2] != "working: "+shortID(out.Winner)+" committed (worker)" ||
		msgs[3] != "working 50%: half way" || msgs[4] != "completed" {
		t.Fatalf("progress messages %q; want submitted, negotiating, working, the worker's progress, completed", msgs)
	}
	for i, p := range got {
		if p.ProgressToken != "p1" || !strings.Contains(p.Message, out.Task) || i > 0 && p.Progress <= got[i-1].Progress {
			t.Fatalf("progress %d = %+v", i, p)
		}
	}
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "task", Arguments: map[string]any{"task": out.Task}})
	if err != nil || res.IsError {
		t.Fatalf("task: %v %s", err, text(res))
	}
	if task := structured[mcp.Task](t, res); task.State != "completed" || task.Outcome == nil || task.Outcome.WinnerName != "worker" {
		t.Fatalf("task = %+v", task)
	}
}

// TestRequestJoinsCallerTrace: a call whose _meta carries a W3C
// traceparent makes the task part of the caller's trace.
func TestRequestJoinsCallerTrace(t *testing.T) {
	ms := newMesh(t, nil, nodetest.WithConfig(func(_ int, c *node.Config) { c.Tracing.Enabled = true }))
	cs := ms.connect(t, nil)
	const caller = "4bf92f3577b34da6a3ce929d0e0e4736"
	params := &sdk.CallToolParams{Name: "request", Arguments: map[string]any{"capability": "echo", "input": 1, "bid_window": "100ms"},
		Meta: sdk.Meta{"traceparent": "00-" + caller + "-00f067aa0ba902b7-01"}}
	res, err := cs.CallTool(context.Background(), params)
	if err != nil || res.IsError {
		t.Fatalf("request: %v %s", err, text(res))
	}
	out := structured[mcp.Outcome](t, res)
	if got := ms.m.Nodes[0].Tracing().Ring().Lookup(out.Task, 0).Traces; len(got) != 1 || got[0] != caller {
		t.Fatalf("task %s called with trace %s is in traces %v", out.Task, caller, got)
	}
}

// TestToolErrors: domain failures are tool results with isError and the
// API's reason, not protocol errors; an unknown tool is a protocol error.
func TestToolErrors(t *testing.T) {
	cs := newMesh(t, nil).connect(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"request", map[string]any{"capability": "nobody-offers-this", "bid_window": "100ms", "timeout": "2s", "calls": 1}, "no bids"},
		{"request", map[string]any{"capability": "echo", "bid_window": "soon"}, "bid_window \"soon\""},
		{"request", map[string]any{"capability": "Not A Capability"}, "code bad_request"},
		{"task", map[string]any{"task": "0123abcd"}, "code not_found, HTTP 404"},
		{"cancel_task", map[string]any{"task": "0123abcd"}, "code not_found"},
		{"publish", map[string]any{"capability": "echo", "payload": 1, "kind": "shout"}, "want task, offer or event"},
		{"find_agents", map[string]any{"capability": "echo", "timeout": "-1s"}, "timeout \"-1s\""},
		{"request", map[string]any{"capability": 7}, "capability"}, // off the input schema
	} {
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: tc.tool, Arguments: tc.args})
		if err != nil {
			t.Fatalf("%s %v: protocol error %v, want a tool error", tc.tool, tc.args, err)
		}
		if !res.IsError || !strings.Contains(text(res), tc.want) {
			t.Errorf("%s %v: isError %v, %q; want an error containing %q", tc.tool, tc.args, res.IsError, text(res), tc.want)
		}
	}
	if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "no_such_tool"}); err == nil || !strings.Contains(err.Error(), "no_such_tool") {
		t.Fatalf("unknown tool: %v, want a protocol error naming it", err)
	}
}

// TestPublishTasksCancel: publish signs an intent; cancel_task cancels a
// running request, which then ends canceled as a tool error; tasks lists it.
func TestPublishTasksCancel(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	ms := newMesh(t, release)
	cs := ms.connect(t, nil)
	ctx := context.Background()
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "publish", Arguments: map[string]any{"capability": "echo", "payload": map[string]any{"hi": 1}}})
	if err != nil || res.IsError {
		t.Fatalf("publish: %v %s", err, text(res))
	}
	if in := structured[mcp.Intent](t, res); in.ID == "" || in.Kind != "event" || in.Origin != ms.m.Nodes[0].ID().String() {
		t.Fatalf("intent = %+v", in)
	}

	type answer struct {
		res *sdk.CallToolResult
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "request", Arguments: map[string]any{"capability": "echo", "bid_window": "100ms"}})
		done <- answer{res, err}
	}()
	var id string
	for id == "" {
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "tasks", Arguments: map[string]any{}})
		if err != nil || res.IsError {
			t.Fatalf("tasks: %v %s", err, text(res))
		}
		for _, task := range structured[mcp.TasksOut](t, res).Tasks {
			if task.Role == "requester" && task.State == "working" {
				id = task.Task
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "cancel_task", Arguments: map[string]any{"task": id}})
	if err != nil || res.IsError {
		t.Fatalf("cancel_task: %v %s", err, text(res))
	}
	a := <-done
	if a.err != nil || !a.res.IsError || !strings.Contains(text(a.res), "canceled") {
		t.Fatalf("canceled request: %v, isError %v, %s", a.err, a.res.IsError, text(a.res))
	}
	if out := structured[mcp.Outcome](t, a.res); out.Task != id || out.State != "canceled" {
		t.Fatalf("outcome = %+v", out)
	}
}

// TestHTTP: the API's /mcp serves the tools behind the operator token; a
// call uses the caller's own token, and a request without one is 401.
func TestHTTP(t *testing.T) {
	ms := newMesh(t, nil)
	ts := httptest.NewServer(ms.srv)
	defer ts.Close()
	ctx := context.Background()
	hc := &http.Client{Transport: bearer{token}}
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, &sdk.StreamableClientTransport{Endpoint: ts.URL + api.PathMCP, HTTPClient: hc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "request", Arguments: map[string]any{"capability": "echo", "input": "hi", "bid_window": "100ms"}})
	if err != nil || res.IsError {
		t.Fatalf("request: %v %s", err, text(res))
	}
	if out := structured[mcp.Outcome](t, res); out.Result != "hi" {
		t.Fatalf("outcome = %+v", out)
	}

	resp, err := http.Post(ts.URL+api.PathMCP, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", resp.StatusCode)
	}
}

// shortID is how task notes name an agent: its DID's last 8 characters.
func shortID(id string) string { return "…" + id[len(id)-8:] }

type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// TestShutdownWithClient: the endpoint keeps nothing between requests, so
// the API server's Shutdown does not wait on a connected MCP client, and
// nothing the client's calls ran is left behind (TestMain's goleak).
func TestShutdownWithClient(t *testing.T) {
	ms := newMesh(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ms.srv.Serve(context.Background(), ln) }()
	ctx := context.Background()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx,
		&sdk.StreamableClientTransport{Endpoint: "http://" + ln.Addr().String() + api.PathMCP, HTTPClient: &http.Client{Transport: bearer{token}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if _, err := cs.ListTools(ctx, nil); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := ms.srv.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown with a client connected: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// TestFindAgents: find_agents returns the worker's verified card, with
// the node that hosts it and that node's delegation.
func TestFindAgents(t *testing.T) {
	ms := newMesh(t, nil)
	cs := ms.connect(t, nil)
	res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "find_agents", Arguments: map[string]any{"capability": "echo", "timeout": "5s"}})
	if err != nil || res.IsError {
		t.Fatalf("find_agents: %v %s", err, text(res))
	}
	out := structured[mcp.FindAgentsOut](t, res)
	if len(out.Agents) != 1 {
		t.Fatalf("agents = %+v, want the worker", out.Agents)
	}
	card := out.Agents[0]
	if card.Name != "worker" || card.Peer != ms.m.Nodes[1].ID().String() || card.Delegation == "" || len(card.Capabilities) != 1 || card.Capabilities[0].Name != "echo" {
		t.Fatalf("card = %+v", card)
	}
}

// TestRequestCanceledByClient: a client that cancels its request call
// (notifications/cancelled) cancels the task in the mesh, through the
// in-process API call the tool made.
func TestRequestCanceledByClient(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	ms := newMesh(t, release)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var task atomic.Value
	cs := ms.connect(t, &sdk.ClientOptions{ProgressNotificationHandler: func(_ context.Context, req *sdk.ProgressNotificationClientRequest) {
		if id, rest, ok := strings.Cut(strings.TrimPrefix(req.Params.Message, "task "), " "); ok && strings.HasPrefix(rest, "working") {
			task.Store(id)
			cancel()
		}
	}})
	params := &sdk.CallToolParams{Name: "request", Arguments: map[string]any{"capability": "echo", "bid_window": "100ms"}}
	params.SetProgressToken("c1")
	if _, err := cs.CallTool(ctx, params); err == nil {
		t.Fatal("a canceled call answered")
	}
	id, _ := task.Load().(string)
	if id == "" {
		t.Fatal("no working progress before the cancel")
	}
	c := ms.srv.InProcessClient(token)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ti, err := c.Task(context.Background(), id)
		if err == nil && ti.State == negotiation.StateCanceled {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s after the client canceled: %+v, %v; want canceled", id, ti, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
