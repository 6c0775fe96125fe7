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
	w := NewReplayWindow(ReplayConfig{Window: time.Minute, MaxEntries: 10, MaxPerSender: 10})
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
	w := NewReplayWindow(ReplayConfig{Window: time.Minute, ClockSkew: 30 * time.Second})
	for i := range 100 {
		if err := w.Check(alice, fmt.Sprint(i), t0, t0); err != nil {
			t.Fatal(err)
		}
	}
	// Entries are kept for the window plus the clock skew.
	pruned := t0.Add(time.Minute + 30*time.Second + time.Millisecond)
	if err := w.Check(alice, "late", pruned, pruned); err != nil {
		t.Fatal(err)
	}
	if w.Len() != 1 || w.Senders() != 1 {
		t.Fatalf("Len = %d, Senders = %d after the window passed, want 1, 1", w.Len(), w.Senders())
	}
	// A pruned entry presented with an earlier "now" (a caller whose clock
	// reading lags by less than the skew) is still refused.
	if err := w.Check(alice, "5", t0, pruned.Add(-time.Second)); !errors.Is(err, ErrTooOld) {
		t.Fatalf("pruned entry with lagging now: %v, want ErrTooOld", err)
	}
}

func TestReplayWindowBound(t *testing.T) {
	const max = 8
	w := NewReplayWindow(ReplayConfig{Window: time.Hour, MaxEntries: max, MaxPerSender: max})
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
	// So is a new message of the same sender created at or before the
	// last evicted one...
	lastEvicted := t0.Add(time.Duration(2*max-1) * time.Second)
	if err := w.Check(alice, "new", lastEvicted, now); !errors.Is(err, ErrTooOld) {
		t.Fatalf("new message at the sender's floor: %v, want ErrTooOld", err)
	}
	// ...but another sender is not held to it.
	if err := w.Check(bob, "new", t0, now); err != nil {
		t.Fatalf("another sender's message created before alice's floor: %v", err)
	}
	// Remembered messages are still replays.
	if err := w.Check(alice, fmt.Sprint(3*max-1), t0.Add(time.Duration(3*max-1)*time.Second), now); !errors.Is(err, ErrReplayed) {
		t.Fatalf("remembered message: %v, want ErrReplayed", err)
	}
}

// One sender floods the window with valid messages dated as far ahead as
// the clock skew allows; honest senders' messages, created a little in
// the past, must still be accepted (on main the shared floor jumped past
// now and refused every honest message for the skew).
func TestReplayWindowPoisoningOneSender(t *testing.T) {
	const max = 1000
	w := NewReplayWindow(ReplayConfig{Window: 10 * time.Minute, MaxEntries: max})
	now := t0
	for i := range 100 * max {
		// Past its own quota the flooder is refused: that is its floor.
		_ = w.Check(bob, fmt.Sprint(i), now.Add(29*time.Second), now)
	}
	if w.Len() > max {
		t.Fatalf("Len = %d > %d", w.Len(), max)
	}
	for i := range 20 {
		created := now.Add(-time.Duration(i) * 100 * time.Millisecond)
		if err := w.Check(alice, fmt.Sprint("honest", i), created, now); err != nil {
			t.Fatalf("honest message %d created %s before now: %v", i, now.Sub(created), err)
		}
	}
	// The flooder's forgotten messages stay refused.
	if err := w.Check(bob, "0", now.Add(29*time.Second), now); !errors.Is(err, ErrTooOld) {
		t.Fatalf("replay of a forgotten flood message: %v, want ErrTooOld", err)
	}
}

// Fresh keys each send one message dated ahead: the window stays bounded,
// and honest messages a few seconds old are still accepted.
func TestReplayWindowPoisoningFreshKeys(t *testing.T) {
	const max = 1000
	w := NewReplayWindow(ReplayConfig{Window: 10 * time.Minute, MaxEntries: max})
	keys := make([]AgentID, 0, 5*max)
	for range 5 * max {
		keys = append(keys, newAgentID(t))
	}
	now := t0
	for i, k := range keys {
		now = now.Add(time.Millisecond) // the flood lasts 5 s
		if err := w.Check(k, "x", now.Add(29*time.Second), now); err != nil {
			t.Fatalf("flood message %d: %v", i, err)
		}
		if w.Len() > max || w.Senders() > 2*max {
			t.Fatalf("after %d keys: %d entries, %d senders; want <= %d, %d", i+1, w.Len(), w.Senders(), max, 2*max)
		}
	}
	// The shared floor trails the clock by what the bounds hold (here
	// 2000 senders at one a millisecond).
	if err := w.Check(alice, "honest", now.Add(-time.Second), now); err != nil {
		t.Fatalf("honest message created 1 s ago: %v", err)
	}
}

// A message dated ahead is not forgotten before it could be replayed.
func TestReplayWindowFutureDatedKeptUntilTooOld(t *testing.T) {
	w := NewReplayWindow(ReplayConfig{Window: time.Minute, ClockSkew: 30 * time.Second})
	created := t0.Add(29 * time.Second)
	if err := w.Check(alice, "ahead", created, t0); err != nil {
		t.Fatal(err)
	}
	for _, later := range []time.Duration{time.Minute, time.Minute + 20*time.Second, time.Minute + 29*time.Second} {
		if err := w.Check(alice, "ahead", created, t0.Add(later)); err == nil {
			t.Fatalf("replayed %s later: accepted", later)
		}
	}
}

func TestReplayWindowDefaults(t *testing.T) {
	w := NewReplayWindow(ReplayConfig{Window: -1, MaxEntries: -1})
	if w.Window() != DefaultReplayWindow || w.cfg.MaxEntries != DefaultReplayEntries ||
		w.cfg.MaxPerSender != DefaultReplayEntries/4 || w.cfg.MaxSenders != 2*DefaultReplayEntries {
		t.Fatalf("config %+v", w.cfg)
	}
}

func newAgentID(t *testing.T) AgentID {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	id, err := AgentIDFromPubKey(k.GetPublic())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestReplayWindowConcurrent(t *testing.T) {
	w := NewReplayWindow(ReplayConfig{Window: time.Minute, MaxEntries: 1000})
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
