package audit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// ErrKeyMismatch is wrapped (through VerifyError.Err) by Verify's error
// when a signature fails and no signature in the log (nor SidecarFile's)
// verifies with the key given: the log was written by another key, rather
// than tampered with.
var ErrKeyMismatch = errors.New("audit log not signed by this key")

// Report sums up a log that Verify found intact.
type Report struct {
	// Records is the number of records verified: every complete record
	// up to the last signed one (checkpoint records included), after any
	// pruned prefix.
	Records int
	// Files is the number of files verified.
	Files int
	// First and Last are the times of the first and last records verified;
	// zero for an empty log.
	First, Last time.Time
	// TornTail is set when the log ends in an incomplete line: a write
	// that a crash interrupted, never acknowledged. Open removes it.
	TornTail bool
	// Unsigned counts complete records after the last signed one: the
	// start of a commit group whose signed end a crash kept off the disk,
	// never acknowledged. They are not in Records; Open removes them.
	Unsigned int
	// Checkpoints is the number of checkpoint records among Records.
	Checkpoints int
	// Checkpoint is the latest signed checkpoint that the records were
	// proven against: SidecarFile's, or a later checkpoint record's; nil
	// for a log written before checkpoints existed, whose end cannot be
	// checked.
	Checkpoint *Checkpoint
	// Pruned is the number of records before the first file, removed by
	// Prune; PrunedFiles the number of files they were in; PrunedLast
	// the time of the last of them. Zero if nothing was pruned.
	Pruned      uint64
	PrunedFiles int
	PrunedLast  time.Time
	// Stale counts files below the anchor's cut that an interrupted Prune
	// left; they are not verified, and the next Prune removes them.
	Stale int
}

// Verify checks the whole log in dir against the node's public key:
//
//   - the files are numbered without a gap, from 1 or, after Prune, from
//     the file AnchorFile names;
//   - every line is a well-formed record (ParseRecord) and seqs run on by
//     one from 1 (or from the anchor);
//   - each Prev is the hash of the line before it ("" for seq 1, the
//     anchor's for the first record after a pruned prefix);
//   - each signature present verifies with pub, every file but the last
//     ends with a signed record, and each checkpoint record is signed and
//     carries the tree hash of the records before it;
//   - SidecarFile's signature verifies with pub, and the records (through
//     the anchor, if any) give the tree hash it signs; a log with fewer
//     signed records than it covers fails with ErrTruncated, and a log
//     with checkpoint records or an anchor but no SidecarFile fails too.
//
// The first problem is returned as a *VerifyError naming the file and line.
// An incomplete line or unsigned records at the very end of the log are
// not a problem: they are what a crash mid-write leaves, never
// acknowledged, and are reported in Report.TornTail and Report.Unsigned.
// Verify may run while a Log appends to dir, but not while Prune removes
// files. A missing directory or one without audit files gives an error
// wrapping ErrNoLog; I/O errors are returned as they are.
func Verify(dir string, pub crypto.PubKey) (Report, error) {
	v, err := verifyLog(dir, pub, nil)
	return v.rep, err
}

// verified is what verifyLog found: the report, and the sidecar and
// anchor it proved the log against.
type verified struct {
	rep Report
	sc  *sidecar
	an  *anchor
}

// fileEnd is the chain and tree state after one verified file.
type fileEnd struct {
	index    int
	seq      uint64 // seq of its last record
	prev     string // hash of its last line
	lastTime time.Time
	tree     frontier
}

// verifyLog is Verify, calling onFile (if set) after each verified file.
func verifyLog(dir string, pub crypto.PubKey, onFile func(fileEnd)) (verified, error) {
	if pub == nil {
		return verified{}, fmt.Errorf("audit: verify %s: nil public key", dir)
	}
	// The sidecar before the files: a Log appending meanwhile only adds
	// records beyond the checkpoint read, never the other way round.
	an, err := readAnchor(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return verified{}, &VerifyError{File: AnchorFile, Reason: err.Error()}
	}
	sc, err := readSidecar(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return verified{}, &VerifyError{File: SidecarFile, Reason: err.Error()}
	}
	all, err := logFiles(dir)
	if err != nil {
		return verified{}, err
	}

	var (
		rep        Report
		seq        uint64
		prev       string
		tree       frontier
		first      = 1
		anySig     bool   // a signature has verified
		total      int    // records read
		lastSigned uint64 // seq of the last signed record
		inLog      *Checkpoint
		scOK       bool // the sidecar's tree hash was matched
	)
	if an != nil {
		first, seq, prev, lastSigned = an.FirstFile, an.Size, an.Last, an.Size
		tree, _ = an.tree() // checked by readAnchor
		rep.Pruned, rep.PrunedFiles = an.Size, an.FirstFile-1
		rep.PrunedLast, _ = time.Parse(time.RFC3339Nano, an.LastTime)
	}
	// checkSidecar is called whenever the tree reaches a new size.
	checkSidecar := func() error {
		if sc == nil || scOK || uint64(tree.n) != sc.Size {
			return nil
		}
		if !sc.verify(pub) {
			e := &VerifyError{File: SidecarFile, Reason: "signature does not verify with the node key"}
			if !anySig && !signedByKey(dir, first, pub, nil) {
				e.Err = ErrKeyMismatch
			}
			return e
		}
		if tree.root() != sc.checkpoint().Root {
			return &VerifyError{File: SidecarFile, Seq: sc.Size,
				Reason: fmt.Sprintf("the log's records 1-%d do not give the tree hash this checkpoint (signed %s) signs", sc.Size, sc.Time)}
		}
		scOK = true
		return nil
	}
	if err := checkSidecar(); err != nil {
		return verified{rep: rep}, err
	}

	// Files are taken by number, not from the listing alone: a listing
	// racing with a rotation may show a new file but not the one before
	// it. The log ends at the first number that does not exist; a listed
	// file beyond it is a gap.
	listed := map[int]bool{}
	for _, idx := range all {
		if idx < first {
			rep.Stale++
		}
		listed[idx] = true
	}
	exists := func(index int) bool {
		if listed[index] {
			return true
		}
		_, err := os.Stat(filepath.Join(dir, fileName(index)))
		return err == nil
	}
	var files []int
	for index := first; exists(index); index++ {
		files = append(files, index)
		if !exists(index + 1) {
			break
		}
	}
	for _, idx := range all {
		if idx < first || (len(files) > 0 && idx <= files[len(files)-1]) {
			continue
		}
		// A gap: report it where the verification gets to it, below.
		files = append(files, -idx)
		break
	}
	if len(files) == 0 {
		return verified{rep: rep}, &VerifyError{File: fileName(first), Seq: seq + 1,
			Reason: fmt.Sprintf("file missing: %s says the log goes on at %s, but it holds no file from there", AnchorFile, fileName(first))}
	}
	for i, index := range files {
		if index < 0 {
			index = -index
			name := fileName(index)
			reason := "file missing: the log starts at " + name
			if i > 0 {
				reason = fmt.Sprintf("file missing: the files jump from %s to %s", fileName(files[i-1]), name)
			} else if an != nil {
				reason = fmt.Sprintf("file missing: %s says the log goes on at %s, but it starts at %s", AnchorFile, fileName(first), name)
			}
			return verified{rep: rep}, &VerifyError{File: fileName(first + i), Seq: seq + 1, Reason: reason}
		}
		name := fileName(index)
		// The last file is the one without a successor when it is read; one
		// that a rotation follows meanwhile still ends this verification.
		isLast := i == len(files)-1 || files[i+1] < 0
		unsignedAt, lastLine := 0, 0 // line of the first record since the last signature
		err := eachLine(dir, name, func(n int, line []byte, complete bool) error {
			bad := func(reason string) error {
				return &VerifyError{File: name, Line: n, Seq: seq + 1, Reason: reason}
			}
			if !complete {
				if !isLast {
					return bad("incomplete line (no newline) before the end of the log")
				}
				rep.TornTail = true
				return nil
			}
			r, err := ParseRecord(line)
			switch {
			case err != nil:
				return bad(err.Error())
			case r.Seq != seq+1:
				return bad(fmt.Sprintf("seq is %d, want %d", r.Seq, seq+1))
			case r.Prev != prev && prev == "":
				return bad("prev hash is set on the log's first record: the log's beginning is missing")
			case r.Prev != prev && an != nil && seq == an.Size:
				return bad("prev hash does not match the last pruned record's in " + AnchorFile)
			case r.Prev != prev:
				return bad("prev hash does not match the record before it")
			}
			if r.Sig != nil {
				if !checkLineSig(line, r, pub) {
					e := bad("signature does not verify with the node key").(*VerifyError)
					if !anySig && !signedByKey(dir, first, pub, sc) {
						e.Err = ErrKeyMismatch
					}
					return e
				}
				anySig = true
			}
			if r.Kind == KindCheckpoint {
				d, root, err := parseCheckpointDetail(r.Detail)
				switch {
				case err != nil:
					return bad(err.Error())
				case r.Sig == nil:
					return bad("checkpoint record is not signed")
				case d.Size != seq:
					return bad(fmt.Sprintf("checkpoint record covers %d records, want %d (the records before it)", d.Size, seq))
				case root != tree.root():
					return bad("checkpoint record's tree hash does not match the records before it")
				}
				inLog = &Checkpoint{Size: d.Size, Root: root, Time: r.Time}
				rep.Checkpoints++
			}
			tree.pushLine(line)
			seq, prev = r.Seq, lineHash(line)
			if err := checkSidecar(); err != nil {
				return err
			}
			total++
			if total == 1 {
				rep.First = r.Time
			}
			lastLine = n
			if r.Sig != nil {
				rep.Records, rep.Last, lastSigned, unsignedAt = total, r.Time, r.Seq, 0
			} else if unsignedAt == 0 {
				unsignedAt = n
			}
			return nil
		})
		var verr *VerifyError
		if errors.As(err, &verr) && verr.Seq == 0 {
			verr.Seq = seq + 1
		}
		if err != nil {
			return verified{rep: rep}, err
		}
		if !isLast && unsignedAt > 0 {
			return verified{rep: rep}, &VerifyError{File: name, Line: lastLine, Seq: seq,
				Reason: "the file ends with a record no signature covers, and it is not the log's last file"}
		}
		rep.Files++
		if onFile != nil {
			onFile(fileEnd{index: index, seq: seq, prev: prev, lastTime: rep.Last, tree: tree.clone()})
		}
	}
	rep.Unsigned = total - rep.Records
	if rep.Records == 0 {
		rep.First = time.Time{}
	}

	last := fileName(files[len(files)-1])
	switch {
	case sc != nil && sc.Size > lastSigned:
		return verified{rep: rep}, &VerifyError{File: last, Seq: lastSigned + 1, Err: ErrTruncated,
			Reason: fmt.Sprintf("records missing at the end: %s (signed %s) covers %d records, but the log's last signed record is seq %d: records %d-%d were cut off",
				SidecarFile, sc.Time, sc.Size, lastSigned, lastSigned+1, sc.Size)}
	case sc != nil && !scOK:
		return verified{rep: rep}, &VerifyError{File: SidecarFile, Seq: sc.Size,
			Reason: fmt.Sprintf("covers %d records, fewer than the %d that %s says were pruned, so it cannot prove the records kept", sc.Size, an.Size, AnchorFile)}
	case sc == nil && an != nil:
		return verified{rep: rep}, &VerifyError{File: SidecarFile,
			Reason: "missing: the log was pruned, and without a checkpoint the records kept cannot be proven"}
	case sc == nil && rep.Checkpoints > 0:
		return verified{rep: rep}, &VerifyError{File: SidecarFile,
			Reason: "missing, but the log has checkpoint records: it was removed, and without it records cut off the log's end go unnoticed"}
	}
	if sc != nil {
		c := sc.checkpoint()
		rep.Checkpoint = &c
	}
	if inLog != nil && (rep.Checkpoint == nil || inLog.Size > rep.Checkpoint.Size) {
		rep.Checkpoint = inLog
	}
	return verified{rep: rep, sc: sc, an: an}, nil
}

// signedByKey reports whether any signature of the log in dir, from file
// first on, or of sc verifies with pub: it tells a wrong key from a forged
// record, on the error path only.
func signedByKey(dir string, first int, pub crypto.PubKey, sc *sidecar) bool {
	if sc != nil && sc.verify(pub) {
		return true
	}
	found := false
	for index := first; !found; index++ {
		err := eachLine(dir, fileName(index), func(_ int, line []byte, complete bool) error {
			if r, err := ParseRecord(line); complete && err == nil && r.Sig != nil && checkLineSig(line, r, pub) {
				found = true
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return found
		}
	}
	return found
}

// Tail returns the last n records of the log in dir, oldest first. It
// reads without verifying (Verify does that) but fails on a line that does
// not parse, naming it with a *VerifyError. An incomplete last line and
// records after the last signed one (a commit group not yet, or never,
// complete on disk) are skipped.
func Tail(dir string, n int) ([]Record, error) {
	files, err := logFiles(dir)
	if err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	// Files below the anchor's cut are leftovers of an interrupted prune.
	if an, err := readAnchor(dir); err == nil && an != nil {
		for len(files) > 0 && files[0] < an.FirstFile {
			files = files[1:]
		}
	}
	var out []Record // newest file first, each file's records in order
	tail := true     // still looking for the last signed record
	for i := len(files) - 1; i >= 0 && len(out) < n; i-- {
		name := fileName(files[i])
		var recs []Record
		err := eachLine(dir, name, func(ln int, line []byte, complete bool) error {
			if !complete {
				return nil
			}
			r, err := ParseRecord(line)
			if err != nil {
				return &VerifyError{File: name, Line: ln, Reason: err.Error()}
			}
			recs = append(recs, r)
			return nil
		})
		if err != nil {
			return nil, err
		}
		if tail {
			for len(recs) > 0 && recs[len(recs)-1].Sig == nil {
				recs = recs[:len(recs)-1]
			}
			tail = len(recs) == 0
		}
		if keep := n - len(out); len(recs) > keep {
			recs = recs[len(recs)-keep:]
		}
		out = append(recs, out...)
	}
	return out, nil
}

// logFiles lists dir's audit files, with ErrNoLog for none.
func logFiles(dir string) ([]int, error) {
	files, err := listFiles(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("audit: %s does not exist: %w", dir, ErrNoLog)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("audit: no %s*%s files in %s: %w", filePrefix, fileSuffix, dir, ErrNoLog)
	}
	return files, nil
}

// eachLine calls fn with every line of file name in dir, numbered from 1.
// A line longer than MaxRecordSize is a *VerifyError.
func eachLine(dir, name string, fn func(n int, line []byte, complete bool) error) error {
	return eachLineFrom(dir, name, 0, fn)
}

// eachLineFrom is eachLine from offset off, numbering lines from there.
func eachLineFrom(dir, name string, off int64, fn func(n int, line []byte, complete bool) error) error {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	if off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	lr := newLineReader(f)
	for {
		line, complete, err := lr.next()
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, errLineTooLong):
			return &VerifyError{File: name, Line: lr.n, Reason: err.Error()}
		case err != nil:
			return fmt.Errorf("audit: read %s: %w", name, err)
		}
		if err := fn(lr.n, line, complete); err != nil {
			return err
		}
	}
}
