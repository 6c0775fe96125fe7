package identity

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

const (
	alice AgentID = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
	bob   AgentID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
)

func TestReplayWindowCheck(t *testing.T) {
	w := NewReplayWindow(time.Minute, 10)
	tests := []struct {
		name    string
		from    AgentID
		id      string
		created time.Time
		now     time.Time
		want    error
	}{
		{"first", alice, "1", t0, t0, nil},
		{"replay", alice, "1", t0, t0, ErrReplayed},
		{"replay, other created", alice, "1", t0.Add(time.Second), t0.Add(time.Second), ErrReplayed},
		{"other sender", bob, "1", t0, t0, nil},
		{"other id", alice, "2", t0, t0, nil},
		{"at window start", alice, "3", t0.Add(-time.Minute), t0, nil},
		{"before window", alice, "4", t0.Add(-time.Minute - 1), t0, ErrTooOld},
		{"replay later in window", alice, "1", t0, t0.Add(59 * time.Second), ErrReplayed},
		{"after window", alice, "1", t0, t0.Add(time.Minute + 1), ErrTooOld},
	}
	for _, tt := range tests {
		err := w.Check(tt.from, tt.id, tt.created, tt.now)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: Check = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestReplayWindowPrunes(t *testing.T) {
	w := NewReplayWindow(time.Minute, 0)
	for i := range 100 {
		if err := w.Check(alice, fmt.Sprint(i), t0, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Check(alice, "late", t0.Add(2*time.Minute), t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if w.Len() != 1 {
		t.Fatalf("Len = %d after the window passed, want 1", w.Len())
	}
	// A pruned entry presented with an earlier "now" (a caller whose clock
	// reading lags) is still refused.
	if err := w.Check(alice, "5", t0, t0.Add(30*time.Second)); !errors.Is(err, ErrTooOld) {
		t.Fatalf("pruned entry with lagging now: %v, want ErrTooOld", err)
	}
}

func TestReplayWindowBound(t *testing.T) {
	const max = 8
	w := NewReplayWindow(time.Hour, max)
	now := t0.Add(time.Minute)
	for i := range 3 * max {
		created := t0.Add(time.Duration(i) * time.Second)
		if err := w.Check(alice, fmt.Sprint(i), created, now); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if w.Len() > max {
			t.Fatalf("Len = %d > %d", w.Len(), max)
		}
	}
	if w.Len() != max {
		t.Fatalf("Len = %d, want %d", w.Len(), max)
	}
	// Message 0 was evicted though still inside the window: it must be
	// refused, not accepted again.
	if err := w.Check(alice, "0", t0, now); !errors.Is(err, ErrTooOld) {
		t.Fatalf("evicted message: %v, want ErrTooOld", err)
	}
	// So is a new message created at or before the last evicted one.
	lastEvicted := t0.Add(time.Duration(2*max-1) * time.Second)
	if err := w.Check(bob, "new", lastEvicted, now); !errors.Is(err, ErrTooOld) {
		t.Fatalf("new message at the floor: %v, want ErrTooOld", err)
	}
	// Remembered messages are still replays.
	if err := w.Check(alice, fmt.Sprint(3*max-1), t0.Add(time.Duration(3*max-1)*time.Second), now); !errors.Is(err, ErrReplayed) {
		t.Fatalf("remembered message: %v, want ErrReplayed", err)
	}
	// Newer messages are accepted.
	if err := w.Check(bob, "newer", now, now); err != nil {
		t.Fatalf("newer message: %v", err)
	}
}

func TestReplayWindowDefaults(t *testing.T) {
	w := NewReplayWindow(-1, -1)
	if w.Window() != DefaultReplayWindow || w.maxEntries != DefaultReplayEntries {
		t.Fatalf("window %v, max %d", w.Window(), w.maxEntries)
	}
}

func TestReplayWindowConcurrent(t *testing.T) {
	w := NewReplayWindow(time.Minute, 1000)
	const workers, per = 8, 200
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted = make(map[string]int)
	)
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				// Every worker presents every ID: exactly one must win.
				id := fmt.Sprint(i)
				created := t0.Add(time.Duration(i) * time.Millisecond)
				if err := w.Check(alice, id, created, t0.Add(time.Second)); err == nil {
					mu.Lock()
					accepted[id]++
					mu.Unlock()
				} else if !errors.Is(err, ErrReplayed) {
					t.Errorf("worker %d id %s: %v", g, id, err)
				}
				_ = w.Len()
			}
		}()
	}
	wg.Wait()
	if len(accepted) != per {
		t.Fatalf("%d IDs accepted, want %d", len(accepted), per)
	}
	for id, n := range accepted {
		if n != 1 {
			t.Fatalf("id %s accepted %d times", id, n)
		}
	}
}
