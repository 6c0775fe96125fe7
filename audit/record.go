package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// Record kinds the node writes. Kind is free text; these are the usual ones.
const (
	KindIntentPublished = "intent.published"
	KindIntentReceived  = "intent.received"
	KindProposal        = "proposal"
	KindAward           = "award"
	KindCommit          = "commit"
	KindResult          = "result"
	KindFailure         = "failure"
	KindPolicy          = "policy"
	KindApproval        = "approval"
	// KindCheckpoint is the kind of the records the Log itself writes to
	// put a signed tree head into the chain (see the package doc). It is
	// reserved: Append and Add refuse it.
	KindCheckpoint = "checkpoint"
)

// MaxRecordSize bounds the length of one line of the log, without its
// newline. Append refuses a larger record and readers reject a longer line,
// so a damaged file cannot make a reader buffer without limit.
const MaxRecordSize = 1 << 20

// Record is one line of the audit log.
type Record struct {
	// Seq numbers the records of a log 1, 2, 3 … across its files. Append
	// sets it.
	Seq uint64 `json:"seq"`
	// Time is when the action happened; Append sets it to now if it is
	// zero, and stores it in UTC.
	Time time.Time `json:"time"`
	// Kind says what happened, e.g. "award" (see the Kind constants).
	Kind string `json:"kind"`
	// Task is the negotiation or task ID the record is about, if any.
	Task string `json:"task,omitempty"`
	// Agent is this node's agent involved, if any.
	Agent string `json:"agent,omitempty"`
	// Peer is the other node involved, if any.
	Peer string `json:"peer,omitempty"`
	// Rationale says why, for a human.
	Rationale string `json:"rationale,omitempty"`
	// Detail is any further JSON the recorder wants to keep.
	Detail json.RawMessage `json:"detail,omitempty"`
	// Prev is the hex SHA-256 of the previous record's full line (without
	// its newline), "" for the first record of the log. Append sets it.
	Prev string `json:"prev"`
	// Sig is the node key's signature over the record's JSON with Sig nil,
	// or nil (JSON null) for a record that a later record's signature
	// covers through the chain: the Log signs only the last record of
	// each commit group. Append sets it.
	Sig []byte `json:"sig"`
}

// Sentinel errors callers branch on.
var (
	// ErrMalformed is wrapped by ParseRecord's errors.
	ErrMalformed = errors.New("malformed audit record")
	// ErrNoLog is returned by Verify and Tail for a directory that does not
	// exist or holds no audit files.
	ErrNoLog = errors.New("no audit log")
	// ErrClosed is returned by Append, Add and Sync after Close.
	ErrClosed = errors.New("audit log closed")
	// ErrBroken is wrapped by Log.Err, and so by every Append, Add and
	// Sync, once a write, fsync or rotation failed: what is on disk is
	// then unknown, and the Log writes nothing more.
	ErrBroken = errors.New("audit log broken")
	// ErrTruncated is wrapped (through VerifyError.Err) by the errors of
	// Verify and Open for a log that holds fewer records than a signed
	// checkpoint says it had: records were cut off its end.
	ErrTruncated = errors.New("audit log truncated")
	// ErrLocked is returned by Open when another Log has the directory
	// open or a Prune runs on it, and by Prune when another Prune does.
	ErrLocked = errors.New("audit log is in use by another process")
	// ErrTooLarge is returned by Append for a record whose line would be
	// longer than MaxRecordSize.
	ErrTooLarge = errors.New("audit record too large")
)

// ParseRecord decodes one line of the log, without its newline. It checks
// the line's form, not its place in the chain or its signature (Verify
// does): the line must be the exact encoding/json form of the record it
// holds, Seq must be at least 1, Kind non-empty, Sig null or non-empty,
// and Prev empty or a lowercase hex SHA-256. Errors wrap ErrMalformed.
func ParseRecord(line []byte) (Record, error) {
	if len(line) > MaxRecordSize {
		return Record{}, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(line), MaxRecordSize)
	}
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch {
	case r.Seq == 0:
		return Record{}, fmt.Errorf("%w: seq is 0", ErrMalformed)
	case r.Kind == "":
		return Record{}, fmt.Errorf("%w: no kind", ErrMalformed)
	case r.Sig != nil && len(r.Sig) == 0:
		// One spelling for "unsigned": null.
		return Record{}, fmt.Errorf("%w: empty signature (an unsigned record has sig null)", ErrMalformed)
	case r.Prev != "" && !isHexHash(r.Prev):
		return Record{}, fmt.Errorf("%w: prev is not a hex SHA-256", ErrMalformed)
	}
	canon, err := json.Marshal(r)
	if err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(canon, line) {
		return Record{}, fmt.Errorf("%w: not in canonical form (extra or reordered fields, spacing or escaping)", ErrMalformed)
	}
	return r, nil
}

func isHexHash(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// signedBytes is what Sig signs: the record's JSON with Sig nil, which is
// the line an unsigned record would have.
func signedBytes(r Record) ([]byte, error) {
	r.Sig = nil
	return json.Marshal(r)
}

// checkSig reports whether r's signature verifies with pub; false for an
// unsigned record.
func checkSig(r Record, pub crypto.PubKey) bool {
	if r.Sig == nil {
		return false
	}
	data, err := signedBytes(r)
	if err != nil {
		return false
	}
	ok, err := pub.Verify(data, r.Sig)
	return err == nil && ok
}

// checkLineSig is checkSig for a line known to be a signed record's: the
// signed bytes are the line with its sig value replaced by null, which
// saves re-encoding the record.
func checkLineSig(line []byte, r Record, pub crypto.PubKey) bool {
	if r.Sig == nil {
		return false
	}
	i := bytes.LastIndex(line, []byte(`,"sig":"`))
	if i < 0 || !bytes.HasSuffix(line, []byte(`"}`)) {
		return checkSig(r, pub)
	}
	data := make([]byte, 0, i+len(sigNullSuffix))
	data = append(append(data, line[:i]...), sigNullSuffix...)
	ok, err := pub.Verify(data, r.Sig)
	return err == nil && ok
}

// sigNullSuffix ends every unsigned line, and so every signed byte string.
const sigNullSuffix = `,"sig":null}`

// lineHash is the value the next record's Prev holds.
func lineHash(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}

// VerifyError names the first record of a log that fails verification.
type VerifyError struct {
	// File is the base name of the file, e.g. "audit-000001.jsonl".
	File string
	// Line is the 1-based line in File; 0 for a problem with the file
	// itself, such as a missing file.
	Line int
	// Seq is the seq the record at this place should have: one more than
	// the last good record's; 0 where that is unknown.
	Seq uint64
	// Reason says what is wrong.
	Reason string
	// Err, if set, is a sentinel the problem is an instance of, such as
	// ErrTruncated, for callers to branch on with errors.Is.
	Err error
}

// Unwrap returns e.Err.
func (e *VerifyError) Unwrap() error { return e.Err }

func (e *VerifyError) Error() string {
	where := e.File
	if e.Line > 0 {
		where = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Seq > 0 {
		where = fmt.Sprintf("%s (seq %d)", where, e.Seq)
	}
	return where + ": " + e.Reason
}

// errLineTooLong is returned by lineReader.next for a line longer than
// MaxRecordSize.
var errLineTooLong = fmt.Errorf("line longer than %d bytes", MaxRecordSize)

// lineReader reads a log file line by line.
type lineReader struct {
	br    *bufio.Reader
	n     int   // 1-based number of the line last returned
	start int64 // offset of the line last returned
	off   int64 // offset of the next line
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, MaxRecordSize+1)}
}

// next returns the next line without its newline and whether it ended in
// one (a line without one can only be the file's last). It returns io.EOF
// after the last line. The slice is valid until the next call.
func (lr *lineReader) next() (line []byte, complete bool, err error) {
	b, err := lr.br.ReadSlice('\n')
	switch {
	case err == nil:
		complete = true
		line = b[:len(b)-1]
	case errors.Is(err, bufio.ErrBufferFull):
		lr.n++
		lr.start = lr.off
		return nil, false, errLineTooLong
	case errors.Is(err, io.EOF):
		if len(b) == 0 {
			return nil, false, io.EOF
		}
		line = b
	default:
		return nil, false, err
	}
	lr.n++
	lr.start = lr.off
	lr.off += int64(len(b))
	return line, complete, nil
}
