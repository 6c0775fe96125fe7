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

// Report sums up a log that Verify found intact.
type Report struct {
	// Records is the number of complete records.
	Records int
	// Files is the number of files.
	Files int
	// First and Last are the times of the first and last records; zero
	// for an empty log.
	First, Last time.Time
	// TornTail is set when the log ends in an incomplete line: a record
	// whose writer died mid-write, never acknowledged. Open removes it.
	TornTail bool
}

// Verify checks the whole log in dir against the node's public key: the
// files are numbered 1, 2, 3 … without a gap; every line is a well-formed
// record (ParseRecord); seqs run 1, 2, 3 …; each Prev is the hash of the
// line before it ("" for the first); each signature verifies with pub.
//
// The first problem is returned as a *VerifyError naming the file and line.
// An incomplete line at the very end of the log is not a problem: it is
// reported in Report.TornTail. Verify may run while a Log appends to dir.
// A missing directory or one without audit files gives an error wrapping
// ErrNoLog; I/O errors are returned as they are.
func Verify(dir string, pub crypto.PubKey) (Report, error) {
	if pub == nil {
		return Report{}, fmt.Errorf("audit: verify %s: nil public key", dir)
	}
	files, err := logFiles(dir)
	if err != nil {
		return Report{}, err
	}
	var (
		rep  Report
		seq  uint64
		prev string
	)
	for i, index := range files {
		name := fileName(index)
		if index != i+1 {
			reason := "file missing: the log starts at " + name
			if i > 0 {
				reason = fmt.Sprintf("file missing: the files jump from %s to %s", fileName(files[i-1]), name)
			}
			return rep, &VerifyError{File: fileName(i + 1), Seq: seq + 1, Reason: reason}
		}
		isLast := i == len(files)-1
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
			case r.Prev != prev:
				return bad("prev hash does not match the record before it")
			case !checkSig(r, pub):
				return bad("signature does not verify with the node key")
			}
			seq, prev = r.Seq, lineHash(line)
			if rep.Records == 0 {
				rep.First = r.Time
			}
			rep.Last = r.Time
			rep.Records++
			return nil
		})
		var verr *VerifyError
		if errors.As(err, &verr) && verr.Seq == 0 {
			verr.Seq = seq + 1
		}
		if err != nil {
			return rep, err
		}
		rep.Files++
	}
	return rep, nil
}

// Tail returns the last n complete records of the log in dir, oldest
// first. It reads without verifying (Verify does that) but fails on a line
// that does not parse, naming it with a *VerifyError. An incomplete last
// line is skipped.
func Tail(dir string, n int) ([]Record, error) {
	files, err := logFiles(dir)
	if err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	var out []Record // newest file first, each file's records in order
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
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
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
