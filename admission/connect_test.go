package admission

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// An address opening connections faster than its rate is refused before
// any handshake, and another address is not.
func TestConnectionsPerIP(t *testing.T) {
	now := time.Unix(1e9, 0)
	l, err := New(Config{Limits: Limits{ConnectionsPerIP: Rate{PerSecond: 1, Burst: 3}}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	flooder, other := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("192.0.2.8")
	for i := range 3 {
		if err := l.Connection(flooder); err != nil {
			t.Fatalf("connection %d within the burst: %v", i+1, err)
		}
	}
	if err := l.Connection(flooder); !errors.Is(err, ErrDenied) {
		t.Fatalf("fourth connection at once: %v, want refused", err)
	}
	if err := l.Connection(other); err != nil {
		t.Fatalf("another address: %v", err)
	}
	now = now.Add(time.Second)
	if err := l.Connection(flooder); err != nil {
		t.Fatalf("a second later: %v", err)
	}
}
