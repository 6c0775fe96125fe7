package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/parleynet/parley/internal/fsync"
)

var log = logging.Logger("parley/audit")

// DefaultMaxFileSize is the size at which a log file rotates when
// Options.MaxFileSize is 0.
const DefaultMaxFileSize = 16 << 20

// Options tune a Log. The zero value is the default.
type Options struct {
	// MaxFileSize is the size in bytes past which Append starts a new
	// file: a record that would take the current file past it goes to a
	// new one. A record larger than MaxFileSize gets a file to itself.
	// 0 means DefaultMaxFileSize; negative is an error.
	MaxFileSize int64
}

// Log appends to an audit log directory. Its methods are safe for
// concurrent use; Append calls are serialised.
type Log struct {
	dir string
	key crypto.PrivKey
	max int64

	mu     sync.Mutex
	lock   io.Closer // the directory lock, held until Close
	f      *os.File  // the current file, opened for appending
	index  int       // the current file's number
	size   int64     // the current file's size
	seq    uint64    // seq of the last record written
	prev   string    // hash of the last record's line
	broken error     // set when the file's state is unknown; Append fails
	closed bool
}

// Open opens the audit log in dir for appending, creating dir (mode 0700)
// and its first file if they do not exist. Records are signed with key.
//
// Open resumes from the last complete record. A torn final line — bytes
// after the last newline, left by a process that died mid-write, so never
// acknowledged — is truncated away with a warning. A last record that does
// not parse, or whose signature key does not verify, is not repaired: Open
// fails with an error naming its file and line. Open does not check the
// rest of the log; Verify does.
//
// Only one Log may have dir open at a time (on systems with flock); a second
// Open fails with ErrLocked.
func Open(dir string, key crypto.PrivKey, opts Options) (*Log, error) {
	if key == nil {
		return nil, fmt.Errorf("audit: open %s: nil key", dir)
	}
	if opts.MaxFileSize < 0 {
		return nil, fmt.Errorf("audit: open %s: Options.MaxFileSize is %d; want 0 (default) or more", dir, opts.MaxFileSize)
	}
	l := &Log{dir: dir, key: key, max: opts.MaxFileSize}
	if l.max == 0 {
		l.max = DefaultMaxFileSize
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("audit: open %s: %w", dir, err)
		}
		if err := fsync.Dir(filepath.Dir(dir)); err != nil {
			return nil, fmt.Errorf("audit: open %s: sync parent directory: %w", dir, err)
		}
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", dir, err)
	}
	l.lock = lock
	if err := l.resume(); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("audit: open %s: %w", dir, err)
	}
	return l, nil
}

// resume finds the last record, truncates a torn tail and opens the last
// file for appending.
func (l *Log) resume() error {
	files, err := listFiles(l.dir)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return l.create(1)
	}
	last := files[len(files)-1]
	// Walk back over files without a complete record (an empty file left
	// by a crash right after rotation) to the last record.
	for i := len(files) - 1; i >= 0; i-- {
		found, err := l.lastRecord(files[i], i == len(files)-1)
		if err != nil {
			return err
		}
		if found {
			break
		}
	}
	f, err := os.OpenFile(filepath.Join(l.dir, fileName(last)), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return err
	}
	l.f, l.index, l.size = f, last, st.Size()
	return nil
}

// lastRecord reads file index, truncating a torn tail if it is the log's
// last file, and sets seq and prev from its last complete record. It
// reports whether the file has one.
func (l *Log) lastRecord(index int, isLast bool) (bool, error) {
	name := fileName(index)
	f, err := os.OpenFile(filepath.Join(l.dir, name), os.O_RDWR, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	lr := newLineReader(f)
	var lastLine []byte
	lastN := 0
	for {
		line, complete, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, errLineTooLong) {
			return false, &VerifyError{File: name, Line: lr.n, Reason: err.Error()}
		}
		if err != nil {
			return false, fmt.Errorf("read %s: %w", name, err)
		}
		if !complete {
			if !isLast {
				return false, &VerifyError{File: name, Line: lr.n, Reason: "incomplete line (no newline) before the end of the log"}
			}
			log.Warnw("truncating a torn record at the end of the audit log: the process died while writing it, so it was never acknowledged",
				"file", filepath.Join(l.dir, name), "line", lr.n, "bytes", len(line))
			if err := f.Truncate(lr.start); err != nil {
				return false, fmt.Errorf("truncate torn record in %s: %w", name, err)
			}
			if err := f.Sync(); err != nil {
				return false, fmt.Errorf("truncate torn record in %s: %w", name, err)
			}
			break
		}
		lastLine = append(lastLine[:0], line...)
		lastN = lr.n
	}
	if lastN == 0 {
		return false, nil
	}
	r, err := ParseRecord(lastLine)
	if err != nil {
		return false, &VerifyError{File: name, Line: lastN, Reason: err.Error()}
	}
	if !checkSig(r, l.key.GetPublic()) {
		return false, &VerifyError{File: name, Line: lastN, Seq: r.Seq,
			Reason: "signature does not verify with this node's key (was the log written by another key?)"}
	}
	l.seq, l.prev = r.Seq, lineHash(lastLine)
	return true, nil
}

// create starts file index, empty, and makes its creation durable.
func (l *Log) create(index int) error {
	name := fileName(index)
	f, err := os.OpenFile(filepath.Join(l.dir, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := fsync.Dir(l.dir); err != nil {
		_ = f.Close()
		return fmt.Errorf("sync directory after creating %s: %w", name, err)
	}
	if l.f != nil {
		_ = l.f.Close()
	}
	l.f, l.index, l.size = f, index, 0
	return nil
}

// Append signs r and writes it as the log's next line. It sets r's Seq,
// Prev and Sig (overwriting what the caller put there), and its Time if it
// is zero; Time is stored in UTC. It returns after the line is fsynced, with
// the record as stored (as ParseRecord would read it back).
//
// Detail must be valid JSON or empty. If a write fails the file is cut back
// and the log stays usable; if fsync fails the file's state is unknown and
// every later Append fails.
func (l *Log) Append(r Record) (Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return Record{}, ErrClosed
	case l.broken != nil:
		return Record{}, fmt.Errorf("audit: log unusable after an earlier failure: %w", l.broken)
	}

	r.Seq, r.Prev, r.Sig = l.seq+1, l.prev, nil
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC()
	// encoding/json would replace invalid UTF-8 with U+FFFD in a form that
	// does not re-encode to the same bytes; replace it first.
	for _, s := range []*string{&r.Kind, &r.Task, &r.Agent, &r.Peer, &r.Rationale} {
		*s = strings.ToValidUTF8(*s, "\uFFFD")
	}
	if r.Kind == "" {
		return Record{}, errors.New("audit: append: record has no kind")
	}
	unsigned, err := json.Marshal(r)
	if err != nil {
		return Record{}, fmt.Errorf("audit: append %s record: %w", r.Kind, err)
	}
	if r.Sig, err = l.key.Sign(unsigned); err != nil {
		return Record{}, fmt.Errorf("audit: append %s record: sign: %w", r.Kind, err)
	}
	line, err := json.Marshal(r)
	if err != nil {
		return Record{}, fmt.Errorf("audit: append %s record: %w", r.Kind, err)
	}
	if len(line) > MaxRecordSize {
		return Record{}, fmt.Errorf("audit: append %s record: %d bytes: %w", r.Kind, len(line), ErrTooLarge)
	}
	// The stored form: Detail compacted, Time without a monotonic reading.
	stored, err := ParseRecord(line)
	if err != nil {
		return Record{}, fmt.Errorf("audit: append %s record: %w", r.Kind, err)
	}

	if l.size > 0 && l.size+int64(len(line))+1 > l.max {
		if err := l.create(l.index + 1); err != nil {
			return Record{}, fmt.Errorf("audit: rotate to %s: %w", fileName(l.index+1), err)
		}
	}
	name := fileName(l.index)
	if _, err := l.f.Write(append(line, '\n')); err != nil {
		// Cut off whatever part was written, so the next record starts
		// on a line of its own.
		if terr := l.f.Truncate(l.size); terr != nil {
			l.broken = fmt.Errorf("write %s: %v; cut back: %w", name, err, terr)
		}
		return Record{}, fmt.Errorf("audit: write %s: %w", name, err)
	}
	if err := l.f.Sync(); err != nil {
		l.broken = fmt.Errorf("fsync %s: %w", name, err)
		return Record{}, fmt.Errorf("audit: %w", l.broken)
	}
	l.seq, l.prev = stored.Seq, lineHash(line)
	l.size += int64(len(line)) + 1
	return stored, nil
}

// Close closes the current file and releases the directory. Append fails
// with ErrClosed after it; a second Close does nothing.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	err := l.f.Close()
	if lerr := l.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("audit: close %s: %w", l.dir, err)
	}
	return nil
}

const (
	filePrefix = "audit-"
	fileSuffix = ".jsonl"
	lockFile   = ".lock"
)

// fileName is the name of file number index: audit-000001.jsonl.
func fileName(index int) string {
	return fmt.Sprintf("%s%06d%s", filePrefix, index, fileSuffix)
}

// listFiles returns the numbers of dir's audit files, in order. Other
// names are ignored.
func listFiles(dir string) ([]int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var idx []int
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, filePrefix) || !strings.HasSuffix(name, fileSuffix) {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, filePrefix), fileSuffix))
		if err != nil || n < 1 || fileName(n) != name {
			continue
		}
		idx = append(idx, n)
	}
	sort.Ints(idx)
	return idx, nil
}
