package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/api"
	"github.com/parleynet/parley/node/nodetest"
)

// 'parley request' says when its winner asks and how to answer; 'parley
// tasks show' prints the question and 'parley tasks answer' answers it,
// against a node's real API (in process, on mocknet).
func TestRequestAsksAndTasksAnswer(t *testing.T) {
	m := nodetest.NewMesh(t, 2)
	if _, err := m.Nodes[1].AddAgent(node.AgentCard{Name: "sizer", Capabilities: []string{"size"}}, nodetest.Sizer()); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitTopic(t, context.Background(), "size", m.Nodes[0])
	const token = "test-token-0123456789abcdef"
	ts := httptest.NewServer(api.NewServer(m.Nodes[0], token))
	t.Cleanup(ts.Close)
	dir := t.TempDir()
	for name, data := range map[string]string{home.APIFile: ts.URL + "\n", home.TokenFile: token + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(stdout, stderr *syncBuffer, args ...string) error {
		root := newRootCmd(stdout)
		root.SetErr(stderr)
		root.SetArgs(append(args, "--home", dir, "--log-level", "error"))
		return root.Execute()
	}
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(&out, &errOut, "request", "--capability", "size", "--input", `{"item":"shirt"}`, "--bid-window", "200ms", "--timeout", "15s")
	}()
	asked := regexp.MustCompile(`task (\S+) asks \(question 1\): which size\? — answer with: parley tasks answer (\S+) JSON`)
	var id string
	for deadline := time.Now().Add(10 * time.Second); id == ""; time.Sleep(20 * time.Millisecond) {
		if m := asked.FindStringSubmatch(errOut.String()); m != nil && m[1] == m[2] {
			id = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("parley request never said the winner asks; stderr %q", errOut.String())
		}
	}
	var show, showErr syncBuffer
	if err := run(&show, &showErr, "tasks", "show", id); err != nil || !strings.Contains(show.String(), "question 1: which size?\nanswer schema: {\"enum\":[\"S\",\"M\"]}\n") {
		t.Errorf("tasks show: %v; printed %q, want the question and its schema", err, show.String())
	}
	var ans, ansErr syncBuffer
	// The state is read after the answer is sent: the winner may have
	// finished already.
	sent := regexp.MustCompile(`^task ` + regexp.QuoteMeta(id) + `: answer sent, state (working|completed)\n$`)
	if err := run(&ans, &ansErr, "tasks", "answer", id, `"M"`); err != nil || !sent.MatchString(ans.String()) {
		t.Fatalf("tasks answer: %v; printed %q", err, ans.String())
	}
	if err := <-done; err != nil {
		t.Fatalf("request: %v; stderr %q", err, errOut.String())
	}
	if !strings.Contains(out.String(), `result: {"size":"M"}`) {
		t.Errorf("request printed %q, want the result with the answer", out.String())
	}
	var again, againErr syncBuffer
	if err := run(&again, &againErr, "tasks", "answer", id, `"S"`); err == nil || !strings.Contains(err.Error(), "asks no question") {
		t.Errorf("a second answer: %v, want the daemon's 409 saying the task asks no question", err)
	}
}

// The Python SDK's task.ask: an external agent in Python (the parley
// package in sdk/python) asks the requester which size; the requester's
// node shows the question, its answer is what ask returns, and the
// result uses it. Real nodes (mocknet), a real API, a real interpreter.
func TestPythonAgentAsks(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is needed to run the Python SDK (sdk/python): %v", err)
	}
	src, err := filepath.Abs("../../sdk/python/src")
	if err != nil {
		t.Fatal(err)
	}
	m := nodetest.NewMesh(t, 2)
	const token = "test-token-0123456789abcdef"
	ts := httptest.NewServer(api.NewServer(m.Nodes[1], token))
	t.Cleanup(ts.Close)
	const script = `
import os, parley
agent = parley.Agent("pysizer", ["pysize"], url=os.environ["URL"], token=os.environ["TOKEN"],
                     backoff=parley.Backoff(initial=0.02, maximum=0.1, jitter=0))
@agent.on_call
def bid(call):
    return agent.bid(price=1)
@agent.on_task
def work(task):
    return {"input": task.input, "size": task.ask("which size?", {"enum": ["S", "M"]})}
agent.run()
`
	cmd := exec.Command(py, "-c", script)
	cmd.Env = append(testEnv(), "PYTHONPATH="+src, "PYTHONDONTWRITEBYTECODE=1", "URL="+ts.URL, "TOKEN="+token)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	nodetest.WaitTopic(t, context.Background(), "pysize", m.Nodes[0])
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var question *negotiation.Question
	out, err := m.Nodes[0].Request(ctx, negotiation.Need{Capability: "pysize", Input: json.RawMessage(`{"item":"shirt"}`)},
		negotiation.WithBidWindow(200*time.Millisecond), negotiation.WithUpdates(func(u negotiation.Update) {
			if u.State == negotiation.StateInputRequired {
				question = u.Question
				go func() { _ = m.Nodes[0].AnswerTask(ctx, u.Task, json.RawMessage(`"M"`)) }()
			}
		}))
	if err != nil {
		t.Fatalf("Request: %v; the agent's stderr: %s", err, stderr.String())
	}
	if question == nil || question.Note != "which size?" || string(question.Schema) != `{"enum": ["S", "M"]}` && string(question.Schema) != `{"enum":["S","M"]}` {
		t.Errorf("question %+v, want which size? with its schema", question)
	}
	if string(out.Result) != `{"input":{"item":"shirt"},"size":"M"}` {
		t.Errorf("result %s, want the input and the answer", out.Result)
	}
}
