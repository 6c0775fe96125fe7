package sharedctx_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/sharedctx"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func agent(t testing.TB, name string) *identity.Agent {
	t.Helper()
	k, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := identity.NewAgent(name, k)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func service(t testing.TB, lim sharedctx.Limits, now func() time.Time) *sharedctx.Service {
	t.Helper()
	s := sharedctx.New(sharedctx.Config{Limits: lim, Now: now})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// state is a replica's keys → (value, writer, HLC), for comparing replicas.
func state(r *sharedctx.Replica) string {
	var b strings.Builder
	for _, e := range r.All() {
		fmt.Fprintf(&b, "%s=%s by %s at %s\n", e.Key, e.Value, e.Writer, e.HLC)
	}
	return b.String()
}

// TestConvergence is the CRDT's property: three replicas, each with its
// own skewed clock and writer, take random concurrent writes and exchange
// random subsets of what they hold in random orders (again and again,
// duplicates included); once each has seen every entry they all hold the
// same state, and it is each key's greatest entry in LWW order.
func TestConvergence(t *testing.T) {
	const cases = 100
	for c := range cases {
		rng := rand.New(rand.NewPCG(uint64(c), 14))
		base := time.Now()
		var reps [3]*sharedctx.Replica
		for i := range reps {
			skew := time.Duration(rng.IntN(2000)-1000) * time.Millisecond
			// Coarse clocks make HLC ties and logical counters common.
			now := func() time.Time { return base.Add(skew).Truncate(time.Second) }
			r, err := service(t, sharedctx.Limits{}, now).Open("wf-1", agent(t, fmt.Sprintf("writer%d", i)))
			if err != nil {
				t.Fatal(err)
			}
			reps[i] = r
		}
		var all []sharedctx.Entry
		for range 10 + rng.IntN(30) {
			r := reps[rng.IntN(3)]
			if rng.IntN(3) > 0 {
				key := fmt.Sprintf("k%d", rng.IntN(4))
				e, err := r.Put(key, json.RawMessage(fmt.Sprintf("%d", rng.IntN(1000))))
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, e)
				continue
			}
			exchange(t, rng, reps[rng.IntN(3)], r, rng.IntN(4))
		}
		// Everyone gets everything, in a random order, from a random peer.
		for _, dst := range rng.Perm(3) {
			for _, src := range rng.Perm(3) {
				exchange(t, rng, reps[src], reps[dst], -1)
			}
		}
		want := map[string]sharedctx.Entry{}
		for _, e := range all {
			if cur, ok := want[e.Key]; !ok || e.After(&cur) {
				want[e.Key] = e
			}
		}
		for i, r := range reps {
			if got := state(r); got != state(reps[0]) {
				t.Fatalf("case %d: replica %d diverged:\n%s\nreplica 0:\n%s", c, i, got, state(reps[0]))
			}
			for k, w := range want {
				got, ok := r.Get(k)
				if !ok || !bytes.Equal(got.Signed, w.Signed) {
					t.Fatalf("case %d: replica %d holds %s=%s by %s, want %s by %s", c, i, k, got.Value, got.Writer, w.Value, w.Writer)
				}
			}
			if len(r.All()) != len(want) {
				t.Fatalf("case %d: replica %d has %d keys, want %d", c, i, len(r.All()), len(want))
			}
		}
	}
}

// exchange applies n of src's entries (-1: all) to dst, shuffled, one at
// a time or in one batch.
func exchange(t *testing.T, rng *rand.Rand, src, dst *sharedctx.Replica, n int) {
	t.Helper()
	es, _ := src.Since(0, nil)
	rng.Shuffle(len(es), func(i, j int) { es[i], es[j] = es[j], es[i] })
	if n >= 0 && n < len(es) {
		es = es[:n]
	}
	if rng.IntN(2) == 0 {
		if _, err := dst.Apply(es...); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, e := range es {
		if _, err := dst.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEntrySignature: an entry verifies with identity's envelope rules
// and names its writer; any tampering makes it fail verification, and so
// a replica is never handed it.
func TestEntrySignature(t *testing.T) {
	w := agent(t, "writer")
	e, err := sharedctx.Sign(w, "wf-1", "task-1", "stock.sku42", json.RawMessage(`{"on_hand":7}`), sharedctx.Timestamp{Wall: 1, Logical: 2})
	if err != nil {
		t.Fatal(err)
	}
	m, err := identity.Open(e.Signed, identity.OpenOptions{})
	if err != nil || m.From != w.ID {
		t.Fatalf("identity.Open = %v, %v; want signed by %s", m, err, w.ID)
	}
	for _, open := range []func([]byte, int) (sharedctx.Entry, error){sharedctx.OpenFresh, sharedctx.OpenStored} {
		got, err := open(e.Signed, 0)
		if err != nil || got.Writer != w.ID || got.Key != "stock.sku42" || string(got.Value) != `{"on_hand":7}` || got.Task != "task-1" || got.HLC != e.HLC {
			t.Fatalf("open = %+v, %v", got, err)
		}
		// Flip each byte of the value's region in turn: never accepted.
		at := bytes.Index(e.Signed, []byte(`on_hand`))
		for i := at; i < at+12; i++ {
			bad := bytes.Clone(e.Signed)
			bad[i] ^= 0x01
			if _, err := open(bad, 0); !errors.Is(err, sharedctx.ErrBadEntry) {
				t.Fatalf("tampered byte %d: err = %v, want ErrBadEntry", i, err)
			}
		}
	}
	// An entry re-signed by another key under the writer's name fails.
	other := agent(t, "other")
	forged, _ := sharedctx.Sign(other, "wf-1", "task-1", "stock.sku42", json.RawMessage(`1`), sharedctx.Timestamp{Wall: 9})
	if got, err := sharedctx.OpenStored(forged.Signed, 0); err != nil || got.Writer != other.ID {
		t.Fatalf("a writer's own entry: %+v, %v", got, err)
	}
}

// TestStoredEntryOutlivesEnvelope: a kept entry is its writer's word
// after its envelope's short life (a snapshot restored a day later), but
// a write must be fresh.
func TestStoredEntryOutlivesEnvelope(t *testing.T) {
	w := agent(t, "writer")
	e, err := sharedctx.Sign(w, "wf-1", "", "k", json.RawMessage(`1`), sharedctx.Timestamp{Wall: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Re-seal the same body with an old time, as if written long ago.
	m, _ := identity.Open(e.Signed, identity.OpenOptions{})
	old := time.Now().Add(-24 * time.Hour)
	data, err := identity.Seal(w, identity.Message{Type: m.Type, V: m.V, Created: old, Expires: old.Add(time.Minute), Body: m.Body})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sharedctx.OpenStored(data, 0); err != nil {
		t.Fatalf("stored entry of yesterday: %v", err)
	}
	if _, err := sharedctx.OpenFresh(data, 0); !errors.Is(err, identity.ErrExpired) {
		t.Fatalf("fresh write of yesterday: %v, want ErrExpired", err)
	}
}

// TestLimits: values, keys and bytes over the limits are refused and
// leave the context as it was.
func TestLimits(t *testing.T) {
	s := service(t, sharedctx.Limits{MaxValueSize: 64, MaxKeys: 3, MaxBytes: 2000, MaxContexts: 2}, nil)
	owner := agent(t, "owner")
	r, err := s.Open("wf-1", owner)
	if err != nil {
		t.Fatal(err)
	}
	big := json.RawMessage(`"` + strings.Repeat("x", 70) + `"`)
	for _, tc := range []struct {
		name string
		put  func() error
	}{
		{"value over max_value_size", func() error { _, err := r.Put("a", big); return err }},
		{"keys over max_keys", func() error {
			for _, k := range []string{"a", "b", "c"} {
				if _, err := r.Put(k, json.RawMessage(`1`)); err != nil {
					return fmt.Errorf("under the limit: %w", err)
				}
			}
			_, err := r.Put("d", json.RawMessage(`1`))
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := state(r)
			if err := tc.put(); !errors.Is(err, sharedctx.ErrTooLarge) {
				t.Fatalf("err = %v, want ErrTooLarge", err)
			}
			if after := state(r); !strings.HasPrefix(after, before) || strings.Contains(after, "xxx") || strings.Contains(after, "d=") {
				t.Fatalf("state changed by a refused write:\n%s", after)
			}
		})
	}
	// Overwrites count bytes as replaced, not added: a few hundred
	// rewrites of one key fit in 2000 bytes.
	for i := range 300 {
		if _, err := r.Put("a", json.RawMessage(fmt.Sprint(i))); err != nil {
			t.Fatalf("rewrite %d: %v", i, err)
		}
	}
	// Bytes: a fourth key is refused anyway; shrink MaxBytes by a new context.
	if _, err := s.Open("wf-2", owner); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open("wf-3", owner); !errors.Is(err, sharedctx.ErrTooManyContexts) {
		t.Fatalf("third context: %v, want ErrTooManyContexts", err)
	}
	small := service(t, sharedctx.Limits{MaxBytes: 1000}, nil)
	r2, _ := small.Open("wf-1", owner)
	var err2 error
	for i := 0; i < 10 && err2 == nil; i++ {
		_, err2 = r2.Put(fmt.Sprintf("k%d", i), json.RawMessage(`"`+strings.Repeat("y", 100)+`"`))
	}
	if !errors.Is(err2, sharedctx.ErrTooLarge) || !strings.Contains(err2.Error(), "bytes, limit 1000") {
		t.Fatalf("bytes over max_bytes: %v", err2)
	}
	if _, err := r.Put("bad key!", json.RawMessage(`1`)); !errors.Is(err, sharedctx.ErrBadKey) {
		t.Fatalf("bad key: %v", err)
	}
	if _, err := r.Put("k", json.RawMessage(`{`)); !errors.Is(err, sharedctx.ErrBadEntry) {
		t.Fatalf("bad JSON: %v", err)
	}
}

// TestSnapshotRestore: a context survives Snapshot and Restore entry for
// entry; a snapshot with a tampered entry restores nothing.
func TestSnapshotRestore(t *testing.T) {
	owner := agent(t, "owner")
	r, _ := service(t, sharedctx.Limits{}, nil).Open("wf-1", owner)
	for i, k := range []string{"price", "stock", "eta"} {
		if _, err := r.Put(k, json.RawMessage(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	snap := r.Snapshot()
	r2, _ := service(t, sharedctx.Limits{}, nil).Open("wf-1", owner)
	if err := r2.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if state(r2) != state(r) {
		t.Fatalf("restored:\n%s\nwant:\n%s", state(r2), state(r))
	}
	// Writes after a restore order after the restored ones.
	e, err := r2.Put("price", json.RawMessage(`99`))
	if got, _ := r2.Get("price"); err != nil || string(got.Value) != "99" || !e.HLC.Time().After(time.Time{}) {
		t.Fatalf("write after restore: %v, %s", err, got.Value)
	}
	var s struct {
		V        int      `json:"v"`
		Workflow string   `json:"workflow"`
		Entries  [][]byte `json:"entries"`
	}
	_ = json.Unmarshal(snap, &s)
	s.Entries[1][len(s.Entries[1])-5] ^= 1 // in the signature
	bad, _ := json.Marshal(s)
	r3, _ := service(t, sharedctx.Limits{}, nil).Open("wf-1", owner)
	if err := r3.Restore(bad); !errors.Is(err, sharedctx.ErrBadEntry) || len(r3.All()) != 0 {
		t.Fatalf("tampered snapshot: %v, %d keys restored", err, len(r3.All()))
	}
	r4, _ := service(t, sharedctx.Limits{}, nil).Open("wf-other", owner)
	if err := r4.Restore(snap); err == nil {
		t.Fatal("snapshot of another workflow restored")
	}

	// ReadSnapshot shows a snapshot no replica holds: every entry, each
	// checked again; the tampered one shown with its error, not dropped.
	for _, tc := range []struct {
		name string
		snap []byte
		bad  int // index of the entry that must not verify, or -1
	}{{"kept", snap, -1}, {"tampered", bad, 1}} {
		wf, es, err := sharedctx.ReadSnapshot(tc.snap)
		if err != nil || wf != "wf-1" || len(es) != 3 {
			t.Fatalf("%s: ReadSnapshot: %q, %d entries, %v", tc.name, wf, len(es), err)
		}
		for i, e := range es {
			if wantBad := i == tc.bad; (e.Err != nil) != wantBad || wantBad && !errors.Is(e.Err, sharedctx.ErrBadEntry) ||
				e.Key != []string{"eta", "price", "stock"}[i] || e.Writer != owner.ID {
				t.Errorf("%s: entry %d: %s by %s, err %v; want verified %v", tc.name, i, e.Key, e.Writer, e.Err, !wantBad)
			}
		}
	}
	if _, _, err := sharedctx.ReadSnapshot([]byte(`{"v":2}`)); err == nil {
		t.Error("ReadSnapshot took a snapshot of version 2")
	}
}

// TestClock: readings only grow, follow observed timestamps, and a
// timestamp past the skew is refused without moving the clock.
func TestClock(t *testing.T) {
	now := time.Unix(1000, 0)
	c := sharedctx.NewClock(func() time.Time { return now }, time.Second)
	a, b := c.Now(), c.Now()
	if b.Compare(a) <= 0 || a.Wall != now.UnixNano() || b.Logical != 1 {
		t.Fatalf("two readings at one wall time: %s then %s", a, b)
	}
	ahead := sharedctx.Timestamp{Wall: now.Add(500 * time.Millisecond).UnixNano(), Logical: 7}
	if err := c.Observe(ahead); err != nil {
		t.Fatal(err)
	}
	if n := c.Now(); n.Compare(ahead) <= 0 {
		t.Fatalf("reading %s after observing %s", n, ahead)
	}
	far := sharedctx.Timestamp{Wall: now.Add(time.Hour).UnixNano()}
	if err := c.Observe(far); !errors.Is(err, sharedctx.ErrClockSkew) {
		t.Fatalf("observe an hour ahead: %v", err)
	}
	if n := c.Now(); n.Compare(far) >= 0 {
		t.Fatalf("clock moved to a refused timestamp: %s", n)
	}
	now = now.Add(time.Minute)
	if n := c.Now(); n.Wall != now.UnixNano() || n.Logical != 0 {
		t.Fatalf("reading after the wall clock passed: %s", n)
	}
}

// TestApplyTakesOnlyVerifiedEntries: an entry made up in code, or one
// whose signed bytes were changed after verification, is refused.
func TestApplyTakesOnlyVerifiedEntries(t *testing.T) {
	owner := agent(t, "owner")
	r, _ := service(t, sharedctx.Limits{}, nil).Open("wf-1", owner)
	good, err := sharedctx.Sign(owner, "wf-1", "", "k", json.RawMessage(`1`), sharedctx.Timestamp{Wall: 1})
	if err != nil {
		t.Fatal(err)
	}
	forged := sharedctx.Entry{Workflow: "wf-1", Key: "k", Value: json.RawMessage(`2`), HLC: sharedctx.Timestamp{Wall: 9}, Writer: owner.ID, Signed: good.Signed}
	tampered := good
	tampered.Signed = bytes.Clone(good.Signed)
	tampered.Signed[len(tampered.Signed)-1] ^= 1
	for name, e := range map[string]sharedctx.Entry{"made up": forged, "tampered": tampered} {
		if _, err := r.Apply(e); !errors.Is(err, sharedctx.ErrBadEntry) {
			t.Fatalf("%s entry: %v, want ErrBadEntry", name, err)
		}
	}
	if len(r.All()) != 0 {
		t.Fatalf("refused entries applied: %s", state(r))
	}
	if won, err := r.Apply(good, good); err != nil || !won[0] || won[1] {
		t.Fatalf("a verified entry twice: %v, %v", won, err)
	}
}

// TestGrantsStayBounded: past MaxGrants, a new grant replaces the oldest
// whose task no longer runs; grants name only open contexts and valid keys.
func TestGrantsStayBounded(t *testing.T) {
	s := service(t, sharedctx.Limits{MaxGrants: 2}, nil)
	if _, err := s.Open("wf-1", agent(t, "owner")); err != nil {
		t.Fatal(err)
	}
	for _, task := range []string{"t1", "t2", "t3"} {
		if err := s.Grant("wf-1", task, []string{"order"}, []string{"stock.*"}); err != nil {
			t.Fatal(err)
		}
	}
	var tasks []string
	for _, g := range s.Grants("wf-1") {
		tasks = append(tasks, g.Task)
	}
	if strings.Join(tasks, ",") != "t2,t3" {
		t.Fatalf("grants %v, want the two newest", tasks)
	}
	if err := s.Grant("wf-nope", "t4", nil, nil); !errors.Is(err, sharedctx.ErrUnknownContext) {
		t.Fatalf("grant on no context: %v", err)
	}
	if err := s.Grant("wf-1", "t5", []string{"bad key"}, nil); !errors.Is(err, sharedctx.ErrBadKey) {
		t.Fatalf("grant of a bad key: %v", err)
	}
	s.Revoke("t2")
	if g := s.Grants("wf-1"); len(g) != 1 || g[0].Task != "t3" {
		t.Fatalf("after revoking t2: %+v", g)
	}
}

// TestSignedEntryIsWhatOthersDecode: the entry a writer holds after
// Sign is field for field the one any replica decodes from its bytes.
func TestSignedEntryIsWhatOthersDecode(t *testing.T) {
	w := agent(t, "writer")
	e, err := sharedctx.Sign(w, "wf-1", "t", "k", json.RawMessage("{ \"a\" : [1, 2] }"), sharedctx.Timestamp{Wall: 5, Logical: 1})
	if err != nil {
		t.Fatal(err)
	}
	d, err := sharedctx.OpenStored(e.Signed, 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Value) != `{"a":[1,2]}` || string(d.Value) != string(e.Value) || d.HLC != e.HLC || d.Writer != e.Writer ||
		d.Task != e.Task || !d.Written.Equal(e.Written) || d.After(&e) || e.After(&d) {
		t.Fatalf("signed %+v\ndecoded %+v", e, d)
	}
}

// TestDropForgetsGrants: a dropped context's grants go with it, and
// granting and dropping again and again holds no more than the bound.
func TestDropForgetsGrants(t *testing.T) {
	s := service(t, sharedctx.Limits{MaxGrants: 4, MaxContexts: 1}, nil)
	owner := agent(t, "owner")
	for i := range 50 {
		wf := fmt.Sprintf("wf-%d", i)
		if _, err := s.Open(wf, owner); err != nil {
			t.Fatalf("context %d: %v", i, err)
		}
		for j := range 3 {
			if err := s.Grant(wf, fmt.Sprintf("t%d-%d", i, j), []string{"k"}, nil); err != nil {
				t.Fatal(err)
			}
		}
		s.Drop(wf)
		if g := s.Grants(wf); len(g) != 0 {
			t.Fatalf("grants of a dropped context: %+v", g)
		}
		if _, ok := s.Context(wf); ok {
			t.Fatal("dropped context still open")
		}
	}
}
