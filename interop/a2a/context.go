package a2a

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/sharedctx"
)

// The metadata keys that carry a workflow's shared context to and from a
// remote A2A agent working a task for the mesh (Agent): the same shape
// exec agents get in their execute request and reply.
const (
	// MetaContext, on the message sent to the remote agent, is an object
	// of the context keys its step may read (key → JSON value); on the
	// remote's answer (its message, task or an artifact) it is an object
	// of keys to write (key → JSON value), written, signed as the hosted
	// agent, before the result goes to the requester.
	MetaContext = "parley.context"
	// MetaContextWrites, on the message sent, lists the keys the step may
	// write (a trailing * is a prefix).
	MetaContextWrites = "parley.context_writes"
)

// maxContextWrites bounds the keys one remote agent's answer may write,
// whatever the node's context limits (which the home checks again): the
// writes are held here until the task ends.
const maxContextWrites = 256

// taskContext puts the keys the task's step may read and write into the
// outgoing message's metadata; it returns the client, or nil when the
// task has no shared context (or the agent was given no way to it).
func (a *Agent) taskContext(ctx context.Context, t negotiation.Task, meta map[string]any) (*sharedctx.Client, error) {
	if a.cfg.Context == nil {
		return nil, nil
	}
	cl, err := a.cfg.Context(t)
	if err != nil {
		return nil, fmt.Errorf("a2a agent %s: shared context: %w", a.cfg.Name, err)
	}
	es, err := cl.Get(ctx)
	switch {
	case errors.Is(err, sharedctx.ErrNoContext):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("a2a agent %s: read its context: %w", a.cfg.Name, err)
	}
	// Plain JSON values (any, []any), not RawMessage or []string: a
	// transport may convert the metadata (gRPC's Struct) rather than
	// marshal it.
	reads := make(map[string]any, len(es))
	for k, e := range es {
		var v any
		if err := json.Unmarshal(e.Value, &v); err != nil {
			return nil, fmt.Errorf("a2a agent %s: context key %q: %w", a.cfg.Name, k, err)
		}
		reads[k] = v
	}
	_, granted := cl.Granted()
	writes := make([]any, 0, len(granted))
	for _, k := range granted {
		writes = append(writes, k)
	}
	meta[MetaContext] = reads
	meta[MetaContextWrites] = writes
	return cl, nil
}

// contextWrites gathers the writes a remote agent's answer asks for, from
// each piece's metadata (later pieces win a key), until the task ends.
type contextWrites struct {
	values map[string]json.RawMessage
	err    error // the first malformed piece
}

// take adds the writes in one piece's metadata.
func (w *contextWrites) take(meta map[string]any) {
	raw := meta[MetaContext]
	if raw == nil || w.err != nil { // absent or null: nothing to write
		return
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		w.err = fmt.Errorf("the A2A agent's metadata %q is a %T, want an object of key → JSON value", MetaContext, raw)
		return
	}
	if w.values == nil {
		w.values = make(map[string]json.RawMessage, len(obj))
	}
	for k, v := range obj {
		b, err := json.Marshal(v)
		if err != nil {
			w.err = fmt.Errorf("the A2A agent's metadata %q key %q: %w", MetaContext, k, err)
			return
		}
		w.values[k] = b
	}
	if len(w.values) > maxContextWrites {
		w.err = fmt.Errorf("the A2A agent's metadata %q writes %d keys, over %d", MetaContext, len(w.values), maxContextWrites)
	}
}

// put writes what was gathered through cl, all or nothing; a write the
// home refuses (a key not granted, over its limits) is the task's error.
func (w *contextWrites) put(ctx context.Context, cl *sharedctx.Client, task string) error {
	switch {
	case w.err != nil:
		return w.err
	case len(w.values) == 0:
		return nil
	case cl == nil:
		return fmt.Errorf("the A2A agent wrote to a shared context (%s), but task %s has none", strings.Join(slices.Sorted(maps.Keys(w.values)), ", "), task)
	}
	if _, _, err := cl.PutAll(ctx, w.values); err != nil {
		return fmt.Errorf("write its context: %w", err)
	}
	return nil
}
