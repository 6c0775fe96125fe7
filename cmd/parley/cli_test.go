package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parleynet/parley/daemon/home"
)

// TestCLI builds the binary once and drives it as a user would.
func TestCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	bin := parleyBinary(t)
	t.Run("mesh", func(t *testing.T) { testMesh(t, bin) })
	t.Run("bad input", func(t *testing.T) { testBadInput(t, bin) })
}

// parley runs one command to its end.
func parley(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = testEnv()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("parley %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

func testEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOLOG_") && !strings.HasPrefix(kv, "PARLEY_") {
			env = append(env, kv)
		}
	}
	return env
}

// proc is a long-running parley command whose stdout lines arrive on lines.
type proc struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

// syncBuffer is a buffer that a process writes to while a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitStderr waits until the process's stderr holds want, and returns it.
func (p *proc) waitStderr(t *testing.T, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if s := p.stderr.String(); strings.Contains(s, want) {
			return s
		}
		select {
		case <-p.done:
			t.Fatalf("%v exited (%v) before logging %q; stderr:\n%s", p.cmd.Args, p.err, want, p.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v did not log %q within %s; stderr:\n%s", p.cmd.Args, want, timeout, p.stderr)
		}
	}
}

func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	return startProgram(t, testEnv(), bin, args...)
}

// line waits for the next stdout line.
func (p *proc) line(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			<-p.done
			t.Fatalf("%v exited (%v) before printing; stderr:\n%s", p.cmd.Args, p.err, p.stderr)
		}
		return l
	case <-time.After(timeout):
		t.Fatalf("%v printed nothing within %s", p.cmd.Args, timeout)
	}
	return ""
}

// stop sends SIGTERM and asserts a clean exit within 5 s.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%v did not exit within 5 s of SIGTERM", p.cmd.Args)
	}
	if p.err != nil {
		t.Fatalf("%v exited with %v; stderr:\n%s", p.cmd.Args, p.err, p.stderr)
	}
}

// daemonProc is a started 'parley run' and what it printed.
type daemonProc struct {
	*proc
	peer, listen, api string
}

func runDaemon(t *testing.T, bin, home string, args ...string) *daemonProc {
	t.Helper()
	p := start(t, bin, append([]string{"run", "--home", home, "--listen", "/ip4/127.0.0.1/tcp/0"}, args...)...)
	d := &daemonProc{proc: p}
	var ok bool
	if d.peer, ok = strings.CutPrefix(p.line(t, 20*time.Second), "peer: "); !ok {
		t.Fatal("first line is not peer:")
	}
	for {
		l := p.line(t, 10*time.Second)
		if v, ok := strings.CutPrefix(l, "listen: "); ok {
			if !strings.HasSuffix(v, "/p2p/"+d.peer) {
				t.Fatalf("listen address %s does not end in /p2p/%s", v, d.peer)
			}
			d.listen = v
			continue
		}
		if d.api, ok = strings.CutPrefix(l, "api: "); !ok || !strings.HasPrefix(d.api, "http://127.0.0.1:") {
			t.Fatalf("unexpected line %q", l)
		}
		break
	}
	if d.listen == "" {
		t.Fatal("no listen: line")
	}
	return d
}

// initHome runs 'parley init' and returns the default agent's AgentID.
func initHome(t *testing.T, bin, home string) string {
	t.Helper()
	out, stderr, code := parley(t, bin, "init", "--home", home)
	if code != 0 {
		t.Fatalf("init: exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "peer: 12D3KooW") || !strings.HasPrefix(lines[1], "agent: did:key:z6Mk") {
		t.Fatalf("init printed %q", out)
	}
	return strings.TrimPrefix(lines[1], "agent: ")
}

func testMesh(t *testing.T, bin string) {
	homeA, homeB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	agentA := initHome(t, bin, homeA)
	initHome(t, bin, homeB)
	// A also hosts an agent offering "translate", for 'parley agents find'.
	cfgA := filepath.Join(homeA, "config.yaml")
	data, err := os.ReadFile(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.Replace(data, []byte("agents:\n  - name: default\n"),
		[]byte("agents:\n  - name: default\n  - name: translator\n    capabilities: [translate]\n    exec: [\"true\"]\n"), 1)
	if err := os.WriteFile(cfgA, data, 0o600); err != nil {
		t.Fatal(err)
	}

	a := runDaemon(t, bin, homeA)
	b := runDaemon(t, bin, homeB, "--bootstrap", a.listen)
	if fi, err := os.Stat(filepath.Join(homeA, "api.token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("api.token: %v, mode %v", err, fi.Mode())
	}

	out, stderr, code := parley(t, bin, "id", "--home", homeA, "--json")
	var id struct {
		Peer   string `json:"peer"`
		Online bool   `json:"online"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &id) != nil || id.Peer != a.peer || !id.Online {
		t.Fatalf("id: exit %d, %q, %s", code, out, stderr)
	}

	sub := start(t, bin, "subscribe", "--home", homeB, "--capability", "weather", "--json")
	deadline := time.Now().Add(30 * time.Second)
	var got map[string]any
	for got == nil {
		if time.Now().After(deadline) {
			t.Fatal("the subscriber on B received nothing published on A within 30 s")
		}
		if _, stderr, code := parley(t, bin, "publish", "--home", homeA, "--capability", "weather", "--payload", `{"city":"Oslo","temp":21}`); code != 0 {
			t.Fatalf("publish: exit %d: %s", code, stderr)
		}
		select {
		case l, ok := <-sub.lines:
			if !ok {
				<-sub.done
				t.Fatalf("subscribe exited: %v\n%s", sub.err, sub.stderr)
			}
			if err := json.Unmarshal([]byte(l), &got); err != nil {
				t.Fatalf("subscribe printed %q: %v", l, err)
			}
		case <-time.After(500 * time.Millisecond):
		}
	}
	t.Logf("B received %v", got)
	if got["from"] != agentA || got["capability"] != "weather" || got["id"] == "" {
		t.Fatalf("received %v, want from %s on weather", got, agentA)
	}
	if p, _ := json.Marshal(got["payload"]); string(p) != `{"city":"Oslo","temp":21}` {
		t.Fatalf("payload %s", p)
	}

	out, _, code = parley(t, bin, "peers", "--home", homeB)
	if code != 0 || !strings.HasPrefix(out, "PEER") || !strings.Contains(out, "SOURCE") {
		t.Fatalf("peers of B: exit %d, %q, want a table with a SOURCE column", code, out)
	}
	if !slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool {
		return strings.HasPrefix(l, a.peer) && strings.Contains(l, " bootstrap ")
	}) {
		t.Fatalf("peers of B: %q, want A found by bootstrap", out)
	}
	out, _, code = parley(t, bin, "peers", "--home", homeB, "--json")
	var peers []struct{ ID, Source string }
	if code != 0 || json.Unmarshal([]byte(out), &peers) != nil || !slices.Contains(peers, struct{ ID, Source string }{a.peer, "bootstrap"}) {
		t.Fatalf("peers --json of B: exit %d, %q, want A found by bootstrap", code, out)
	}

	testAgentsFind(t, bin, homeB, a.peer)
	testAgentsAdmin(t, bin, homeA)

	// A TTL above the node's limit is refused, naming the limit.
	_, stderr, code = parley(t, bin, "publish", "--home", homeA, "--capability", "weather", "--payload", "1", "--ttl", "100000h")
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "--ttl 100000h0m0s is above this node's maximum intent TTL of 5m0s") {
		t.Fatalf("publish --ttl 100000h: exit %d, %q; want one line naming the 5m limit", code, stderr)
	}

	testStatus(t, bin, homeA, a.peer, b.peer)
	testUI(t, bin, homeA)

	testRequestNoBids(t, bin, homeA)

	sub.stop(t)
	b.stop(t)
	a.stop(t)
	// At the default level the log is parley's: its libraries say only
	// errors, and the DHT's routine complaints not even those.
	for _, d := range []*daemonProc{a, b} {
		for _, l := range strings.Split(strings.TrimSpace(d.stderr.String()), "\n") {
			if f := strings.Fields(l); len(f) > 2 && !strings.HasPrefix(f[2], "parley/") && f[1] != "ERROR" {
				t.Errorf("a daemon at the default level logged a library's %s line: %q", f[1], l)
			}
			if strings.Contains(l, "\tdht") {
				t.Errorf("a daemon at the default level logged the DHT: %q", l)
			}
		}
	}
	for _, h := range []string{homeA, homeB} {
		if _, err := os.Stat(filepath.Join(h, "api")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s/api still there after the daemon stopped: %v", h, err)
		}
	}
	out, _, code = parley(t, bin, "id", "--home", homeA)
	if code != 0 || !strings.Contains(out, "peer: "+a.peer) || !strings.Contains(out, "offline") {
		t.Fatalf("offline id: exit %d, %q", code, out)
	}
}

// testStatus reads A's status as JSON and as the one screen.
func testStatus(t *testing.T, bin, home, peer, other string) {
	out, stderr, code := parley(t, bin, "status", "--home", home, "--json")
	var st struct {
		Peer    string
		Version string
		Peers   int
		Agents  []struct {
			Name, Kind   string
			Capabilities []string
		}
		Audit  struct{ Enabled bool }
		Health struct {
			Live, Ready bool
			Reasons     []string
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status --json: exit %d, %q, %s", code, out, stderr)
	}
	if st.Peer != peer || st.Version == "" || st.Peers < 1 || !st.Audit.Enabled || !st.Health.Live || !st.Health.Ready ||
		len(st.Agents) != 2 || st.Agents[1].Name != "translator" || st.Agents[1].Kind != "exec" || !slices.Equal(st.Agents[1].Capabilities, []string{"translate"}) {
		t.Fatalf("status --json: %+v", st)
	}
	out, _, code = parley(t, bin, "status", "--home", home)
	for _, w := range []string{"peer:     " + peer, "health:   ready", "audit:    ok", "translator", "exec", "translate"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Fatalf("status: exit %d, %q lacks %q", code, out, w)
		}
	}
}

// testAgentsFind looks, from home, for the "translate" agent that peer
// hosts: through the DHT's rendezvous, which may need a few rounds of
// advertising after the nodes meet.
func testAgentsFind(t *testing.T, bin, home, peer string) {
	var cards []struct {
		Agent, Name, Peer string
		Capabilities      []struct{ Name string }
		Expires           time.Time
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, stderr, code := parley(t, bin, "agents", "find", "--home", home, "--capability", "translate", "--timeout", "3s", "--json")
		if code != 0 || json.Unmarshal([]byte(out), &cards) != nil {
			t.Fatalf("agents find --json: exit %d, %q, %s", code, out, stderr)
		}
		if len(cards) > 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(cards) != 1 || cards[0].Name != "translator" || cards[0].Peer != peer || !strings.HasPrefix(cards[0].Agent, "did:key:") ||
		len(cards[0].Capabilities) != 1 || cards[0].Capabilities[0].Name != "translate" || time.Until(cards[0].Expires) <= 0 {
		t.Fatalf("agents find --json: %+v, want the translator on %s", cards, peer)
	}
	out, _, code := parley(t, bin, "agents", "find", "--home", home, "--capability", "translate", "--timeout", "3s")
	if code != 0 || !strings.HasPrefix(out, "AGENT") || !strings.Contains(out, cards[0].Agent) ||
		!strings.Contains(out, "translator") || !strings.Contains(out, peer) {
		t.Fatalf("agents find: exit %d, %q", code, out)
	}
	out, _, code = parley(t, bin, "agents", "find", "--home", home, "--capability", "nobody-offers-this", "--timeout", "500ms")
	if code != 0 || out != "no agent offers nobody-offers-this\n" {
		t.Fatalf("agents find for nobody: exit %d, %q", code, out)
	}
}

// testRequestNoBids runs a request nobody bids on: it fails once its one
// bid window closes, and the task is then listed.
func testRequestNoBids(t *testing.T, bin, home string) {
	input := filepath.Join(t.TempDir(), "input.json")
	writeFile(t, input, `{"n":1}`)
	out, stderr, code := parley(t, bin, "request", "--home", home, "--capability", "nobody-offers-this",
		"--input", "@"+input, "--bid-window", "300ms", "--timeout", "3s", "--calls", "1", "--strategy", "weighted:1,2")
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "parley: task ") ||
		!strings.Contains(stderr, "failed") || !strings.Contains(stderr, "no capable agent found") {
		t.Fatalf("request with no bidders: exit %d, stderr %q, want exit 1 and one line saying no capable agent was found", code, stderr)
	}
	if !strings.Contains(out, "bids: none") || !strings.Contains(out, "state: failed") {
		t.Fatalf("request printed %q", out)
	}
	id := strings.Fields(strings.TrimPrefix(stderr, "parley: task "))[0]

	out, stderr, code = parley(t, bin, "tasks", "--home", home, "--json")
	var tasks []struct{ Task, Role, Capability, State string }
	if code != 0 || json.Unmarshal([]byte(out), &tasks) != nil || len(tasks) != 1 || tasks[0].Task != id ||
		tasks[0].Role != "requester" || tasks[0].State != "failed" || tasks[0].Capability != "nobody-offers-this" {
		t.Fatalf("tasks --json: exit %d, %q, %s; want the failed task %s", code, out, stderr, id)
	}
	out, _, code = parley(t, bin, "tasks", "show", id, "--home", home)
	if code != 0 || !strings.Contains(out, "task: "+id) || !strings.Contains(out, "negotiating") || !strings.Contains(out, "state: failed") {
		t.Fatalf("tasks show: exit %d, %q", code, out)
	}
	if _, stderr, code = parley(t, bin, "tasks", "cancel", id, "--home", home); code != 1 || !strings.Contains(stderr, "already ended") {
		t.Fatalf("cancel an ended task: exit %d, %q", code, stderr)
	}
}

// testAgentsAdmin adds an exec agent to a running daemon, sees it in
// 'agents list' and 'id', and removes it again.
func testAgentsAdmin(t *testing.T, bin, home string) {
	out, stderr, code := parley(t, bin, "id", "--home", home)
	if code != 0 || !strings.Contains(out, "agent: translator ") || !strings.Contains(out, "offers translate") {
		t.Fatalf("id: exit %d, %q, %s; want translator and what it offers", code, out, stderr)
	}
	out, stderr, code = parley(t, bin, "agents", "add", "--home", home, "--name", "summarizer", "--capability", "summarize", "--exec", "true")
	if code != 0 || !strings.Contains(out, "agent summarizer did:key:") || !strings.Contains(out, "written to config.yaml") {
		t.Fatalf("agents add: exit %d, %q, %s", code, out, stderr)
	}
	out, _, code = parley(t, bin, "agents", "list", "--home", home)
	if code != 0 || !strings.HasPrefix(out, "NAME ") || !slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool {
		f := strings.Fields(l)
		return len(f) >= 3 && f[0] == "summarizer" && f[1] == "config" && f[2] == "summarize"
	}) {
		t.Fatalf("agents list: exit %d, %q; want a table with summarizer, config, summarize", code, out)
	}
	if cfg, _ := os.ReadFile(filepath.Join(home, "config.yaml")); !strings.Contains(string(cfg), "name: summarizer") {
		t.Fatalf("config.yaml after agents add:\n%s", cfg)
	}
	if _, stderr, code = parley(t, bin, "agents", "add", "--home", home, "--name", "summarizer", "--capability", "summarize", "--exec", "true"); code != 1 || !strings.Contains(stderr, "summarizer") {
		t.Fatalf("agents add twice: exit %d, %q; want one line naming the taken name", code, stderr)
	}
	if out, stderr, code = parley(t, bin, "agents", "remove", "--home", home, "summarizer"); code != 0 || !strings.Contains(out, "removed") {
		t.Fatalf("agents remove: exit %d, %q, %s", code, out, stderr)
	}
	if cfg, _ := os.ReadFile(filepath.Join(home, "config.yaml")); strings.Contains(string(cfg), "summarizer") {
		t.Fatalf("config.yaml after agents remove:\n%s", cfg)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// snapshot records every file in dir with its mode, size and time, to
// show that a refused command changed nothing.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		m[path] = fmt.Sprintf("%v %v %d", fi.Mode(), fi.ModTime(), fi.Size())
		return nil
	})
	return m
}

func testBadInput(t *testing.T, bin string) {
	good := filepath.Join(t.TempDir(), "good")
	initHome(t, bin, good)
	peerKey := filepath.Join(t.TempDir(), "gr")
	initHome(t, bin, peerKey)
	if err := os.Chmod(filepath.Join(peerKey, "keys", "node.key"), 0o640); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(t.TempDir(), "stale")
	initHome(t, bin, stale)
	// A daemon that died without cleaning up: its port is closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()
	for name, data := range map[string]string{"api": "http://" + deadAddr + "\n", "api.token": "x\n"} {
		if err := os.WriteFile(filepath.Join(stale, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	empty := t.TempDir()
	missing := filepath.Join(t.TempDir(), "missing")
	// Homes whose config.yaml has an agent that could never work.
	execMissing := filepath.Join(t.TempDir(), "exec-missing")
	initHome(t, bin, execMissing)
	writeFile(t, filepath.Join(execMissing, "config.yaml"), "agents:\n  - name: default\n  - name: quoter\n    capabilities: [quote]\n    exec: [/nonexistent/quote.sh]\n")
	noExec := filepath.Join(t.TempDir(), "no-exec")
	initHome(t, bin, noExec)
	writeFile(t, filepath.Join(noExec, "config.yaml"), "agents:\n  - name: default\n  - name: quoter\n    capabilities: [quote]\n")
	psk := filepath.Join(t.TempDir(), "swarm.key")
	writeFile(t, psk, "/key/swarm/psk/1.0.0/\n/base16/\n"+strings.Repeat("ab", 32)+"\n")
	gh, err := home.Open(good)
	if err != nil {
		t.Fatal(err)
	}
	self := "/ip4/127.0.0.1/tcp/4001/p2p/" + gh.PeerID().String()

	tests := []struct {
		name string
		args []string
		home string   // checked unchanged, if set
		want []string // in the one-line error
	}{
		{"malformed listen", []string{"run", "--home", good, "--listen", "/ip4/999.1.1.1/tcp/1"}, good, []string{"--listen", "/ip4/999.1.1.1/tcp/1"}},
		{"listen not a multiaddr", []string{"run", "--home", good, "--listen", "localhost:4001"}, good, []string{"--listen", "localhost:4001"}},
		{"bootstrap without peer id", []string{"run", "--home", good, "--bootstrap", "/ip4/127.0.0.1/tcp/4001"}, good, []string{"--bootstrap", "/ip4/127.0.0.1/tcp/4001"}},
		{"malformed bootstrap", []string{"run", "--home", good, "--bootstrap", "/ip4/127.0.0.1/tcp/x/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"}, good, []string{"--bootstrap", "/tcp/x/"}},
		{"run uninitialised", []string{"run", "--home", empty}, empty, []string{empty, "parley init --home " + empty}},
		{"run missing home", []string{"run", "--home", missing}, "", []string{missing, "parley init"}},
		{"group-readable key", []string{"run", "--home", peerKey}, peerKey, []string{filepath.Join(peerKey, "keys", "node.key"), "chmod 600"}},
		{"payload not JSON", []string{"publish", "--home", good, "--capability", "weather", "--payload", "{oops"}, good, []string{"--payload", "{oops"}},
		{"bad capability", []string{"publish", "--home", good, "--capability", "Weather Now", "--payload", "{}"}, good, []string{"--capability", "Weather Now"}},
		{"subscribe bad capability", []string{"subscribe", "--home", good, "--capability", "a/b"}, good, []string{"--capability", "a/b"}},
		{"no daemon", []string{"peers", "--home", good}, good, []string{"no daemon running for home " + good, "parley run --home " + good}},
		{"no daemon publish", []string{"publish", "--home", good, "--capability", "weather", "--payload", "1"}, good, []string{"no daemon running for home " + good}},
		{"stale api file", []string{"peers", "--home", stale}, stale, []string{"no daemon running for home " + stale}},
		{"request input not JSON", []string{"request", "--home", good, "--capability", "echo", "--input", "{oops"}, good, []string{"--input", "{oops"}},
		{"request summary not JSON", []string{"request", "--home", good, "--capability", "echo", "--input", "1", "--summary", "nope"}, good, []string{"--summary", "nope"}},
		{"request bad strategy", []string{"request", "--home", good, "--capability", "echo", "--input", "1", "--strategy", "random"}, good, []string{"--strategy", "random"}},
		{"request bad timeout", []string{"request", "--home", good, "--capability", "echo", "--input", "1", "--timeout", "soon"}, good, []string{"--timeout", "soon"}},
		{"request no daemon", []string{"request", "--home", good, "--capability", "echo", "--input", "1"}, good, []string{"no daemon running for home " + good}},
		{"tasks no daemon", []string{"tasks", "--home", good}, good, []string{"no daemon running for home " + good}},
		{"answer not JSON", []string{"tasks", "answer", "--home", good, "3b6f0c1d", "{oops"}, good, []string{"the answer", "{oops"}},
		{"answer no daemon", []string{"tasks", "answer", "--home", good, "3b6f0c1d", `"M"`}, good, []string{"no daemon running for home " + good}},
		{"bad announce", []string{"run", "--home", good, "--announce", "/ip4/203.0.113.7/tcp/4001", "--announce", "203.0.113.7:4001"}, good, []string{"--announce", "203.0.113.7:4001"}},
		{"bad dht mode", []string{"run", "--home", good, "--dht-mode", "sometimes"}, good, []string{"--dht-mode", "sometimes", "server, client, auto or off"}},
		{"agents find bad capability", []string{"agents", "find", "--home", good, "--capability", "Bad Cap"}, good, []string{"--capability", "Bad Cap"}},
		{"agents find no capability", []string{"agents", "find", "--home", good}, good, []string{"--capability"}},
		{"agents find bad timeout", []string{"agents", "find", "--home", good, "--capability", "translate", "--timeout", "-1s"}, good, []string{"--timeout", "-1s"}},
		{"agents find no daemon", []string{"agents", "find", "--home", good, "--capability", "translate"}, good, []string{"no daemon running for home " + good}},
		{"init existing", []string{"init", "--home", good}, good, []string{good, "--force"}},
		{"sim negative nodes", []string{"sim", "--nodes", "-5"}, "", []string{"--nodes -5", "at least 2"}},
		{"sim zero nodes", []string{"sim", "--nodes", "0"}, "", []string{"--nodes 0", "at least 2"}},
		{"request zero calls", []string{"request", "--home", good, "--capability", "echo", "--input", "1", "--calls", "0"}, good, []string{"--calls 0", "at least 1"}},
		{"request zero bid window", []string{"request", "--home", good, "--capability", "echo", "--input", "1", "--bid-window", "0s"}, good, []string{"--bid-window 0s", "positive"}},
		{"request zero timeout", []string{"request", "--home", good, "--capability", "echo", "--input", "1", "--timeout", "0s"}, good, []string{"--timeout 0s", "positive"}},
		{"request window past timeout", []string{"request", "--home", good, "--capability", "echo", "--input", "1", "--bid-window", "5s", "--timeout", "2s"}, good, []string{"--bid-window 5s", "--timeout 2s"}},
		{"request NaN budget", []string{"request", "--home", good, "--capability", "echo", "--input", "1", "--budget", "NaN"}, good, []string{"--budget NaN"}},
		{"publish zero ttl", []string{"publish", "--home", good, "--capability", "weather", "--payload", "1", "--ttl", "0s"}, good, []string{"--ttl", "0s", "positive"}},
		{"run exec command missing", []string{"run", "--home", execMissing}, execMissing, []string{"config.yaml: line 3", "agent quoter", "/nonexistent/quote.sh does not exist"}},
		{"run capabilities without exec", []string{"run", "--home", noExec}, noExec, []string{"config.yaml: line 3", "quoter offers quote but has no exec", "parley agents register"}},
		{"run api not loopback", []string{"run", "--home", good, "--api", "0.0.0.0:0"}, good, []string{"--api", "0.0.0.0:0", "not a loopback address", "--api-public"}},
		{"run bad api port", []string{"run", "--home", good, "--api", "127.0.0.1:99999"}, good, []string{"--api", "127.0.0.1:99999", "bad port"}},
		{"run bootstrap to itself", []string{"run", "--home", good, "--bootstrap", self}, good, []string{"--bootstrap", self, "own PeerID"}},
		{"run psk with only quic", []string{"run", "--home", good, "--psk", psk, "--listen", "/ip4/127.0.0.1/udp/0/quic-v1"}, good, []string{"--listen", "needs a TCP listen address"}},
		{"run psk missing", []string{"run", "--home", good, "--psk", "/nonexistent/swarm.key"}, good, []string{"--psk", "/nonexistent/swarm.key"}},
		{"run bad policy", []string{"run", "--home", good, "--policy", "/nonexistent/policy.yaml"}, good, []string{"--policy", "/nonexistent/policy.yaml"}},
		{"register bad name", []string{"agents", "register", "--home", good, "--name", "Bad Name", "--capability", "quote"}, good, []string{"--name", "Bad Name"}},
		{"register no capability", []string{"agents", "register", "--home", good, "--name", "py"}, good, []string{"--capability", "at least one"}},
		{"register no daemon", []string{"agents", "register", "--home", good, "--name", "py", "--capability", "quote"}, good, []string{"no daemon running for home " + good}},
		{"status no daemon", []string{"status", "--home", good}, good, []string{"no daemon running for home " + good}},
		{"input file missing", []string{"request", "--home", good, "--capability", "echo", "--input", "@/nonexistent/order.json"}, good, []string{"--input @/nonexistent/order.json"}},
		{"input file not JSON", []string{"request", "--home", good, "--capability", "echo", "--input", "@" + psk}, good, []string{"--input @" + psk, "not valid JSON"}},
		{"payload file missing", []string{"publish", "--home", good, "--capability", "weather", "--payload", "@/nonexistent/p.json"}, good, []string{"--payload @/nonexistent/p.json"}},
		{"request bad weights", []string{"request", "--home", good, "--capability", "echo", "--input", "1", "--strategy", "weighted:1"}, good, []string{"--strategy", "weighted:PRICE,SECONDS"}},
		{"mistyped command", []string{"reqest"}, "", []string{`unknown command "reqest"`, "did you mean request?"}},
		{"mistyped subcommand", []string{"agents", "lst"}, "", []string{`unknown command "lst" for "parley agents"`}},
		{"agents add no exec", []string{"agents", "add", "--home", good, "--name", "q", "--capability", "quote"}, good, []string{"exec"}},
		{"agents add bad name", []string{"agents", "add", "--home", good, "--name", "Q Q", "--capability", "quote", "--exec", "true"}, good, []string{"--name", "Q Q"}},
		{"agents add no daemon", []string{"agents", "add", "--home", good, "--name", "q", "--capability", "quote", "--exec", "true"}, good, []string{"no daemon running for home " + good}},
		{"agents remove no daemon", []string{"agents", "remove", "--home", good, "q"}, good, []string{"no daemon running for home " + good}},
		{"demo zero orders", []string{"demo", "--orders", "0"}, "", []string{"--orders 0"}},
		{"demo too many orders", []string{"demo", "--orders", "10"}, "", []string{"--orders 10", "want 1 to 9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before map[string]string
			if tt.home != "" {
				before = snapshot(t, tt.home)
			}
			out, stderr, code := parley(t, bin, tt.args...)
			if code == 0 {
				t.Fatalf("exit 0, want non-zero; stdout %q", out)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "parley: ") {
				t.Fatalf("stderr is not one 'parley: ' line: %q", stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not name %q", stderr, w)
				}
			}
			if tt.home != "" {
				after := snapshot(t, tt.home)
				if len(after) != len(before) {
					t.Fatalf("home changed: %v -> %v", before, after)
				}
				for k, v := range before {
					if after[k] != v {
						t.Fatalf("home changed at %s", k)
					}
				}
			}
			if tt.name == "run missing home" {
				if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
					t.Fatal("run created the missing home")
				}
			}
		})
	}
}
