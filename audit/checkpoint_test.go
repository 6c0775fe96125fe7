package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// hashStore is a tlog.HashReader over hashes kept in memory.
type hashStore []tlog.Hash

func (s hashStore) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, j := range idx {
		if j >= int64(len(s)) {
			return nil, fmt.Errorf("no stored hash %d", j)
		}
		out[i] = s[j]
	}
	return out, nil
}

// tlogRoot computes the tree hash of the first n lines with tlog alone.
func tlogRoot(t *testing.T, lines [][]byte, n int) tlog.Hash {
	t.Helper()
	var s hashStore
	for i := range n {
		hs, err := tlog.StoredHashes(int64(i), lines[i], s)
		if err != nil {
			t.Fatal(err)
		}
		s = append(s, hs...)
	}
	h, err := tlog.TreeHash(int64(n), s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// allLines returns every line of the log in dir, in order.
func allLines(t *testing.T, dir string) [][]byte {
	t.Helper()
	files, err := listFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, idx := range files {
		b, err := os.ReadFile(filepath.Join(dir, fileName(idx)))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 {
			out = append(out, lines(t, dir, idx)...)
		}
	}
	return out
}

func readSidecarT(t *testing.T, dir string) *sidecar {
	t.Helper()
	sc, err := readSidecar(dir)
	if err != nil || sc == nil {
		t.Fatalf("sidecar: %v, %v", sc, err)
	}
	return sc
}

func TestFrontierMatchesTlog(t *testing.T) {
	var (
		f     frontier
		lines [][]byte
	)
	for n := 0; n <= 130; n++ {
		if got, want := f.root(), tlogRoot(t, lines, n); got != want {
			t.Fatalf("size %d: root %s, tlog %s", n, got, want)
		}
		back, err := frontierFrom(f.n, f.hexes())
		if err != nil || back.root() != f.root() {
			t.Fatalf("size %d: stored frontier does not round-trip: %v", n, err)
		}
		line := fmt.Appendf(nil, "line %d", n)
		lines = append(lines, line)
		f.pushLine(line)
	}
	if _, err := frontierFrom(5, []string{hexHash(emptyRoot)}); err == nil {
		t.Fatal("a frontier of the wrong shape was accepted")
	}
}

// checkpointSeqs returns the seqs of the checkpoint records among lines,
// after checking each one's tree hash with tlog.
func checkpointSeqs(t *testing.T, lines [][]byte) []uint64 {
	t.Helper()
	var seqs []uint64
	for i, ln := range lines {
		r, err := ParseRecord(ln)
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind != KindCheckpoint {
			continue
		}
		d, root, err := parseCheckpointDetail(r.Detail)
		if err != nil {
			t.Fatal(err)
		}
		if r.Sig == nil || d.Size != uint64(i) || root != tlogRoot(t, lines, i) {
			t.Fatalf("checkpoint record seq %d: signed %v, size %d, root ok %v", r.Seq, r.Sig != nil, d.Size, root == tlogRoot(t, lines, i))
		}
		seqs = append(seqs, r.Seq)
	}
	return seqs
}

func TestCheckpointCadence(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t, 1)
	l, err := Open(dir, key, Options{CheckpointEvery: 10, MaxFileSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 35)
	// Every 10 records a checkpoint ends the group of the 10th.
	if got := fmt.Sprint(checkpointSeqs(t, allLines(t, dir))); got != "[11 22 33]" {
		t.Fatalf("checkpoint records at %s, want [11 22 33]", got)
	}
	if sc := readSidecarT(t, dir); sc.Size != 33 {
		t.Fatalf("sidecar covers %d records, want 33", sc.Size)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ls := allLines(t, dir)
	if got := fmt.Sprint(checkpointSeqs(t, ls)); got != "[11 22 33 39]" {
		t.Fatalf("checkpoint records at %s after Close, want [11 22 33 39]", got)
	}
	sc := readSidecarT(t, dir)
	if !sc.verify(key.GetPublic()) || sc.Size != 39 || sc.checkpoint().Root != tlogRoot(t, ls, 39) || sc.Last != lineHash(ls[38]) {
		t.Fatalf("sidecar %+v does not sign the log's 39 records", sc)
	}
	rep := verifyOK(t, dir, key)
	if rep.Records != 39 || rep.Checkpoints != 4 || rep.Checkpoint == nil || rep.Checkpoint.Size != 39 || !rep.Checkpoint.Sidecar {
		t.Fatalf("report %+v (checkpoint %+v)", rep, rep.Checkpoint)
	}
	// Closing again after reopening writes nothing new.
	l = openLog(t, dir, key, Options{CheckpointEvery: 10, MaxFileSize: 4096})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(allLines(t, dir)); n != 39 {
		t.Fatalf("%d lines after an idle reopen, want 39", n)
	}
}

func TestCheckpointOnTimer(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t, 1)
	tick := make(chan time.Time)
	l := openLog(t, dir, key, Options{tick: tick})
	appendN(t, l, 0, 3)
	tick <- time.Now() // returns once the committer took it
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	ls := allLines(t, dir)
	if got := fmt.Sprint(checkpointSeqs(t, ls)); got != "[4]" {
		t.Fatalf("checkpoint records %s after a tick, want [4]", got)
	}
	if sc := readSidecarT(t, dir); sc.Size != 4 {
		t.Fatalf("sidecar covers %d, want 4", sc.Size)
	}
	// A tick with nothing new writes nothing.
	tick <- time.Now()
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(allLines(t, dir)); n != 4 {
		t.Fatalf("%d lines after an idle tick, want 4", n)
	}
}

// truncLog writes 40 records with key 1, a checkpoint every 10, over
// several files: 44 lines, the last a checkpoint.
func truncLog(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	l, err := Open(dir, testKey(t, 1), Options{MaxFileSize: 2048, CheckpointEvery: 10})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 40)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(allLines(t, dir)); n != 44 {
		t.Fatalf("%d lines, want 44", n)
	}
	return dir
}

func TestTruncationIsCaught(t *testing.T) {
	lastFile := func(t *testing.T, dir string) int {
		files, _ := listFiles(dir)
		return files[len(files)-1]
	}
	cutLines := func(n int) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			idx := lastFile(t, dir)
			ls := lines(t, dir, idx)
			if len(ls) <= n {
				t.Fatalf("last file has %d lines; the test cuts %d", len(ls), n)
			}
			writeLines(t, dir, idx, ls[:len(ls)-n])
		}
	}
	for _, tc := range []struct {
		name   string
		cut    func(t *testing.T, dir string)
		file   string // "" for the last audit file
		is     error
		reason string
	}{
		{"checkpoint cut, leaving its group unsigned", cutLines(1), "", ErrTruncated, "records 43-44 were cut off"},
		{"three records cut", cutLines(3), "", ErrTruncated, "records 42-44 were cut off"},
		{"last file removed", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, fileName(lastFile(t, dir)))); err != nil {
				t.Fatal(err)
			}
		}, "", ErrTruncated, "were cut off"},
		{"signature stripped from the last record", func(t *testing.T, dir string) {
			idx := lastFile(t, dir)
			ls := lines(t, dir, idx)
			r, _ := ParseRecord(ls[len(ls)-1])
			r.Sig = nil
			ls[len(ls)-1], _ = json.Marshal(r)
			writeLines(t, dir, idx, ls)
		}, "", nil, "checkpoint record is not signed"},
		{"sidecar removed", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, SidecarFile)); err != nil {
				t.Fatal(err)
			}
		}, SidecarFile, nil, "missing, but the log has checkpoint records"},
		{"sidecar root edited", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, SidecarFile))
			var s sidecar
			_ = json.Unmarshal(b, &s)
			s.Root = hexHash(emptyRoot)
			b, _ = json.Marshal(s)
			_ = os.WriteFile(filepath.Join(dir, SidecarFile), b, 0o600)
		}, SidecarFile, nil, "signature does not verify"},
		{"sidecar claims more records, signed by another key", func(t *testing.T, dir string) {
			tree := frontier{}
			for _, ln := range allLines(t, dir) {
				tree.pushLine(ln)
			}
			tree.pushLine([]byte("one more"))
			s, err := newSidecar(testKey(t, 2), &tree, lineHash([]byte("one more")), 9, 0, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(s)
			_ = os.WriteFile(filepath.Join(dir, SidecarFile), b, 0o600)
		}, "", nil, "were cut off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := truncLog(t)
			tc.cut(t, dir)
			want := tc.file
			if want == "" {
				want = fileName(lastFile(t, dir))
			}
			_, err := Verify(dir, testKey(t, 1).GetPublic())
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.File != want || !strings.Contains(ve.Reason, tc.reason) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("Verify: %v; want %s: …%s (%v)", err, want, tc.reason, tc.is)
			}
			// Open refuses it too, and changes nothing.
			before := allLines(t, dir)
			if l, err := Open(dir, testKey(t, 1), Options{}); err == nil {
				_ = l.Close()
				t.Fatalf("Open accepted the log")
			} else if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("Open: %v, want %v", err, tc.is)
			}
			if after := allLines(t, dir); len(after) != len(before) {
				t.Fatalf("Open changed the refused log: %d lines, were %d", len(after), len(before))
			}
		})
	}
}

// oldLog writes n records in the format from before commit groups and
// checkpoints: every record signed, no sidecar.
func oldLog(t *testing.T, dir string, n int) [][]byte {
	t.Helper()
	key := testKey(t, 1)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var ls [][]byte
	prev := ""
	for i := range n {
		r := testRecord(i)
		r.Seq, r.Prev, r.Time = uint64(i+1), prev, r.Time.UTC()
		data, err := signedBytes(r)
		if err != nil {
			t.Fatal(err)
		}
		if r.Sig, err = key.Sign(data); err != nil {
			t.Fatal(err)
		}
		line, _ := json.Marshal(r)
		if _, err := ParseRecord(line); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, line)
		prev = lineHash(line)
	}
	writeLines(t, dir, 1, ls)
	return ls
}

func TestOldFormatLog(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t, 1)
	old := oldLog(t, dir, 12)
	rep := verifyOK(t, dir, key)
	if rep.Records != 12 || rep.Checkpoint != nil {
		t.Fatalf("old log: report %+v", rep)
	}
	// Opening it writes its first checkpoint; appending goes on the chain.
	l := openLog(t, dir, key, Options{})
	if sc := readSidecarT(t, dir); sc.Size != 12 || sc.checkpoint().Root != tlogRoot(t, old, 12) {
		t.Fatalf("sidecar after opening an old log: %+v", sc)
	}
	appendN(t, l, 12, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ls := allLines(t, dir)
	for i := range old {
		if !bytes.Equal(ls[i], old[i]) {
			t.Fatalf("line %d of the old log changed", i+1)
		}
	}
	rep = verifyOK(t, dir, key)
	if rep.Records != 16 || rep.Checkpoint == nil || rep.Checkpoint.Size != 16 {
		t.Fatalf("report %+v", rep)
	}
}

func TestOpenWithoutSidecarHints(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(s *sidecar)
	}{
		{"wrong offset", func(s *sidecar) { s.Offset = 3 }},
		{"wrong file", func(s *sidecar) { s.File = 99 }},
		{"no frontier", func(s *sidecar) { s.Frontier = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := truncLog(t)
			key := testKey(t, 1)
			sc := readSidecarT(t, dir)
			tc.edit(sc) // the hints are not signed
			if err := writeJSONFile(dir, SidecarFile, sc); err != nil {
				t.Fatal(err)
			}
			verifyOK(t, dir, key)
			l := openLog(t, dir, key, Options{})
			appendN(t, l, 40, 3)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			checkpointSeqs(t, allLines(t, dir)) // every root checked with tlog
			if rep := verifyOK(t, dir, key); rep.Records != 48 {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

// groupedLog writes 3 rounds of a lone record then a group of 5, with key 1:
// lines 2-6, 8-12 and 14-18 are groups, signed only on their last line.
func groupedLog(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	fl := newFaults()
	l, err := Open(dir, testKey(t, 1), fl.options(Options{MaxFileSize: 1 << 20}))
	if err != nil {
		t.Fatal(err)
	}
	for g := range 3 {
		first, release := holdCommitter(t, l, fl, testRecord(6*g))
		for i := 1; i < 6; i++ {
			mustAdd(t, l, testRecord(6*g+i))
		}
		waitQueued(l, 5)
		release()
		if res := <-first; res.err != nil {
			t.Fatal(res.err)
		}
		if err := l.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	want := "[true false false false false true true false false false false true true false false false false true true]"
	if got := fmt.Sprint(sigs(t, dir, 1)); got != want {
		t.Fatalf("signed lines %s, want %s", got, want)
	}
	return dir
}

func TestVerifyCatchesTamperingInGroups(t *testing.T) {
	edit := func(line int, f func(r *Record)) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			ls := lines(t, dir, 1)
			r, err := ParseRecord(ls[line-1])
			if err != nil {
				t.Fatal(err)
			}
			f(&r)
			ls[line-1], _ = json.Marshal(r)
			writeLines(t, dir, 1, ls)
		}
	}
	for _, tc := range []struct {
		name   string
		tamper func(*testing.T, string)
		line   int
		reason string
	}{
		{"edit an unsigned record", edit(3, func(r *Record) { r.Rationale = "forged" }), 4, "prev hash does not match"},
		{"edit the last unsigned record of a group", edit(5, func(r *Record) { r.Rationale = "forged" }), 6, "prev hash does not match"},
		{"edit an unsigned record and fix the next prev", func(t *testing.T, dir string) {
			edit(3, func(r *Record) { r.Rationale = "forged" })(t, dir)
			ls := lines(t, dir, 1)
			edit(4, func(r *Record) { r.Prev = lineHash(ls[2]) })(t, dir)
		}, 5, "prev hash does not match"},
		{"re-sign a group's end with another key", edit(6, func(r *Record) {
			data, _ := signedBytes(*r)
			r.Sig, _ = testKey(t, 2).Sign(data)
		}), 6, "signature does not verify"},
		{"strip a group's signature", edit(6, func(r *Record) { r.Sig = nil }), 7, "prev hash does not match"},
		{"delete an unsigned record", func(t *testing.T, dir string) {
			ls := lines(t, dir, 1)
			writeLines(t, dir, 1, append(ls[:2], ls[3:]...))
		}, 3, "seq is 4, want 3"},
		{"swap two unsigned records", func(t *testing.T, dir string) {
			ls := lines(t, dir, 1)
			ls[2], ls[3] = ls[3], ls[2]
			writeLines(t, dir, 1, ls)
		}, 3, "seq is 4, want 3"},
		{"edit a checkpoint record's root", edit(19, func(r *Record) {
			r.Detail = json.RawMessage(fmt.Sprintf(`{"size":18,"root":%q}`, hexHash(emptyRoot)))
			data, _ := signedBytes(*r)
			r.Sig, _ = testKey(t, 1).Sign(data) // even re-signed
		}), 19, "checkpoint record's tree hash does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := groupedLog(t)
			tc.tamper(t, dir)
			_, err := Verify(dir, testKey(t, 1).GetPublic())
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.File != fileName(1) || ve.Line != tc.line || !strings.Contains(ve.Reason, tc.reason) {
				t.Fatalf("Verify: %v; want %s:%d …%s", err, fileName(1), tc.line, tc.reason)
			}
		})
	}
}

func TestUnsignedEndOfAMiddleFile(t *testing.T) {
	dir := truncLog(t)
	ls := lines(t, dir, 1)
	r, _ := ParseRecord(ls[len(ls)-1])
	r.Sig = nil
	ls[len(ls)-1], _ = json.Marshal(r)
	writeLines(t, dir, 1, ls)
	_, err := Verify(dir, testKey(t, 1).GetPublic())
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.File != fileName(1) || ve.Line != len(ls) || !strings.Contains(ve.Reason, "no signature covers") {
		t.Fatalf("Verify: %v", err)
	}
}

func TestVerifyKeyMismatch(t *testing.T) {
	for _, n := range []int{0, 5} {
		dir := t.TempDir()
		l := openLog(t, dir, testKey(t, 1), Options{})
		appendN(t, l, 0, n)
		_, err := Verify(dir, testKey(t, 2).GetPublic())
		if !errors.Is(err, ErrKeyMismatch) {
			t.Errorf("%d records, another key: %v, want ErrKeyMismatch", n, err)
		}
	}
	// Tampering after a good signature is not a key mismatch.
	dir := tamperLog(t)
	ls := lines(t, dir, 1)
	ls[3] = bytes.Replace(ls[3], []byte("step"), []byte("stop"), 1)
	writeLines(t, dir, 1, ls)
	if _, err := Verify(dir, testKey(t, 1).GetPublic()); err == nil || errors.Is(err, ErrKeyMismatch) {
		t.Errorf("tampered log: %v, want an error that is not ErrKeyMismatch", err)
	}
}

// TestVerifyWhileAppending runs Verify against a log that is being written,
// rotating and checkpointing: a live log always verifies.
func TestVerifyWhileAppending(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t, 1)
	l := openLog(t, dir, key, Options{MaxFileSize: 4096, CheckpointEvery: 7})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 150 {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				if i%2 == 0 {
					err = l.Add(context.Background(), testRecord(w*1000+i))
				} else {
					_, err = l.Append(testRecord(w*1000 + i))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	writing := make(chan struct{})
	go func() { wg.Wait(); close(writing) }()
	for done := false; !done; {
		select {
		case <-writing:
			done = true
		default:
		}
		if _, err := Verify(dir, key.GetPublic()); err != nil {
			close(stop)
			<-writing
			t.Fatalf("Verify of a live log: %v", err)
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := verifyOK(t, dir, key)
	if rep.Files < 2 || rep.Checkpoints < 2 {
		t.Fatalf("report %+v: the test needs rotation and checkpoints", rep)
	}
}

func TestAppendRefusesCheckpointKind(t *testing.T) {
	l := openLog(t, t.TempDir(), testKey(t, 1), Options{})
	if _, err := l.Append(Record{Kind: KindCheckpoint}); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("Append of a checkpoint kind: %v", err)
	}
	if err := l.Add(context.Background(), Record{Kind: KindCheckpoint}); err == nil {
		t.Fatal("Add of a checkpoint kind accepted")
	}
}
