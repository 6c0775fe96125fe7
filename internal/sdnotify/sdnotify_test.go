package sdnotify

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// listen opens a unix datagram socket at addr, as systemd does for a
// Type=notify service, and returns a function that reads the next
// notification.
func listen(t *testing.T, addr string) func() string {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return func() string {
		t.Helper()
		buf := make([]byte, 4096)
		if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read a notification on %s: %v", addr, err)
		}
		return string(buf[:n])
	}
}

func TestNotifyPathSocket(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no unix datagram sockets on Windows")
	}
	addr := filepath.Join(t.TempDir(), "notify")
	next := listen(t, addr)
	t.Setenv(EnvSocket, addr)
	n, err := FromEnv()
	if err != nil || n == nil || n.Addr() != addr {
		t.Fatalf("FromEnv with %s=%s: %v, %v", EnvSocket, addr, n, err)
	}
	if v, ok := os.LookupEnv(EnvSocket); ok {
		t.Fatalf("%s is still in the environment (%q): the service's children would inherit it", EnvSocket, v)
	}
	if err := n.Notify(Ready, Status("api http://127.0.0.1:4100")); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "READY=1\nSTATUS=api http://127.0.0.1:4100" {
		t.Fatalf("the socket received %q", got)
	}
	for _, s := range []string{Reloading, Ready, Stopping} {
		if err := n.Notify(s); err != nil {
			t.Fatal(err)
		}
		if got := next(); got != s {
			t.Fatalf("sent %s, the socket received %q", s, got)
		}
	}
}

func TestNotifyAbstractSocket(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("abstract unix sockets are Linux only")
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	addr := "@parley-sdnotify-test-" + hex.EncodeToString(b)
	next := listen(t, addr)
	n, err := New(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(Ready); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != Ready {
		t.Fatalf("the abstract socket received %q", got)
	}
}

// TestNotifyWithoutSocket: with no NOTIFY_SOCKET (not under systemd) there is
// no notifier and notifying does nothing.
func TestNotifyWithoutSocket(t *testing.T) {
	t.Setenv(EnvSocket, "")
	n, err := FromEnv()
	if err != nil || n != nil {
		t.Fatalf("FromEnv with %s empty: %v, %v; want nil, nil", EnvSocket, n, err)
	}
	if err := n.Notify(Ready); err != nil {
		t.Fatalf("a nil Notifier's Notify: %v", err)
	}
}

func TestNotifyErrorsNameTheSocket(t *testing.T) {
	if _, err := New("run/notify"); err == nil || !strings.Contains(err.Error(), `"run/notify"`) {
		t.Fatalf("New with a relative path: %v; want an error naming it", err)
	}
	missing := filepath.Join(t.TempDir(), "gone")
	n, err := New(missing)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(Ready); err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), Ready) {
		t.Fatalf("Notify to a socket nobody listens on: %v; want an error naming the socket and the state", err)
	}
}
