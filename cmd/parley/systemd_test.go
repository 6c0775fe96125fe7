package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const unitFile = "../../deploy/systemd/parley.service"

// unitBinary is where deploy/systemd/parley.service expects the binary.
const unitBinary = "/usr/local/bin/parley"

// TestSystemdUnitVerifies checks deploy/systemd/parley.service with
// systemd-analyze (Debian's systemd package): verify must find nothing to
// warn about, and the offline security review must rate its exposure OK
// (2.0 or less on systemd's 0–10 scale). Where systemd-analyze is not
// installed it skips.
func TestSystemdUnitVerifies(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the parley binary")
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian: apt-get install systemd): the unit is not verified")
	}
	// verify also checks that every command exists: point the unit at the
	// binary built here instead of the installed one.
	unit := filepath.Join(t.TempDir(), "parley.service")
	writeFile(t, unit, strings.ReplaceAll(readFile(t, unitFile), unitBinary, parleyBinary(t)))

	var stderr bytes.Buffer
	cmd := exec.Command(analyze, "verify", "--man=no", unit)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		// systemd-analyze exits 0 for unknown keys and bad values; it only
		// warns.
		t.Fatalf("systemd-analyze verify: %v\n%s", err, stderr.String())
	}
	out, err := exec.Command(analyze, "security", "--offline=yes", "--threshold=20", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v; want an overall exposure of 2.0 or less:\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "Overall exposure level") {
			t.Log(strings.TrimSpace(l))
		}
	}
}

// TestSystemdUnitRunsANode runs deploy/systemd/parley.service's commands
// the way systemd would, without systemd: its Environment=, then
// ExecStartPre and ExecStart with %S, $$, $VAR and ${VAR} expanded, in an
// empty state directory, with NOTIFY_SOCKET set. The first start makes the
// home and the daemon says READY=1; ExecReload reloads it; a second start
// keeps the home (same node key, same PeerID). PARLEY_RUN_FLAGS is given as
// /etc/parley/parley.env would, so the node listens on loopback only.
func TestSystemdUnitRunsANode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	bin := parleyBinary(t)
	u := parseUnit(t, readFile(t, unitFile))
	if u.service["Type"] != "notify" {
		t.Fatalf("Type=%s; the daemon's readiness is told with Type=notify", u.service["Type"])
	}
	// %S, with the directory StateDirectory=parley makes in it.
	state := t.TempDir()
	if err := os.Mkdir(filepath.Join(state, "parley"), 0o700); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, kv := range u.environment {
		name, value, _ := strings.Cut(expandSpecifiers(t, kv, state), "=")
		vars[name] = value
	}
	if vars["PARLEY_HOME"] != filepath.Join(state, "parley") {
		t.Fatalf("PARLEY_HOME=%s; want the state directory %s/parley", vars["PARLEY_HOME"], state)
	}
	vars["PARLEY_RUN_FLAGS"] = "--listen /ip4/127.0.0.1/tcp/0 --no-mdns" // as from EnvironmentFile=
	env := testEnv()
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	command := func(line string) []string {
		argv := unitCommand(t, expandSpecifiers(t, line, state), vars)
		for i := range argv {
			argv[i] = strings.ReplaceAll(argv[i], unitBinary, bin)
		}
		return argv
	}
	keyPath := filepath.Join(vars["PARLEY_HOME"], "keys", "node.key")

	var key []byte
	var peer string
	for start := 1; start <= 2; start++ {
		pre := command(u.service["ExecStartPre"])
		c := exec.Command(pre[0], pre[1:]...)
		c.Env = env
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("start %d: ExecStartPre %q: %v\n%s", start, pre, err, out)
		}
		k, err := os.ReadFile(keyPath)
		if err != nil {
			t.Fatalf("start %d: after ExecStartPre: %v", start, err)
		}
		if start == 2 && !bytes.Equal(k, key) {
			t.Fatal("the second start replaced the node key")
		}
		key = k

		addr, next := notifySocket(t)
		run := command(u.service["ExecStart"])
		p := startProgram(t, append(env, "NOTIFY_SOCKET="+addr), run[0], run[1:]...)
		ready := next(20 * time.Second)
		m := regexp.MustCompile(`^READY=1\nSTATUS=peer (\S+), api http://127\.0\.0\.1:\d+$`).FindStringSubmatch(ready)
		if m == nil {
			t.Fatalf("start %d: notified %q; want READY=1 with the peer and the API", start, ready)
		}
		if start == 2 && m[1] != peer {
			t.Fatalf("the second start runs as %s, the first as %s", m[1], peer)
		}
		peer = m[1]
		if out, stderr, code := parley(t, bin, "status", "--home", vars["PARLEY_HOME"]); code != 0 || !strings.Contains(out, peer) {
			t.Fatalf("start %d: status after READY=1: exit %d, %q, %s", start, code, out, stderr)
		}

		reload := command(strings.ReplaceAll(u.service["ExecReload"], "$MAINPID", strconv.Itoa(p.cmd.Process.Pid)))
		if out, err := exec.Command(reload[0], reload[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("ExecReload %q: %v\n%s", reload, err, out)
		}
		if got := next(10 * time.Second); got != "RELOADING=1" {
			t.Fatalf("after ExecReload notified %q, want RELOADING=1", got)
		}
		if got := next(10 * time.Second); got != ready {
			t.Fatalf("after the reload notified %q, want %q", got, ready)
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if got := next(10 * time.Second); got != "STOPPING=1" {
			t.Fatalf("after SIGTERM notified %q, want STOPPING=1", got)
		}
		p.stop(t)
	}
}

// unit is what the tests read of a unit file: its [Service] settings (the
// last value of each key) and its Environment= lines in order.
type unit struct {
	service     map[string]string
	environment []string
}

func parseUnit(t *testing.T, text string) unit {
	t.Helper()
	u := unit{service: map[string]string{}}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "["):
			section = l
		case section == "[Service]":
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Fatalf("unit line %q is not KEY=VALUE", l)
			}
			if k == "Environment" {
				words := splitUnitWords(t, v)
				u.environment = append(u.environment, words...)
			}
			u.service[k] = v
		}
	}
	return u
}

// expandSpecifiers expands the one specifier the unit may use, %S (the
// state directory root), and %%.
func expandSpecifiers(t *testing.T, s, state string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i++; i == len(s) {
			t.Fatalf("%q ends in %%", s)
		}
		switch s[i] {
		case 'S':
			b.WriteString(state)
		case '%':
			b.WriteByte('%')
		default:
			t.Fatalf("%q uses %%%c, which this test does not expand", s, s[i])
		}
	}
	return b.String()
}

// unitCommand splits an Exec*= command line as systemd does: quoted words,
// a word that is exactly $NAME split at whitespace, ${NAME} replaced within
// a word, $$ a dollar sign. A leading -, @, +, ! or : prefix is refused.
func unitCommand(t *testing.T, line string, vars map[string]string) []string {
	t.Helper()
	if line == "" || strings.ContainsAny(line[:1], "-@+!:") {
		t.Fatalf("command %q is empty or has a prefix this test does not run", line)
	}
	var argv []string
	for _, w := range splitUnitWords(t, line) {
		if name, ok := strings.CutPrefix(w, "$"); ok && regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`).MatchString(name) {
			argv = append(argv, strings.Fields(vars[name])...)
			continue
		}
		w = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}`).ReplaceAllStringFunc(w, func(m string) string {
			if m == "$$" {
				return "$"
			}
			return vars[m[2:len(m)-1]]
		})
		argv = append(argv, w)
	}
	return argv
}

// splitUnitWords splits a unit file value into words: whitespace separates
// them, single or double quotes group them.
func splitUnitWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var w strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			w.WriteByte(c)
		case c == '"' || c == '\'':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, w.String())
				w.Reset()
				in = false
			}
		case c == '\\':
			t.Fatalf("%q has a backslash, which this test does not parse", s)
		default:
			w.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		t.Fatalf("%q has an unterminated quote", s)
	}
	if in {
		words = append(words, w.String())
	}
	return words
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
