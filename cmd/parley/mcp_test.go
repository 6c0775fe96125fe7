package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/node/api"
)

// mcpTestdata is where the MCP clients the tests drive are installed.
const mcpTestdata = "../../interop/mcp/testdata"

// mcpClients returns node's path and the MCP test clients' directory,
// failing the test when they are not installed.
func mcpClients(t *testing.T) (nodeBin, dir string) {
	t.Helper()
	dir, err := filepath.Abs(mcpTestdata)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk")); err != nil {
		t.Fatalf("the MCP test clients are not installed: run (cd interop/mcp/testdata && npm ci) (%v)", err)
	}
	nodeBin, err = exec.LookPath("node")
	if err != nil {
		t.Fatalf("node (Node.js 20 or later) is needed for the MCP client tests: %v", err)
	}
	return nodeBin, dir
}

// TestMCPClients: the MCP clients of the ecosystem — the official
// TypeScript SDK over stdio (spawning parley mcp) and over Streamable
// HTTP (the daemon's /mcp), and the MCP inspector's CLI over both — list
// the tools and hire the exec agent of a second daemon with the request
// tool, receiving progress notifications and the result; bad input gets
// the protocol's error and changes nothing. Over HTTP the TypeScript SDK
// also runs a two-step workflow with the workflow tools, whose second
// step's exec agent writes the shared context.
func TestMCPClients(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary and Node.js clients")
	}
	nodeBin, dir := mcpClients(t)
	bin := parleyBinary(t)
	script, err := filepath.Abs("../../examples/shell/quote.sh")
	if err != nil {
		t.Fatal(err)
	}
	stock, err := filepath.Abs("../../examples/shell/stock.sh")
	if err != nil {
		t.Fatal(err)
	}
	homes := t.TempDir()
	a, b := filepath.Join(homes, "a"), filepath.Join(homes, "b")
	for _, h := range []string{a, b} {
		if _, stderr, code := parley(t, bin, "init", "--home", h); code != 0 {
			t.Fatalf("init: %s", stderr)
		}
	}
	cfg := "agents:\n  - name: default\n  - name: quoter\n    capabilities: [quote]\n    exec: [sh, " + script + "]\n" +
		"  - name: stocker\n    capabilities: [stock]\n    exec: [sh, " + stock + "]\n"
	if err := os.WriteFile(filepath.Join(b, "config.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	da := start(t, bin, "run", "--home", a, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns")
	da.line(t, 20*time.Second)
	listen := strings.TrimPrefix(da.line(t, 5*time.Second), "listen: ")
	db := start(t, bin, "run", "--home", b, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--bootstrap", listen)
	db.line(t, 20*time.Second)

	url, token, err := home.ReadAPI(a)
	if err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(url, token)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, capability := range []string{"quote", "stock"} {
		for deadline := time.Now().Add(20 * time.Second); ; { // until the agent's subscription has reached a
			o, err := c.Request(ctx, api.RequestBody{Capability: capability, BidWindow: "300ms", Timeout: "5s"})
			if err == nil || o != nil && len(o.Bids) > 0 { // the stocker bids, then fails a task with no context
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("nobody ever won a request for %s: %v", capability, err)
			}
		}
	}

	node := func(t *testing.T, args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, nodeBin, args...)
		cmd.Dir, cmd.Env = dir, testEnv()
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("node %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
		}
		return stdout.Bytes()
	}

	var taskID string
	for _, tc := range []struct {
		name, mode, x, y string
		badCalls         bool // the call nobody wins costs the node's 2 s publish wait: once is enough
		workflow         bool // and one transport is enough for the workflow tools
	}{
		{"typescript sdk over stdio", "stdio", bin, a, true, false},
		{"typescript sdk over streamable http", "http", url + api.PathMCP, token, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"client.mjs", tc.mode, tc.x, tc.y, "quote"}
			if !tc.badCalls {
				args = append(args, "--no-bad-calls")
			}
			if tc.workflow {
				args = append(args, "--workflow")
			}
			out := node(t, args...)
			taskID = checkTSClient(t, out, tc.badCalls)
			if tc.workflow {
				checkTSWorkflow(t, out)
			}
		})
	}

	// The inspector's CLI finds its own package.json relative to the
	// working directory, so it runs in its build directory.
	inspector := func(t *testing.T, args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, nodeBin, append([]string{"index.js"}, args...)...)
		cmd.Dir, cmd.Env = filepath.Join(dir, "node_modules", "@modelcontextprotocol", "inspector-cli", "build"), testEnv()
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("inspector %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
		}
		return stdout.Bytes()
	}
	t.Run("inspector cli over stdio: tools/list", func(t *testing.T) {
		out := inspector(t, "--method", "tools/list", bin, "mcp", "--home", a)
		var list struct {
			Tools []struct {
				Name         string         `json:"name"`
				OutputSchema map[string]any `json:"outputSchema"`
			} `json:"tools"`
		}
		if err := json.Unmarshal(out, &list); err != nil || len(list.Tools) != 11 {
			t.Fatalf("tools/list: %s (%v); want the eleven tools", out, err)
		}
	})
	t.Run("inspector cli over http: tools/call task", func(t *testing.T) {
		out := inspector(t, url+api.PathMCP, "--transport", "http", "--header", "Authorization: Bearer "+token,
			"--method", "tools/call", "--tool-name", "task", "--tool-arg", "task="+taskID)
		var res struct {
			IsError    bool `json:"isError"`
			Structured struct {
				Task    string `json:"task"`
				State   string `json:"state"`
				Outcome struct {
					WinnerName string `json:"winner_name"`
				} `json:"outcome"`
			} `json:"structuredContent"`
		}
		if err := json.Unmarshal(out, &res); err != nil || res.IsError || res.Structured.Task != taskID ||
			res.Structured.State != "completed" || res.Structured.Outcome.WinnerName != "quoter" {
			t.Fatalf("tools/call task: %s (%v); want task %s completed by the quoter", out, err, taskID)
		}
	})
	t.Run("bad input", func(t *testing.T) { mcpBadInput(t, ctx, bin, a, c, url, token) })
	t.Run("no daemon", func(t *testing.T) {
		// parley mcp with no daemon for its home still serves: each call
		// is a tool error saying what to do.
		idle := filepath.Join(homes, "idle")
		if _, stderr, code := parley(t, bin, "init", "--home", idle); code != 0 {
			t.Fatalf("init: %s", stderr)
		}
		cmd := exec.Command(bin, "mcp", "--home", idle)
		cmd.Env = testEnv()
		cs, err := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, &sdk.CommandTransport{Command: cmd}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "tasks", Arguments: map[string]any{}})
		if err != nil {
			t.Fatal(err)
		}
		var msg string
		for _, c := range res.Content {
			if tc, ok := c.(*sdk.TextContent); ok {
				msg += tc.Text
			}
		}
		if !res.IsError || !strings.Contains(msg, "no daemon running for home "+idle) || !strings.Contains(msg, "parley run --home") {
			t.Fatalf("tasks without a daemon: isError %v, %q; want a tool error saying to start one", res.IsError, msg)
		}
	})
}

// checkTSClient checks what client.mjs saw and returns the task its
// request made.
func checkTSClient(t *testing.T, out []byte, badCalls bool) string {
	t.Helper()
	var got struct {
		Server struct{ Name string }
		Tools  []struct{ Name, Input, Output string }
		Req    struct {
			IsError    bool `json:"isError"`
			Structured struct {
				Task       string `json:"task"`
				State      string `json:"state"`
				WinnerName string `json:"winner_name"`
				Bids       []struct {
					Price float64 `json:"price"`
				} `json:"bids"`
				Result struct {
					Quote int `json:"quote"`
				} `json:"result"`
			} `json:"structured"`
			Text string `json:"text"`
		} `json:"request"`
		Progress []struct {
			Progress float64 `json:"progress"`
			Message  string  `json:"message"`
		} `json:"progress"`
		Nobody struct {
			IsError bool   `json:"isError"`
			Text    string `json:"text"`
		} `json:"nobody"`
		UnknownTool *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"unknownTool"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("client output %s: %v", out, err)
	}
	if got.Server.Name != "parley" || len(got.Tools) != 11 {
		t.Fatalf("server %q with tools %+v; want parley's eleven", got.Server.Name, got.Tools)
	}
	for _, tool := range got.Tools {
		if tool.Input != "object" || tool.Output != "object" {
			t.Errorf("tool %s: input schema %q, output schema %q; want objects", tool.Name, tool.Input, tool.Output)
		}
	}
	r := got.Req
	if r.IsError || r.Structured.State != "completed" || r.Structured.WinnerName != "quoter" || r.Structured.Result.Quote != 42 || len(r.Structured.Bids) == 0 {
		t.Fatalf("request: %+v; want completed by the quoter with its quote", r)
	}
	if len(got.Progress) < 2 {
		t.Fatalf("progress notifications %+v; want one per step of the task", got.Progress)
	}
	for i, p := range got.Progress {
		if !strings.Contains(p.Message, r.Structured.Task) || i > 0 && p.Progress <= got.Progress[i-1].Progress {
			t.Fatalf("progress %d of %+v: want increasing, about task %s", i, got.Progress, r.Structured.Task)
		}
	}
	if badCalls && (!got.Nobody.IsError || !strings.Contains(got.Nobody.Text, "no bids")) {
		t.Fatalf("a capability nobody offers: %+v; want a tool error saying there were no bids", got.Nobody)
	}
	if got.UnknownTool == nil || got.UnknownTool.Code != -32602 || !strings.Contains(got.UnknownTool.Message, "no_such_tool") {
		t.Fatalf("unknown tool: %+v; want JSON-RPC error -32602 naming it", got.UnknownTool)
	}
	return r.Structured.Task
}

// checkTSWorkflow checks what client.mjs --workflow saw: the workflow
// completed with a notification per step change, the workflow tool shows
// its steps and the stocker's context entry (signed, verified), the list
// has it, and the bad calls are tool errors naming their input.
func checkTSWorkflow(t *testing.T, out []byte) {
	t.Helper()
	type result struct {
		IsError    bool   `json:"isError"`
		Text       string `json:"text"`
		Structured struct {
			ID     string `json:"id"`
			State  string `json:"state"`
			Output struct {
				Quote int `json:"quote"`
			} `json:"output"`
			Steps []struct {
				Name     string `json:"name"`
				State    string `json:"state"`
				Attempts []struct {
					WinnerName string `json:"winner_name"`
				} `json:"attempts"`
			} `json:"steps"`
			Context []struct {
				Key        string `json:"key"`
				Value      any    `json:"value"`
				WriterName string `json:"writer_name"`
				Step       string `json:"step"`
				Writer     string `json:"writer"`
				Verified   bool   `json:"verified"`
			} `json:"context"`
			Workflows []struct {
				ID    string `json:"id"`
				State string `json:"state"`
			} `json:"workflows"`
		} `json:"structured"`
		Progress []struct {
			Message string `json:"message"`
		} `json:"progress"`
	}
	var got struct {
		Run       result `json:"runWorkflow"`
		Show      result `json:"workflow"`
		List      result `json:"workflows"`
		Bad       result `json:"badWorkflow"`
		CancelEnd result `json:"cancelEnded"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("client output %s: %v", out, err)
	}
	run := got.Run.Structured
	if got.Run.IsError || run.State != "completed" || run.Output.Quote != 42 || len(run.Steps) != 2 {
		t.Fatalf("run_workflow: %+v; want completed with the quote", got.Run)
	}
	var notes []string
	for _, p := range got.Run.Progress {
		notes = append(notes, p.Message)
	}
	if all := strings.Join(notes, "\n"); !strings.Contains(all, "step quote completed") || !strings.Contains(all, "step stock completed (attempt 1: completed, stocker)") ||
		!strings.HasSuffix(all, "workflow "+run.ID+" completed") {
		t.Fatalf("run_workflow's progress:\n%s\nwant each step's end, then the workflow's", all)
	}
	show := got.Show.Structured
	if got.Show.IsError || show.ID != run.ID || show.Steps[1].Attempts[0].WinnerName != "stocker" || len(show.Context) != 1 {
		t.Fatalf("workflow: %+v; want the run with the stocker's one context entry", got.Show)
	}
	if e := show.Context[0]; e.Key != "stock.level" || e.Value != 7.0 || e.WriterName != "stocker" || e.Step != "stock" ||
		!strings.HasPrefix(e.Writer, "did:key:") || !e.Verified {
		t.Fatalf("context entry %+v; want stock.level = 7 by the stocker in step stock, verified", e)
	}
	if l := got.List.Structured.Workflows; got.List.IsError || len(l) == 0 || l[0].ID != run.ID || l[0].State != "completed" {
		t.Fatalf("workflows: %+v; want the run first", got.List)
	}
	if !got.Bad.IsError || !strings.Contains(got.Bad.Text, `bad.yaml:3: step a: needs unknown step "b"`) {
		t.Fatalf("a bad workflow file: %+v; want a tool error with its file:line", got.Bad)
	}
	if !got.CancelEnd.IsError || !strings.Contains(got.CancelEnd.Text, "already ended") {
		t.Fatalf("cancel of an ended workflow: %+v; want a tool error saying so", got.CancelEnd)
	}
}

// mcpBadInput sends /mcp what no client should: each gets the protocol's
// error, and the node's tasks are what they were.
func mcpBadInput(t *testing.T, ctx context.Context, bin, home string, c *api.Client, url, token string) {
	before, err := c.Tasks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	post := func(tok, contentType, version, body string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+api.PathMCP, strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Accept", "application/json, text/event-stream")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		if version != "" {
			req.Header.Set("MCP-Protocol-Version", version)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp, b.Bytes()
	}
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"request","arguments":{"capability":"quote"}}}`
	// An external agent's token is good for its own calls only: not for
	// the operator's tools.
	reg, err := c.RegisterExternal(ctx, api.ExternalAgentBody{Name: "outsider", Capabilities: []string{"other"}})
	if err != nil {
		t.Fatal(err)
	}
	oversize := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"publish","arguments":{"capability":"quote","payload":"` +
		strings.Repeat("x", api.DefaultMaxBodySize) + `"}}}`
	for _, tc := range []struct {
		name, token, contentType, body string
		status                         int
	}{
		{"no token", "", "application/json", call, http.StatusUnauthorized},
		{"wrong token", "not-the-token", "application/json", call, http.StatusUnauthorized},
		{"malformed JSON-RPC", token, "application/json", `{"jsonrpc":"2.0","id":1,"method":`, http.StatusBadRequest},
		{"not JSON", token, "text/plain", call, http.StatusUnsupportedMediaType},
		{"an agent token", reg.Token, "application/json", call, http.StatusForbidden},
		{"over 1 MiB", token, "application/json", oversize, http.StatusRequestEntityTooLarge},
	} {
		resp, body := post(tc.token, tc.contentType, "", tc.body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %s; want %d", tc.name, resp.StatusCode, body, tc.status)
		}
		if tc.status == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: a 401 without WWW-Authenticate", tc.name)
		}
	}
	// An unknown method: JSON-RPC's method not found (-32601) in a 404
	// for the current protocol version; older ones are refused with 400
	// before dispatch, naming it.
	resp, body := post(token, "application/json", "2026-07-28", `{"jsonrpc":"2.0","id":2,"method":"parley/no-such-method","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`)
	if msg := jsonRPCMessage(t, resp, body); resp.StatusCode != http.StatusNotFound || msg.Error == nil || msg.Error.Code != -32601 {
		t.Errorf("unknown method (2026-07-28): %d %s; want 404 with JSON-RPC error -32601", resp.StatusCode, body)
	}
	resp, body = post(token, "application/json", "", `{"jsonrpc":"2.0","id":2,"method":"parley/no-such-method"}`)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "parley/no-such-method") {
		t.Errorf("unknown method: %d %s; want 400 naming it", resp.StatusCode, body)
	}
	// The endpoint is stateless: GET (a standing stream) is the API's 405.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+api.PathMCP, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET /mcp: %v %v; want 405 allowing POST", resp, err)
	} else {
		resp.Body.Close()
	}
	// And a good call still works after all that.
	resp, body = post(token, "application/json", "", `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)
	if msg := jsonRPCMessage(t, resp, body); resp.StatusCode != http.StatusOK || msg.Error != nil || !strings.Contains(string(body), "find_agents") {
		t.Fatalf("tools/list after bad input: %d %s", resp.StatusCode, body)
	}

	// The refusals are in the audit log, through the admission layer.
	out, stderr, code := parley(t, bin, "audit", "tail", "--home", home, "-n", "1000", "--json")
	if code != 0 {
		t.Fatalf("audit tail: %s", stderr)
	}
	refused := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r struct {
			Kind   string `json:"kind"`
			Detail struct {
				Path   string `json:"path"`
				Status int    `json:"status"`
			} `json:"detail"`
		}
		if json.Unmarshal([]byte(l), &r) == nil && r.Kind == "admission.denied" && r.Detail.Path == api.PathMCP {
			refused[strconv.Itoa(r.Detail.Status)] = true
		}
	}
	if !refused["401"] || !refused["403"] {
		t.Errorf("audit log's refusals of %s: %v; want the 401 and the 403", api.PathMCP, refused)
	}

	after, err := c.Tasks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("bad input changed the tasks: %d before, %d after", len(before), len(after))
	}
}

type rpcMessage struct {
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// jsonRPCMessage reads the one JSON-RPC message of an answer, JSON or an
// event stream.
func jsonRPCMessage(t *testing.T, resp *http.Response, body []byte) rpcMessage {
	t.Helper()
	data := body
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		sc := bufio.NewScanner(bytes.NewReader(body))
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				data = []byte(d)
			}
		}
	}
	var m rpcMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("answer %d %s: %v", resp.StatusCode, body, err)
	}
	return m
}
