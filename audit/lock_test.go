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

func TestPruneLock(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t, 1)
	l, err := Open(dir, key, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// As while a Prune runs.
	lock, err := lockDir(dir, pruneLock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Prune(dir, key.GetPublic(), PruneOptions{KeepFiles: 1}); !errors.Is(err, ErrLocked) {
		t.Errorf("Prune during a Prune: %v, want ErrLocked", err)
	}
	if _, err := Open(dir, key, Options{}); !errors.Is(err, ErrLocked) {
		t.Errorf("Open during a Prune: %v, want ErrLocked", err)
	}
	_ = lock.Close()
	l, err = Open(dir, key, Options{})
	if err != nil {
		t.Fatalf("Open after the Prune: %v", err)
	}
	// A Prune may run while the log is open.
	if _, err := Prune(dir, key.GetPublic(), PruneOptions{KeepFiles: 1}); err != nil {
		t.Errorf("Prune of an open log: %v", err)
	}
	_ = l.Close()
}
