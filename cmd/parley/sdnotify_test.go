package main

import (
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifySocket listens where a Type=notify service manager would, and
// returns its address and a function that reads the next notification.
func notifySocket(t *testing.T) (string, func(timeout time.Duration) string) {
	t.Helper()
	addr := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return addr, func(timeout time.Duration) string {
		t.Helper()
		buf := make([]byte, 4096)
		if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			t.Fatal(err)
		}
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no notification on NOTIFY_SOCKET within %s: %v", timeout, err)
		}
		return string(buf[:n])
	}
}

// TestRunNotifiesTheServiceManager runs 'parley run' as systemd runs a
// Type=notify service: with NOTIFY_SOCKET set, it says READY=1 once its API
// answers, RELOADING=1 then READY=1 around a SIGHUP reload, and STOPPING=1
// on SIGTERM.
func TestRunNotifiesTheServiceManager(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	bin := parleyBinary(t)
	h := filepath.Join(t.TempDir(), "h")
	initHome(t, bin, h)
	addr, next := notifySocket(t)
	p := startProgram(t, append(testEnv(), "NOTIFY_SOCKET="+addr), bin, "run", "--home", h, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns")
	peer := strings.TrimPrefix(p.waitLine(t, "peer: ", 20*time.Second), "peer: ")
	api := strings.TrimPrefix(p.waitLine(t, "api: ", 10*time.Second), "api: ")

	ready := next(10 * time.Second)
	if want := "READY=1\nSTATUS=peer " + peer + ", api " + api; ready != want {
		t.Fatalf("notified %q, want %q", ready, want)
	}
	// Ready means what a unit ordered after parley.service relies on: the
	// API answers.
	if out, stderr, code := parley(t, bin, "status", "--home", h); code != 0 || !strings.Contains(out, peer) {
		t.Fatalf("status right after READY=1: exit %d, %q, %s", code, out, stderr)
	}

	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if got := next(10 * time.Second); got != "RELOADING=1" {
		t.Fatalf("after SIGHUP notified %q, want RELOADING=1", got)
	}
	if got := next(10 * time.Second); got != ready {
		t.Fatalf("after the reload notified %q, want %q", got, ready)
	}
	p.waitStderr(t, "reloaded: nothing changed", 10*time.Second)

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := next(10 * time.Second); got != "STOPPING=1" {
		t.Fatalf("after SIGTERM notified %q, want STOPPING=1", got)
	}
	p.stop(t)
}

// TestRunRefusesABadNotifySocket: a NOTIFY_SOCKET that is neither a path
// nor an abstract socket is a start error naming it, not a daemon that
// systemd would time out waiting for.
func TestRunRefusesABadNotifySocket(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	bin := parleyBinary(t)
	h := filepath.Join(t.TempDir(), "h")
	initHome(t, bin, h)
	p := startProgram(t, append(testEnv(), "NOTIFY_SOCKET=run/notify"), bin, "run", "--home", h, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns")
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("parley run with a bad NOTIFY_SOCKET still runs after 20 s")
	}
	stderr := p.stderr.String()
	if p.err == nil || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, `NOTIFY_SOCKET "run/notify"`) {
		t.Fatalf("exit %v, stderr %q; want a failure naming NOTIFY_SOCKET", p.err, stderr)
	}
}
