package negotiation

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"

	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

func localService(t *testing.T) *Service {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	h, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	s := New(h, Config{})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestLocalStream: the in-process stream of self-calls behaves as a
// network stream does where the negotiation relies on it, and is
// forgotten once both ends are done.
func TestLocalStream(t *testing.T) {
	s := localService(t)
	open := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.locals)
	}
	t.Run("data, then EOF after a close", func(t *testing.T) {
		a, b := s.localPair()
		if _, err := a.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		_ = a.Close()
		got, err := io.ReadAll(b)
		if err != nil || string(got) != "hello" {
			t.Fatalf("read %q, %v; want hello then EOF", got, err)
		}
		if _, err := a.Write([]byte("x")); err == nil {
			t.Error("a write after Close succeeded")
		}
		_ = b.Close()
		if n := open(); n != 0 {
			t.Errorf("%d local streams kept after both ends closed", n)
		}
	})
	t.Run("a reset fails both ends at once", func(t *testing.T) {
		a, b := s.localPair()
		done := make(chan error, 1)
		go func() { _, err := b.Read(make([]byte, 1)); done <- err }()
		_ = a.Reset()
		if err := <-done; !errors.Is(err, errLocalReset) {
			t.Fatalf("blocked read after the other end's reset: %v", err)
		}
		if _, err := b.Write([]byte("x")); err == nil {
			t.Error("a write after a reset succeeded")
		}
		if n := open(); n != 0 {
			t.Errorf("%d local streams kept after a reset", n)
		}
	})
	t.Run("a read deadline ends a read", func(t *testing.T) {
		a, b := s.localPair()
		defer a.Reset()
		_ = b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := b.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read past its deadline: %v", err)
		}
	})
	t.Run("what one end holds unread is bounded", func(t *testing.T) {
		a, _ := s.localPair()
		defer a.Reset()
		if _, err := a.Write(make([]byte, maxLocalBuffer+1)); err == nil {
			t.Fatal("a write past the buffer bound succeeded")
		}
	})
	t.Run("Close resets open local streams", func(t *testing.T) {
		s := localService(t)
		_, b := s.localPair()
		done := make(chan error, 1)
		go func() { _, err := b.Read(make([]byte, 1)); done <- err }()
		_ = s.Close()
		select {
		case err := <-done:
			if !errors.Is(err, errLocalReset) {
				t.Fatalf("read on a local stream after Close: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close left a read on a local stream blocked")
		}
	})
}
