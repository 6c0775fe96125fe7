package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPythonAgentWinsFromAnotherNode runs examples/python/agent.py, on the
// parley package in sdk/python, as two external agents of one daemon and
// has another daemon's parley request win each, before and after their
// daemon restarts under them (see agentsWinAcrossRestart).
func TestPythonAgentWinsFromAnotherNode(t *testing.T) {
	argv, env := pythonAgent(t)
	m := startMesh(t)
	if _, stderr, code := parley(t, m.bin, "agents", "register", "--home", m.b, "--name", "default", "--capability", "pyquote"); code != 1 || !strings.Contains(stderr, "default agent") {
		t.Fatalf("registering as default: exit %d, %s", code, stderr)
	}
	agentsWinAcrossRestart(t, m, env, argv, "py", "python")
}

// pythonAgent is how to run examples/python/agent.py on the package in
// sdk/python: its argv and environment. The test is skipped where it
// cannot run.
func pythonAgent(t *testing.T) (argv, env []string) {
	t.Helper()
	argv = exampleAgent(t, "python3", "../../examples/python/agent.py")
	src, err := filepath.Abs("../../sdk/python/src")
	if err != nil {
		t.Fatal(err)
	}
	return argv, append(testEnv(), "PYTHONPATH="+src, "PYTHONDONTWRITEBYTECODE=1")
}

// exampleAgent is the argv of an example agent run by interpreter,
// skipping the test under -short (it builds and runs parley) or where the
// interpreter is not installed.
func exampleAgent(t *testing.T, interpreter, program string) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	path, err := exec.LookPath(interpreter)
	if err != nil {
		t.Skipf("%s is not installed: %s cannot run", interpreter, filepath.Base(program))
	}
	return []string{path, program}
}

// agentsWinAcrossRestart runs an example agent program (argv) as two
// external agents of m's daemon b: PREFIXq, registered by the operator and
// run with only its agent token, offering PREFIXquote; and PREFIXself,
// which registers itself with the operator token from the home, offering
// PREFIXquote.self. a's parley request wins each (the result says it is by
// the agent named by, and saw the input) — before and after b restarts
// under them, when both reconnect as the same agents (the self-registered
// one registering again) and win again. SIGTERM then ends each with exit 0.
func agentsWinAcrossRestart(t *testing.T, m *mesh, env, argv []string, prefix, by string) {
	t.Helper()
	qName, selfName := prefix+"q", prefix+"self"
	qCap, selfCap := prefix+"quote", prefix+"quote.self"
	token := filepath.Join(t.TempDir(), qName+".token")
	out, stderr, code := parley(t, m.bin, "agents", "register", "--home", m.b, "--name", qName, "--capability", qCap, "--token-file", token)
	if code != 0 || !strings.Contains(out, "agent: "+qName+" did:key:") || !strings.Contains(out, "token: written to "+token) {
		t.Fatalf("agents register: exit %d, %q, %s", code, out, stderr)
	}

	// The first program gets the daemon's URL from the home and its token
	// from the file: nothing else. The second registers itself.
	withToken := startProgram(t, env, argv[0], append(slices.Clone(argv[1:]), "--home", m.b, "--name", qName, "--token-file", token)...)
	self := startProgram(t, env, argv[0], append(slices.Clone(argv[1:]), "--home", m.b, "--name", selfName, "--capability", selfCap)...)
	withToken.waitLine(t, "connected "+qName, 20*time.Second)
	selfID := strings.TrimPrefix(self.waitLine(t, "connected "+selfName+" did:key:", 20*time.Second), "connected "+selfName+" ")

	first := m.requestWon(t, qCap, by)
	if w := m.requestWon(t, selfCap, by); w != selfID {
		t.Fatalf("%s was won by %s; the self-registered agent is %s", selfCap, w, selfID)
	}
	if regs := m.registrations(t, selfName); len(regs) != 1 || regs[0] != selfID {
		t.Fatalf("b's audit log has %s registered as %v; want once, as %s", selfName, regs, selfID)
	}

	m.restartB(t)
	withToken.waitLine(t, "connected "+qName, 30*time.Second)
	if again := strings.TrimPrefix(self.waitLine(t, "connected "+selfName+" did:key:", 30*time.Second), "connected "+selfName+" "); again != selfID {
		t.Fatalf("after the restart the self-registered agent registered as %s, before as %s", again, selfID)
	}
	if again := m.requestWon(t, qCap, by); again != first {
		t.Fatalf("after the restart the agent is %s, before it was %s", again, first)
	}
	if again := m.requestWon(t, selfCap, by); again != selfID {
		t.Fatalf("after the restart %s was won by %s, before by %s", selfCap, again, selfID)
	}
	// It registered again with the restarted daemon (which would have
	// taken its old token too), as the same agent: the daemon kept its key.
	if regs := m.registrations(t, selfName); len(regs) != 2 || regs[1] != selfID {
		t.Fatalf("b's audit log has %s registered as %v; want twice, as %s", selfName, regs, selfID)
	}
	// SIGTERM (as Ctrl-C) ends an agent with exit 0.
	withToken.stop(t)
	self.stop(t)
}

// TestPythonAgentProblemsAreOneLine runs examples/python/agent.py where it
// cannot work (see problemsAreOneLine).
func TestPythonAgentProblemsAreOneLine(t *testing.T) {
	argv, env := pythonAgent(t)
	problemsAreOneLine(t, env, argv, "agent.py")
}

// problemsAreOneLine runs an example agent program (argv) where it cannot
// work — no daemon, the default agent's name, a bad name, a bad
// capability, a missing token file — and checks that the user reads one
// line naming the problem, prefixed with prog, and exit status 1, not a
// traceback.
func problemsAreOneLine(t *testing.T, env, argv []string, prog string) {
	t.Helper()
	bin := parleyBinary(t)
	dir := t.TempDir()
	h := filepath.Join(dir, "h")
	initHome(t, bin, h)
	run := func(args ...string) (int, string) {
		t.Helper()
		cmd := exec.Command(argv[0], slices.Concat(argv[1:], []string{"--home", h}, args)...)
		cmd.Env = env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), stderr.String()
	}
	if code, stderr := run("--name", "q", "--capability", "quote"); code != 1 ||
		stderr != prog+": no daemon running for home "+h+" (start one with: parley run --home "+h+")\n" {
		t.Errorf("no daemon: exit %d, stderr %q", code, stderr)
	}
	d := runDaemon(t, bin, h, "--no-mdns")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--name", "default"}, prog + ": register agent default: agent name taken by one of the node's own agents"},
		{[]string{"--name", "Bad Name"}, prog + `: register agent Bad Name: name: invalid agent name "Bad Name"`},
		{[]string{"--name", "q", "--capability", "Not A Cap"}, prog + `: register agent q: capabilities: invalid capability name "Not A Cap"`},
		{[]string{"--name", "q", "--token-file", filepath.Join(dir, "none")}, prog + ": token file " + filepath.Join(dir, "none") + ": "},
	} {
		code, stderr := run(c.args...)
		if code != 1 || !strings.HasPrefix(stderr, c.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit 1 and one line starting %q", c.args, code, stderr, c.want)
		}
	}
	d.stop(t)
}

// mesh is two daemons: a requests, b hosts the external agents under test.
type mesh struct {
	bin, a, b string
	listenA   string
	db        *proc
}

func startMesh(t *testing.T) *mesh {
	t.Helper()
	dir := t.TempDir()
	m := &mesh{bin: parleyBinary(t), a: filepath.Join(dir, "a"), b: filepath.Join(dir, "b")}
	for _, h := range []string{m.a, m.b} {
		if _, stderr, code := parley(t, m.bin, "init", "--home", h); code != 0 {
			t.Fatalf("init: %s", stderr)
		}
	}
	da := start(t, m.bin, "run", "--home", m.a, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns")
	da.line(t, 20*time.Second)
	m.listenA = strings.TrimPrefix(da.line(t, 5*time.Second), "listen: ")
	m.startB(t)
	return m
}

func (m *mesh) startB(t *testing.T) {
	t.Helper()
	m.db = start(t, m.bin, "run", "--home", m.b, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--bootstrap", m.listenA)
	m.db.line(t, 20*time.Second)
}

// restartB stops b (SIGTERM, a clean exit) and starts it again on the same
// home, on a new API port and with a new operator token.
func (m *mesh) restartB(t *testing.T) {
	t.Helper()
	m.db.stop(t)
	m.startB(t)
}

// requestWon has a's parley request the capability until it completes (b's
// agent may not be found at once) and returns the winner's AgentID, after
// checking the result came from the agent named by and saw the input.
func (m *mesh) requestWon(t *testing.T, capability, by string) string {
	t.Helper()
	var res, stderr string
	var code int
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		res, stderr, code = parley(t, m.bin, "request", "--home", m.a, "--capability", capability, "--input", `{"sku":"bolt"}`,
			"--bid-window", "500ms", "--timeout", "5s", "--json")
		if code == 0 {
			break
		}
	}
	var o struct {
		State  string `json:"state"`
		Winner string `json:"winner"`
		Result struct {
			By    string         `json:"by"`
			Input map[string]any `json:"input"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(res), &o); err != nil || o.State != "completed" || o.Result.By != by || o.Result.Input["sku"] != "bolt" {
		t.Fatalf("request %s: exit %d, outcome %s (%v), stderr %s; want completed by the %s agent, which saw the input", capability, code, res, err, stderr, by)
	}
	return o.Winner
}

// registrations returns the AgentIDs b's audit log records the named
// external agent registered as, oldest first.
func (m *mesh) registrations(t *testing.T, name string) []string {
	t.Helper()
	out, stderr, code := parley(t, m.bin, "audit", "tail", "--home", m.b, "-n", "100000", "--json")
	if code != 0 {
		t.Fatalf("audit tail: exit %d: %s", code, stderr)
	}
	var ids []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r struct {
			Kind   string `json:"kind"`
			Detail struct {
				Name string `json:"name"`
				ID   string `json:"id"`
			} `json:"detail"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("audit tail line %q: %v", l, err)
		}
		if r.Kind == "external.registered" && r.Detail.Name == name {
			ids = append(ids, r.Detail.ID)
		}
	}
	return ids
}

// startProgram starts an agent program (not parley) with env; its stdout
// lines arrive on the proc's lines, and it is killed at cleanup if still
// running.
func startProgram(t *testing.T, env []string, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	p := &proc{cmd: cmd, lines: make(chan string, 100), stderr: &syncBuffer{}, done: make(chan struct{})}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s %s stderr:\n%s", filepath.Base(name), strings.Join(args, " "), p.stderr)
		}
	})
	return p
}

// waitLine reads the program's stdout until a line starting with prefix,
// and returns it.
func (p *proc) waitLine(t *testing.T, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				<-p.done
				t.Fatalf("%v exited (%v) before printing %q; stderr:\n%s", p.cmd.Args, p.err, prefix, p.stderr)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-deadline:
			t.Fatalf("%v did not print %q within %s; stderr:\n%s", p.cmd.Args, prefix, timeout, p.stderr)
		}
	}
}
