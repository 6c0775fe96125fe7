package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// tailScan is what scanTail finds at the end of one file.
type tailScan struct {
	found   bool   // the file has a signed record
	seq     uint64 // the last signed record's seq
	hash    string // its line hash
	ckpt    bool   // it is a checkpoint record
	start   int64  // where its line starts
	keep    int64  // where its line ends, newline included: what to keep
	size    int64  // the file's size
	dropped int    // complete records after it, which no signature covers
	torn    bool   // the file ends in an incomplete line
}

// scanTail finds the last signed record of file index. For a file that is
// not the log's last, an incomplete line is an error, and so is a last
// record without a signature: only a crash mid-group can leave one, and
// only in the last file.
func scanTail(dir string, index int, isLast bool, pub crypto.PubKey) (tailScan, error) {
	name := fileName(index)
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return tailScan{}, err
	}
	defer f.Close()
	type span struct{ start, end int64 }
	var (
		lines []span // complete lines, newline excluded
		ts    tailScan
	)
	lr := newLineReader(f)
	for {
		line, complete, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, errLineTooLong) {
			return ts, &VerifyError{File: name, Line: lr.n, Reason: err.Error()}
		}
		if err != nil {
			return ts, fmt.Errorf("read %s: %w", name, err)
		}
		if !complete {
			if !isLast {
				return ts, &VerifyError{File: name, Line: lr.n, Reason: "incomplete line (no newline) before the end of the log"}
			}
			ts.torn = true
			break
		}
		lines = append(lines, span{lr.start, lr.start + int64(len(line))})
	}
	ts.size = lr.off
	var buf []byte
	for j := len(lines) - 1; j >= 0; j-- {
		sp := lines[j]
		buf = append(buf[:0], make([]byte, sp.end-sp.start)...)
		if _, err := f.ReadAt(buf, sp.start); err != nil {
			return ts, fmt.Errorf("read %s: %w", name, err)
		}
		r, err := ParseRecord(buf)
		if err != nil {
			return ts, &VerifyError{File: name, Line: j + 1, Reason: err.Error()}
		}
		if r.Sig == nil {
			if !isLast {
				return ts, &VerifyError{File: name, Line: j + 1, Seq: r.Seq,
					Reason: "the file ends with a record no signature covers, and it is not the log's last file"}
			}
			ts.dropped++
			continue
		}
		if !checkLineSig(buf, r, pub) {
			return ts, &VerifyError{File: name, Line: j + 1, Seq: r.Seq,
				Reason: "signature does not verify with this node's key (was the log written by another key?)"}
		}
		ts.found, ts.seq, ts.hash, ts.ckpt = true, r.Seq, lineHash(buf), r.Kind == KindCheckpoint
		ts.start, ts.keep = sp.start, sp.end+1
		return ts, nil
	}
	if !isLast && len(lines) == 0 {
		return ts, &VerifyError{File: name, Reason: "empty, and it is not the log's last file"}
	}
	return ts, nil
}

// resume finds the last signed record, trims what follows it, rebuilds
// the tree state and opens the last file for appending.
func (l *Log) resume() error {
	pub := l.key.GetPublic()
	all, err := listFiles(l.dir)
	if err != nil {
		return err
	}
	sc, err := readSidecar(l.dir)
	if err != nil {
		return &VerifyError{File: SidecarFile, Reason: err.Error()}
	}
	an, err := readAnchor(l.dir)
	if err != nil {
		return &VerifyError{File: AnchorFile, Reason: err.Error()}
	}
	first := 1
	if an != nil {
		first = an.FirstFile
	}
	var files []int // files below the anchor's cut are leftovers of an interrupted prune
	for _, idx := range all {
		if idx >= first {
			files = append(files, idx)
		}
	}
	if len(files) == 0 {
		if sc != nil && !sc.verify(pub) {
			return &VerifyError{File: SidecarFile, Reason: "signature does not verify with this node's key (was the log written by another key?)"}
		}
		if an != nil || (sc != nil && sc.Size > 0) {
			return &VerifyError{File: fileName(first), Reason: "file missing: the log's checkpoint or anchor covers records, but there are no audit files", Err: ErrTruncated}
		}
		if err := l.create(1); err != nil {
			return err
		}
		return l.writeSidecar(0)
	}
	if files[0] != first {
		reason := "file missing: the log starts at " + fileName(files[0])
		if an != nil {
			reason += ", but " + AnchorFile + " says it starts at " + fileName(first)
		}
		return &VerifyError{File: fileName(first), Reason: reason}
	}

	// The tail: the last signed record, walking back over a last file
	// that has none (a crash mid-group right after rotation).
	var (
		ts      tailScan
		at      = -1 // position in files of the file holding it
		trimmed = map[int]tailScan{}
	)
	for i := len(files) - 1; i >= 0; i-- {
		isLast := i == len(files)-1
		s, err := scanTail(l.dir, files[i], isLast, pub)
		if err != nil {
			return err
		}
		if s.found {
			ts, at = s, i
			if isLast && s.keep < s.size {
				trimmed[files[i]] = s
			}
			break
		}
		if s.size > 0 {
			trimmed[files[i]] = s
		}
	}
	// The sidecar's signature after the last record's, so that a log of
	// another key is named by its last record, as Verify would.
	if sc != nil && !sc.verify(pub) {
		return &VerifyError{File: SidecarFile, Reason: "signature does not verify with this node's key (was the log written by another key?)"}
	}
	seq, prev, lastFile, lastOff := uint64(0), "", files[0], int64(0)
	if at >= 0 {
		seq, prev, lastFile, lastOff = ts.seq, ts.hash, files[at], ts.start
	} else if an != nil {
		seq, prev, lastFile = an.Size, an.Last, an.FirstFile-1
	}
	if sc != nil && seq == sc.Size && seq > 0 && prev != sc.Last {
		return &VerifyError{File: SidecarFile, Seq: seq,
			Reason: fmt.Sprintf("the log's last signed record, seq %d, is not the one this checkpoint signs: records were changed; run verify", seq)}
	}
	if sc != nil && seq < sc.Size {
		return &VerifyError{File: fileName(files[len(files)-1]), Seq: seq + 1, Err: ErrTruncated,
			Reason: fmt.Sprintf("the log's last signed record is seq %d, but %s (signed %s) covers %d records: records %d-%d are missing",
				seq, SidecarFile, sc.Time, sc.Size, seq+1, sc.Size)}
	}

	tree, since, err := l.rebuildTree(files, sc, an, seq)
	if err != nil {
		return err
	}
	l.tree, l.seq, l.prev, l.sinceCkpt = tree, seq, prev, since
	if at >= 0 && ts.ckpt {
		l.sinceCkpt = 0
	}

	// Trim: only now, once nothing above refused the log (the tree
	// stops at seq, before what is trimmed).
	for idx, s := range trimmed {
		keep := int64(0)
		if s.found {
			keep = s.keep
		}
		log.Warnw("truncating the unacknowledged end of the audit log: the process died while writing a commit group, so none of it was acknowledged",
			"file", filepath.Join(l.dir, fileName(idx)), "complete_records", s.dropped, "torn_line", s.torn, "bytes", s.size-keep)
		if err := truncateFile(filepath.Join(l.dir, fileName(idx)), keep); err != nil {
			return err
		}
	}

	last := files[len(files)-1]
	f, err := l.openFile(filepath.Join(l.dir, fileName(last)), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	st, err := os.Stat(filepath.Join(l.dir, fileName(last)))
	if err != nil {
		_ = f.Close()
		return err
	}
	l.f, l.index, l.size = f, last, st.Size()
	if sc == nil || sc.Size != seq {
		// A checkpoint at the size the log resumes from: the first for a
		// log from before checkpoints, or the one a crash kept from
		// following the last checkpoint record.
		s, err := newSidecar(l.key, &l.tree, l.prev, lastFile, lastOff, time.Now())
		if err != nil {
			return err
		}
		if err := writeJSONFile(l.dir, SidecarFile, s); err != nil {
			return fmt.Errorf("write %s: %w", SidecarFile, err)
		}
	}
	return nil
}

func truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		_ = f.Close()
		return fmt.Errorf("truncate %s: %w", filepath.Base(path), err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("truncate %s: %w", filepath.Base(path), err)
	}
	return f.Close()
}

// rebuildTree computes the tree over records 1 … seq: from the sidecar's
// frontier when its hints check out, else from the anchor or the first
// record. It checks the tree against the sidecar's root, and that a log
// without a sidecar has no checkpoints (it would have had one). It also
// returns how many records follow the last checkpoint record it read.
func (l *Log) rebuildTree(files []int, sc *sidecar, an *anchor, seq uint64) (frontier, int, error) {
	if sc != nil && sc.Size == seq {
		if t, ok := sidecarTree(l.dir, sc, files); ok {
			return t, 0, nil
		}
	}
	// Start from the sidecar's frontier if it holds, and read on.
	var (
		tree     frontier
		startPos int   // position in files
		startOff int64 // offset in that file
		err      error
		since    int
		fromSc   bool
	)
	if sc != nil && sc.Size > 0 {
		if t, ok := sidecarTree(l.dir, sc, files); ok {
			tree, fromSc = t, true
			for i, idx := range files {
				if idx == sc.File {
					startPos = i
				}
			}
			// Skip record sc.Size's own line.
			startOff, err = lineEnd(filepath.Join(l.dir, fileName(sc.File)), sc.Offset)
			if err != nil {
				return frontier{}, 0, err
			}
		}
	}
	if sc != nil && sc.Size == 0 && an == nil {
		fromSc = true // the empty tree, from the first record
	}
	if !fromSc && an != nil {
		if tree, err = an.tree(); err != nil {
			return frontier{}, 0, &VerifyError{File: AnchorFile, Reason: err.Error()}
		}
	}
	sawCkpt := false
	for i := startPos; i < len(files) && uint64(tree.n) < seq; i++ {
		off := int64(0)
		if i == startPos {
			off = startOff
		}
		err := eachLineFrom(l.dir, fileName(files[i]), off, func(_ int, line []byte, complete bool) error {
			if !complete || uint64(tree.n) >= seq {
				return errStop
			}
			if sc != nil && !fromSc && uint64(tree.n) == sc.Size && tree.root() != sc.checkpoint().Root {
				return &VerifyError{File: SidecarFile, Seq: sc.Size,
					Reason: "the log's records do not give the tree hash this checkpoint signs: records were changed; run verify"}
			}
			if isCheckpointLine(line) {
				sawCkpt, since = true, 0
			} else {
				since++
			}
			tree.pushLine(line)
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return frontier{}, 0, err
		}
	}
	if uint64(tree.n) != seq {
		return frontier{}, 0, &VerifyError{File: fileName(files[len(files)-1]), Seq: seq,
			Reason: fmt.Sprintf("the log ends at seq %d but holds %d records: records were removed or added; run verify", seq, tree.n)}
	}
	if sc != nil && !fromSc && sc.Size == seq && tree.root() != sc.checkpoint().Root {
		return frontier{}, 0, &VerifyError{File: SidecarFile, Seq: sc.Size,
			Reason: "the log's records do not give the tree hash this checkpoint signs: records were changed; run verify"}
	}
	if sc == nil && (sawCkpt || an != nil) {
		return frontier{}, 0, &VerifyError{File: SidecarFile,
			Reason: "missing, but the log has checkpoints: it was removed, and without it records cut off the log's end go unnoticed; restore it, or move the log aside to start a new one"}
	}
	return tree, since, nil
}

// sidecarTree rebuilds the tree from the sidecar's frontier, if its hints
// hold: the frontier gives the signed root, and its record's line is where
// it says, with the hash it signs.
func sidecarTree(dir string, sc *sidecar, files []int) (frontier, bool) {
	t, err := frontierFrom(int64(sc.Size), sc.Frontier)
	if err != nil || t.root() != sc.checkpoint().Root {
		return frontier{}, false
	}
	if sc.Size == 0 {
		return t, true
	}
	found := false
	for _, idx := range files {
		found = found || idx == sc.File
	}
	if !found {
		return frontier{}, false
	}
	f, err := os.Open(filepath.Join(dir, fileName(sc.File)))
	if err != nil {
		return frontier{}, false
	}
	defer f.Close()
	if _, err := f.Seek(sc.Offset, io.SeekStart); err != nil {
		return frontier{}, false
	}
	line, complete, err := newLineReader(f).next()
	if err != nil || !complete || lineHash(line) != sc.Last {
		return frontier{}, false
	}
	return t, true
}

// lineEnd returns the offset after the line that starts at off.
func lineEnd(path string, off int64) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	lr := newLineReader(f)
	if _, _, err := lr.next(); err != nil {
		return 0, fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	return off + lr.off, nil
}

// errStop ends an eachLine walk early.
var errStop = errors.New("stop")

// isCheckpointLine reports whether a line is a checkpoint record's,
// without decoding it: its kind, the third field, comes right after a time
// string, which holds no quote.
func isCheckpointLine(line []byte) bool {
	const timeKey = `,"time":"`
	i := bytes.Index(line, []byte(timeKey))
	if i < 0 {
		return false
	}
	rest := line[i+len(timeKey):]
	j := bytes.IndexByte(rest, '"')
	return j >= 0 && bytes.HasPrefix(rest[j:], []byte(`","kind":"`+KindCheckpoint+`"`))
}
