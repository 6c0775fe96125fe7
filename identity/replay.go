package identity

import (
	"container/heap"
	"container/list"
	"fmt"
	"sync"
	"time"
)

const (
	// DefaultReplayWindow is how long a ReplayWindow remembers a message
	// when ReplayConfig.Window is zero.
	DefaultReplayWindow = 10 * time.Minute
	// DefaultReplayEntries is how many messages a ReplayWindow remembers
	// when ReplayConfig.MaxEntries is zero.
	DefaultReplayEntries = 100_000
)

// ReplayConfig sizes a ReplayWindow. Zero fields take the defaults noted.
type ReplayConfig struct {
	// Window is how long a message is remembered (DefaultReplayWindow).
	Window time.Duration
	// MaxEntries bounds the messages remembered in all
	// (DefaultReplayEntries).
	MaxEntries int
	// MaxPerSender bounds the messages remembered of one sender
	// (MaxEntries/4): a sender past it forgets its own oldest.
	MaxPerSender int
	// MaxSenders bounds the senders the window keeps state for, including
	// those whose messages were all forgotten but whose floor still
	// matters (2×MaxEntries).
	MaxSenders int
	// ClockSkew is how far in the future a message may be created
	// (DefaultClockSkew); entries are kept that much longer so that a
	// message dated ahead cannot be replayed once forgotten.
	ClockSkew time.Duration
}

// ReplayWindow remembers the (sender, message ID) pairs of messages created
// within the last Window, so that each is accepted at most once. Messages
// created before the window are refused outright (ErrTooOld): the window
// could not have remembered them.
//
// Memory is bounded, and no sender can use the bound to make the window
// refuse another sender's messages. When a sender has MaxPerSender entries,
// or the window MaxEntries, the oldest entry (the sender's own, or the
// oldest of all) is forgotten and only its sender's floor rises to its
// creation time: from then on that sender's messages created at or before
// its floor are refused as ErrTooOld. Entries are ordered by their creation
// time clamped to the receiver's clock, so messages dated in the future do
// not outlive honest ones. A sender whose every entry was forgotten keeps
// its floor until the floor leaves the window; only if more than MaxSenders
// such senders pile up is the one idle longest dropped, raising a floor
// shared by all to when that sender's last forgotten message arrived — far
// behind the receiver's clock unless the window is flooded by that many
// fresh senders.
//
// A ReplayWindow is safe for concurrent use.
type ReplayWindow struct {
	cfg ReplayConfig

	mu      sync.Mutex
	seen    map[replayKey]*replayEntry
	order   replayHeap // live entries, by clamped creation time
	senders map[AgentID]*replaySender
	idle    list.List // of *replaySender with no entries but a floor, in the order they went idle
	// floor is raised only when an idle sender is dropped for space: a
	// message created at or before it has been forgotten by someone.
	floor time.Time
}

type replayKey struct {
	from AgentID
	id   string
}

type replayEntry struct {
	key     replayKey
	created time.Time // as the message says
	at      time.Time // created, clamped to the receiver's clock
	index   int       // in order; -1 once forgotten
}

type replaySender struct {
	id    AgentID
	n     int            // live entries
	queue []*replayEntry // its entries in arrival order; forgotten ones are skipped
	floor time.Time      // its messages created at or before are refused
	// floorAt is when the entry that set floor was received, at the
	// latest: what the shared floor may rise to if s is dropped.
	floorAt time.Time
	idle    *list.Element // in ReplayWindow.idle, when n == 0
}

// NewReplayWindow returns a ReplayWindow sized by cfg.
func NewReplayWindow(cfg ReplayConfig) *ReplayWindow {
	if cfg.Window <= 0 {
		cfg.Window = DefaultReplayWindow
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultReplayEntries
	}
	if cfg.MaxPerSender <= 0 {
		cfg.MaxPerSender = max(cfg.MaxEntries/4, 1)
	}
	if cfg.MaxSenders <= 0 {
		cfg.MaxSenders = 2 * cfg.MaxEntries
	}
	if cfg.ClockSkew <= 0 {
		cfg.ClockSkew = DefaultClockSkew
	}
	return &ReplayWindow{
		cfg:     cfg,
		seen:    make(map[replayKey]*replayEntry),
		senders: make(map[AgentID]*replaySender),
	}
}

// Window returns how long w remembers a message.
func (w *ReplayWindow) Window() time.Duration { return w.cfg.Window }

// Check records that the message id from from, created at created, has been
// received at now. It returns an error wrapping ErrTooOld if the message was
// created before now minus the window or at or before a floor (see
// ReplayWindow), and one wrapping ErrReplayed if the pair was seen before. A
// refused message is not recorded.
func (w *ReplayWindow) Check(from AgentID, id string, created, now time.Time) error {
	oldest := now.Add(-w.cfg.Window)
	if created.Before(oldest) {
		return fmt.Errorf("identity: message %q from %s created %s, before the replay window (%s) began at %s: %w",
			id, from, created.Format(time.RFC3339Nano), w.cfg.Window, oldest.Format(time.RFC3339Nano), ErrTooOld)
	}
	k := replayKey{from: from, id: id}

	w.mu.Lock()
	defer w.mu.Unlock()
	w.pruneLocked(now)
	if _, ok := w.seen[k]; ok {
		return fmt.Errorf("identity: message %q from %s: %w", id, from, ErrReplayed)
	}
	s := w.senders[from]
	if s != nil && !created.After(s.floor) {
		return fmt.Errorf("identity: message %q from %s created %s, not after the sender's floor %s (it sent more than %d messages in the window): %w",
			id, from, created.Format(time.RFC3339Nano), s.floor.Format(time.RFC3339Nano), w.cfg.MaxPerSender, ErrTooOld)
	}
	if !created.After(w.floor) {
		return fmt.Errorf("identity: message %q from %s created %s, not after the replay window's floor %s (window full): %w",
			id, from, created.Format(time.RFC3339Nano), w.floor.Format(time.RFC3339Nano), ErrTooOld)
	}
	if s == nil {
		s = &replaySender{id: from}
		w.senders[from] = s
	}
	if s.idle != nil {
		w.idle.Remove(s.idle)
		s.idle = nil
	}
	e := &replayEntry{key: k, created: created, at: created}
	if now.Before(e.at) {
		e.at = now
	}
	w.seen[k] = e
	heap.Push(&w.order, e)
	s.n++
	s.queue = append(s.queue, e)
	if s.n > w.cfg.MaxPerSender {
		w.forgetLocked(w.oldestOf(s), now, true)
	}
	for len(w.seen) > w.cfg.MaxEntries {
		w.forgetLocked(w.order[0], now, true)
	}
	for len(w.senders) > w.cfg.MaxSenders && w.idle.Len() > 0 {
		w.dropIdleLocked()
	}
	return nil
}

// pruneLocked forgets entries that left the window (Check refuses them as
// too old anyway) and idle senders whose floor left it too.
func (w *ReplayWindow) pruneLocked(now time.Time) {
	oldest := now.Add(-w.cfg.Window)
	keep := oldest.Add(-w.cfg.ClockSkew)
	for len(w.order) > 0 && w.order[0].at.Before(keep) {
		w.forgetLocked(w.order[0], now, false)
	}
	for el := w.idle.Front(); el != nil && el.Value.(*replaySender).floor.Before(oldest); el = w.idle.Front() {
		s := el.Value.(*replaySender)
		w.idle.Remove(el)
		delete(w.senders, s.id)
	}
}

// oldestOf returns s's earliest live entry.
func (w *ReplayWindow) oldestOf(s *replaySender) *replayEntry {
	for len(s.queue) > 0 && s.queue[0].index < 0 {
		s.queue[0] = nil
		s.queue = s.queue[1:]
	}
	return s.queue[0]
}

// forgetLocked removes e; evicted (for space, not age) raises its sender's
// floor to e's creation time.
func (w *ReplayWindow) forgetLocked(e *replayEntry, now time.Time, evicted bool) {
	heap.Remove(&w.order, e.index)
	delete(w.seen, e.key)
	s := w.senders[e.key.from]
	s.n--
	if evicted && e.created.After(s.floor) {
		s.floor, s.floorAt = e.created, e.at
	}
	// Forgotten entries are skipped lazily; compact a queue that is mostly
	// forgotten so a sender's memory follows its live entries.
	if len(s.queue) > 2*s.n+16 {
		live := s.queue[:0]
		for _, q := range s.queue {
			if q.index >= 0 {
				live = append(live, q)
			}
		}
		clear(s.queue[len(live):])
		s.queue = live
	}
	if s.n > 0 {
		return
	}
	s.queue = nil
	if s.floor.IsZero() || s.floor.Before(now.Add(-w.cfg.Window)) {
		delete(w.senders, s.id)
		return
	}
	s.idle = w.idle.PushBack(s)
}

// dropIdleLocked drops the sender idle longest and raises the shared floor
// to when its floor's message was received: a dated-ahead message cannot
// lift the shared floor past the receiver's clock.
func (w *ReplayWindow) dropIdleLocked() {
	el := w.idle.Front()
	s := el.Value.(*replaySender)
	w.idle.Remove(el)
	delete(w.senders, s.id)
	if s.floorAt.After(w.floor) {
		w.floor = s.floorAt
	}
}

// Len returns the number of messages w remembers.
func (w *ReplayWindow) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen)
}

// Senders returns the number of senders w keeps state for.
func (w *ReplayWindow) Senders() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.senders)
}

// replayHeap is a min-heap of entries by clamped creation time; each entry
// knows its index so it can be removed from the middle.
type replayHeap []*replayEntry

func (h replayHeap) Len() int           { return len(h) }
func (h replayHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h replayHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *replayHeap) Push(x any) {
	e := x.(*replayEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *replayHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = nil
	e.index = -1
	*h = old[:n-1]
	return e
}
