package negotiation_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleynet/parley/negotiation"
)

// The Updates hook sees the task's ID first, then its states in order and
// the winner's progress notes, each once (keepalives carry none).
func TestUpdatesStreamStatesAndProgress(t *testing.T) {
	m, agents := newNegMesh(t, 2, agentSpec{node: 1, name: "steps", price: 1, eta: time.Second,
		work: func(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
			task.Progress(0.25, "first")
			time.Sleep(150 * time.Millisecond) // long enough for keepalives in between
			task.Progress(0.75, "second")
			return json.RawMessage(`{"ok":true}`), nil
		}})
	var mu sync.Mutex
	var got []negotiation.Update
	out, err := request(t, m.Nodes[0], `{}`, negotiation.WithProgressTimeout(150*time.Millisecond),
		negotiation.WithUpdates(func(u negotiation.Update) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, u)
		}))
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	var kinds []string
	for _, u := range got {
		if u.Task != out.Task {
			t.Errorf("update for task %q, want %q", u.Task, out.Task)
		}
		k := string(u.State)
		if u.Progress {
			k = "progress:" + u.Note
			if u.Winner != agents["steps"].id || u.WinnerName != "steps" {
				t.Errorf("progress from %s (%q), want the winner steps", u.Winner, u.WinnerName)
			}
		}
		kinds = append(kinds, k)
	}
	want := []string{"submitted", "negotiating", "working", "progress:first", "progress:second"}
	if !slices.Equal(kinds, want) {
		t.Errorf("updates = %v, want %v", kinds, want)
	}
}
