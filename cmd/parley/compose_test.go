package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/multiformats/go-multiaddr"
	"go.yaml.in/yaml/v3"
)

const (
	repoRoot    = "../.."
	composeFile = repoRoot + "/compose.yaml"
	dockerfile  = repoRoot + "/Dockerfile"
	entrypoint  = repoRoot + "/deploy/docker/entrypoint.sh"
)

// compose is what the tests read of compose.yaml.
type compose struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Command     []string          `yaml:"command"`
	NetworkMode string            `yaml:"network_mode"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

func readCompose(t *testing.T) compose {
	t.Helper()
	var c compose
	if err := yaml.Unmarshal([]byte(readFile(t, composeFile)), &c); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	if len(c.Services) == 0 {
		t.Fatalf("%s has no services", composeFile)
	}
	return c
}

// imageEnv returns the value of an ENV the Dockerfile sets.
func imageEnv(t *testing.T, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^ENV ` + name + `=(\S+)$`).FindStringSubmatch(readFile(t, dockerfile))
	if m == nil {
		t.Fatalf("%s sets no ENV %s=", dockerfile, name)
	}
	return m[1]
}

// startOrder is the services in an order that starts each after those it
// depends on.
func (c compose) startOrder(t *testing.T) []string {
	t.Helper()
	var order []string
	done := map[string]bool{}
	for len(order) < len(c.Services) {
		var next []string
		for name, s := range c.Services {
			if done[name] {
				continue
			}
			ready := true
			for dep := range s.DependsOn {
				if _, ok := c.Services[dep]; !ok {
					t.Fatalf("%s depends on %s, which is not a service", name, dep)
				}
				ready = ready && done[dep]
			}
			if ready {
				next = append(next, name)
			}
		}
		if len(next) == 0 {
			t.Fatalf("the services' depends_on form a cycle")
		}
		slices.Sort(next)
		for _, n := range next {
			done[n] = true
		}
		order = append(order, next...)
	}
	return order
}

// meshNode is a node service of compose.yaml run as a plain process.
type meshNode struct {
	*proc
	home, peer, listen string
	port               string // its TCP port
}

// TestComposeMeshAsProcesses runs compose.yaml with no container runtime:
// every service as a plain process through deploy/docker/entrypoint.sh, with
// the environment, config files and command compose.yaml gives it, named
// volumes as directories (a volume two services mount is one directory) and
// bind mounts as the repository's files. What differs is only what one
// loopback forces: the nodes listen on 127.0.0.1 on ports the kernel picks
// (PARLEY_LISTEN) instead of each on its own address at 4001, and
// /dns4/<service>/tcp/4001 becomes /dns4/localhost/tcp/<that node's port>.
// quote.sh is on $PATH, as the image has it. The one-shot request must be
// won by the quoter's agent, and a restarted node keeps its PeerID.
func TestComposeMeshAsProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	bin := parleyBinary(t)
	c := readCompose(t)
	homeInImage := imageEnv(t, "PARLEY_HOME")
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "deploy", "docker", "entrypoint.sh")
	path := filepath.Dir(bin) + string(os.PathListSeparator) + filepath.Join(root, "examples", "shell") + string(os.PathListSeparator) + os.Getenv("PATH")
	volumes := t.TempDir()

	nodes := map[string]*meshNode{}
	dnsAddr := regexp.MustCompile(`/dns4/([A-Za-z0-9_.-]+)/tcp/4001`)
	// env is the service's environment outside a container.
	env := func(name string, s composeService) (vars map[string]string, home string) {
		mounts := map[string]string{} // container path -> host path
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				t.Fatalf("service %s: volume %q is not SOURCE:TARGET", name, v)
			}
			src, dst := parts[0], parts[1]
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				mounts[dst] = filepath.Join(root, src)
				continue
			}
			dir := filepath.Join(volumes, src)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			mounts[dst] = dir
		}
		host := func(p string) string {
			for dst, src := range mounts {
				if p == dst || strings.HasPrefix(p, dst+"/") {
					return src + strings.TrimPrefix(p, dst)
				}
			}
			return p
		}
		home = host(homeInImage)
		if home == homeInImage {
			t.Fatalf("service %s mounts no volume on its home %s", name, homeInImage)
		}
		vars = map[string]string{"PATH": path, "PARLEY_HOME": home}
		for k, v := range s.Environment {
			v = dnsAddr.ReplaceAllStringFunc(host(v), func(m string) string {
				dep := dnsAddr.FindStringSubmatch(m)[1]
				n, ok := nodes[dep]
				if !ok {
					t.Fatalf("service %s dials %s before it runs", name, m)
				}
				return "/dns4/localhost/tcp/" + n.port
			})
			vars[k] = v
		}
		return vars, home
	}
	environ := func(vars map[string]string) []string {
		e := testEnv()
		for k, v := range vars {
			e = append(e, k+"="+v)
		}
		return e
	}
	startNode := func(name string, s composeService) *meshNode {
		vars, home := env(name, s)
		vars["PARLEY_LISTEN"] = "/ip4/127.0.0.1/tcp/0"
		n := &meshNode{proc: startProgram(t, environ(vars), "sh", append([]string{script}, s.Command...)...), home: home}
		n.peer = strings.TrimPrefix(n.waitLine(t, "peer: ", 30*time.Second), "peer: ")
		n.listen = strings.TrimPrefix(n.waitLine(t, "listen: ", 10*time.Second), "listen: ")
		n.waitLine(t, "api: ", 10*time.Second)
		ma, err := multiaddr.NewMultiaddr(n.listen)
		if err != nil {
			t.Fatalf("%s listens on %q: %v", name, n.listen, err)
		}
		if n.port, err = ma.ValueForProtocol(multiaddr.P_TCP); err != nil {
			t.Fatalf("%s listens on %s, not TCP", name, n.listen)
		}
		// compose's healthcheck, which its depends_on wait for.
		if _, stderr, code := parley(t, bin, "status", "--home", home); code != 0 {
			t.Fatalf("%s: parley status: exit %d, %s", name, code, stderr)
		}
		if f := vars["PARLEY_PEER_FILE"]; f != "" {
			if got := strings.TrimSpace(readFile(t, f)); got != n.peer {
				t.Fatalf("%s wrote PeerID %q to %s; it runs as %s", name, got, f, n.peer)
			}
		}
		return n
	}

	var outcome []byte
	var ran []string
	for _, name := range c.startOrder(t) {
		s := c.Services[name]
		if s.NetworkMode == "" {
			nodes[name] = startNode(name, s)
			continue
		}
		// A one-shot client in another service's network namespace: on one
		// loopback that is every process's.
		if !strings.HasPrefix(s.NetworkMode, "service:") || nodes[strings.TrimPrefix(s.NetworkMode, "service:")] == nil {
			t.Fatalf("service %s: network_mode %q is not a node service's", name, s.NetworkMode)
		}
		if len(s.Command) == 0 || s.Command[0] != "parley" {
			t.Fatalf("service %s runs %q, not a parley command", name, s.Command)
		}
		vars, _ := env(name, s)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, "sh", append([]string{script}, s.Command...)...)
		cmd.Env = environ(vars)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("service %s (%q): %v; stdout %s, stderr %s", name, s.Command, err, out, stderr.String())
		}
		outcome = out
		ran = append(ran, name)
	}
	if len(ran) != 1 || ran[0] != "request" {
		t.Fatalf("one-shot services run: %v; want request", ran)
	}

	quoter := nodes["quoter"]
	if quoter == nil || len(nodes) != 3 {
		t.Fatalf("node services: %v; want three with a quoter", slices.Sorted(maps.Keys(nodes)))
	}
	out, stderr, code := parley(t, bin, "id", "--home", quoter.home, "--json")
	var id struct {
		Agents []struct{ Name, ID string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &id) != nil {
		t.Fatalf("id of the quoter: exit %d, %q, %s", code, out, stderr)
	}
	i := slices.IndexFunc(id.Agents, func(a struct{ Name, ID string }) bool { return a.Name == "quoter" })
	if i < 0 {
		t.Fatalf("the quoter node hosts %+v, no agent named quoter", id.Agents)
	}
	var o struct {
		State      string `json:"state"`
		Winner     string `json:"winner"`
		WinnerName string `json:"winner_name"`
		WinnerPeer string `json:"winner_peer"`
		Result     struct {
			Quote int `json:"quote"`
		} `json:"result"`
	}
	if err := json.Unmarshal(outcome, &o); err != nil || o.State != "completed" || o.Winner != id.Agents[i].ID ||
		o.WinnerPeer != quoter.peer || o.Result.Quote != 42 {
		t.Fatalf("the request service printed %s (%v); want it completed by quoter %s on %s with quote.sh's 42", outcome, err, id.Agents[i].ID, quoter.peer)
	}
	// The requester reached the quoter through the bootstrap node only.
	if bootstrap := nodes["bootstrap"]; bootstrap == nil || !peerSource(t, bin, nodes["requester"].home, bootstrap.peer, "bootstrap") {
		t.Fatalf("the requester's peers do not list the bootstrap node as found by bootstrap")
	}

	// A restart (the same volume) is the same node: init is not run again.
	quoter.stop(t)
	again := startNode("quoter", c.Services["quoter"])
	if again.peer != quoter.peer {
		t.Fatalf("the quoter restarted as %s, it was %s", again.peer, quoter.peer)
	}
	nodes["quoter"] = again
	for _, name := range []string{"requester", "quoter", "bootstrap"} {
		nodes[name].stop(t)
	}
}

// peerSource reports whether home's daemon lists peer as found by source.
func peerSource(t *testing.T, bin, home, peer, source string) bool {
	t.Helper()
	out, stderr, code := parley(t, bin, "peers", "--home", home, "--json")
	var peers []struct{ ID, Source string }
	if code != 0 || json.Unmarshal([]byte(out), &peers) != nil {
		t.Fatalf("peers: exit %d, %q, %s", code, out, stderr)
	}
	return slices.Contains(peers, struct{ ID, Source string }{peer, source})
}

// TestEntrypointRefusesWhatCannotWork: the entrypoint's mistakes are one
// line naming the variable, before any daemon starts.
func TestEntrypointRefusesWhatCannotWork(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	bin := parleyBinary(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such.peer")
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"no home", nil, []string{"PARLEY_HOME is not set"}},
		{"config missing", []string{"PARLEY_HOME=" + filepath.Join(dir, "a"), "PARLEY_CONFIG=" + filepath.Join(dir, "nope.yaml")},
			[]string{"PARLEY_CONFIG " + filepath.Join(dir, "nope.yaml"), "not a readable file"}},
		{"peer file without address", []string{"PARLEY_HOME=" + filepath.Join(dir, "b"), "PARLEY_BOOTSTRAP_PEER_FILE=" + missing},
			[]string{"PARLEY_BOOTSTRAP_PEER_FILE needs PARLEY_BOOTSTRAP_ADDR"}},
		{"peer file never written", []string{"PARLEY_HOME=" + filepath.Join(dir, "c"), "PARLEY_BOOTSTRAP_PEER_FILE=" + missing,
			"PARLEY_BOOTSTRAP_ADDR=/dns4/bootstrap/tcp/4001", "PARLEY_BOOTSTRAP_WAIT=0"}, []string{"no PeerID in " + missing}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command("sh", entrypoint)
			cmd.Env = append(testEnv(), append(tt.env, "PARLEY_BIN="+bin)...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			// init's two lines may come first; the refusal is the last line.
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			last := lines[len(lines)-1]
			if err == nil || stdout.Len() > 0 || !strings.HasPrefix(last, "parley-entrypoint: ") {
				t.Fatalf("exit %v, stdout %q, stderr %q; want a failure and one parley-entrypoint: line", err, stdout.String(), stderr.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(last, w) {
					t.Errorf("%q does not say %q", last, w)
				}
			}
		})
	}
}

// TestEntrypointShellcheck lints deploy/docker/entrypoint.sh as POSIX sh
// (the image's sh is BusyBox's) with shellcheck, where it is installed
// (Debian: apt-get install shellcheck).
func TestEntrypointShellcheck(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck is not installed: the entrypoint is not linted")
	}
	if out, err := exec.Command(sc, "--shell=sh", entrypoint).CombinedOutput(); err != nil {
		t.Fatalf("shellcheck %s: %v\n%s", entrypoint, err, out)
	}
}

// composeCLI returns the command that runs compose files (docker compose,
// docker-compose or podman compose) and, if a container runtime answers,
// the runtime; or why there is none.
func composeCLI() (cli []string, runtime string, why []string) {
	for _, rt := range []string{"docker", "podman"} {
		path, err := exec.LookPath(rt)
		if err != nil {
			why = append(why, rt+" is not installed")
			continue
		}
		if cli == nil {
			if exec.Command(path, "compose", "version").Run() == nil {
				cli = []string{path, "compose"}
			} else if rt == "docker" {
				if dc, err := exec.LookPath("docker-compose"); err == nil {
					cli = []string{dc}
				}
			}
		}
		var stderr bytes.Buffer
		info := exec.Command(path, "info")
		info.Stderr = &stderr
		if err := info.Run(); err != nil {
			why = append(why, fmt.Sprintf("%s is installed but '%s info' fails: %s", rt, rt, firstLine(stderr.Bytes(), err)))
			continue
		}
		if runtime == "" {
			runtime = rt
		}
	}
	if cli == nil {
		why = append(why, "no compose command (docker compose, docker-compose, podman compose)")
	}
	return cli, runtime, why
}

func firstLine(out []byte, err error) string {
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return err.Error()
}

// TestComposeFileIsValid has the compose command check compose.yaml against
// its schema, which needs no container runtime; it skips where there is no
// compose command (Debian: apt-get install docker-compose).
func TestComposeFileIsValid(t *testing.T) {
	cli, _, why := composeCLI()
	if cli == nil {
		t.Skipf("compose.yaml is not validated: %s", strings.Join(why, "; "))
	}
	args := append(slices.Clone(cli[1:]), "-f", composeFile, "config", "-q")
	if out, err := exec.Command(cli[0], args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", cli[0], strings.Join(args, " "), err, out)
	}
}

// TestDockerComposeMesh builds the Dockerfile and brings compose.yaml's mesh
// up, which must end with the request service's request completed by the
// quoter. It needs a container runtime that can pull the base images;
// without one it skips, and TestComposeMeshAsProcesses runs the same mesh
// as plain processes.
func TestDockerComposeMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an image and runs containers")
	}
	cli, runtime, why := composeCLI()
	if cli == nil || runtime == "" {
		t.Skipf("no container runtime here (%s): the Dockerfile is not built and the compose mesh does not run; TestComposeMeshAsProcesses runs the same three nodes and request as plain processes", strings.Join(why, "; "))
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	project := "parley-test-" + hex.EncodeToString(b)
	compose := func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, cli[0], append(append(slices.Clone(cli[1:]), "-p", project, "-f", composeFile), args...)...)
		cmd.Env = append(os.Environ(), "PARLEY_REVISION=test")
		return cmd
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if out, err := compose(ctx, "down", "--volumes", "--timeout", "10").CombinedOutput(); err != nil {
			t.Logf("compose down: %v\n%s", err, out)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if out, err := compose(ctx, "up", "--build", "--exit-code-from", "request").CombinedOutput(); err != nil {
		t.Fatalf("compose up (%s): %v\n%s", runtime, err, out)
	}
	logs, err := compose(ctx, "logs", "--no-color", "request").Output()
	if err != nil {
		t.Fatalf("compose logs request: %v", err)
	}
	var o struct {
		State      string `json:"state"`
		WinnerName string `json:"winner_name"`
		Result     struct {
			Quote int `json:"quote"`
		} `json:"result"`
	}
	sc := bufio.NewScanner(bytes.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if i := strings.Index(sc.Text(), `{"task"`); i >= 0 && json.Unmarshal([]byte(sc.Text()[i:]), &o) == nil {
			break
		}
	}
	if o.State != "completed" || o.WinnerName != "quoter" || o.Result.Quote != 42 {
		t.Fatalf("the request service's outcome: %+v; want completed by the quoter with 42:\n%s", o, logs)
	}
}
