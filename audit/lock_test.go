//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package audit

import (
	"errors"
	"testing"
)

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, testKey(t, 1), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, testKey(t, 1), Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := Open(dir, testKey(t, 1), Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	_ = l2.Close()
}
