package identity

import (
	"container/heap"
	"fmt"
	"sync"
	"time"
)

const (
	// DefaultReplayWindow is how long a ReplayWindow remembers a message
	// when NewReplayWindow is given no window.
	DefaultReplayWindow = 10 * time.Minute
	// DefaultReplayEntries is how many messages a ReplayWindow remembers
	// when NewReplayWindow is given no bound.
	DefaultReplayEntries = 100_000
)

// ReplayWindow remembers the (sender, message ID) pairs of messages created
// within the last Window, so that each is accepted at most once. Messages
// created before the window are refused outright (ErrTooOld): the window
// could not have remembered them.
//
// Memory is bounded by the maximum number of entries. When it is full, the
// entry created earliest is forgotten and the window's floor is raised to
// its creation time: from then on any message created at or before the floor
// is refused as ErrTooOld. Under load the window thus shrinks rather than
// forgetting a message it would otherwise accept again.
//
// A ReplayWindow is safe for concurrent use.
type ReplayWindow struct {
	window     time.Duration
	maxEntries int

	mu    sync.Mutex
	seen  map[replayKey]struct{}
	order replayHeap // by created time, earliest first
	// floor is the latest creation time of any forgotten entry. A message
	// created after floor and not in seen has never been seen.
	floor time.Time
}

type replayKey struct {
	from AgentID
	id   string
}

type replayEntry struct {
	created time.Time
	key     replayKey
}

// NewReplayWindow returns a ReplayWindow that remembers messages for window
// and at most maxEntries of them. A window <= 0 means DefaultReplayWindow;
// maxEntries <= 0 means DefaultReplayEntries.
func NewReplayWindow(window time.Duration, maxEntries int) *ReplayWindow {
	if window <= 0 {
		window = DefaultReplayWindow
	}
	if maxEntries <= 0 {
		maxEntries = DefaultReplayEntries
	}
	return &ReplayWindow{
		window:     window,
		maxEntries: maxEntries,
		seen:       make(map[replayKey]struct{}),
	}
}

// Window returns how long w remembers a message.
func (w *ReplayWindow) Window() time.Duration { return w.window }

// Check records that the message id from from, created at created, has been
// received at now. It returns an error wrapping ErrTooOld if the message was
// created before now minus the window or at or before the floor (see
// ReplayWindow), and one wrapping ErrReplayed if the pair was seen before. A
// refused message is not recorded.
func (w *ReplayWindow) Check(from AgentID, id string, created, now time.Time) error {
	oldest := now.Add(-w.window)
	if created.Before(oldest) {
		return fmt.Errorf("identity: message %q from %s created %s, before the replay window (%s) began at %s: %w",
			id, from, created.Format(time.RFC3339Nano), w.window, oldest.Format(time.RFC3339Nano), ErrTooOld)
	}
	k := replayKey{from: from, id: id}

	w.mu.Lock()
	defer w.mu.Unlock()
	w.pruneLocked(oldest)
	if _, ok := w.seen[k]; ok {
		return fmt.Errorf("identity: message %q from %s: %w", id, from, ErrReplayed)
	}
	if !created.After(w.floor) {
		return fmt.Errorf("identity: message %q from %s created %s, not after the replay window's floor %s (window full): %w",
			id, from, created.Format(time.RFC3339Nano), w.floor.Format(time.RFC3339Nano), ErrTooOld)
	}
	w.seen[k] = struct{}{}
	heap.Push(&w.order, replayEntry{created: created, key: k})
	for len(w.order) > w.maxEntries {
		w.forgetOldestLocked()
	}
	return nil
}

// pruneLocked forgets entries created before oldest: Check refuses them as
// too old anyway.
func (w *ReplayWindow) pruneLocked(oldest time.Time) {
	for len(w.order) > 0 && w.order[0].created.Before(oldest) {
		w.forgetOldestLocked()
	}
}

// forgetOldestLocked forgets the earliest-created entry and raises the floor
// to its creation time.
func (w *ReplayWindow) forgetOldestLocked() {
	e := heap.Pop(&w.order).(replayEntry)
	delete(w.seen, e.key)
	if e.created.After(w.floor) {
		w.floor = e.created
	}
}

// Len returns the number of messages w remembers.
func (w *ReplayWindow) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen)
}

// replayHeap is a min-heap of entries by creation time.
type replayHeap []replayEntry

func (h replayHeap) Len() int           { return len(h) }
func (h replayHeap) Less(i, j int) bool { return h[i].created.Before(h[j].created) }
func (h replayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *replayHeap) Push(x any)        { *h = append(*h, x.(replayEntry)) }
func (h *replayHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = replayEntry{}
	*h = old[:n-1]
	return e
}
