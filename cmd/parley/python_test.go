package main

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPythonAgentWinsFromAnotherNode runs examples/python/agent.py against
// one daemon and has another daemon's parley request win it.
func TestPythonAgentWinsFromAnotherNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	dir := t.TempDir()
	bin := parleyBinary(t)
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, h := range []string{a, b} {
		if _, stderr, code := parley(t, bin, "init", "--home", h); code != 0 {
			t.Fatalf("init: %s", stderr)
		}
	}
	da := start(t, bin, "run", "--home", a, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns")
	da.line(t, 20*time.Second)
	listen := strings.TrimPrefix(da.line(t, 5*time.Second), "listen: ")
	db := start(t, bin, "run", "--home", b, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--bootstrap", listen)
	db.line(t, 20*time.Second)

	agent := exec.Command(py, "../../examples/python/agent.py", "--home", b, "--name", "pyq", "--capability", "pyquote")
	out, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Process.Kill(); _ = agent.Wait() })
	lines := bufio.NewScanner(out)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "registered pyq") {
		t.Fatalf("agent.py did not register: %q", lines.Text())
	}

	var res string
	var code int
	for range 10 {
		res, _, code = parley(t, bin, "request", "--home", a, "--capability", "pyquote", "--input", `{"sku":"bolt"}`,
			"--bid-window", "500ms", "--timeout", "5s", "--json")
		if code == 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	var o struct {
		State  string `json:"state"`
		Result struct {
			By    string         `json:"by"`
			Input map[string]any `json:"input"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(res), &o); err != nil || o.State != "completed" || o.Result.By != "python" || o.Result.Input["sku"] != "bolt" {
		t.Fatalf("outcome %s (%v); want completed by the Python agent, which saw the input", res, err)
	}
}
