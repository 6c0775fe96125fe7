package sharedctx

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/libp2p/go-libp2p/core/record"

	"github.com/parleynet/parley/identity"
)

// Checked is one entry of a snapshot as ReadSnapshot found it: Err is nil
// when its signature and body verify; otherwise Entry holds what its
// unverified payload says, for showing, never for applying.
type Checked struct {
	Entry
	Err error
}

// ReadSnapshot checks every entry of a Snapshot again and returns the
// snapshot's workflow and its entries in the snapshot's (key) order, for
// showing a context that no replica holds any more (an ended workflow's).
// An entry that does not verify is returned with its error; only a
// snapshot that cannot be read at all is an error.
func ReadSnapshot(data []byte) (workflow string, entries []Checked, err error) {
	var s snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return "", nil, fmt.Errorf("context snapshot: %w", err)
	}
	if s.V != 1 {
		return "", nil, fmt.Errorf("context snapshot version %d, want 1", s.V)
	}
	entries = make([]Checked, 0, len(s.Entries))
	for i, raw := range s.Entries {
		e, err := OpenStored(raw, 0)
		if err == nil && e.Workflow != s.Workflow {
			err = fmt.Errorf("%w: for workflow %q in the snapshot of %q", ErrBadEntry, e.Workflow, s.Workflow)
		}
		if err != nil {
			e = peek(raw)
			err = fmt.Errorf("entry %d: %w", i, err)
		}
		entries = append(entries, Checked{Entry: e, Err: err})
	}
	return s.Workflow, entries, nil
}

// peek reads an entry's payload without verifying it: whatever parses.
func peek(data []byte) Entry {
	e := Entry{Signed: bytes.Clone(data)}
	env, err := record.UnmarshalEnvelope(data)
	if err != nil {
		return e
	}
	var m identity.Message
	if json.Unmarshal(env.RawPayload, &m) != nil {
		return e
	}
	e.Writer, e.Written = m.From, m.Created
	var b entryBody
	if json.Unmarshal(m.Body, &b) == nil {
		e.Workflow, e.Key, e.Value, e.HLC, e.Task = b.Workflow, b.Key, b.Value, b.HLC, b.Task
	}
	return e
}
