package sharedctx

import (
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/parleynet/parley/identity"
)

// Replica is one copy of a workflow's context: per-key last-writer-wins
// registers of verified entries. Applying the same entries in any order,
// any number of times, leaves every replica in the same state. Safe for
// concurrent use.
type Replica struct {
	workflow string
	// owner signs Put; nil for a replica that only mirrors another.
	owner *identity.Agent
	clock *Clock
	lim   Limits

	// epoch names this copy's seq numbering: a replica restored after a
	// restart counts again from zero under a new epoch.
	epoch string

	mu      sync.Mutex
	entries map[string]*held
	bytes   int    // sum of the held entries' signed sizes
	seq     uint64 // applied entries so far; each held entry has its seq
}

type held struct {
	Entry
	seq uint64
}

func newReplica(workflow string, owner *identity.Agent, clock *Clock, lim Limits) *Replica {
	return &Replica{workflow: workflow, owner: owner, clock: clock, lim: lim, entries: map[string]*held{}, epoch: identity.NewID()}
}

// Workflow returns the workflow whose context this is.
func (r *Replica) Workflow() string { return r.workflow }

// Get returns the entry that holds key, if any.
func (r *Replica) Get(key string) (Entry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.entries[key]
	if !ok {
		return Entry{}, false
	}
	return h.Entry, true
}

// All returns every key's entry, sorted by key.
func (r *Replica) All() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Entry, 0, len(r.entries))
	for _, h := range r.entries {
		out = append(out, h.Entry)
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Values returns every key's value, for building a step's input.
func (r *Replica) Values() map[string]json.RawMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]json.RawMessage, len(r.entries))
	for k, h := range r.entries {
		out[k] = h.Value
	}
	return out
}

// Seq counts the entries this replica has applied; it grows with every
// change, so a caller that persists the context can tell it changed.
func (r *Replica) Seq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq
}

// Put sets key to value, signed by the replica's owner (the requester).
func (r *Replica) Put(key string, value json.RawMessage) (Entry, error) {
	if r.owner == nil {
		return Entry{}, fmt.Errorf("context %s: this replica has no owner to sign writes", r.workflow)
	}
	e, err := Sign(r.owner, r.workflow, "", key, value, r.clock.Now())
	if err != nil {
		return Entry{}, err
	}
	if _, err := r.Apply(e); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// Apply merges verified entries (from Sign, OpenFresh or OpenStored) and
// reports which of them now hold their key: an entry older than the one
// holding its key is dropped, which is how replicas converge. Entries for
// another workflow, or that would put the context over its limits, are an
// error, and then none of the batch is applied.
func (r *Replica) Apply(entries ...Entry) ([]bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	won := make([]bool, len(entries))
	// Check the whole batch against the limits first, as if applied.
	keys, bytes := len(r.entries), r.bytes
	winner := map[string]*Entry{}
	for i := range entries {
		e := &entries[i]
		if e.sum == ([sha256.Size]byte{}) || e.sum != sha256.Sum256(e.Signed) {
			return nil, fmt.Errorf("%w: entry for %q was not verified (build entries with Sign or Open)", ErrBadEntry, e.Key)
		}
		if e.Workflow != r.workflow {
			return nil, fmt.Errorf("%w: entry for %q is for workflow %q, not %q", ErrBadEntry, e.Key, e.Workflow, r.workflow)
		}
		if len(e.Value) > r.lim.MaxValueSize {
			return nil, fmt.Errorf("%w: value of %q is %d bytes, limit %d", ErrTooLarge, e.Key, len(e.Value), r.lim.MaxValueSize)
		}
		cur := winner[e.Key]
		if cur == nil {
			if h, ok := r.entries[e.Key]; ok {
				cur = &h.Entry
			}
		}
		if cur != nil && !e.After(cur) {
			continue
		}
		if cur == nil {
			keys++
		} else {
			bytes -= len(cur.Signed)
		}
		bytes += len(e.Signed)
		winner[e.Key] = e
	}
	if keys > r.lim.MaxKeys {
		return nil, fmt.Errorf("%w: context %s would hold %d keys, limit %d", ErrTooLarge, r.workflow, keys, r.lim.MaxKeys)
	}
	if bytes > r.lim.MaxBytes {
		return nil, fmt.Errorf("%w: context %s would hold %d bytes, limit %d", ErrTooLarge, r.workflow, bytes, r.lim.MaxBytes)
	}
	for i := range entries {
		e := &entries[i]
		if winner[e.Key] != e {
			continue
		}
		if old, ok := r.entries[e.Key]; ok {
			r.bytes -= len(old.Signed)
		}
		r.seq++
		r.entries[e.Key] = &held{Entry: *e, seq: r.seq}
		r.bytes += len(e.Signed)
		won[i] = true
		if r.clock != nil {
			_ = r.clock.Observe(e.HLC) // refused when skewed: the clock stays
		}
	}
	return won, nil
}

// Since returns the entries applied after seq whose keys allow accepts
// (nil: all), oldest first, and the replica's current seq: a replica that
// pulls with the seq it got last time gets what changed since.
func (r *Replica) Since(seq uint64, allow func(key string) bool) ([]Entry, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var hs []*held
	for k, h := range r.entries {
		if h.seq > seq && (allow == nil || allow(k)) {
			hs = append(hs, h)
		}
	}
	slices.SortFunc(hs, func(a, b *held) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]Entry, len(hs))
	for i, h := range hs {
		out[i] = h.Entry
	}
	return out, r.seq
}

// snapshot is what Snapshot writes: the signed entries, each verified
// again by Restore.
type snapshot struct {
	V        int      `json:"v"`
	Workflow string   `json:"workflow"`
	Entries  [][]byte `json:"entries"`
}

// Snapshot returns the context as bytes for the workflow engine to keep
// with the workflow; Restore reads them back.
func (r *Replica) Snapshot() []byte {
	all := r.All()
	s := snapshot{V: 1, Workflow: r.workflow, Entries: make([][]byte, len(all))}
	for i, e := range all {
		s.Entries[i] = e.Signed
	}
	out, _ := json.Marshal(s) // byte slices and strings always marshal
	return out
}

// Restore merges a Snapshot of this workflow's context into the replica.
// Every entry is verified again; one that does not verify, or a snapshot
// of another workflow, is an error and nothing is applied.
func (r *Replica) Restore(data []byte) error {
	var s snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("context %s snapshot: %w", r.workflow, err)
	}
	if s.V != 1 {
		return fmt.Errorf("context %s snapshot version %d, want 1", r.workflow, s.V)
	}
	if s.Workflow != r.workflow {
		return fmt.Errorf("context %s snapshot is of workflow %q", r.workflow, s.Workflow)
	}
	entries := make([]Entry, 0, len(s.Entries))
	for i, raw := range s.Entries {
		e, err := OpenStored(raw, r.lim.maxEntry())
		if err != nil {
			return fmt.Errorf("context %s snapshot entry %d: %w", r.workflow, i, err)
		}
		entries = append(entries, e)
	}
	if _, err := r.Apply(entries...); err != nil {
		return fmt.Errorf("context %s snapshot: %w", r.workflow, err)
	}
	return nil
}
