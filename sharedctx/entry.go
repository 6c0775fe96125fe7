package sharedctx

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/record"

	"github.com/parleynet/parley/identity"
)

// Entry message type and version: an identity Message whose body is
// entryBody, signed by the writer.
const (
	msgEntry     = "context.entry"
	entryVersion = 1
	// entryTTL is how long a freshly signed entry may take to reach the
	// home replica. Once applied, an entry stays valid proof of its writer
	// for as long as the context is kept (see openStored).
	entryTTL = 2 * time.Minute
	// maxKeyLen is the longest key, in bytes.
	maxKeyLen = 128
	// maxWorkflowLen is the longest workflow ID, in bytes.
	maxWorkflowLen = 128
)

// Sentinel errors callers branch on.
var (
	// ErrBadKey: a key is empty, too long or has characters outside
	// [A-Za-z0-9._-].
	ErrBadKey = errors.New("invalid context key")
	// ErrBadEntry: an entry does not verify (signature, signer, body,
	// times) or is not for this context.
	ErrBadEntry = errors.New("invalid context entry")
	// ErrTooLarge: an entry would put a value, a context's key count or
	// its bytes over the node's limits.
	ErrTooLarge = errors.New("over the context limits")
)

// entryBody is the signed content of an entry.
type entryBody struct {
	Workflow string          `json:"workflow"`
	Key      string          `json:"key"`
	Value    json.RawMessage `json:"value"`
	HLC      Timestamp       `json:"hlc"`
	// Task is the task the writer wrote under; "" for the requester.
	Task string `json:"task,omitempty"`
}

// Entry is one verified write to a context. Build one with Sign; Open
// and the replicas give only entries whose signature verified.
type Entry struct {
	Workflow string          `json:"workflow"`
	Key      string          `json:"key"`
	Value    json.RawMessage `json:"value"`
	// HLC orders writes to one key; ties go to the greater Writer.
	HLC    Timestamp        `json:"hlc"`
	Writer identity.AgentID `json:"writer"`
	// Task is the task the writer wrote under; "" for the requester.
	Task string `json:"task,omitempty"`
	// Written is the writer's wall clock when it signed.
	Written time.Time `json:"written"`
	// Signed is the entry's envelope, as the writer signed it: anyone can
	// verify it with identity.Open.
	Signed []byte `json:"signed"`

	sum [sha256.Size]byte
}

// After reports whether e wins over o in last-writer-wins order: the later
// HLC, then the greater writer, then the greater digest, so that any two
// distinct entries are ordered the same way on every replica.
func (e *Entry) After(o *Entry) bool {
	if c := e.HLC.Compare(o.HLC); c != 0 {
		return c > 0
	}
	if e.Writer != o.Writer {
		return e.Writer > o.Writer
	}
	return bytes.Compare(e.sum[:], o.sum[:]) > 0
}

// ValidKey reports whether key is 1 to 128 bytes of [A-Za-z0-9._-];
// errors wrap ErrBadKey.
func ValidKey(key string) error {
	if key == "" || len(key) > maxKeyLen {
		return fmt.Errorf("%w %.40q: want 1 to %d bytes", ErrBadKey, key, maxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("%w %.40q: byte %d is %q; want [A-Za-z0-9._-]", ErrBadKey, key, i, c)
		}
	}
	return nil
}

func validWorkflow(id string) error {
	if id == "" || len(id) > maxWorkflowLen {
		return fmt.Errorf("%w: workflow ID %.40q: want 1 to %d bytes", ErrBadEntry, id, maxWorkflowLen)
	}
	return nil
}

// Sign makes the entry that sets key to value in workflow's context,
// signed by writer at HLC time ts, written under task ("" for the
// requester). value must be one JSON value.
func Sign(writer *identity.Agent, workflow, task, key string, value json.RawMessage, ts Timestamp) (Entry, error) {
	if err := validWorkflow(workflow); err != nil {
		return Entry{}, err
	}
	if err := ValidKey(key); err != nil {
		return Entry{}, err
	}
	// Compact, as the envelope will hold it: the entry held here is the
	// one every replica decodes.
	var compact bytes.Buffer
	if err := json.Compact(&compact, value); err != nil || len(value) == 0 {
		return Entry{}, fmt.Errorf("%w: value of %q is not one JSON value", ErrBadEntry, key)
	}
	value = compact.Bytes()
	body, err := json.Marshal(entryBody{Workflow: workflow, Key: key, Value: value, HLC: ts, Task: task})
	if err != nil {
		return Entry{}, fmt.Errorf("context entry %q: %w", key, err)
	}
	now := time.Now().UTC()
	data, err := identity.Seal(writer, identity.Message{Type: msgEntry, V: entryVersion, Created: now, Expires: now.Add(entryTTL), Body: body})
	if err != nil {
		return Entry{}, fmt.Errorf("context entry %q: %w", key, err)
	}
	// Seal checked the writer's key; what it signed is what we hold.
	return Entry{Workflow: workflow, Key: key, Value: value, HLC: ts, Task: task,
		Writer: writer.ID, Written: now, Signed: data, sum: sha256.Sum256(data)}, nil
}

// OpenFresh verifies a newly written entry, as the home replica does
// before applying a write: signature, signer, body, and that it was
// signed within the last few minutes (not replayed from long ago).
func OpenFresh(data []byte, maxSize int) (Entry, error) {
	return open(data, identity.OpenOptions{MaxSize: maxSize})
}

// OpenStored verifies an entry kept since it was written (a snapshot, a
// replica's pull): signature, signer and body, at the time it was signed,
// for an entry stays its writer's word after its envelope's short life.
func OpenStored(data []byte, maxSize int) (Entry, error) {
	if maxSize > 0 && len(data) > maxSize {
		return Entry{}, fmt.Errorf("%w: entry is %d bytes, limit %d: %w", ErrBadEntry, len(data), maxSize, ErrTooLarge)
	}
	// Read the signing time from the unverified payload; Open below then
	// verifies the signature over it, so a forged time fails there.
	env, err := record.UnmarshalEnvelope(data)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrBadEntry, err)
	}
	var m struct {
		Created time.Time `json:"created"`
	}
	if err := json.Unmarshal(env.RawPayload, &m); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrBadEntry, err)
	}
	return open(data, identity.OpenOptions{MaxSize: maxSize, Now: func() time.Time { return m.Created }})
}

func open(data []byte, opts identity.OpenOptions) (Entry, error) {
	m, err := identity.Open(data, opts)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: %w", ErrBadEntry, err)
	}
	if m.Type != msgEntry {
		return Entry{}, fmt.Errorf("%w: a %q message, want %q", ErrBadEntry, m.Type, msgEntry)
	}
	if m.V != entryVersion {
		return Entry{}, fmt.Errorf("%w: %s version %d, this node speaks %d: %w", ErrBadEntry, m.Type, m.V, entryVersion, identity.ErrUnsupportedVersion)
	}
	var b entryBody
	if err := json.Unmarshal(m.Body, &b); err != nil {
		return Entry{}, fmt.Errorf("%w: body: %v", ErrBadEntry, err)
	}
	if err := validWorkflow(b.Workflow); err != nil {
		return Entry{}, err
	}
	if err := ValidKey(b.Key); err != nil {
		return Entry{}, fmt.Errorf("%w: %w", ErrBadEntry, err)
	}
	if len(b.Value) == 0 || !json.Valid(b.Value) {
		return Entry{}, fmt.Errorf("%w: value of %q is not one JSON value", ErrBadEntry, b.Key)
	}
	return Entry{
		Workflow: b.Workflow, Key: b.Key, Value: b.Value, HLC: b.HLC, Task: b.Task,
		Writer: m.From, Written: m.Created, Signed: bytes.Clone(data), sum: sha256.Sum256(data),
	}, nil
}
