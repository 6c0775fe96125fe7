package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// testKey returns a fixed ed25519 key per seed byte.
func testKey(t testing.TB, seed byte) crypto.PrivKey {
	t.Helper()
	k, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openLog(t *testing.T, dir string, key crypto.PrivKey, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, key, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// testRecord is the i-th record a test appends: fixed content, so files
// rotate at the same places every run.
func testRecord(i int) Record {
	kinds := []string{KindIntentPublished, KindProposal, KindAward, KindCommit, KindResult}
	return Record{
		Time:      t0.Add(time.Duration(i) * time.Second),
		Kind:      kinds[i%len(kinds)],
		Task:      fmt.Sprintf("task-%03d", i/5),
		Agent:     "agent-a",
		Peer:      "12D3KooWPeer",
		Rationale: fmt.Sprintf("step %d <ok> & fine", i),
		Detail:    json.RawMessage(fmt.Sprintf(`{ "i": %d, "html": "<b>" }`, i)),
	}
}

func appendN(t *testing.T, l *Log, from, n int) []Record {
	t.Helper()
	var out []Record
	for i := from; i < from+n; i++ {
		r, err := l.Append(testRecord(i))
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		out = append(out, r)
	}
	return out
}

func verifyOK(t *testing.T, dir string, key crypto.PrivKey) Report {
	t.Helper()
	rep, err := Verify(dir, key.GetPublic())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

// lines returns the lines of one audit file, without newlines.
func lines(t *testing.T, dir string, index int) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, fileName(index)))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func writeLines(t *testing.T, dir string, index int, ls [][]byte) {
	t.Helper()
	b := append(bytes.Join(ls, []byte("\n")), '\n')
	if err := os.WriteFile(filepath.Join(dir, fileName(index)), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestAppendVerify(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	key := testKey(t, 1)
	l := openLog(t, dir, key, Options{})
	recs := appendN(t, l, 0, 50)
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d: seq %d", i, r.Seq)
		}
		if !r.Time.Equal(testRecord(i).Time) || r.Time.Location() != time.UTC {
			t.Fatalf("record %d: time %v", i, r.Time)
		}
		if want := fmt.Sprintf(`{"i":%d,"html":"\u003cb\u003e"}`, i); string(r.Detail) != want {
			t.Fatalf("record %d: detail %s, want %s (compacted as stored)", i, r.Detail, want)
		}
	}
	if recs[0].Prev != "" {
		t.Fatalf("first record prev %q", recs[0].Prev)
	}
	rep := verifyOK(t, dir, key)
	want := Report{Records: 50, Files: 1, First: recs[0].Time, Last: recs[49].Time}
	if rep.Checkpoint == nil || rep.Checkpoint.Size != 0 || !rep.Checkpoint.Sidecar {
		t.Fatalf("checkpoint %+v, want the one Open wrote for the empty log", rep.Checkpoint)
	}
	if rep.Checkpoint = nil; rep != want {
		t.Fatalf("report %+v, want %+v", rep, want)
	}
	// What Append returned is what a reader reads back.
	got, err := Tail(dir, 50)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		a, _ := json.Marshal(recs[i])
		b, _ := json.Marshal(got[i])
		if !bytes.Equal(a, b) {
			t.Fatalf("record %d: Append returned %s, Tail read %s", i, a, b)
		}
	}
	// Modes: the directory and its files are private.
	for _, p := range []string{dir, filepath.Join(dir, fileName(1))} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %#o", p, st.Mode().Perm())
		}
	}
}

func TestAppendSetsFields(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, testKey(t, 1), Options{})
	before := time.Now()
	r, err := l.Append(Record{Kind: "policy", Seq: 99, Prev: "bogus", Sig: []byte("bogus"), Task: "bad \xff utf8"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Seq != 1 || r.Prev != "" || bytes.Equal(r.Sig, []byte("bogus")) {
		t.Fatalf("Append kept caller's seq/prev/sig: %+v", r)
	}
	if r.Time.Before(before) || r.Time.Location() != time.UTC {
		t.Fatalf("time %v not set to now in UTC", r.Time)
	}
	if r.Task != "bad \uFFFD utf8" {
		t.Fatalf("task %q", r.Task)
	}

	for _, tc := range []struct {
		name string
		r    Record
		is   error
	}{
		{"no kind", Record{}, nil},
		{"detail not JSON", Record{Kind: "x", Detail: json.RawMessage("{nope")}, nil},
		{"too large", Record{Kind: "x", Rationale: strings.Repeat("a", MaxRecordSize)}, ErrTooLarge},
	} {
		if _, err := l.Append(tc.r); err == nil || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("%s: Append error %v, want one wrapping %v", tc.name, err, tc.is)
		}
	}
	// Failed Appends leave no trace and the log goes on.
	if r, err := l.Append(Record{Kind: "policy"}); err != nil || r.Seq != 2 {
		t.Fatalf("Append after refused records: %+v, %v", r, err)
	}
	verifyOK(t, dir, testKey(t, 1))
}

func TestRotationKeepsChain(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t, 1)
	const max = 2048
	l := openLog(t, dir, key, Options{MaxFileSize: max})
	appendN(t, l, 0, 60)
	files, err := listFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("%d files, want rotation into at least 3", len(files))
	}
	for i, idx := range files {
		if idx != i+1 {
			t.Fatalf("files %v not numbered 1…", files)
		}
		st, err := os.Stat(filepath.Join(dir, fileName(idx)))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > max {
			t.Errorf("%s is %d bytes, more than %d", fileName(idx), st.Size(), max)
		}
	}
	// The first record of each file points at the last line of the one
	// before.
	for i := 1; i < len(files); i++ {
		prev := lines(t, dir, files[i-1])
		first, err := ParseRecord(lines(t, dir, files[i])[0])
		if err != nil {
			t.Fatal(err)
		}
		if first.Prev != lineHash(prev[len(prev)-1]) {
			t.Fatalf("%s:1 does not chain to %s", fileName(files[i]), fileName(files[i-1]))
		}
	}
	rep := verifyOK(t, dir, key)
	if rep.Records != 60 || rep.Files != len(files) || rep.TornTail {
		t.Fatalf("report %+v", rep)
	}
}

func TestRotationOversizeRecord(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t, 1)
	l := openLog(t, dir, key, Options{MaxFileSize: 100})
	appendN(t, l, 0, 3) // each record is larger than 100 bytes
	if files, _ := listFiles(dir); len(files) != 3 {
		t.Fatalf("files %v, want one record per file", files)
	}
	verifyOK(t, dir, key)
}

func TestReopenResumes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		crash func(t *testing.T, dir string) // what happened after Close
	}{
		{"clean", func(*testing.T, string) {}},
		{"empty file after rotation", func(t *testing.T, dir string) {
			files, _ := listFiles(dir)
			if err := os.WriteFile(filepath.Join(dir, fileName(files[len(files)-1]+1)), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			key := testKey(t, 1)
			l, err := Open(dir, key, Options{MaxFileSize: 2048})
			if err != nil {
				t.Fatal(err)
			}
			first := appendN(t, l, 0, 20)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			files, _ := listFiles(dir)
			ls := lines(t, dir, files[len(files)-1])
			wantPrev := lineHash(ls[len(ls)-1])
			tc.crash(t, dir)

			l = openLog(t, dir, key, Options{MaxFileSize: 2048})
			r, err := l.Append(testRecord(20))
			if err != nil {
				t.Fatal(err)
			}
			// Record 21 is the checkpoint Close wrote after record 20.
			if r.Seq != 22 || r.Prev != wantPrev {
				t.Fatalf("after reopen: seq %d prev %s; want seq 22 chained to the checkpoint after seq %d", r.Seq, r.Prev, first[19].Seq)
			}
			appendN(t, l, 21, 5)
			if rep := verifyOK(t, dir, key); rep.Records != 27 || rep.Checkpoints != 1 {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

// tamperLog writes 40 records over several small files with key 1.
func tamperLog(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	l, err := Open(dir, testKey(t, 1), Options{MaxFileSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 40)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := listFiles(dir)
	if len(files) < 3 || len(lines(t, dir, 1)) < 8 {
		t.Fatalf("tamper log has %d files and %d lines in the first; tests need more", len(files), len(lines(t, dir, 1)))
	}
	return dir
}

func TestVerifyCatchesTampering(t *testing.T) {
	edit := func(index, line int, f func([]byte) []byte) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			ls := lines(t, dir, index)
			ls[line-1] = f(bytes.Clone(ls[line-1]))
			writeLines(t, dir, index, ls)
		}
	}
	replace := func(old, new string) func([]byte) []byte {
		return func(b []byte) []byte {
			if !bytes.Contains(b, []byte(old)) {
				panic("no " + old + " in " + string(b))
			}
			return bytes.Replace(b, []byte(old), []byte(new), 1)
		}
	}
	n1 := func(t *testing.T, dir string) int { return len(lines(t, dir, 1)) }

	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, dir string)
		file   int
		line   func(t *testing.T, dir string) int // nil: want line 3
		reason string
	}{
		{name: "edit kind", tamper: edit(1, 3, replace(`"kind":"award"`, `"kind":"commit"`)), file: 1,
			reason: "signature does not verify"},
		{name: "edit rationale", tamper: edit(2, 3, replace(`step`, `stop`)), file: 2,
			reason: "signature does not verify"},
		{name: "edit time", tamper: edit(1, 3, replace(`12:00:02Z`, `12:00:03Z`)), file: 1,
			reason: "signature does not verify"},
		{name: "edit seq", tamper: edit(1, 3, replace(`"seq":3`, `"seq":4`)), file: 1,
			reason: "seq is 4, want 3"},
		{name: "edit prev", tamper: edit(1, 3, replace(`"prev":"`, `"prev":"0`)), file: 1,
			reason: "prev is not a hex SHA-256"},
		{name: "extra field", tamper: edit(1, 3, replace(`"seq":3,`, `"seq":3,"x":1,`)), file: 1,
			reason: "not in canonical form"},
		{name: "reformatted", tamper: edit(1, 3, replace(`"seq":3,`, `"seq": 3,`)), file: 1,
			reason: "not in canonical form"},
		{name: "change signature", tamper: func(t *testing.T, dir string) {
			ls := lines(t, dir, 1)
			r2, _ := ParseRecord(ls[1])
			r3, _ := ParseRecord(ls[2])
			r3.Sig = r2.Sig
			ls[2], _ = json.Marshal(r3)
			writeLines(t, dir, 1, ls)
		}, file: 1, reason: "signature does not verify"},
		{name: "re-signed by another key", tamper: func(t *testing.T, dir string) {
			ls := lines(t, dir, 1)
			r3, _ := ParseRecord(ls[2])
			r3.Rationale = "forged"
			data, _ := signedBytes(r3)
			r3.Sig, _ = testKey(t, 2).Sign(data)
			ls[2], _ = json.Marshal(r3)
			writeLines(t, dir, 1, ls)
		}, file: 1, reason: "signature does not verify"},
		{name: "delete a line", tamper: func(t *testing.T, dir string) {
			ls := lines(t, dir, 1)
			writeLines(t, dir, 1, append(ls[:2], ls[3:]...))
		}, file: 1, reason: "seq is 4, want 3"},
		{name: "insert a blank line", tamper: func(t *testing.T, dir string) {
			ls := lines(t, dir, 1)
			writeLines(t, dir, 1, append(ls[:2], append([][]byte{{}}, ls[2:]...)...))
		}, file: 1, reason: "malformed audit record"},
		{name: "reorder two lines", tamper: func(t *testing.T, dir string) {
			ls := lines(t, dir, 1)
			ls[2], ls[3] = ls[3], ls[2]
			writeLines(t, dir, 1, ls)
		}, file: 1, reason: "seq is 4, want 3"},
		{name: "duplicate a line", tamper: func(t *testing.T, dir string) {
			ls := lines(t, dir, 1)
			writeLines(t, dir, 1, append(ls[:3], ls[1:]...))
		}, file: 1, line: func(*testing.T, string) int { return 4 }, reason: "seq is 2, want 4"},
		{name: "cut bytes out of a line", tamper: edit(1, 3, func(b []byte) []byte {
			return append(b[:40], b[60:]...)
		}), file: 1, reason: "malformed audit record"},
		{name: "truncate a middle file mid-line", tamper: func(t *testing.T, dir string) {
			ls := lines(t, dir, 1)
			b := append(bytes.Join(ls[:2], []byte("\n")), '\n')
			b = append(b, ls[2][:50]...)
			if err := os.WriteFile(filepath.Join(dir, fileName(1)), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, file: 1, reason: "incomplete line (no newline) before the end of the log"},
		{name: "truncate a middle file at a line", tamper: func(t *testing.T, dir string) {
			writeLines(t, dir, 1, lines(t, dir, 1)[:5])
		}, file: 2, line: func(*testing.T, string) int { return 1 }, reason: "want 6"},
		{name: "swap two files", tamper: func(t *testing.T, dir string) {
			a, b := filepath.Join(dir, fileName(1)), filepath.Join(dir, fileName(2))
			tmp := filepath.Join(dir, "tmp")
			for _, mv := range [][2]string{{a, tmp}, {b, a}, {tmp, b}} {
				if err := os.Rename(mv[0], mv[1]); err != nil {
					t.Fatal(err)
				}
			}
		}, file: 1, line: func(*testing.T, string) int { return 1 }, reason: "want 1"},
		{name: "replace a file with another log's", tamper: func(t *testing.T, dir string) {
			other := t.TempDir()
			l, err := Open(other, testKey(t, 2), Options{MaxFileSize: 4096})
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, l, 0, 40)
			_ = l.Close()
			b, _ := os.ReadFile(filepath.Join(other, fileName(1)))
			if err := os.WriteFile(filepath.Join(dir, fileName(1)), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, file: 1, line: func(*testing.T, string) int { return 1 }, reason: "signature does not verify"},
		{name: "delete a middle file", tamper: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, fileName(2))); err != nil {
				t.Fatal(err)
			}
		}, file: 2, line: func(*testing.T, string) int { return 0 }, reason: "file missing: the files jump from audit-000001.jsonl to audit-000003.jsonl"},
		{name: "delete the first file", tamper: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, fileName(1))); err != nil {
				t.Fatal(err)
			}
		}, file: 1, line: func(*testing.T, string) int { return 0 }, reason: "file missing: the log starts at audit-000002.jsonl"},
		{name: "tamper with the last line of a file", tamper: func(t *testing.T, dir string) {
			ls := lines(t, dir, 1)
			ls[len(ls)-1] = replace("step", "stop")(ls[len(ls)-1])
			writeLines(t, dir, 1, ls)
		}, file: 1, line: n1, reason: "signature does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tamperLog(t)
			tc.tamper(t, dir)
			wantLine := 3
			if tc.line != nil {
				wantLine = tc.line(t, dir)
			}
			_, err := Verify(dir, testKey(t, 1).GetPublic())
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify: %v, want a *VerifyError", err)
			}
			if ve.File != fileName(tc.file) || ve.Line != wantLine || !strings.Contains(ve.Reason, tc.reason) {
				t.Fatalf("Verify: %v; want %s:%d …%s", err, fileName(tc.file), wantLine, tc.reason)
			}
			if !strings.HasPrefix(ve.Error(), ve.File) || ve.Seq == 0 {
				t.Fatalf("error %q does not lead with the file and name a seq", ve.Error())
			}
		})
	}
}

func TestVerifyErrorString(t *testing.T) {
	e := &VerifyError{File: "audit-000001.jsonl", Line: 17, Seq: 17, Reason: "prev hash does not match the record before it"}
	if got, want := e.Error(), "audit-000001.jsonl:17 (seq 17): prev hash does not match the record before it"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}

func TestVerifyWrongKey(t *testing.T) {
	dir := tamperLog(t)
	_, err := Verify(dir, testKey(t, 2).GetPublic())
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.File != fileName(1) || ve.Line != 1 {
		t.Fatalf("Verify with another key: %v", err)
	}
}

func TestTornTail(t *testing.T) {
	// torn builds a torn tail: part of a line that Append would have
	// written next, or all of it without the newline.
	for _, tc := range []struct {
		name    string
		newFile bool // the torn line is alone in a new file
		cut     func(line []byte) []byte
	}{
		{"half a line", false, func(b []byte) []byte { return b[:len(b)/2] }},
		{"whole line without newline", false, func(b []byte) []byte { return b }},
		{"one byte", false, func(b []byte) []byte { return b[:1] }},
		{"half a line in a new file", true, func(b []byte) []byte { return b[:len(b)/2] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			key := testKey(t, 1)
			l, err := Open(dir, key, Options{})
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, l, 0, 5)
			if err := l.Close(); err != nil { // record 6 is Close's checkpoint
				t.Fatal(err)
			}
			// The line the next record would have had.
			next := testRecord(5)
			next.Seq, next.Prev, next.Time = 7, lineHash(lines(t, dir, 1)[5]), next.Time.UTC()
			data, _ := signedBytes(next)
			next.Sig, _ = key.Sign(data)
			line, _ := json.Marshal(next)

			before, _ := os.ReadFile(filepath.Join(dir, fileName(1)))
			index := 1
			if tc.newFile {
				index = 2
			}
			f, err := os.OpenFile(filepath.Join(dir, fileName(index)), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(tc.cut(line)); err != nil {
				t.Fatal(err)
			}
			_ = f.Close()

			rep := verifyOK(t, dir, key)
			if !rep.TornTail || rep.Records != 6 {
				t.Fatalf("report %+v, want 6 records and a torn tail", rep)
			}
			if recs, err := Tail(dir, 10); err != nil || len(recs) != 6 {
				t.Fatalf("Tail: %d records, %v", len(recs), err)
			}

			l = openLog(t, dir, key, Options{})
			after, _ := os.ReadFile(filepath.Join(dir, fileName(1)))
			if !bytes.Equal(after, before) {
				t.Fatal("Open did not restore the file to its last complete record")
			}
			if tc.newFile {
				if st, err := os.Stat(filepath.Join(dir, fileName(2))); err != nil || st.Size() != 0 {
					t.Fatalf("Open left the torn line in the new file: %v", err)
				}
			}
			if rep := verifyOK(t, dir, key); rep.TornTail {
				t.Fatal("torn tail still reported after Open")
			}
			if r, err := l.Append(testRecord(5)); err != nil || r.Seq != 7 {
				t.Fatalf("Append after Open: seq %d, %v", r.Seq, err)
			}
			if rep := verifyOK(t, dir, key); rep.Records != 7 || rep.TornTail {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

func TestOpenRefusesCorruptLastRecord(t *testing.T) {
	for _, tc := range []struct {
		name   string
		key    byte
		tamper func(b []byte) []byte
		reason string
	}{
		{"edited", 1, func(b []byte) []byte { return bytes.Replace(b, []byte(`"size":5`), []byte(`"size":4`), 1) }, "signature does not verify"},
		{"garbage", 1, func([]byte) []byte { return []byte("not json") }, "malformed audit record"},
		{"another key", 2, func(b []byte) []byte { return b }, "signature does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := Open(dir, testKey(t, 1), Options{})
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, l, 0, 5)
			_ = l.Close()
			ls := lines(t, dir, 1)
			ls[5] = tc.tamper(ls[5]) // Close's checkpoint record
			writeLines(t, dir, 1, ls)
			before, _ := os.ReadFile(filepath.Join(dir, fileName(1)))

			_, err = Open(dir, testKey(t, tc.key), Options{})
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.File != fileName(1) || ve.Line != 6 || !strings.Contains(ve.Reason, tc.reason) {
				t.Fatalf("Open: %v; want audit-000001.jsonl:6 …%s", err, tc.reason)
			}
			if after, _ := os.ReadFile(filepath.Join(dir, fileName(1))); !bytes.Equal(before, after) {
				t.Fatal("Open changed a corrupt log")
			}
		})
	}
}

func TestConcurrentAppend(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t, 1)
	l := openLog(t, dir, key, Options{MaxFileSize: 8192})
	const workers, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := l.Append(Record{Kind: "proposal", Agent: fmt.Sprint("w", w), Rationale: fmt.Sprint(i)}); err != nil {
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
	rep := verifyOK(t, dir, key)
	if rep.Records != workers*each || rep.Files < 2 {
		t.Fatalf("report %+v", rep)
	}
	// Each worker's records are in the order it appended them.
	recs, err := Tail(dir, workers*each)
	if err != nil {
		t.Fatal(err)
	}
	next := map[string]int{}
	for _, r := range recs {
		if r.Rationale != fmt.Sprint(next[r.Agent]) {
			t.Fatalf("seq %d: worker %s record %s, want %d", r.Seq, r.Agent, r.Rationale, next[r.Agent])
		}
		next[r.Agent]++
	}
}

// TestAppendIsVisible checks what can be checked of durability in one
// process: once Append returns, a fresh reader sees the record.
func TestAppendIsVisible(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t, 1)
	l := openLog(t, dir, key, Options{MaxFileSize: 1024})
	for i := 0; i < 12; i++ {
		r, err := l.Append(testRecord(i))
		if err != nil {
			t.Fatal(err)
		}
		got, err := Tail(dir, 1)
		if err != nil || len(got) != 1 || got[0].Seq != r.Seq || !bytes.Equal(got[0].Sig, r.Sig) {
			t.Fatalf("after Append %d, Tail gives %+v, %v", r.Seq, got, err)
		}
		if rep := verifyOK(t, dir, key); rep.Records != i+1 || rep.TornTail {
			t.Fatalf("after Append %d: %+v", r.Seq, rep)
		}
	}
}

func TestTail(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, testKey(t, 1), Options{MaxFileSize: 1024})
	if recs, err := Tail(dir, 5); err != nil || len(recs) != 0 {
		t.Fatalf("Tail of an empty log: %v, %v", recs, err)
	}
	appendN(t, l, 0, 30)
	for _, tc := range []struct{ n, want int }{{0, 0}, {-1, 0}, {1, 1}, {7, 7}, {30, 30}, {100, 30}} {
		recs, err := Tail(dir, tc.n)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != tc.want {
			t.Fatalf("Tail(%d): %d records, want %d", tc.n, len(recs), tc.want)
		}
		for i, r := range recs {
			if want := uint64(30 - tc.want + i + 1); r.Seq != want {
				t.Fatalf("Tail(%d)[%d]: seq %d, want %d", tc.n, i, r.Seq, want)
			}
		}
	}
}

func TestNoLog(t *testing.T) {
	empty := t.TempDir()
	for _, dir := range []string{filepath.Join(empty, "missing"), empty} {
		if _, err := Verify(dir, testKey(t, 1).GetPublic()); !errors.Is(err, ErrNoLog) {
			t.Errorf("Verify(%s): %v, want ErrNoLog", dir, err)
		}
		if _, err := Tail(dir, 1); !errors.Is(err, ErrNoLog) {
			t.Errorf("Tail(%s): %v, want ErrNoLog", dir, err)
		}
	}
	// A log opened but never written is intact and empty.
	dir := filepath.Join(empty, "new")
	openLog(t, dir, testKey(t, 1), Options{})
	if rep := verifyOK(t, dir, testKey(t, 1)); rep.Records != 0 || rep.Files != 1 {
		t.Fatalf("report %+v", rep)
	}
}

func TestOpenOptionsAndClose(t *testing.T) {
	if _, err := Open(t.TempDir(), testKey(t, 1), Options{MaxFileSize: -1}); err == nil || !strings.Contains(err.Error(), "MaxFileSize") {
		t.Fatalf("negative MaxFileSize: %v", err)
	}
	if _, err := Open(t.TempDir(), nil, Options{}); err == nil {
		t.Fatal("nil key accepted")
	}
	l, err := Open(t.TempDir(), testKey(t, 1), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Append(Record{Kind: "x"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
}

func TestParseRecord(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, testKey(t, 1), Options{})
	appendN(t, l, 0, 2)
	good := bytes.Clone(lines(t, dir, 1)[1])
	if _, err := ParseRecord(good); err != nil {
		t.Fatalf("valid line: %v", err)
	}
	// An unsigned record, sig null, is well-formed.
	unsigned := append(bytes.Clone(good[:bytes.LastIndex(good, []byte(`"sig":`))]), `"sig":null}`...)
	if r, err := ParseRecord(unsigned); err != nil || r.Sig != nil {
		t.Fatalf("unsigned line: %+v, %v", r, err)
	}
	r, _ := ParseRecord(good)
	prev := r.Prev
	sub := func(old, new string) []byte { return bytes.Replace(good, []byte(old), []byte(new), 1) }
	for _, tc := range []struct {
		name string
		line []byte
	}{
		{"empty", nil},
		{"null", []byte("null")},
		{"array", []byte("[]")},
		{"trailing newline", append(bytes.Clone(good), '\n')},
		{"seq 0", sub(`"seq":2`, `"seq":0`)},
		{"no kind", sub(`"kind":"proposal"`, `"kind":""`)},
		{"no sig", sub(`"sig":"`, `"sig":"","x":"`)},
		{"empty sig", append(good[:bytes.LastIndex(good, []byte(`"sig":`))], `"sig":""}`...)},
		{"sig missing", append(good[:bytes.LastIndex(good, []byte(`,"sig":`))], '}')},
		{"upper-case prev", sub(prev, strings.ToUpper(prev))},
		{"upper-case key", sub(`"seq"`, `"SEQ"`)},
		{"duplicate key", sub(`"seq":2,`, `"seq":2,"seq":2,`)},
		{"time not canonical", sub(`Z"`, `.000Z"`)},
		{"too long", append(bytes.Clone(good), bytes.Repeat([]byte(" "), MaxRecordSize)...)},
	} {
		if _, err := ParseRecord(tc.line); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", tc.name, err)
		}
	}
}

// BenchmarkVerify measures Verify per record.
func BenchmarkVerify(b *testing.B) {
	dir := b.TempDir()
	key := testKey(b, 1)
	l, err := Open(dir, key, Options{})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		if _, err := l.Append(testRecord(i)); err != nil {
			b.Fatal(err)
		}
	}
	_ = l.Close()
	for b.Loop() {
		if _, err := Verify(dir, key.GetPublic()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/record")
}
