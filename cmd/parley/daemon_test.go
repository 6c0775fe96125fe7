package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/multiformats/go-multiaddr"
)

// status reads the daemon's status through the CLI.
func status(t *testing.T, bin, home string) (agents map[string]string, reasons []string) {
	t.Helper()
	out, stderr, code := parley(t, bin, "status", "--home", home, "--json")
	var st struct {
		Agents []struct {
			Name, Kind   string
			Capabilities []string
		}
		Health struct{ Reasons []string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status: exit %d, %q, %s", code, out, stderr)
	}
	agents = map[string]string{}
	for _, a := range st.Agents {
		agents[a.Name] = a.Kind + " " + strings.Join(a.Capabilities, ",")
	}
	return agents, st.Health.Reasons
}

// TestDaemonSignals drives a real daemon started without --policy with
// signals: SIGHUP reloads (and never kills it), a bad config.yaml is
// refused with the running state kept, one log line per reload says what
// happened, and SIGTERM stops it cleanly within 5 s, withdrawing its api
// files.
func TestDaemonSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	bin := parleyBinary(t)
	h := filepath.Join(t.TempDir(), "h")
	initHome(t, bin, h)
	quote, err := filepath.Abs("../../examples/shell/quote.sh")
	if err != nil {
		t.Fatal(err)
	}
	d := runDaemon(t, bin, h, "--no-mdns")
	hup := func() {
		t.Helper()
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(h, "config.yaml")

	hup()
	d.waitStderr(t, "reloaded: nothing changed", 10*time.Second)
	if agents, _ := status(t, bin, h); agents["default"] != "signer " {
		t.Fatalf("after a SIGHUP with nothing changed: %v", agents)
	}

	writeFile(t, cfg, "agents:\n  - name: default\n  - name: quoter\n    capabilities: [quote]\n    exec: [sh, "+quote+"]\nlog_level: info\n")
	hup()
	d.waitStderr(t, "reloaded: agents added: quoter", 10*time.Second)
	if agents, _ := status(t, bin, h); agents["quoter"] != "exec quote" {
		t.Fatalf("after adding quoter: %v", agents)
	}

	writeFile(t, cfg, "agents:\n  - name: default\n  - name: quoter\n    capabilities: [quote]\n    exec: [/nonexistent/quote.sh]\n")
	hup()
	d.waitStderr(t, "reload refused, nothing changed", 10*time.Second)
	agents, reasons := status(t, bin, h)
	if agents["quoter"] != "exec quote" || len(reasons) == 0 || !strings.Contains(strings.Join(reasons, ";"), "/nonexistent/quote.sh does not exist") {
		t.Fatalf("after a bad config: agents %v, health reasons %q; want quoter kept and the refusal told", agents, reasons)
	}

	writeFile(t, cfg, "agents:\n  - name: default\n")
	hup()
	logs := d.waitStderr(t, "reloaded: agents removed: quoter", 10*time.Second)
	if n := strings.Count(logs, "reloaded: ") + strings.Count(logs, "reload refused"); n != 4 {
		t.Fatalf("%d reload lines for 4 SIGHUPs:\n%s", n, logs)
	}

	d.stop(t)
	for _, f := range []string{"api", "api.token"} {
		if _, err := os.Stat(filepath.Join(h, f)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind after SIGTERM: %v", f, err)
		}
	}
}

// TestSecondDaemonOnTheSamePort: with go-libp2p's reuseport a second
// daemon asking for a port the first holds would get it too; it must
// refuse to start instead, naming the address, and leave its home alone.
func TestSecondDaemonOnTheSamePort(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	bin := parleyBinary(t)
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	initHome(t, bin, a)
	initHome(t, bin, b)
	// The first daemon takes a port the kernel picks, so no other socket
	// can take it between a pick and the bind; its listen: line names it.
	first := start(t, bin, "run", "--home", a, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns")
	first.line(t, 20*time.Second) // peer:
	listen, _, _ := strings.Cut(strings.TrimPrefix(first.line(t, 5*time.Second), "listen: "), "/p2p/")
	ma, err := multiaddr.NewMultiaddr(listen)
	if err != nil {
		t.Fatalf("first daemon's listen line: %v", err)
	}
	portText, err := ma.ValueForProtocol(multiaddr.P_TCP)
	if err != nil {
		t.Fatalf("first daemon listens on %s, not TCP", listen)
	}
	port, _ := strconv.Atoi(portText)
	addr := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)

	before := snapshot(t, b)
	_, stderr, code := parley(t, bin, "run", "--home", b, "--listen", addr, "--no-mdns")
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	if code != 1 || !strings.HasPrefix(last, "parley: ") || !strings.Contains(last, "listen address "+addr) ||
		!strings.Contains(last, fmt.Sprintf("tcp port %d", port)) {
		t.Fatalf("second daemon on %s: exit %d, stderr %q; want exit 1 naming the address", addr, code, stderr)
	}
	if after := snapshot(t, b); len(after) != len(before) {
		t.Fatalf("the refused daemon wrote to its home: %v", after)
	}
	first.stop(t)
}

// TestPSKWithQUICListenWarns: a private network cannot run on QUIC; the
// daemon says so in a warning line and runs on TCP.
func TestPSKWithQUICListenWarns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	bin := parleyBinary(t)
	h := filepath.Join(t.TempDir(), "h")
	initHome(t, bin, h)
	psk := filepath.Join(t.TempDir(), "swarm.key")
	writeFile(t, psk, "/key/swarm/psk/1.0.0/\n/base16/\n"+strings.Repeat("ef", 32)+"\n")
	d := runDaemon(t, bin, h, "--no-mdns", "--psk", psk, "--listen", "/ip4/127.0.0.1/udp/0/quic-v1")
	if strings.Contains(d.listen, "/udp/") {
		t.Fatalf("a private node listens on %s", d.listen)
	}
	logs := d.waitStderr(t, "daemon ready", 10*time.Second)
	var warn string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "WARN") && strings.Contains(l, "private network (PSK) runs on TCP only") {
			warn = l
		}
	}
	if warn == "" || !strings.Contains(warn, "quic-v1") {
		t.Fatalf("no warning line naming the dropped QUIC address:\n%s", logs)
	}
	d.stop(t)
}
