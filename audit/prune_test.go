package audit

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pruneLog writes 60 records a second apart from t0, a checkpoint every
// 10, over files of 2 KiB, and closes the log.
func pruneLog(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	l, err := Open(dir, testKey(t, 1), Options{MaxFileSize: 2048, CheckpointEvery: 10})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 60)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if files, _ := listFiles(dir); len(files) < 8 {
		t.Fatalf("%d files; the tests need more", len(files))
	}
	return dir
}

func TestPrune(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      PruneOptions
		wantFiles func(total int) int // files kept
	}{
		{"keep 3 files", PruneOptions{KeepFiles: 3}, func(int) int { return 3 }},
		{"keep 1 file", PruneOptions{KeepFiles: 1}, func(int) int { return 1 }},
		{"keep more files than there are", PruneOptions{KeepFiles: 100}, func(n int) int { return n }},
		{"older than a date", PruneOptions{Before: t0.Add(30 * time.Second)}, nil},
		{"either keeps", PruneOptions{KeepFiles: 100, Before: t0.Add(30 * time.Second)}, func(n int) int { return n }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := pruneLog(t)
			key := testKey(t, 1)
			before := verifyOK(t, dir, key)
			allBefore := allLines(t, dir)
			files, _ := listFiles(dir)

			pr, err := Prune(dir, key.GetPublic(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			kept, _ := listFiles(dir)
			if tc.wantFiles != nil && len(kept) != tc.wantFiles(len(files)) {
				t.Fatalf("kept %d of %d files, want %d", len(kept), len(files), tc.wantFiles(len(files)))
			}
			if !tc.opts.Before.IsZero() && tc.opts.KeepFiles == 0 {
				// Every file removed ended before the date; the first kept
				// one does not.
				recs, _ := Tail(dir, 1000)
				if len(recs) > 0 && pr.Pruned > 0 && recs[0].Seq != pr.Pruned+1 {
					t.Fatalf("kept log starts at seq %d, want %d", recs[0].Seq, pr.Pruned+1)
				}
				first := lines(t, dir, kept[0])
				r, _ := ParseRecord(first[len(first)-1])
				if r.Time.Before(tc.opts.Before) {
					t.Fatalf("kept %s, which ends before %v", fileName(kept[0]), tc.opts.Before)
				}
			}
			if pr.Files != len(files)-len(kept) || pr.FirstFile != kept[0] {
				t.Fatalf("prune report %+v, kept files %v", pr, kept)
			}

			rep := verifyOK(t, dir, key)
			if int(rep.Pruned)+rep.Records != before.Records || rep.Pruned != pr.Pruned || rep.PrunedFiles != kept[0]-1 {
				t.Fatalf("after prune: report %+v; before %d records", rep, before.Records)
			}
			if rep.Checkpoint == nil || rep.Checkpoint.Size != uint64(len(allBefore)) {
				t.Fatalf("after prune: checkpoint %+v", rep.Checkpoint)
			}
			if pr.Pruned > 0 {
				last, _ := ParseRecord(allBefore[pr.Pruned-1])
				if !rep.PrunedLast.Equal(last.Time) {
					t.Fatalf("PrunedLast %v, want %v", rep.PrunedLast, last.Time)
				}
			}

			// The pruned log goes on: reopened, appended to, pruned again.
			l := openLog(t, dir, key, Options{MaxFileSize: 2048, CheckpointEvery: 10})
			appendN(t, l, 60, 20)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if rep := verifyOK(t, dir, key); int(rep.Pruned)+rep.Records != before.Records+20+2 {
				t.Fatalf("after appending to the pruned log: %+v", rep)
			}
			if _, err := Prune(dir, key.GetPublic(), PruneOptions{KeepFiles: 2}); err != nil {
				t.Fatal(err)
			}
			if rep := verifyOK(t, dir, key); int(rep.Pruned)+rep.Records != before.Records+20+2 {
				t.Fatalf("after a second prune: %+v", rep)
			}
		})
	}
}

func TestPruneRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) string
		opts  PruneOptions
		want  string
		is    error
	}{
		{"no option", pruneLog, PruneOptions{}, "say which files to keep", nil},
		{"negative keep", pruneLog, PruneOptions{KeepFiles: -1}, "KeepFiles is -1", nil},
		{"no log", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none") }, PruneOptions{KeepFiles: 1}, "does not exist", ErrNoLog},
		{"a log that does not verify", func(t *testing.T) string {
			dir := pruneLog(t)
			ls := lines(t, dir, 2)
			ls[0] = []byte(strings.Replace(string(ls[0]), "step", "stop", 1))
			writeLines(t, dir, 2, ls)
			return dir
		}, PruneOptions{KeepFiles: 1}, "does not verify, so nothing was removed", nil},
		{"a log without checkpoint", func(t *testing.T) string {
			dir := t.TempDir()
			oldLog(t, dir, 30)
			return dir
		}, PruneOptions{KeepFiles: 1}, "no checkpoint", ErrNoCheckpoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.setup(t)
			files, _ := listFiles(dir)
			_, err := Prune(dir, testKey(t, 1).GetPublic(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("Prune: %v; want …%s", err, tc.want)
			}
			if after, _ := listFiles(dir); len(after) != len(files) {
				t.Fatalf("Prune removed files: %v, were %v", after, files)
			}
			if _, err := os.Stat(filepath.Join(dir, AnchorFile)); err == nil {
				t.Fatal("Prune wrote an anchor")
			}
		})
	}
}

// TestPruneKeepsRecordsBeyondTheCheckpoint: files with records that no
// checkpoint covers yet are not removed, however old.
func TestPruneKeepsRecordsBeyondTheCheckpoint(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t, 1)
	l := openLog(t, dir, key, Options{MaxFileSize: 2048, CheckpointEvery: 1000})
	appendN(t, l, 0, 30) // live, and the only checkpoint is Open's, at 0
	pr, err := Prune(dir, key.GetPublic(), PruneOptions{KeepFiles: 1})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Files != 0 {
		t.Fatalf("Prune removed %d files holding records no checkpoint covers", pr.Files)
	}
	if err := l.Close(); err != nil { // checkpoints all 30
		t.Fatal(err)
	}
	if pr, err = Prune(dir, key.GetPublic(), PruneOptions{KeepFiles: 1}); err != nil || pr.Files == 0 {
		t.Fatalf("Prune after the checkpoint: %+v, %v", pr, err)
	}
	verifyOK(t, dir, key)
}

func TestPrunedLogTampering(t *testing.T) {
	editAnchor := func(f func(a *anchor)) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			b, err := os.ReadFile(filepath.Join(dir, AnchorFile))
			if err != nil {
				t.Fatal(err)
			}
			var a anchor
			if err := json.Unmarshal(b, &a); err != nil {
				t.Fatal(err)
			}
			f(&a)
			if err := writeJSONFile(dir, AnchorFile, a); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, dir string)
		file   func(first int) string
		reason string
	}{
		{"anchor removed", func(t *testing.T, dir string) {
			_ = os.Remove(filepath.Join(dir, AnchorFile))
		}, func(int) string { return fileName(1) }, "file missing: the log starts at"},
		// Caught by the first tree hash checked after the cut, here a
		// checkpoint record's.
		{"anchor frontier forged", editAnchor(func(a *anchor) { a.Frontier[0] = hexHash(emptyRoot) }),
			nil, "tree hash does not match"},
		{"anchor last hash forged", editAnchor(func(a *anchor) { a.Last = hexHash(emptyRoot) }),
			func(first int) string { return fileName(first) }, "does not match the last pruned record's"},
		{"anchor claims more pruned", editAnchor(func(a *anchor) { a.Size++ }),
			func(first int) string { return AnchorFile }, "frontier of a tree"},
		{"first kept file removed", func(t *testing.T, dir string) {
			files, _ := listFiles(dir)
			_ = os.Remove(filepath.Join(dir, fileName(files[0])))
		}, func(first int) string { return fileName(first) }, "file missing"},
		{"sidecar removed", func(t *testing.T, dir string) {
			_ = os.Remove(filepath.Join(dir, SidecarFile))
		}, func(int) string { return SidecarFile }, "missing: the log was pruned"},
		{"kept record edited", func(t *testing.T, dir string) {
			files, _ := listFiles(dir)
			ls := lines(t, dir, files[0])
			ls[1] = []byte(strings.Replace(string(ls[1]), "step", "stop", 1))
			writeLines(t, dir, files[0], ls)
		}, func(first int) string { return fileName(first) }, "does not"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := pruneLog(t)
			key := testKey(t, 1)
			if _, err := Prune(dir, key.GetPublic(), PruneOptions{KeepFiles: 3}); err != nil {
				t.Fatal(err)
			}
			files, _ := listFiles(dir)
			tc.tamper(t, dir)
			_, err := Verify(dir, key.GetPublic())
			var ve *VerifyError
			want := ""
			if tc.file != nil {
				want = tc.file(files[0])
			}
			if !errors.As(err, &ve) || (want != "" && ve.File != want) || !strings.Contains(ve.Reason, tc.reason) {
				t.Fatalf("Verify: %v; want %s: …%s", err, want, tc.reason)
			}
		})
	}
}

// TestPruneInterrupted: a crash after the anchor is written but before
// every file is removed leaves a log that verifies; the next Prune
// finishes the job.
func TestPruneInterrupted(t *testing.T) {
	dir := pruneLog(t)
	key := testKey(t, 1)
	saved := map[int][]byte{}
	files, _ := listFiles(dir)
	for _, idx := range files[:2] {
		saved[idx], _ = os.ReadFile(filepath.Join(dir, fileName(idx)))
	}
	if _, err := Prune(dir, key.GetPublic(), PruneOptions{KeepFiles: 2}); err != nil {
		t.Fatal(err)
	}
	// As if the removal of the first two stopped short.
	for idx, b := range saved {
		if err := os.WriteFile(filepath.Join(dir, fileName(idx)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rep := verifyOK(t, dir, key)
	if rep.Stale != 2 || rep.Files != 2 {
		t.Fatalf("report %+v, want 2 stale files and 2 verified", rep)
	}
	if recs, err := Tail(dir, 1000); err != nil || recs[0].Seq != rep.Pruned+1 {
		t.Fatalf("Tail reads into the stale files: %v", err)
	}
	l := openLog(t, dir, key, Options{MaxFileSize: 2048})
	appendN(t, l, 60, 2)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	pr, err := Prune(dir, key.GetPublic(), PruneOptions{KeepFiles: 100})
	if err != nil || pr.Files != 2 {
		t.Fatalf("second Prune: %+v, %v; want the 2 stale files removed", pr, err)
	}
	if rep := verifyOK(t, dir, key); rep.Stale != 0 {
		t.Fatalf("report %+v", rep)
	}
}
