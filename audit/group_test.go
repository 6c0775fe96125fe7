package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// appendResult is what an Append in another goroutine returned.
type appendResult struct {
	r   Record
	err error
}

func appendAsync(l *Log, r Record) <-chan appendResult {
	ch := make(chan appendResult, 1)
	go func() {
		rec, err := l.Append(r)
		ch <- appendResult{rec, err}
	}()
	return ch
}

// holdCommitter makes the committer wait inside the write of a group
// holding only r, so that what is queued next forms one group. It
// returns r's pending result and the function that lets the write go on.
func holdCommitter(t *testing.T, l *Log, fl *faults, r Record) (<-chan appendResult, func()) {
	t.Helper()
	held, release := fl.holdNext()
	res := appendAsync(l, r)
	<-held
	return res, release
}

// waitQueued returns once n entries wait in l's queue: with the committer
// held, what the test queued from other goroutines is then in place, in
// order. It yields rather than sleeps; queueing does not block.
func waitQueued(l *Log, n int) {
	for len(l.queue) < n {
		runtime.Gosched()
	}
}

func mustAdd(t *testing.T, l *Log, r Record) {
	t.Helper()
	if err := l.Add(context.Background(), r); err != nil {
		t.Fatalf("Add: %v", err)
	}
}

// sigs returns, for every line of file index, whether it is signed.
func sigs(t *testing.T, dir string, index int) []bool {
	t.Helper()
	var out []bool
	for _, ln := range lines(t, dir, index) {
		r, err := ParseRecord(ln)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r.Sig != nil)
	}
	return out
}

func TestGroupCommitSharesOneSignature(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t, 1)
	fl := newFaults()
	l := openLog(t, dir, key, fl.options(Options{}))
	first, release := holdCommitter(t, l, fl, testRecord(0))
	// While the committer writes record 1, queue 1 Add, 3 Appends, 1 Add,
	// from one goroutine so the order is known.
	mustAdd(t, l, testRecord(1))
	var pending []<-chan appendResult
	for i := 2; i < 5; i++ {
		pending = append(pending, appendAsync(l, testRecord(i)))
		// Each Append must be queued before the next record.
		waitQueued(l, i)
	}
	mustAdd(t, l, testRecord(5))
	release()
	if res := <-first; res.err != nil || res.r.Seq != 1 || res.r.Sig == nil {
		t.Fatalf("first Append: %+v", res)
	}
	for i, ch := range pending {
		res := <-ch
		if res.err != nil || res.r.Seq != uint64(i+3) {
			t.Fatalf("Append %d: seq %d, %v", i+2, res.r.Seq, res.err)
		}
	}
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Records 2-6 went out as one group: only its last record is signed.
	if got, want := fmt.Sprint(sigs(t, dir, 1)), fmt.Sprint([]bool{true, false, false, false, false, true}); got != want {
		t.Fatalf("signed lines %s, want %s", got, want)
	}
	recs, err := Tail(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || r.Rationale != testRecord(i).Rationale {
			t.Fatalf("record %d: seq %d %q: not in the order queued", i, r.Seq, r.Rationale)
		}
	}
	if rep := verifyOK(t, dir, key); rep.Records != 6 || rep.Unsigned != 0 {
		t.Fatalf("report %+v", rep)
	}
}

func TestAddOrderAndSync(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t, 1)
	l := openLog(t, dir, key, Options{MaxFileSize: 4096})
	const workers, each = 6, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := Record{Kind: KindIntentReceived, Agent: fmt.Sprint("w", w), Rationale: fmt.Sprint(i)}
				var err error
				if i%5 == 4 {
					_, err = l.Append(r)
				} else {
					err = l.Add(context.Background(), r)
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep := verifyOK(t, dir, key)
	if rep.Records != workers*each || rep.Files < 2 {
		t.Fatalf("report %+v", rep)
	}
	recs, err := Tail(dir, workers*each)
	if err != nil {
		t.Fatal(err)
	}
	next := map[string]int{}
	for _, r := range recs {
		if r.Rationale != fmt.Sprint(next[r.Agent]) {
			t.Fatalf("seq %d: %s's record %s, want %d: Add and Append reordered", r.Seq, r.Agent, r.Rationale, next[r.Agent])
		}
		next[r.Agent]++
	}
}

func TestAddBackpressure(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t, 1)
	fl := newFaults()
	l := openLog(t, dir, key, fl.options(Options{QueueSize: 2}))
	first, release := holdCommitter(t, l, fl, testRecord(0))
	mustAdd(t, l, testRecord(1))
	mustAdd(t, l, testRecord(2)) // the queue is full now

	// An Add whose context ends while the queue is full fails, and says so.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := l.Add(ctx, testRecord(99))
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "queue full") {
		t.Fatalf("Add with a full queue and a cancelled context: %v", err)
	}
	// One with a live context waits for room.
	blocked := make(chan error, 1)
	go func() { blocked <- l.Add(context.Background(), testRecord(3)) }()
	release()
	if res := <-first; res.err != nil {
		t.Fatal(res.err)
	}
	if err := <-blocked; err != nil {
		t.Fatalf("Add waiting for room: %v", err)
	}
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs, err := Tail(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Rationale)
	}
	want := []string{testRecord(0).Rationale, testRecord(1).Rationale, testRecord(2).Rationale, testRecord(3).Rationale}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("log holds %q, want %q: nothing dropped, the refused record absent", got, want)
	}
}

func TestSyncContext(t *testing.T) {
	fl := newFaults()
	l := openLog(t, t.TempDir(), testKey(t, 1), fl.options(Options{}))
	first, release := holdCommitter(t, l, fl, testRecord(0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Sync(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sync with a cancelled context while a write hangs: %v", err)
	}
	release()
	if res := <-first; res.err != nil {
		t.Fatal(res.err)
	}
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestCrashMidGroup leaves on disk what a crash in the middle of a group's
// write leaves, and checks that the reopened log verifies and holds exactly
// the acknowledged records.
func TestCrashMidGroup(t *testing.T) {
	upTo := func(g [][]byte, n int) int { // bytes of the first n lines
		b := 0
		for _, ln := range g[:n] {
			b += len(ln) + 1
		}
		return b
	}
	for _, tc := range []struct {
		name string
		// cut is how much of the group's write (records 5-9) reaches the
		// disk, given the group's lines.
		cut      func(g [][]byte) int
		unsigned int
		torn     bool
	}{
		{"two complete lines and half a third", func(g [][]byte) int { return upTo(g, 2) + len(g[2])/2 }, 2, true},
		{"all but the signed last line", func(g [][]byte) int { return upTo(g, 4) }, 4, false},
		{"the signed line without its newline", func(g [][]byte) int { return upTo(g, 5) - 1 }, 4, true},
		{"one byte", func([][]byte) int { return 1 }, 0, true},
		{"nothing", func([][]byte) int { return 0 }, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			key := testKey(t, 1)
			fl := newFaults()
			l, err := Open(dir, key, fl.options(Options{}))
			if err != nil {
				t.Fatal(err)
			}
			acked := appendN(t, l, 0, 3)

			// Records 5-9 as one group, whose write stops part way; the
			// file cannot be cut back, as after a crash.
			first, release := holdCommitter(t, l, fl, testRecord(3))
			for i := 4; i < 8; i++ {
				mustAdd(t, l, testRecord(i))
			}
			last := appendAsync(l, testRecord(8))
			waitQueued(l, 5)
			fl.set(func(fl *faults) {
				fl.errWrite, fl.errTruncate = errors.New("power cut"), errors.New("power cut")
				fl.cut = func(b []byte) int {
					g := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
					if len(g) != 5 {
						panic(fmt.Sprintf("the group has %d lines, want 5", len(g)))
					}
					return tc.cut(g)
				}
			})
			release()
			res := <-first
			if res.err != nil {
				t.Fatal(res.err)
			}
			acked = append(acked, res.r)
			if r := <-last; !errors.Is(r.err, ErrBroken) {
				t.Fatalf("Append in the cut group: %v, want ErrBroken", r.err)
			}
			if err := l.Close(); !errors.Is(err, ErrBroken) {
				t.Fatalf("Close: %v", err)
			}

			// As the crash left it: intact, with an unacknowledged tail.
			rep := verifyOK(t, dir, key)
			if rep.Records != len(acked) || rep.Unsigned != tc.unsigned || rep.TornTail != tc.torn {
				t.Fatalf("report %+v; want %d records, %d unsigned, torn %v", rep, len(acked), tc.unsigned, tc.torn)
			}
			if recs, err := Tail(dir, 20); err != nil || len(recs) != len(acked) {
				t.Fatalf("Tail shows %d records, want the %d acknowledged (%v)", len(recs), len(acked), err)
			}

			// Reopened: the tail is gone, the acknowledged records stay.
			l = openLog(t, dir, key, Options{})
			rep = verifyOK(t, dir, key)
			if rep.Records != len(acked) || rep.Unsigned != 0 || rep.TornTail {
				t.Fatalf("report after reopening %+v; want exactly the %d acknowledged records", rep, len(acked))
			}
			recs, err := Tail(dir, 20)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range acked {
				if recs[i].Seq != r.Seq || !bytes.Equal(recs[i].Sig, r.Sig) {
					t.Fatalf("record %d is not the one acknowledged", i+1)
				}
			}
			if r, err := l.Append(testRecord(9)); err != nil || r.Seq != uint64(len(acked)+1) {
				t.Fatalf("Append after reopening: seq %d, %v", r.Seq, err)
			}
			verifyOK(t, dir, key)
		})
	}
}

// TestCrashMidGroupAcrossFiles cuts a group that spans a rotation in its
// second file: what went to the first file is durable and acknowledged.
func TestCrashMidGroupAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t, 1)
	fl := newFaults()
	l, err := Open(dir, key, fl.options(Options{MaxFileSize: 1500}))
	if err != nil {
		t.Fatal(err)
	}
	first, release := holdCommitter(t, l, fl, testRecord(0))
	var pending []<-chan appendResult
	for i := 1; i < 12; i++ {
		pending = append(pending, appendAsync(l, testRecord(i)))
		waitQueued(l, i)
	}
	fl.set(func(fl *faults) {
		fl.errWrite, fl.errTruncate = errors.New("power cut"), errors.New("power cut")
		fl.cutSkip = 1 // the group's part in the first file gets through
		fl.cut = func(b []byte) int { return len(b) / 2 }
	})
	release()
	acked := []Record{(<-first).r}
	failed := 0
	for _, ch := range pending {
		res := <-ch
		switch {
		case res.err == nil:
			acked = append(acked, res.r)
		case errors.Is(res.err, ErrBroken):
			failed++
		default:
			t.Fatal(res.err)
		}
	}
	if len(acked) < 2 || failed == 0 {
		t.Fatalf("%d acknowledged, %d failed: the test needs the group split across files", len(acked), failed)
	}
	_ = l.Close()
	if files, _ := listFiles(dir); len(files) < 2 {
		t.Fatalf("files %v: the group did not rotate", files)
	}
	openLog(t, dir, key, Options{MaxFileSize: 1500})
	rep := verifyOK(t, dir, key)
	if rep.Records != len(acked) {
		t.Fatalf("reopened log holds %d records, want the %d acknowledged", rep.Records, len(acked))
	}
	recs, err := Tail(dir, 20)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range acked {
		if recs[i].Seq != r.Seq || recs[i].Rationale != r.Rationale {
			t.Fatalf("record %d: seq %d, want the acknowledged seq %d", i, recs[i].Seq, r.Seq)
		}
	}
}

func TestBrokenLog(t *testing.T) {
	eio := syscall.EIO
	for _, tc := range []struct {
		name   string
		inject func(fl *faults)
		cause  string
		// whether the failed record may be on disk after all (an fsync
		// failure says nothing about what reached it)
		maybeWritten bool
	}{
		{"fsync fails", func(fl *faults) { fl.errSync = eio }, "fsync audit-000001.jsonl", true},
		{"write fails", func(fl *faults) { fl.short, fl.errWrite = 10, eio }, "write audit-000001.jsonl", false},
		{"write fails and cannot be cut back", func(fl *faults) { fl.short, fl.errWrite, fl.errTruncate = 10, eio, eio }, "cutting it back", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			key := testKey(t, 1)
			fl := newFaults()
			reg := prometheus.NewRegistry()
			l, err := Open(dir, key, fl.options(Options{Registerer: reg}))
			if err != nil {
				t.Fatal(err)
			}
			acked := appendN(t, l, 0, 3)
			if err := l.Err(); err != nil {
				t.Fatalf("Err of a healthy log: %v", err)
			}
			fl.set(tc.inject)
			_, err = l.Append(testRecord(3))
			if !errors.Is(err, ErrBroken) || !errors.Is(err, eio) || !strings.Contains(err.Error(), tc.cause) {
				t.Fatalf("Append: %v; want ErrBroken wrapping EIO, naming %q", err, tc.cause)
			}
			if err := l.Err(); !errors.Is(err, ErrBroken) || !errors.Is(err, eio) {
				t.Fatalf("Err: %v", err)
			}
			if got := gauge(t, reg, "parley_audit_broken"); got != 1 {
				t.Fatalf("parley_audit_broken = %v, want 1", got)
			}
			// Everything fails fast from now on, and writes nothing.
			writes := fl.count()
			if _, err := l.Append(testRecord(4)); !errors.Is(err, ErrBroken) {
				t.Fatalf("Append after the failure: %v", err)
			}
			if err := l.Add(context.Background(), testRecord(5)); !errors.Is(err, ErrBroken) {
				t.Fatalf("Add after the failure: %v", err)
			}
			if err := l.Sync(context.Background()); !errors.Is(err, ErrBroken) {
				t.Fatalf("Sync after the failure: %v", err)
			}
			if err := l.Close(); !errors.Is(err, ErrBroken) {
				t.Fatalf("Close of a broken log: %v", err)
			}
			if n := fl.count(); n != writes {
				t.Fatalf("%d writes after the log broke", n-writes)
			}

			// Reopened (the disk fixed), the log verifies and holds the
			// acknowledged records.
			l2 := openLog(t, dir, key, Options{})
			recs, err := Tail(dir, 10)
			if err != nil {
				t.Fatal(err)
			}
			n := len(acked)
			if tc.maybeWritten && len(recs) == n+1 {
				n++
			}
			if len(recs) != n {
				t.Fatalf("reopened log holds %d records, want the %d acknowledged", len(recs), len(acked))
			}
			for i, r := range acked {
				if !bytes.Equal(r.Sig, recs[i].Sig) {
					t.Fatalf("record %d differs from what Append returned", i+1)
				}
			}
			if _, err := l2.Append(testRecord(6)); err != nil {
				t.Fatalf("Append after reopening: %v", err)
			}
			verifyOK(t, dir, key)
		})
	}
}

// gauge reads a gauge or counter from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	m := metric(t, reg, name)
	if m == nil {
		t.Fatalf("no metric %s", name)
	}
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	t.Fatalf("%s is neither a gauge nor a counter", name)
	return 0
}

func metric(t *testing.T, reg *prometheus.Registry, name string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) == 1 {
			return mf.Metric[0]
		}
	}
	return nil
}

func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	l, err := Open(dir, testKey(t, 1), Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 7)
	if got := gauge(t, reg, "parley_audit_records_total"); got != 7 {
		t.Errorf("parley_audit_records_total = %v, want 7", got)
	}
	if got := gauge(t, reg, "parley_audit_broken"); got != 0 {
		t.Errorf("parley_audit_broken = %v, want 0", got)
	}
	if h := metric(t, reg, "parley_audit_fsync_seconds"); h == nil || h.Histogram.GetSampleCount() != 7 {
		t.Errorf("parley_audit_fsync_seconds: %v, want 7 observations", h)
	}
	if h := metric(t, reg, "parley_audit_append_seconds"); h == nil || h.Histogram.GetSampleCount() != 7 {
		t.Errorf("parley_audit_append_seconds: %v, want 7 observations (one per Append)", h)
	}
	if h := metric(t, reg, "parley_audit_commit_group_records"); h == nil || h.Histogram.GetSampleSum() != 7 {
		t.Errorf("parley_audit_commit_group_records: %v, want a sum of 7", h)
	}
	// A second Log on the same registry is refused while the first is open.
	if _, err := Open(t.TempDir(), testKey(t, 1), Options{Registerer: reg}); err == nil || !strings.Contains(err.Error(), "register audit metrics") {
		t.Errorf("second Log on one registry: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if m := metric(t, reg, "parley_audit_records_total"); m != nil {
		t.Errorf("metrics still registered after Close")
	}
	// Reopened on the same registry after Close.
	l = openLog(t, dir, testKey(t, 1), Options{Registerer: reg})
	appendN(t, l, 7, 1)
	if got := gauge(t, reg, "parley_audit_records_total"); got != 1 {
		t.Errorf("parley_audit_records_total after reopening = %v, want 1", got)
	}
}

// Records added alone wait up to AddWait for company, then go out as one
// group; an Append takes the Adds before it along in its own group, at
// once.
func TestAddsWaitForCompany(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		fl := newFaults()
		l, err := Open(dir, testKey(t, 1), fl.options(Options{AddWait: time.Second}))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		before := fl.count()

		for i := range 3 {
			mustAdd(t, l, testRecord(i))
		}
		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		if got := fl.count() - before; got != 0 {
			t.Fatalf("%d writes before AddWait passed, want 0", got)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := fl.count() - before; got != 1 {
			t.Fatalf("%d writes once AddWait passed, want 1 for the three Adds", got)
		}

		mustAdd(t, l, testRecord(3))
		start := time.Now()
		if _, err := l.Append(testRecord(4)); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Fatalf("Append behind an Add waited %s, want no wait", waited)
		}
		if got := fl.count() - before; got != 2 {
			t.Fatalf("%d writes after Add and Append, want 2: the Append's group holds the Add", got)
		}
		if got, want := fmt.Sprint(sigs(t, dir, 1)), fmt.Sprint([]bool{false, false, true, false, true}); got != want {
			t.Fatalf("signed lines %s, want %s (one signature a group)", got, want)
		}
	})
}
