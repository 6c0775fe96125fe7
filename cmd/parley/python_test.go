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

// TestPythonAgentWinsFromAnotherNode registers examples/python/agent.py as
// an external agent of one daemon, with only its agent token, and has
// another daemon's parley request win it — before and after the agent's
// daemon restarts, when the program reconnects as the same agent.
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

	token := filepath.Join(dir, "pyq.token")
	out, stderr, code := parley(t, bin, "agents", "register", "--home", b, "--name", "pyq", "--capability", "pyquote", "--token-file", token)
	if code != 0 || !strings.Contains(out, "agent: pyq did:key:") || !strings.Contains(out, "token: written to "+token) {
		t.Fatalf("agents register: exit %d, %q, %s", code, out, stderr)
	}
	if _, stderr, code := parley(t, bin, "agents", "register", "--home", b, "--name", "default", "--capability", "pyquote"); code != 1 || !strings.Contains(stderr, "default agent") {
		t.Fatalf("registering as default: exit %d, %s", code, stderr)
	}

	// The program gets the daemon's URL from the home and its token from
	// the file: nothing else.
	agent := exec.Command(py, "../../examples/python/agent.py", "--home", b, "--name", "pyq", "--token-file", token)
	stdout, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Process.Kill(); _ = agent.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	connected := func() {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("agent.py exited")
				}
				if l == "connected pyq" {
					return
				}
			case <-time.After(20 * time.Second):
				t.Fatal("agent.py did not connect")
			}
		}
	}
	connected()

	request := func() string {
		t.Helper()
		var res string
		var code int
		for range 20 {
			res, _, code = parley(t, bin, "request", "--home", a, "--capability", "pyquote", "--input", `{"sku":"bolt"}`,
				"--bid-window", "500ms", "--timeout", "5s", "--json")
			if code == 0 {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		var o struct {
			State  string `json:"state"`
			Winner string `json:"winner"`
			Result struct {
				By    string         `json:"by"`
				Input map[string]any `json:"input"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(res), &o); err != nil || o.State != "completed" || o.Result.By != "python" || o.Result.Input["sku"] != "bolt" {
			t.Fatalf("outcome %s (%v); want completed by the Python agent, which saw the input", res, err)
		}
		return o.Winner
	}
	first := request()

	db.stop(t)
	db = start(t, bin, "run", "--home", b, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--bootstrap", listen)
	db.line(t, 20*time.Second)
	connected()
	if again := request(); again != first {
		t.Fatalf("after the restart the agent is %s, before it was %s", again, first)
	}
}
