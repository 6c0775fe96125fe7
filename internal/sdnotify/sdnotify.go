// Package sdnotify tells the service manager that started the process (systemd
// with Type=notify, or anything speaking its notify protocol) what state the
// service is in: ready, reloading, stopping. It writes one datagram per
// notification to the unix socket named by $NOTIFY_SOCKET, a path or an
// abstract socket ("@name"); where that variable is unset there is nobody to
// tell, and it does nothing.
//
// It does not own what the states mean to the daemon (cmd/parley says when it
// is ready) or watchdog keep-alives.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// EnvSocket names the environment variable that holds the socket's address.
const EnvSocket = "NOTIFY_SOCKET"

// States a service reports. A notification may carry several, one per line,
// with STATUS= text for 'systemctl status'.
const (
	Ready     = "READY=1"     // started, or done reloading
	Reloading = "RELOADING=1" // reloading its configuration; Ready follows
	Stopping  = "STOPPING=1"  // shutting down
)

// Status is the STATUS= line of a notification: free text that 'systemctl
// status' shows.
func Status(text string) string { return "STATUS=" + text }

// Notifier sends notifications to one socket. A nil Notifier, what FromEnv
// returns where NOTIFY_SOCKET is unset, sends nothing and never fails.
type Notifier struct {
	addr *net.UnixAddr
}

// FromEnv returns a Notifier for the socket in $NOTIFY_SOCKET, or nil if it
// is unset or empty, and removes the variable from the environment so that
// the programs the service runs (agents) cannot send notifications in its
// name. It returns an error, and nil, for an address that is neither an
// absolute path nor an abstract socket.
func FromEnv() (*Notifier, error) {
	addr := os.Getenv(EnvSocket)
	if addr == "" {
		return nil, nil
	}
	if err := os.Unsetenv(EnvSocket); err != nil {
		return nil, fmt.Errorf("unset %s: %w", EnvSocket, err)
	}
	return New(addr)
}

// New returns a Notifier for the socket at addr: an absolute path, or "@name"
// for an abstract socket (Linux).
func New(addr string) (*Notifier, error) {
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		return nil, fmt.Errorf("%s %q: want an absolute path or @name (an abstract socket)", EnvSocket, addr)
	}
	// The net package maps a leading @ to the abstract namespace.
	return &Notifier{addr: &net.UnixAddr{Name: addr, Net: "unixgram"}}, nil
}

// Notify sends the states, as one datagram with one per line ("READY=1",
// Status("…")). It does nothing on a nil Notifier.
func (n *Notifier) Notify(states ...string) error {
	if n == nil {
		return nil
	}
	if len(states) == 0 {
		return errors.New("sdnotify: no state to send")
	}
	msg := strings.Join(states, "\n")
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("notify %s at %s: %w", states[0], n.addr.Name, err)
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		_ = c.Close()
		return fmt.Errorf("notify %s at %s: %w", states[0], n.addr.Name, err)
	}
	if err := c.Close(); err != nil {
		return fmt.Errorf("notify %s at %s: %w", states[0], n.addr.Name, err)
	}
	return nil
}

// Addr returns the socket's address as $NOTIFY_SOCKET gave it, or "" for a
// nil Notifier.
func (n *Notifier) Addr() string {
	if n == nil {
		return ""
	}
	return n.addr.Name
}
